"""The typed fast path of the Alexandria reader: a well-formed file decoded by msgspec, turned into
the store's columns and checked for the whole file at once (see :mod:`mlff2d.data.ingest`)."""

from __future__ import annotations

from itertools import chain, repeat
from operator import attrgetter, itemgetter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from ase.data import atomic_numbers

from mlff2d.data.ingest_frames import MATERIAL_COLUMNS, Source, vacuum_along_z_batch
from mlff2d.io.store import FRAME_SCHEMA
from mlff2d.io.units import stress_to_ase

try:  # msgspec decodes Alexandria files straight into typed records (the fast path below)
    import msgspec
except ImportError:  # pragma: no cover - msgspec is in both environments
    msgspec = None


# ----------------------------------------------------------------------------- Alexandria fast path
#
# Well-formed Alexandria files are decoded by msgspec straight into the typed records below,
# which skip every field the store does not use (abc or xyz, label, properties, ...), and are
# then turned into the store's columns and checked for the whole file at once. Anything these
# records do not describe exactly (NaN literals, nulls inside arrays, other shapes, missing or
# mistyped fields, a single calc instead of a list, a site without species, a structure without
# sites) fails to validate, and the file is read again by the generic path (mlff2d.data.ingest_alexandria), which raises
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


def alexandria_table(
    path: Path, source: Source, text: bytes | bytearray, min_vacuum: float
) -> tuple[pa.Table, list[dict[str, Any]]] | None:
    """:func:`mlff2d.data.ingest.read_file_table` of a well-formed Alexandria file through the typed decoders, or
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
    arrays = _structure_arrays(steps, abc)
    arrays.update(_label_arrays(steps, arrays["n_atoms"], stress_unit))
    return arrays


def _structure_arrays(steps: list[Any], abc: bool) -> dict[str, np.ndarray]:
    """``n_atoms``, ``cell``, ``disordered`` (per frame) and ``numbers``, ``positions`` (per atom)
    of decoded steps. Raises _NotFast for a structure without sites, a site without species or
    a file that mixes sites with and without xyz."""
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
    return dict(n_atoms=n_atoms, cell=cells, disordered=disordered, numbers=numbers, positions=positions)


def _label_arrays(steps: list[Any], n_atoms: np.ndarray, stress_unit: str) -> dict[str, np.ndarray]:
    """``energy``, ``stress`` (ASE units and sign), the flags ``no_energy``, ``no_forces``,
    ``no_stress`` (per frame) and ``forces`` (per atom) of decoded steps, NaN where missing.
    Raises _NotFast for forces of another shape than the structure."""
    m = len(steps)
    n_total = int(n_atoms.sum())
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
    return dict(energy=energy, stress=stress, no_energy=no_energy, no_forces=no_forces, no_stress=no_stress, forces=forces)


def _check_columns(cols: dict[str, np.ndarray], min_vacuum: float) -> np.ndarray:
    """Problem codes (indices into _CODES) of a file's frames: the reader's, in the generic
    path's precedence, then those of :func:`mlff2d.data.ingest_frames.check_frames`, computed for the whole file at once."""
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
