"""Ingest DFT relaxation trajectories into the canonical frame store.

Sources (one reader each): Alexandria geometry-optimisation JSON (``.json``/``.json.bz2``),
extxyz trajectories, ASE databases, and directories of VASP runs (vasprun.xml or OUTCAR).
Each source declares its stress unit; the store holds ASE units and sign (see
:mod:`mlff2d.units`). Files are read one at a time and written as one row group each, so memory
does not grow with the number of input files. Well-formed Alexandria files take a typed fast path
(msgspec records, arrays and checks for the whole file at once); any other file takes the generic
path, and both give the same store, errors and problem codes.

Bad input is handled in one of two ways, and never silently:

* **Error** (:class:`IngestError`, naming the file and the record): a file that cannot be read
  (corrupt or truncated bz2/JSON), a file or record that is not in the format at all (no
  ``steps``, no ``structure``, an extxyz frame without a material id), and the same material id
  in two files.
* **Problem code** stored on the frame (``problem`` column), which the outlier filter turns into a
  counted ledger reason: ``missing_energy``, ``null_forces``, ``bad_forces_shape``,
  ``missing_stress``, ``bad_stress_shape``, ``non_finite``, ``unknown_element``,
  ``disordered_site``, ``zero_volume``, ``vacuum_not_z``. A material with no frames at all is
  kept in the materials table with problem ``empty_trajectory``.
"""

from __future__ import annotations

import bz2
import gc
import glob
import gzip
import json
import lzma
import multiprocessing as mp
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from itertools import chain, repeat
from operator import attrgetter, itemgetter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from ase.data import atomic_numbers

from mlff2d.config import schema_default
from mlff2d.store import FRAME_SCHEMA, FrameBuffer, FrameWriter
from mlff2d.units import STRESS_UNITS, stress_to_ase, to_voigt

try:  # orjson parses Alexandria files several times faster than the standard library
    import orjson
except ImportError:  # pragma: no cover - orjson is in both environments
    orjson = None

try:  # msgspec decodes Alexandria files straight into typed records (the fast path below)
    import msgspec
except ImportError:  # pragma: no cover - msgspec is in both environments
    msgspec = None

try:  # decompresses bzip2 about 20 % faster than the standard library's libbzip2
    import indexed_bzip2
except ImportError:  # pragma: no cover - indexed_bzip2 is in both environments
    indexed_bzip2 = None


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector: parsing a file allocates millions of containers, and
    the collections that triggers (which find nothing to free) cost several times the parse."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _loads(data: bytes) -> Any:
    """Parse JSON with orjson, falling back to the standard library, which also accepts the
    NaN/Infinity literals that Python's json.dump writes (orjson rejects them)."""
    if orjson is not None:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
    return json.loads(data)

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


def _as_stress(raw: Any, unit: str) -> tuple[np.ndarray, str]:
    """Voigt stress in eV/Å³ from raw input, or NaNs with a problem code."""
    if raw is None:
        return np.full(6, np.nan), "missing_stress"
    try:
        arr = np.array(raw, dtype=float)
        return stress_to_ase(to_voigt(arr), unit), ""
    except (ValueError, TypeError):
        return np.full(6, np.nan), "bad_stress_shape"


def _as_forces(raw: Any, n: int) -> tuple[np.ndarray, str]:
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


# ----------------------------------------------------------------------------- readers


def open_text(path: Path) -> bytes:
    """The bytes of a possibly compressed file; raises IngestError when it is corrupt."""
    opener = {".bz2": bz2.open, ".gz": gzip.open, ".xz": lzma.open}.get(path.suffix, open)
    try:
        with opener(path, "rb") as fh:
            return fh.read()
    except (OSError, EOFError, lzma.LZMAError) as exc:
        raise IngestError(f"{path}: cannot decompress/read file ({type(exc).__name__}: {exc})") from exc


def _parse_structure(struct: Any, where: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """numbers, positions (Å), cell (Å) and a problem code from a pymatgen Structure dict;
    anything that is not such a dict raises an IngestError naming the record."""
    try:
        cell = np.array(struct["lattice"]["matrix"], dtype=float).reshape(3, 3)
        sites = struct["sites"]
        problem = ""
        numbers = np.empty(len(sites), dtype=np.int16)
        for i, site in enumerate(sites):
            species = site["species"]
            if len(species) != 1 or abs(species[0].get("occu", 1.0) - 1.0) > 1e-6:
                problem = problem or "disordered_site"
            numbers[i] = atomic_numbers.get(species[0]["element"], 0)
        if "xyz" in (sites[0] if sites else {}):
            positions = np.array([s["xyz"] for s in sites], dtype=float).reshape(-1, 3)
        else:
            positions = np.array([s["abc"] for s in sites], dtype=float).reshape(-1, 3) @ cell
    except (KeyError, TypeError, IndexError, ValueError, AttributeError) as exc:
        raise IngestError(f"{where}: 'structure' is not a valid pymatgen Structure dict ({type(exc).__name__}: {exc})") from exc
    return numbers, positions, cell, problem


def read_alexandria(path: Path, source: Source) -> Iterator[Material]:
    """Materials of an Alexandria geometry-optimisation file ``{id: [calc, ...]}``.

    The steps of a material's calcs (restarts) are concatenated, in order, into one trajectory.
    Calcs whose ``functional`` differs from ``source.functional`` (when set) are skipped and
    counted in ``Material.skipped_calcs``.
    """
    yield from _alexandria_materials(path, source, _alexandria_text(path))


def _alexandria_text(path: Path) -> bytes:
    """The decompressed bytes of an Alexandria file. An unreadable file's IngestError is a
    ValueError, which the JSON step has always reported as ``not valid JSON (<reason>)``."""
    try:
        return open_text(path)
    except ValueError as exc:
        raise IngestError(f"{path}: not valid JSON ({exc})") from exc


def _fast_text(path: Path) -> tuple[bytearray | None, bool]:
    """The decompressed bytes of a file for the fast path, read in chunks into one buffer (no
    second copy), and whether they come from :func:`open_text`'s own reader; (None, False) when
    that reader fails, and :func:`_alexandria_text` raises the error."""
    if path.suffix == ".bz2" and indexed_bzip2 is not None:
        opener, exact = (lambda p, mode: indexed_bzip2.open(str(p), parallelization=1)), False
    else:
        opener, exact = {".bz2": bz2.open, ".gz": gzip.open, ".xz": lzma.open}.get(path.suffix, open), True
    buffer = bytearray()
    try:
        with opener(path, "rb") as fh:
            while chunk := fh.read(1 << 24):
                buffer += chunk
    except Exception:
        return None, False
    return buffer, exact


def _alexandria_materials(path: Path, source: Source, text: bytes | bytearray) -> Iterator[Material]:
    """:func:`read_alexandria` of the file's (decompressed) bytes ``text``."""
    try:
        with _gc_paused():
            data = _loads(text)
    except ValueError as exc:
        raise IngestError(f"{path}: not valid JSON ({exc})") from exc
    del text
    if not isinstance(data, dict):
        raise IngestError(f"{path}: expected an object {{material_id: [calc, ...]}}, got {type(data).__name__}")
    for mid, calcs in data.items():
        if isinstance(calcs, dict):
            calcs = [calcs]
        if not isinstance(calcs, list):
            raise IngestError(f"{path}: material {mid!r}: expected a list of calcs")
        material = Material(str(mid), n_calcs=len(calcs))
        for ci, calc in enumerate(calcs):
            if not isinstance(calc, dict) or "steps" not in calc:
                raise IngestError(f"{path}: material {mid!r} calc {ci}: no 'steps'")
            if source.functional and calc.get("functional") not in (None, source.functional):
                material.skipped_calcs += 1
                continue
            for si, step in enumerate(calc["steps"] or []):
                where = f"{path}: material {mid!r} calc {ci} step {si}"
                if not isinstance(step, dict) or "structure" not in step:
                    raise IngestError(f"{where}: no 'structure'")
                numbers, positions, cell, problem = _parse_structure(step["structure"], where)
                n = len(numbers)
                energy = step.get("energy")
                if energy is None:
                    problem = problem or "missing_energy"
                    energy = float("nan")
                try:
                    energy = float(energy)
                except (TypeError, ValueError):
                    problem, energy = problem or "non_finite", float("nan")
                forces, fprob = _as_forces(step.get("forces"), n)
                stress, sprob = _as_stress(step.get("stress"), source.stress_unit)
                frame = Frame(numbers, positions, cell, energy, forces, stress, problem or fprob or sprob)
                material.frames.append(frame)
        yield material


# ----------------------------------------------------------------------------- Alexandria fast path
#
# Well-formed Alexandria files are decoded by msgspec straight into the typed records below,
# which skip every field the store does not use (abc or xyz, label, properties, ...), and are
# then turned into the store's columns and checked for the whole file at once. Anything these
# records do not describe exactly (NaN literals, nulls inside arrays, other shapes, missing or
# mistyped fields, a single calc instead of a list, a site without species, a structure without
# sites) fails to validate, and the file is read again by the generic path above, which raises
# the errors and sets the problem codes. Both give the same store for every file.

if msgspec is not None:
    _Vec3 = tuple[float, float, float]
    _Mat3 = tuple[_Vec3, _Vec3, _Vec3]

    class _Species(msgspec.Struct, gc=False):
        element: str
        occu: float = 1.0

    class _SiteXyz(msgspec.Struct, gc=False):
        species: list[_Species]
        xyz: _Vec3

    class _SiteAbc(msgspec.Struct, gc=False):
        species: list[_Species]
        abc: _Vec3
        xyz: _Vec3 | msgspec.UnsetType = msgspec.UNSET  # set on some site: mixed file, generic path

    class _Lattice(msgspec.Struct, gc=False):
        matrix: _Mat3

    class _StructureXyz(msgspec.Struct, gc=False):
        lattice: _Lattice
        sites: list[_SiteXyz]

    class _StructureAbc(msgspec.Struct, gc=False):
        lattice: _Lattice
        sites: list[_SiteAbc]

    class _StepXyz(msgspec.Struct, gc=False):
        structure: _StructureXyz
        energy: float | None = None
        forces: list[_Vec3] | None = None
        stress: _Mat3 | None = None

    class _StepAbc(msgspec.Struct, gc=False):
        structure: _StructureAbc
        energy: float | None = None
        forces: list[_Vec3] | None = None
        stress: _Mat3 | None = None

    class _CalcXyz(msgspec.Struct, gc=False):
        steps: list[_StepXyz] | None
        functional: str | None = None

    class _CalcAbc(msgspec.Struct, gc=False):
        steps: list[_StepAbc] | None
        functional: str | None = None

    #: A file as ``{material_id: raw JSON}``: materials are decoded one by one (bounded memory).
    _FILE_DECODER = msgspec.json.Decoder(dict[str, msgspec.Raw])
    #: A material's calcs, with sites in Cartesian ``xyz`` (pymatgen's default ``as_dict``) or
    #: in fractional ``abc`` only.
    _MATERIAL_DECODERS = (
        (msgspec.json.Decoder(list[_CalcXyz]), False),
        (msgspec.json.Decoder(list[_CalcAbc]), True),
    )

#: Problem codes of the fast path, by index.
_CODES = ("", "disordered_site", "missing_energy", "null_forces", "missing_stress",
          "unknown_element", "non_finite", "zero_volume", "vacuum_not_z")
_C = {c: i for i, c in enumerate(_CODES)}
#: Steps decoded before they are turned into arrays (bounds the memory of decoded records).
_BATCH_STEPS = 4096


class _NotFast(Exception):
    """The file needs the generic Alexandria path."""


def _alexandria_table(
    path: Path, source: Source, text: bytes | bytearray, min_vacuum: float
) -> tuple[pa.Table, list[dict[str, Any]]] | None:
    """:func:`read_file_table` of a well-formed Alexandria file through the typed decoders, or
    None when the file needs the generic path (see above)."""
    if msgspec is None:
        return None
    try:
        raw = _FILE_DECODER.decode(text)
    except Exception:  # not JSON, not an object, NaN literals, bad UTF-8: the generic path decides
        return None
    src, functional = str(path), source.functional
    mats: list[dict[str, Any]] = []
    counts: list[int] = []
    batches: list[dict[str, np.ndarray]] = []
    steps: list[Any] = []
    steps_abc = False
    try:
        for mid, value in raw.items():
            for decoder, abc in _MATERIAL_DECODERS:  # without xyz, the first fails at the first site
                try:
                    calcs = decoder.decode(value)
                    break
                except msgspec.ValidationError:
                    continue
                except Exception:
                    return None
            else:
                return None
            if steps and (abc != steps_abc or len(steps) >= _BATCH_STEPS):
                batches.append(_step_arrays(steps, steps_abc, source.stress_unit))
                steps = []
            steps_abc = abc
            first, skipped = len(steps), 0
            for calc in calcs:
                if functional and calc.functional is not None and calc.functional != functional:
                    skipped += 1
                    continue
                if calc.steps:
                    steps += calc.steps
            nf = len(steps) - first
            counts.append(nf)
            mats.append(dict(zip(MATERIAL_COLUMNS, (mid, src, nf, len(calcs), skipped, "" if nf else "empty_trajectory"))))
        del raw
        batches.append(_step_arrays(steps, steps_abc, source.stress_unit))
        del steps
    except _NotFast:
        return None
    cols = {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}
    del batches
    problem = _check_columns(cols, min_vacuum)
    return _store_table(cols, problem, mats, counts, src), mats


def _step_arrays(steps: list[Any], abc: bool, stress_unit: str) -> dict[str, np.ndarray]:
    """Arrays of decoded steps: per frame ``n_atoms``, ``cell`` (m, 3, 3), ``energy``, ``stress``
    (m, 6, ASE units and sign) and the reader's flags ``disordered``, ``no_energy``,
    ``no_forces``, ``no_stress``; per atom ``numbers``, ``positions`` and ``forces`` (·, 3).
    Missing values are NaN, as in the generic path. Raises _NotFast for what only it handles."""
    m = len(steps)
    structures = list(map(attrgetter("structure"), steps))
    site_lists = list(map(attrgetter("sites"), structures))
    n_atoms = np.fromiter(map(len, site_lists), dtype=np.int64, count=m)
    if m and n_atoms.min() == 0:
        raise _NotFast  # a structure without sites
    n_total = int(n_atoms.sum())
    sites = list(chain.from_iterable(site_lists))
    species = list(map(attrgetter("species"), sites))
    n_species = np.fromiter(map(len, species), dtype=np.int64, count=n_total)
    if n_total and n_species.min() == 0:
        raise _NotFast  # a site without species
    lead = list(map(itemgetter(0), species))
    elements = map(attrgetter("element"), lead)
    numbers = np.fromiter(map(atomic_numbers.get, elements, repeat(0)), dtype=np.int16, count=n_total)
    occu = np.fromiter(map(attrgetter("occu"), lead), dtype=float, count=n_total)
    starts = np.cumsum(n_atoms) - n_atoms
    disordered_site = (n_species != 1) | (np.abs(occu - 1.0) > 1e-6)
    disordered = np.logical_or.reduceat(disordered_site, starts) if m else np.zeros(0, dtype=bool)
    matrices = chain.from_iterable(map(attrgetter("lattice.matrix"), structures))
    cells = np.fromiter(chain.from_iterable(matrices), dtype=float, count=9 * m).reshape(m, 3, 3)
    if abc:
        if any(site.xyz is not msgspec.UNSET for site in sites):
            raise _NotFast  # some sites with xyz, some without
        frac = np.fromiter(chain.from_iterable(map(attrgetter("abc"), sites)), dtype=float, count=3 * n_total)
        frac = frac.reshape(n_total, 3)
        positions = np.empty_like(frac)
        for n in np.unique(n_atoms):
            idx = np.flatnonzero(n_atoms == n)
            rows = (starts[idx][:, None] + np.arange(n)).ravel()
            positions[rows] = (frac[rows].reshape(len(idx), n, 3) @ cells[idx]).reshape(-1, 3)
    else:
        positions = np.fromiter(chain.from_iterable(map(attrgetter("xyz"), sites)), dtype=float, count=3 * n_total)
        positions = positions.reshape(n_total, 3)
    del structures, site_lists, sites, species, lead

    energy_raw = list(map(attrgetter("energy"), steps))
    forces_raw = list(map(attrgetter("forces"), steps))
    stress_raw = list(map(attrgetter("stress"), steps))
    no_energy = np.fromiter([e is None for e in energy_raw], dtype=bool, count=m)
    no_forces = np.fromiter([f is None for f in forces_raw], dtype=bool, count=m)
    no_stress = np.fromiter([s is None for s in stress_raw], dtype=bool, count=m)
    if no_energy.any():
        energy_raw = [np.nan if e is None else e for e in energy_raw]
    energy = np.fromiter(energy_raw, dtype=float, count=m)
    n_forces = np.fromiter([0 if f is None else len(f) for f in forces_raw], dtype=np.int64, count=m)
    if not np.array_equal(n_forces[~no_forces], n_atoms[~no_forces]):
        raise _NotFast  # forces of another shape
    have = [f for f in forces_raw if f is not None]
    forces = np.fromiter(chain.from_iterable(chain.from_iterable(have)), dtype=float, count=3 * int(n_forces.sum()))
    if no_forces.any():
        full = np.full((n_total, 3), np.nan)
        full[np.repeat(~no_forces, n_atoms)] = forces.reshape(-1, 3)
        forces = full
    forces = forces.reshape(n_total, 3)
    if no_stress.any():
        stress_raw = [((np.nan,) * 3,) * 3 if s is None else s for s in stress_raw]
    stress33 = np.fromiter(chain.from_iterable(chain.from_iterable(stress_raw)), dtype=float, count=9 * m)
    stress33 = stress33.reshape(m, 3, 3)
    stress = stress_to_ase(stress33[:, (0, 1, 2, 1, 0, 0), (0, 1, 2, 2, 2, 1)], stress_unit)
    stress[no_stress] = np.nan
    return dict(
        n_atoms=n_atoms, cell=cells, energy=energy, stress=stress, disordered=disordered, no_energy=no_energy,
        no_forces=no_forces, no_stress=no_stress, numbers=numbers, positions=positions, forces=forces,
    )


def _check_columns(cols: dict[str, np.ndarray], min_vacuum: float) -> np.ndarray:
    """Problem codes (indices into _CODES) of a file's frames: the reader's, in the generic
    path's precedence, then those of :func:`check_frames`, computed for the whole file at once."""
    n_atoms, cells, positions = cols["n_atoms"], cols["cell"], cols["positions"]
    m = len(n_atoms)
    problem = np.zeros(m, dtype=np.int8)
    if not m:
        return problem
    starts = np.cumsum(n_atoms) - n_atoms
    for mask, code in (
        (cols["disordered"], "disordered_site"),
        (cols["no_energy"], "missing_energy"),
        (cols["no_forces"], "null_forces"),
        (cols["no_stress"], "missing_stress"),
        (np.minimum.reduceat(cols["numbers"], starts) <= 0, "unknown_element"),
    ):
        problem[mask & (problem == 0)] = _C[code]
    ok = problem == 0
    if not ok.any():
        return problem
    finite = (
        np.isfinite(cells).all(axis=(1, 2))
        & np.logical_and.reduceat(np.isfinite(positions).all(axis=1), starts)
        & np.isfinite(cols["energy"])
        & np.logical_and.reduceat(np.isfinite(cols["forces"]).all(axis=1), starts)
        & np.isfinite(cols["stress"]).all(axis=1)
    )
    volume_ok = finite & (np.abs(np.linalg.det(np.where(finite[:, None, None], cells, np.eye(3)))) >= 1e-6)
    vacuum_ok = np.zeros(m, dtype=bool)
    for n in np.unique(n_atoms[ok & volume_ok]):
        idx = np.flatnonzero(ok & volume_ok & (n_atoms == n))
        pos = positions[(starts[idx][:, None] + np.arange(n)).ravel()].reshape(len(idx), n, 3)
        vacuum_ok[idx] = vacuum_along_z_batch(cells[idx], pos, min_vacuum)
    problem[ok & ~finite] = _C["non_finite"]
    problem[ok & finite & ~volume_ok] = _C["zero_volume"]
    problem[ok & volume_ok & ~vacuum_ok] = _C["vacuum_not_z"]
    return problem


def _store_table(
    cols: dict[str, np.ndarray], problem: np.ndarray, mats: list[dict[str, Any]], counts: list[int], src: str
) -> pa.Table:
    """The file's frames as a table with the store's schema (what FrameBuffer.to_table gives)."""
    n_atoms = cols["n_atoms"]
    m = len(n_atoms)
    offsets = np.zeros(m + 1, dtype=np.int32)
    np.cumsum(n_atoms, out=offsets[1:])
    counts_arr = np.asarray(counts, dtype=np.int32)
    ids = pa.array([r["material_id"] for r in mats], pa.string())
    columns = {
        "material_id": ids.take(np.repeat(np.arange(len(mats)), counts_arr)),
        "source": pa.array([src], pa.string()).take(np.zeros(m, dtype=np.int32)),
        "step": pa.array(np.arange(m, dtype=np.int32) - np.repeat(np.cumsum(counts_arr) - counts_arr, counts_arr)),
        "n_atoms": pa.array(n_atoms.astype(np.int32)),
        "numbers": pa.ListArray.from_arrays(pa.array(offsets), pa.array(cols["numbers"])),
        "positions": pa.ListArray.from_arrays(pa.array(3 * offsets), pa.array(cols["positions"].ravel())),
        "cell": pa.FixedSizeListArray.from_arrays(pa.array(cols["cell"].ravel()), 9),
        "energy": pa.array(cols["energy"]),
        "forces": pa.ListArray.from_arrays(pa.array(3 * offsets), pa.array(cols["forces"].ravel())),
        "stress": pa.FixedSizeListArray.from_arrays(pa.array(cols["stress"].ravel()), 6),
        "problem": pa.array(_CODES, pa.string()).take(problem),
    }
    return pa.Table.from_arrays([columns[f.name] for f in FRAME_SCHEMA], schema=FRAME_SCHEMA)


def _atoms_labels(atoms: Any, source: Source) -> tuple[Any, Any, Any]:
    """Energy, forces, stress of an ASE Atoms from its calculator, else from info/arrays."""
    results = getattr(atoms.calc, "results", {}) if atoms.calc is not None else {}
    energy = results.get("energy", results.get("free_energy", atoms.info.get("energy", atoms.info.get("REF_energy"))))
    forces = results.get("forces", atoms.arrays.get("forces", atoms.arrays.get("REF_forces")))
    stress = results.get("stress", atoms.info.get("stress", atoms.info.get("REF_stress")))
    return energy, forces, stress


def _frame_from_atoms(atoms: Any, source: Source, stress_unit: str) -> Frame:
    energy, forces_raw, stress_raw = _atoms_labels(atoms, source)
    n = len(atoms)
    problem = "" if energy is not None else "missing_energy"
    forces, fprob = _as_forces(None if forces_raw is None else np.asarray(forces_raw).tolist(), n)
    stress, sprob = _as_stress(None if stress_raw is None else np.asarray(stress_raw), stress_unit)
    numbers = atoms.numbers.astype(np.int16)
    frame = Frame(
        numbers,
        atoms.positions.copy(),
        atoms.cell.array.copy(),
        float("nan") if energy is None else float(energy),
        forces,
        stress,
        problem or fprob or sprob,
    )
    return frame


def _group_frames(records: Iterable[tuple[str, int, Frame]]) -> Iterator[Material]:
    """Group (material_id, step, frame) records by material (first-seen order), sorted by step."""
    groups: dict[str, list[tuple[int, Frame]]] = {}
    for mid, step, frame in records:
        groups.setdefault(mid, []).append((step, frame))
    for mid, items in groups.items():
        items.sort(key=lambda t: t[0])
        yield Material(mid, [f for _, f in items])


def read_extxyz(path: Path, source: Source) -> Iterator[Material]:
    """Materials of an extxyz trajectory file; material id and step come from ``info``."""
    import ase.io

    def records() -> Iterator[tuple[str, int, Frame]]:
        try:
            frames = list(ase.io.iread(path, index=":", format="extxyz"))
        except Exception as exc:  # ASE raises many types for malformed files
            raise IngestError(f"{path}: cannot parse extxyz ({type(exc).__name__}: {exc})") from exc
        for i, atoms in enumerate(frames):
            if source.id_key not in atoms.info:
                raise IngestError(f"{path}: frame {i}: no material id (info key {source.id_key!r})")
            step = int(atoms.info.get(source.step_key, i))
            yield str(atoms.info[source.id_key]), step, _frame_from_atoms(atoms, source, source.stress_unit)

    yield from _group_frames(records())


def read_ase_db(path: Path, source: Source) -> Iterator[Material]:
    """Materials of an ASE database; id and step are key-value pairs of each row."""
    import ase.db

    def records() -> Iterator[tuple[str, int, Frame]]:
        try:
            rows = list(ase.db.connect(str(path)).select())
        except Exception as exc:
            raise IngestError(f"{path}: cannot open ASE database ({type(exc).__name__}: {exc})") from exc
        for i, row in enumerate(rows):
            kvp = row.key_value_pairs
            if source.id_key not in kvp:
                raise IngestError(f"{path}: row id {row.id}: no material id (key {source.id_key!r})")
            atoms = row.toatoms()
            yield str(kvp[source.id_key]), int(kvp.get(source.step_key, i)), _frame_from_atoms(atoms, source, source.stress_unit)

    yield from _group_frames(records())


def read_vasp(path: Path, source: Source, root: Path | None = None) -> Iterator[Material]:
    """One material from a VASP run (vasprun.xml or OUTCAR), every ionic step, through ASE.

    ASE's VASP readers already return eV/Å³ with tension positive, so the source's stress unit
    is not applied. The material id is the run directory relative to the source root.
    """
    import ase.io

    fmt = "vasp-xml" if path.name == "vasprun.xml" else "vasp-out"
    try:
        images = ase.io.read(path, index=":", format=fmt)
    except Exception as exc:
        raise IngestError(f"{path}: cannot parse VASP output ({type(exc).__name__}: {exc})") from exc
    mid = str(path.parent.relative_to(root)) if root is not None and path.parent != root else path.parent.name
    yield Material(mid, [_frame_from_atoms(a, source, "eV/A3") for a in images])


def read_source_file(path: Path, source: Source, base: Path | None = None) -> Iterator[Material]:
    """Dispatch one file to its format's reader."""
    if source.format == "alexandria":
        return read_alexandria(path, source)
    if source.format == "extxyz":
        return read_extxyz(path, source)
    if source.format == "ase_db":
        return read_ase_db(path, source)
    root = Path(source.path) if base is None or Path(source.path).is_absolute() else base / source.path
    return read_vasp(path, source, root=root)


# ----------------------------------------------------------------------------- the stage

MATERIAL_COLUMNS = ["material_id", "source", "n_frames", "n_calcs", "skipped_calcs", "problem"]


def read_file_table(job: tuple[Path, Source, float, Path | None]) -> tuple[pa.Table, list[dict[str, Any]]]:
    """Read and check one input file: its frames as a store table, and its materials."""
    path, source, min_vacuum, base = job
    if source.format == "alexandria":
        text, exact = _fast_text(path)
        if text is not None:
            with _gc_paused():
                fast = _alexandria_table(path, source, text, min_vacuum)
            if fast is not None:
                return fast
        # the generic path, from open_text's bytes: its errors and problem codes exactly
        materials = _alexandria_materials(path, source, text if exact else _alexandria_text(path))
        del text
    else:
        materials = read_source_file(path, source, base)
    buffer = FrameBuffer()
    mats: list[dict[str, Any]] = []
    paused = _gc_paused() if source.format == "alexandria" else nullcontext()
    with paused:
        for m in materials:
            check_frames(m.frames, min_vacuum)
            for step, f in enumerate(m.frames):
                buffer.add(m.material_id, str(path), step, f.numbers, f.positions, f.cell, f.energy, f.forces, f.stress, f.problem)
            problem = "" if m.frames else "empty_trajectory"
            row = (m.material_id, str(path), len(m.frames), m.n_calcs, m.skipped_calcs, problem)
            mats.append(dict(zip(MATERIAL_COLUMNS, row)))
    return buffer.to_table(), mats


def ingest(
    sources: list[Source],
    frames_out: str | Path,
    materials_out: str | Path,
    min_vacuum: float = DEFAULT_MIN_VACUUM,
    base: Path | None = None,
    workers: int = 1,
) -> pd.DataFrame:
    """Read every source file by file into ``frames_out`` (Parquet, one row group per file,
    in input order) and write the materials table ``materials_out`` (CSV): id, source file,
    frames, calcs, skipped calcs, problem. ``workers`` > 1 reads files in that many processes.

    Raises IngestError on unreadable files and on a material id found in two files.
    """
    jobs = []
    for source in sources:
        files = source.files(base)
        if not files:
            raise IngestError(f"source {source.path!r} ({source.format}): no input files found")
        jobs += [(path, source, min_vacuum, base) for path in files]
    seen: dict[str, str] = {}
    mats: list[dict[str, Any]] = []
    pool = mp.get_context("fork").Pool(workers) if workers > 1 and len(jobs) > 1 else None
    try:
        results = pool.imap(read_file_table, jobs) if pool else map(read_file_table, jobs)
        with FrameWriter(frames_out) as writer:
            for (path, *_), result in zip(jobs, results):
                table, rows = result
                del result
                for row in rows:
                    if row["material_id"] in seen:
                        raise IngestError(
                            f"material {row['material_id']!r} appears in two files: {seen[row['material_id']]} and {path}"
                        )
                    seen[row["material_id"]] = str(path)
                writer.write(table)
                mats += rows
                del table  # before the next file is read, and hand Arrow's cached memory back
                pa.default_memory_pool().release_unused()
    finally:
        if pool:
            pool.terminate()
    table = pd.DataFrame(mats, columns=MATERIAL_COLUMNS)
    Path(materials_out).parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(materials_out, index=False)
    return table
