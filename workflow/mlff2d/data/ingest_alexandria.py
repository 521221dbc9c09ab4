"""Alexandria geometry-optimisation JSON (``.json``, ``.json.bz2``, ...): the generic reader, which
raises the errors and sets the problem codes for any file (see :mod:`mlff2d.data.ingest`)."""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from ase.data import atomic_numbers

from mlff2d.data.ingest_frames import Frame, IngestError, Material, Source, as_forces, as_stress, gc_paused

try:  # orjson parses Alexandria files several times faster than the standard library
    import orjson
except ImportError:  # pragma: no cover - orjson is in both environments
    orjson = None

try:  # decompresses bzip2 about 20 % faster than the standard library's libbzip2
    import indexed_bzip2
except ImportError:  # pragma: no cover - indexed_bzip2 is in both environments
    indexed_bzip2 = None


def _loads(data: bytes) -> Any:
    """Parse JSON with orjson, falling back to the standard library, which also accepts the
    NaN/Infinity literals that Python's json.dump writes (orjson rejects them)."""
    if orjson is not None:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
    return json.loads(data)


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
    yield from alexandria_materials(path, source, alexandria_text(path))


def alexandria_text(path: Path) -> bytes:
    """The decompressed bytes of an Alexandria file. An unreadable file's IngestError is a
    ValueError, which the JSON step has always reported as ``not valid JSON (<reason>)``."""
    try:
        return open_text(path)
    except ValueError as exc:
        raise IngestError(f"{path}: not valid JSON ({exc})") from exc


def fast_text(path: Path) -> tuple[bytearray | None, bool]:
    """The decompressed bytes of a file for the fast path, read in chunks into one buffer (no
    second copy), and whether they come from :func:`open_text`'s own reader; (None, False) when
    that reader fails, and :func:`alexandria_text` raises the error."""
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


def alexandria_materials(path: Path, source: Source, text: bytes | bytearray) -> Iterator[Material]:
    """:func:`read_alexandria` of the file's (decompressed) bytes ``text``."""
    try:
        with gc_paused():
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
                forces, fprob = as_forces(step.get("forces"), n)
                stress, sprob = as_stress(step.get("stress"), source.stress_unit)
                frame = Frame(numbers, positions, cell, energy, forces, stress, problem or fprob or sprob)
                material.frames.append(frame)
        yield material
