"""Outlier removal (thesis 4.1) with a ledger that accounts for every material and frame.

Frame reasons, checked in this order (the first that applies is recorded):

1. the ingest problem code, if any (see :mod:`mlff2d.data.ingest`);
2. ``too_many_sites``: more than ``max_sites`` atoms (default 20);
3. ``energy_out_of_range``: E/N > ``energy_max`` (0) or E/N < ``energy_min`` (-20) eV/atom;
4. ``force_too_large``: any force component with magnitude > ``force_max`` (20 eV/Å);
5. ``stress_too_large``: any stress component with magnitude > ``stress_max_kbar`` (500 kbar);
6. ``isolated_atom``: an atom with no other atom, or periodic image, within ``isolation_cutoff`` Å.

``scope: material`` (default, as in the study, which counts removed materials) removes a whole
material when any of its frames has a reason; its other frames are recorded as
``material_removed``. ``scope: frame`` removes only the offending frames; a material left with no
frame is recorded as ``no_frames_left``. A material with no frames at ingest is
``empty_trajectory``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mlff2d.config import schema_default
from mlff2d.io.store import FrameWriter, iter_tables
from mlff2d.io.units import ase_stress_to_kbar_magnitude

KEPT = "kept"


@dataclass(frozen=True)
class OutlierLimits:
    """Thresholds of the outlier filter; defaults are the config schema's (the study's)."""

    max_sites: int = schema_default("outliers.max_sites")
    energy_min: float = schema_default("outliers.energy_min")
    energy_max: float = schema_default("outliers.energy_max")
    force_max: float = schema_default("outliers.force_max")
    stress_max_kbar: float = schema_default("outliers.stress_max_kbar")
    isolation_cutoff: float = schema_default("outliers.isolation_cutoff")
    scope: str = schema_default("outliers.scope")

    def __post_init__(self) -> None:
        if self.scope not in ("material", "frame"):
            raise ValueError(f"outliers.scope must be 'material' or 'frame', got {self.scope!r}")


def has_isolated_atom(positions: np.ndarray, cell: np.ndarray, cutoff: float) -> bool:
    """True when some atom has no neighbour (another atom or any periodic image, its own
    included) within ``cutoff`` Å. The cell is periodic in all three directions."""
    n = len(positions)
    inv = np.linalg.inv(cell)
    plane_spacing = 1.0 / np.linalg.norm(inv, axis=0)
    reps = np.ceil(cutoff / plane_spacing).astype(int)
    grid = np.stack(
        np.meshgrid(*(np.arange(-r, r + 1) for r in reps), indexing="ij"), axis=-1
    ).reshape(-1, 3)
    shifts = grid @ cell  # (K, 3)
    diff = positions[None, :, None, :] - positions[:, None, None, :] + shifts[None, None, :, :]
    d2 = np.einsum("ijkx,ijkx->ijk", diff, diff)
    zero = np.flatnonzero((grid == 0).all(axis=1))[0]
    d2[np.arange(n), np.arange(n), zero] = np.inf
    return bool((d2.reshape(n, -1).min(axis=1) > cutoff**2).any())


def frame_reasons(table: pa.Table, limits: OutlierLimits) -> list[str]:
    """The ledger reason of each frame of a store table (``kept`` for a sound frame)."""
    problems = table.column("problem").to_pylist()
    n_atoms = table.column("n_atoms").to_numpy()
    energy = table.column("energy").to_numpy()
    forces = table.column("forces")
    stress = table.column("stress")
    positions = table.column("positions")
    cells = table.column("cell")
    reasons: list[str] = []
    for i in range(table.num_rows):
        if problems[i]:
            reasons.append(problems[i])
            continue
        n = int(n_atoms[i])
        if n > limits.max_sites:
            reasons.append("too_many_sites")
            continue
        e_per_atom = energy[i] / n
        if e_per_atom > limits.energy_max or e_per_atom < limits.energy_min:
            reasons.append("energy_out_of_range")
            continue
        f = forces[i].values.to_numpy()
        if f.size and np.abs(f).max() > limits.force_max:
            reasons.append("force_too_large")
            continue
        s = ase_stress_to_kbar_magnitude(stress[i].values.to_numpy())
        if np.abs(s).max() > limits.stress_max_kbar:
            reasons.append("stress_too_large")
            continue
        pos = positions[i].values.to_numpy().reshape(n, 3)
        cell = cells[i].values.to_numpy().reshape(3, 3)
        if has_isolated_atom(pos, cell, limits.isolation_cutoff):
            reasons.append("isolated_atom")
            continue
        reasons.append(KEPT)
    return reasons


def remove_outliers(
    frames: str | Path,
    materials: str | Path,
    clean_out: str | Path,
    ledger_frames_out: str | Path,
    ledger_materials_out: str | Path,
    summary_out: str | Path,
    limits: OutlierLimits | None = None,
) -> pd.DataFrame:
    """Filter ``frames`` into ``clean_out`` and write the frame and material ledgers and a
    summary of counts by level and reason (``limits``: the schema's by default). Returns the
    material ledger."""
    limits = limits or OutlierLimits()
    ledger = _frame_ledger(frames, limits)

    mats = pd.read_csv(materials, dtype={"material_id": str}, keep_default_na=False)
    bad = ledger[ledger["reason"] != KEPT]
    first_bad = bad.groupby("material_id", sort=False)["reason"].first()
    n_kept = ledger[ledger["reason"] == KEPT].groupby("material_id").size()
    if limits.scope == "material":
        removed = set(first_bad.index)
        mask = ledger["material_id"].isin(removed) & (ledger["reason"] == KEPT)
        ledger.loc[mask, "reason"] = "material_removed"
        mat_reason = mats["material_id"].map(first_bad).astype(object)
    else:
        has_frames = mats["material_id"].map(n_kept).fillna(0) > 0
        mat_reason = pd.Series(None, index=mats.index, dtype=object).where(has_frames, "no_frames_left")
    mats["reason"] = np.where(mats["problem"] != "", mats["problem"], mat_reason.where(mat_reason.notna(), KEPT))
    kept_frames = ledger["reason"] == KEPT
    mats["n_kept"] = mats["material_id"].map(ledger[kept_frames].groupby("material_id").size()).fillna(0).astype(int)
    mats.loc[mats["reason"] != KEPT, "n_kept"] = 0

    _write_kept(frames, clean_out, kept_frames.to_numpy())

    Path(ledger_frames_out).parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pandas(ledger, preserve_index=False), ledger_frames_out)
    mats = mats[["material_id", "source", "n_frames", "n_kept", "skipped_calcs", "reason"]]
    mats.to_csv(ledger_materials_out, index=False)
    summary = pd.concat(
        [
            mats.groupby("reason").size().rename("count").reset_index().assign(level="material"),
            ledger.groupby("reason").size().rename("count").reset_index().assign(level="frame"),
        ]
    )[["level", "reason", "count"]]
    summary.to_csv(summary_out, index=False)
    return mats


def _frame_ledger(frames: str | Path, limits: OutlierLimits) -> pd.DataFrame:
    """One row per frame: material_id, source, step and its reason (:func:`frame_reasons`)."""
    cols = ["material_id", "source", "step", "n_atoms", "energy", "forces", "stress", "positions", "cell", "problem"]
    parts = []
    for table in iter_tables(frames, columns=cols):
        parts.append(
            pd.DataFrame(
                {
                    "material_id": table.column("material_id").to_numpy(zero_copy_only=False),
                    "source": table.column("source").to_numpy(zero_copy_only=False),
                    "step": table.column("step").to_numpy(),
                    "reason": frame_reasons(table, limits),
                }
            )
        )
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["material_id", "source", "step", "reason"])


def _write_kept(frames: str | Path, clean_out: str | Path, keep: np.ndarray) -> None:
    """Write the frames flagged in ``keep`` (one flag per frame, in store order) to ``clean_out``."""
    offset = 0
    with FrameWriter(clean_out) as writer:
        for table in iter_tables(frames):
            n = table.num_rows
            writer.write(table.filter(pa.array(keep[offset : offset + n])))
            offset += n
