"""Readers of the ASE-readable sources of the ingest: extxyz trajectories, ASE databases and
directories of VASP runs (see :mod:`mlff2d.data.ingest`)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from mlff2d.data.ingest_frames import Frame, IngestError, Material, Source, as_forces, as_stress


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
    forces, fprob = as_forces(None if forces_raw is None else np.asarray(forces_raw).tolist(), n)
    stress, sprob = as_stress(None if stress_raw is None else np.asarray(stress_raw), stress_unit)
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
