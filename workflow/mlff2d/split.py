"""Train/validation/test split by material, never by frame (thesis 4.1).

The kept materials (material ledger ``reason == kept``) are sorted by id and permuted with a
seeded NumPy generator; the first round(n * val) go to ``val``, the next round(n * test) to
``test`` and the rest to ``train`` (each non-empty fraction gets at least one material when
there are at least three). The split depends only on the kept materials and the seed, never
on ``e_cut``, so every cutoff is judged on the same test set. Same seed and input give a
byte-identical file.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

SPLITS = ("train", "val", "test")


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
