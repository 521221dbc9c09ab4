"""Ingest DFT relaxation trajectories into the canonical frame store.

Sources (one reader each): Alexandria geometry-optimisation JSON (``.json``/``.json.bz2``),
extxyz trajectories, ASE databases, and directories of VASP runs (vasprun.xml or OUTCAR).
Each source declares its stress unit; the store holds ASE units and sign (see
:mod:`mlff2d.io.units`). Files are read one at a time and written as one row group each, so memory
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

import multiprocessing as mp
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from mlff2d.data.ingest_alexandria import alexandria_materials, alexandria_text, fast_text, read_alexandria
from mlff2d.data.ingest_alexandria_fast import alexandria_table
from mlff2d.data.ingest_ase import read_ase_db, read_extxyz, read_vasp
from mlff2d.data.ingest_frames import (  # noqa: F401  (Source, IngestError, Material re-exported for callers)
    DEFAULT_MIN_VACUUM,
    MATERIAL_COLUMNS,
    IngestError,
    Material,
    Source,
    check_frames,
    gc_paused,
)
from mlff2d.io.store import FrameBuffer, FrameWriter


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

def read_file_table(job: tuple[Path, Source, float, Path | None]) -> tuple[pa.Table, list[dict[str, Any]]]:
    """Read and check one input file: its frames as a store table, and its materials."""
    path, source, min_vacuum, base = job
    if source.format == "alexandria":
        text, exact = fast_text(path)
        if text is not None:
            with gc_paused():
                fast = alexandria_table(path, source, text, min_vacuum)
            if fast is not None:
                return fast
        # the generic path, from open_text's bytes: its errors and problem codes exactly
        materials = alexandria_materials(path, source, text if exact else alexandria_text(path))
        del text
    else:
        materials = read_source_file(path, source, base)
    buffer = FrameBuffer()
    mats: list[dict[str, Any]] = []
    paused = gc_paused() if source.format == "alexandria" else nullcontext()
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
