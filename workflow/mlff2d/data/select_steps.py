"""Step selection by the energy cutoff ``e_cut`` (thesis 4.1).

For a trajectory of M frames with per-atom energies e_0 ... e_{M-1} (eV/atom), step i
(0 <= i <= M-2) is kept when |e_i - e_{i+1}| > e_cut. The last step M-1 has no successor and
is therefore **never kept by the cutoff rule itself**; it is kept only through the fallback or
when ``keep_last`` is set. When no step qualifies, the fallback keeps the steps
floor(f * (M-1)) for each fraction f (default: the config schema's ``selection.fallback``,
[0, 0.5, 1]: first, middle and last, the study's [0, N/2, N]; the earlier work it compares with used [0, 1/3, 1]). Duplicate indices of
short trajectories are kept once. Indices refer to the frames that survived the outlier filter,
in trajectory order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mlff2d.config import schema_default

DEFAULT_FALLBACK = tuple(schema_default("selection.fallback"))


def select_steps(
    energy_per_atom: Sequence[float] | np.ndarray,
    e_cut: float,
    fallback: Sequence[float] = DEFAULT_FALLBACK,
    keep_last: bool = False,
) -> np.ndarray:
    """Indices of the steps kept from one trajectory (see the module docstring)."""
    e = np.asarray(energy_per_atom, dtype=float)
    if e.size == 0:
        return np.zeros(0, dtype=int)
    idx = np.flatnonzero(np.abs(np.diff(e)) > e_cut)
    if idx.size == 0:
        last = e.size - 1
        idx = np.unique(np.floor(np.asarray(fallback, dtype=float) * last + 1e-9).astype(int).clip(0, last))
    elif keep_last:
        idx = np.append(idx, e.size - 1)
    return idx


def select_dataset(
    clean: str | Path,
    out: str | Path,
    e_cut: float,
    fallback: Sequence[float] = DEFAULT_FALLBACK,
    keep_last: bool = False,
) -> pd.DataFrame:
    """Apply :func:`select_steps` to every material of a clean store; write (material_id, step)
    of the selected frames to ``out`` (Parquet) and return it."""
    table = pq.read_table(clean, columns=["material_id", "step", "n_atoms", "energy"]).to_pandas()
    table["e"] = table["energy"] / table["n_atoms"]
    mids: list[np.ndarray] = []
    steps: list[np.ndarray] = []
    for mid, group in table.groupby("material_id", sort=False):
        chosen = select_steps(group["e"].to_numpy(), e_cut, fallback, keep_last)
        steps.append(group["step"].to_numpy()[chosen])
        mids.append(np.full(chosen.size, mid, dtype=object))
    result = pd.DataFrame(
        {
            "material_id": np.concatenate(mids) if mids else np.zeros(0, dtype=object),
            "step": np.concatenate(steps).astype(np.int32) if steps else np.zeros(0, dtype=np.int32),
        }
    )
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    schema = pa.schema([("material_id", pa.string()), ("step", pa.int32())])
    pq.write_table(pa.Table.from_pandas(result, schema=schema, preserve_index=False), out)
    return result


#: Columns of ``selection_summary.csv`` (see :func:`selection_summary`).
SUMMARY_COLUMNS = ["e_cut", "split", "set", "n_materials", "n_frames", "n_last_frames", "n_materials_fallback"]


def selection_summary(
    clean: str | Path,
    selected: Mapping[str, str | Path],
    splits: Mapping[str, str | Path],
    fallback: Sequence[float] = DEFAULT_FALLBACK,
) -> pd.DataFrame:
    """Materials and frames per e_cut and per train/val/test (the counts of thesis 4.1).

    Args:
        clean: the clean store (its last step per material is the relaxed structure).
        selected: e_cut label -> selected steps (``selected/ecut~<e>.parquet``).
        splits: split name -> split CSV (material_id, split).
        fallback: the fallback fractions the selection used.

    Returns:
        One row per e_cut × split × set, plus a row ``split = all``, ``set = all`` per e_cut
        (every selected material): ``n_materials`` and ``n_frames`` selected,
        ``n_last_frames`` (materials whose last, relaxed frame is among their selected frames:
        under the literal e_cut rule only those that fell back, or all with ``keep_last``) and
        ``n_materials_fallback`` (materials whose selection is exactly the fallback steps, as
        it is when no step passes the cutoff).
    """
    table = pq.read_table(clean, columns=["material_id", "step"]).to_pandas()
    table["material_id"] = table["material_id"].astype(str)
    steps = table.groupby("material_id", sort=False)["step"].agg(list)
    last = table.groupby("material_id")["step"].max()
    fallback_steps = {
        mid: frozenset(np.asarray(s)[select_steps(np.zeros(len(s)), 1.0, fallback)].tolist()) for mid, s in steps.items()
    }
    membership = {name: pd.read_csv(path, dtype={"material_id": str}).set_index("material_id")["split"] for name, path in splits.items()}
    rows = []
    for e_cut, path in selected.items():
        sel = pd.read_parquet(path)
        sel["material_id"] = sel["material_id"].astype(str)
        per = sel.groupby("material_id")["step"].agg(frozenset)
        info = pd.DataFrame({
            "n_frames": sel.groupby("material_id").size(),
            "has_last": [last.get(m) in s for m, s in per.items()],
            "fallback": [fallback_steps.get(m) == s for m, s in per.items()],
        }, index=per.index)
        groups = [("all", "all", info)]
        for name, assignment in membership.items():
            sets = assignment.reindex(info.index)
            groups += [(name, set_name, info[sets == set_name]) for set_name in ("train", "val", "test")]
        for split, set_name, part in groups:
            rows.append({"e_cut": e_cut, "split": split, "set": set_name, "n_materials": len(part),
                         "n_frames": int(part["n_frames"].sum()), "n_last_frames": int(part["has_last"].sum()),
                         "n_materials_fallback": int(part["fallback"].sum())})
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
