"""Train/validation/test split by material, never by frame (thesis 4.1).

The kept materials (material ledger ``reason == kept``) are sorted by id and permuted with a
seeded NumPy generator; the first round(n * val) go to ``val``, the next round(n * test) to
``test`` and the rest to ``train`` (each non-empty fraction gets at least one material when
there are at least three). The split depends only on the kept materials and the seed, never
on ``e_cut``, so every cutoff is judged on the same test set. Same seed and input give a
byte-identical file.

Split repeats (``splits.<name>.repeats: K``): repeat 0 is the plain split ``<name>`` with the
campaign seed; repeat k >= 1 is the split instance ``<name>.r<k>``, drawn with
:func:`repeat_seed`. Each repeat is a material-level split of the same kept materials, so it too
is independent of ``e_cut``, and the combined alloy split of a repeat is the union of the
per-alloy splits of that repeat. The instance name is the ``{split}`` wildcard of every path.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

SPLITS = ("train", "val", "test")
#: Separator of a split instance name: ``<name>.r<k>`` (split names cannot contain a dot).
REPEAT_MARK = ".r"


def split_instance(name: str, repeat: int) -> str:
    """The split instance of repeat ``repeat`` of split ``name``: ``name`` for 0, else ``name.r<k>``."""
    if repeat < 0:
        raise ValueError(f"repeat must be >= 0, got {repeat}")
    return name if repeat == 0 else f"{name}{REPEAT_MARK}{repeat}"


def parse_split_instance(instance: str) -> tuple[str, int]:
    """(split name, repeat) of a split instance; the inverse of :func:`split_instance`."""
    name, mark, repeat = instance.rpartition(REPEAT_MARK)
    if mark and repeat.isdigit() and int(repeat) > 0 and "." not in name:
        return name, int(repeat)
    return instance, 0


def split_instances(name: str, repeats: int) -> list[str]:
    """The K split instances of a split: ``name, name.r1, ..., name.r<K-1>``."""
    return [split_instance(name, k) for k in range(repeats)]


def repeat_seed(seed: int, repeat: int) -> int:
    """Seed of a split repeat: the campaign seed for repeat 0 (the plain split, unchanged), else a
    32-bit seed drawn from NumPy's SeedSequence of (seed, repeat), so repeats never collide."""
    if repeat == 0:
        return int(seed)
    return int(np.random.SeedSequence([int(seed), int(repeat)]).generate_state(1)[0])


def split_materials(material_ids: Sequence[str], ratios: Sequence[float], seed: int) -> pd.DataFrame:
    """Assign each material to train/val/test; returns (material_id, split) sorted by id."""
    if len(ratios) != 3 or any(r < 0 for r in ratios) or abs(sum(ratios) - 1.0) > 1e-6:
        raise ValueError(f"split ratios must be three non-negative numbers summing to 1, got {list(ratios)}")
    ids = np.array(sorted(set(material_ids)), dtype=object)
    n = ids.size
    perm = np.random.default_rng(seed).permutation(n)
    n_val, n_test = (int(round(n * r)) for r in ratios[1:])
    if n >= 3:
        n_val = max(n_val, 1) if ratios[1] > 0 else 0
        n_test = max(n_test, 1) if ratios[2] > 0 else 0
    labels = np.full(n, "train", dtype=object)
    labels[perm[:n_val]] = "val"
    labels[perm[n_val : n_val + n_test]] = "test"
    return pd.DataFrame({"material_id": ids, "split": labels})


def split_dataset(ledger_materials: str | Path, out: str | Path, ratios: Sequence[float], seed: int) -> pd.DataFrame:
    """Split the kept materials of a material ledger and write the CSV ``out``."""
    mats = pd.read_csv(ledger_materials, dtype={"material_id": str}, keep_default_na=False)
    result = split_materials(mats.loc[mats["reason"] == "kept", "material_id"].tolist(), ratios, seed)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    result.to_csv(out, index=False, lineterminator="\n")
    return result


def union_splits(split_csvs: Sequence[str | Path], out: str | Path) -> pd.DataFrame:
    """The union of several datasets' splits (the combined alloy dataset): every material keeps
    the set it has in its own dataset. A material in two of them is an error naming both files."""
    parts = []
    for path in split_csvs:
        part = pd.read_csv(path, dtype={"material_id": str}, keep_default_na=False)
        parts.append(part.assign(_file=str(path)))
    joined = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["material_id", "split", "_file"])
    dup = joined[joined.duplicated("material_id", keep=False)]
    if len(dup):
        mid = dup["material_id"].iloc[0]
        files = sorted(dup.loc[dup["material_id"] == mid, "_file"])
        raise ValueError(f"material {mid!r} is in more than one split to combine: {files}")
    result = joined.drop(columns="_file").sort_values("material_id", kind="stable").reset_index(drop=True)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    result.to_csv(out, index=False, lineterminator="\n")
    return result
