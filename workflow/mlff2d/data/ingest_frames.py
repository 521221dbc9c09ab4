"""Sources, frames and materials of the ingest (see :mod:`mlff2d.data.ingest`), and the checks that
set a frame's problem code (vacuum along z, non-finite values, zero volume, ...)."""

from __future__ import annotations

import gc
import glob
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mlff2d.config import schema_default
from mlff2d.io.units import STRESS_UNITS, stress_to_ase, to_voigt


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector: parsing a file allocates millions of containers, and
    the collections that triggers (which find nothing to free) cost several times the parse."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


FORMATS = ("alexandria", "extxyz", "ase_db", "vasp")
#: Smallest periodic gap (Å) along c that counts as vacuum in the vacuum-along-z check.
DEFAULT_MIN_VACUUM = schema_default("data.min_vacuum")


class IngestError(ValueError):
    """Input that cannot be ingested; the message names the file and the record."""


@dataclass
class Source:
    """One configured input: a file, directory or glob in one format with one stress unit."""

    path: str
    format: str
    stress_unit: str = "kbar_vasp"
    id_key: str = "material_id"
    step_key: str = "step"
    functional: str | None = None

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise IngestError(f"source {self.path!r}: unknown format {self.format!r}; one of {FORMATS}")
        if self.stress_unit not in STRESS_UNITS:
            raise IngestError(
                f"source {self.path!r}: unknown stress_unit {self.stress_unit!r}; one of {STRESS_UNITS}"
            )

    def files(self, base: Path | None = None) -> list[Path]:
        """The input files of this source, sorted (VASP: one vasprun.xml or OUTCAR per run)."""
        root = Path(self.path) if base is None or Path(self.path).is_absolute() else base / self.path
        if self.format == "vasp":
            runs: list[Path] = []
            for d in sorted({p.parent for p in root.rglob("*") if p.name in ("vasprun.xml", "OUTCAR")}):
                runs.append(d / "vasprun.xml" if (d / "vasprun.xml").exists() else d / "OUTCAR")
            return runs
        if root.is_dir():
            suffixes = {
                "alexandria": (".json", ".json.bz2", ".json.gz", ".json.xz"),
                "extxyz": (".extxyz", ".xyz"),
                "ase_db": (".db",),
            }[self.format]
            return sorted(p for p in root.rglob("*") if p.is_file() and p.name.endswith(suffixes))
        matches = sorted(Path(p) for p in glob.glob(str(root)))
        return [p for p in matches if p.is_file()]


@dataclass
class Frame:
    """One relaxation step in ASE units and sign, before it enters the store."""

    numbers: np.ndarray
    positions: np.ndarray
    cell: np.ndarray
    energy: float
    forces: np.ndarray
    stress: np.ndarray
    problem: str = ""


@dataclass
class Material:
    """One material's trajectory from one file."""

    material_id: str
    frames: list[Frame] = field(default_factory=list)
    n_calcs: int = 1
    skipped_calcs: int = 0


# ----------------------------------------------------------------------------- frame checks


def vacuum_along_z_batch(cells: np.ndarray, positions: np.ndarray, min_vacuum: float = DEFAULT_MIN_VACUUM) -> np.ndarray:
    """For frames of equal size (cells (M, 3, 3), positions (M, n, 3)): True where a and b lie
    in the xy plane and the largest gap between atomic layers along c, measured as a height
    above the ab plane, is at least ``min_vacuum`` Å. Cells must have non-zero volume."""
    a, b = cells[:, 0], cells[:, 1]
    scale = np.maximum(np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1))
    in_plane = (np.abs(a[:, 2]) <= 1e-3 * scale) & (np.abs(b[:, 2]) <= 1e-3 * scale)
    area = np.linalg.norm(np.cross(a, b), axis=1)
    height = np.abs(np.linalg.det(cells)) / np.where(area > 0, area, np.inf)
    frac_c = np.sort(np.einsum("mni,mi->mn", positions, np.linalg.inv(cells)[:, :, 2]) % 1.0, axis=1)
    gaps = np.diff(np.concatenate([frac_c, frac_c[:, :1] + 1.0], axis=1), axis=1)
    return in_plane & (gaps.max(axis=1) * height >= min_vacuum)


def vacuum_along_z(cell: np.ndarray, positions: np.ndarray, min_vacuum: float = DEFAULT_MIN_VACUUM) -> bool:
    """:func:`vacuum_along_z_batch` for one frame."""
    return bool(vacuum_along_z_batch(cell[None], positions[None], min_vacuum)[0])


def check_frames(frames: list[Frame], min_vacuum: float = DEFAULT_MIN_VACUUM) -> None:
    """Set the problem code of every frame that has none yet (vectorised over frames of equal
    size): ``unknown_element``, ``bad_forces_shape``, ``bad_stress_shape``, ``non_finite``,
    ``zero_volume``, ``vacuum_not_z``. Readers set ``missing_energy``, ``null_forces`` and
    ``missing_stress`` themselves, since only they can tell a missing value from a NaN."""
    by_size: dict[int, list[Frame]] = {}
    for f in frames:
        n = len(f.numbers)
        if f.problem:
            continue
        if np.any(f.numbers <= 0):
            f.problem = "unknown_element"
        elif f.forces.shape != (n, 3):
            f.problem = "bad_forces_shape"
        elif f.stress.shape != (6,):
            f.problem = "bad_stress_shape"
        else:
            by_size.setdefault(n, []).append(f)
    for n, group in by_size.items():
        cells = np.stack([f.cell for f in group])
        positions = np.stack([f.positions for f in group]).reshape(len(group), n, 3)
        finite = (
            np.isfinite(cells).all(axis=(1, 2))
            & np.isfinite(positions).all(axis=(1, 2))
            & np.isfinite([f.energy for f in group])
            & np.isfinite(np.stack([f.forces for f in group]).reshape(len(group), -1)).all(axis=1)
            & np.isfinite(np.stack([f.stress for f in group])).all(axis=1)
        )
        volume_ok = finite & (np.abs(np.linalg.det(np.where(finite[:, None, None], cells, np.eye(3)))) >= 1e-6)
        vacuum_ok = np.zeros(len(group), dtype=bool)
        if volume_ok.any():
            vacuum_ok[volume_ok] = vacuum_along_z_batch(cells[volume_ok], positions[volume_ok], min_vacuum)
        for f, fin, vol, vac in zip(group, finite, volume_ok, vacuum_ok):
            f.problem = "" if vac else "non_finite" if not fin else "zero_volume" if not vol else "vacuum_not_z"


def frame_problem(frame: Frame, min_vacuum: float = DEFAULT_MIN_VACUUM) -> str:
    """The first problem that makes one frame unusable, or '' (see :func:`check_frames`)."""
    check_frames([frame], min_vacuum)
    return frame.problem


def as_stress(raw: Any, unit: str) -> tuple[np.ndarray, str]:
    """Voigt stress in eV/Å³ from raw input, or NaNs with a problem code."""
    if raw is None:
        return np.full(6, np.nan), "missing_stress"
    try:
        arr = np.array(raw, dtype=float)
        return stress_to_ase(to_voigt(arr), unit), ""
    except (ValueError, TypeError):
        return np.full(6, np.nan), "bad_stress_shape"


def as_forces(raw: Any, n: int) -> tuple[np.ndarray, str]:
    """Forces (n, 3) in eV/Å from raw input (``null`` components become NaN)."""
    if raw is None:
        return np.full((n, 3), np.nan), "null_forces"
    try:
        arr = np.array(raw, dtype=float)  # JSON null -> nan
    except (ValueError, TypeError):
        return np.full((n, 3), np.nan), "bad_forces_shape"
    if arr.shape != (n, 3):
        return arr.reshape(-1) if arr.size else np.zeros((0, 3)), "bad_forces_shape"
    if np.isnan(arr).any() and any(v is None for f in raw for v in (f if isinstance(f, list) else [f])):
        return arr, "null_forces"
    return arr, ""


MATERIAL_COLUMNS = ["material_id", "source", "n_frames", "n_calcs", "skipped_calcs", "problem"]
