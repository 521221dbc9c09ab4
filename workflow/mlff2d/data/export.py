"""Export the selected, split frames for each model family, and the relaxation sets.

Formats and units at this boundary:

* ``mace``: extxyz with ``REF_energy`` (eV, info), ``REF_forces`` (eV/Å, arrays) and
  ``REF_stress`` (eV/Å³, tension positive, 6 Voigt components xx yy zz yz xz xy, info).
* ``m3gnet``: Parquet with ``energy`` (eV), ``forces`` (eV/Å) and ``stress_gpa`` (GPa, tension
  positive, 3×3 row-major) whose out-of-plane components (xz, yz, zx, zy, zz) are NaN so the
  loss ignores them (matgl ``allow_missing_labels``).
* ``nequip``: extxyz with ASE's standard ``energy``, ``forces``, ``stress`` (eV/Å³, tension
  positive) through a single-point calculator.
* relaxation sets: for every val/test material its first clean frame (``*_start.extxyz``) and
  its last clean frame, the DFT-relaxed reference (``*_reference.extxyz``), with ASE labels.

Every frame carries ``material_id`` and ``step`` in ``info``. Frames are streamed one store
row group at a time.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

import ase.io
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from ase import Atoms

from mlff2d.data.split import SPLITS
from mlff2d.io.store import iter_tables, row_to_atoms
from mlff2d.io.units import ase_stress_to_gpa, voigt_to_matrix

#: The training-file formats (a family trains on one: its FamilySpec.export_format).
FORMATS = ("mace", "m3gnet", "nequip")
#: The training file of each format, beside val and test files of the same kind.
TRAIN_FILES = {"mace": "train.extxyz", "nequip": "train.extxyz", "m3gnet": "train.parquet"}
FAMILIES = FORMATS  # the name the CLI and older callers use
RELAX_SETS = ("val", "test")

M3GNET_SCHEMA = pa.schema(
    [
        ("material_id", pa.string()),
        ("step", pa.int32()),
        ("numbers", pa.list_(pa.int16())),
        ("positions", pa.list_(pa.float64())),
        ("cell", pa.list_(pa.float64(), 9)),
        ("energy", pa.float64()),
        ("forces", pa.list_(pa.float64())),
        ("stress_gpa", pa.list_(pa.float64(), 9)),
    ],
    metadata={b"units": b"energy eV; forces eV/A; stress_gpa GPa tension positive, 3x3, out-of-plane NaN"},
)

#: Row-major indices of the out-of-plane components of a 3×3 stress (xz, yz, zx, zy, zz).
OUT_OF_PLANE_3X3 = (2, 5, 6, 7, 8)


def in_plane_stress_gpa(voigt_ev_a3: np.ndarray) -> np.ndarray:
    """3×3 stress in GPa (row-major, 9 values) with out-of-plane components set to NaN."""
    full = ase_stress_to_gpa(voigt_to_matrix(voigt_ev_a3)).ravel()
    full[list(OUT_OF_PLANE_3X3)] = np.nan
    return full


def m3gnet_row(atoms: Atoms, material_id: str, step: int, energy: float | None = None) -> dict[str, object]:
    """One row of the M3GNet export (:data:`M3GNET_SCHEMA`) from Atoms whose calculator holds
    the labels in ASE units; ``energy`` (eV) replaces the calculator's energy when given."""
    return {
        "material_id": material_id,
        "step": step,
        "numbers": atoms.numbers.tolist(),
        "positions": atoms.positions.ravel().tolist(),
        "cell": atoms.cell.array.ravel().tolist(),
        "energy": float(atoms.get_potential_energy() if energy is None else energy),
        "forces": atoms.get_forces().ravel().tolist(),
        "stress_gpa": in_plane_stress_gpa(atoms.get_stress()).tolist(),
    }


def mace_atoms(row: pd.Series) -> Atoms:
    """Atoms with the MACE ``REF_*`` labels and no calculator."""
    atoms = row_to_atoms(row)
    atoms.calc = None
    n = int(row["n_atoms"])
    atoms.info["REF_energy"] = float(row["energy"])
    atoms.arrays["REF_forces"] = np.asarray(row["forces"], dtype=float).reshape(n, 3)
    atoms.info["REF_stress"] = np.asarray(row["stress"], dtype=float)
    return atoms


def write_labelled(family: str, frames: Sequence[Atoms], outdir: str | Path, split: str) -> Path:
    """Write Atoms whose calculators hold labels (ASE units) as ``outdir/<split>`` in the export
    format of ``family``: ``m3gnet`` Parquet (:func:`m3gnet_row`, id from ``info["material_id"]``,
    step 0) or ``mace`` extxyz (``REF_*`` labels, calculators dropped). Returns the file."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    if family == "m3gnet":
        rows = [m3gnet_row(a, str(a.info["material_id"]), 0) for a in frames]
        path = outdir / f"{split}.parquet"
        pq.write_table(pa.Table.from_pylist(rows, schema=M3GNET_SCHEMA), path)
        return path
    if family != "mace":
        raise ValueError(f"write_labelled writes the m3gnet and mace formats, not {family!r}")
    for a in frames:
        a.info["REF_energy"], a.info["REF_stress"] = a.get_potential_energy(), a.get_stress()
        a.arrays["REF_forces"] = a.get_forces()
        a.calc = None
    path = outdir / f"{split}.extxyz"
    ase.io.write(path, list(frames), format="extxyz")
    return path


def _selected_rows(table: pa.Table, keys: pd.DataFrame) -> pd.DataFrame:
    """The rows of a store table whose (material_id, step) are in ``keys``, with their split."""
    frame = table.to_pandas()
    return frame.merge(keys, on=["material_id", "step"], how="inner")


@contextlib.contextmanager
def written_as_a_whole(outdir: str | Path) -> Iterator[Path]:
    """A temporary sibling of ``outdir`` to write into, renamed to ``outdir`` when the block
    ends; on an error (a full disk, a kill) it is removed and ``outdir`` never holds half an
    export. The error names the directory."""
    outdir = Path(outdir)
    tmp = outdir.with_name(f".{outdir.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise OSError(exc.errno, f"writing {outdir} failed, nothing was written: {exc.strerror or exc}") from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(outdir, ignore_errors=True)
    os.replace(tmp, outdir)


def export_family(clean: str | Path, selected: str | Path, split_csv: str | Path, family: str, outdir: str | Path) -> dict[str, int]:
    """Write ``train``/``val``/``test`` files of one family (all or none, see
    :func:`written_as_a_whole`); returns frames per split."""
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}; one of {FAMILIES}")
    with written_as_a_whole(outdir) as tmp:
        return _export_family(clean, selected, split_csv, family, tmp)


def _export_family(clean: str | Path, selected: str | Path, split_csv: str | Path, family: str, outdir: Path) -> dict[str, int]:
    split = pd.read_csv(split_csv, dtype={"material_id": str}, keep_default_na=False)
    keys = pd.read_parquet(selected).merge(split, on="material_id", how="inner")
    counts = dict.fromkeys(SPLITS, 0)
    if family == "m3gnet":
        writers = {s: pq.ParquetWriter(outdir / f"{s}.parquet", M3GNET_SCHEMA, compression="zstd") for s in SPLITS}
        try:
            for table in iter_tables(clean):
                rows = _selected_rows(table, keys)
                for s, group in rows.groupby("split"):
                    out = {
                        "material_id": group["material_id"].tolist(),
                        "step": group["step"].astype(np.int32).tolist(),
                        "numbers": group["numbers"].tolist(),
                        "positions": group["positions"].tolist(),
                        "cell": group["cell"].tolist(),
                        "energy": group["energy"].tolist(),
                        "forces": group["forces"].tolist(),
                        "stress_gpa": [in_plane_stress_gpa(v) for v in group["stress"]],
                    }
                    writers[s].write_table(pa.Table.from_pydict(out, schema=M3GNET_SCHEMA))
                    counts[s] += len(group)
        finally:
            for w in writers.values():
                w.close()
        return counts
    handles: dict[str, IO[str]] = {s: open(outdir / f"{s}.extxyz", "w") for s in SPLITS}
    try:
        for table in iter_tables(clean):
            rows = _selected_rows(table, keys)
            for s, group in rows.groupby("split"):
                images = [mace_atoms(r) if family == "mace" else row_to_atoms(r) for _, r in group.iterrows()]
                ase.io.write(handles[s], images, format="extxyz")
                counts[s] += len(images)
    finally:
        for h in handles.values():
            h.close()
    return counts


def export_relax_sets(clean: str | Path, split_csv: str | Path, outdir: str | Path, sets: Sequence[str] = RELAX_SETS) -> dict[str, int]:
    """Write ``<set>_start.extxyz`` (first frame) and ``<set>_reference.extxyz`` (last frame,
    the DFT-relaxed structure) for every material of the ``sets`` (default val and test; the
    alloy datasets add train), all or none (see :func:`written_as_a_whole`); returns counts."""
    with written_as_a_whole(outdir) as tmp:
        return _export_relax_sets(clean, split_csv, tmp, sets)


def _export_relax_sets(clean: str | Path, split_csv: str | Path, outdir: Path, sets: Sequence[str]) -> dict[str, int]:
    split = pd.read_csv(split_csv, dtype={"material_id": str}, keep_default_na=False)
    which = dict(zip(split["material_id"], split["split"]))
    sets = tuple(sets)
    counts = dict.fromkeys(sets, 0)
    handles = {(s, kind): open(outdir / f"{s}_{kind}.extxyz", "w") for s in sets for kind in ("start", "reference")}
    try:
        for table in iter_tables(clean):
            frame = table.to_pandas()
            frame = frame[frame["material_id"].map(which).isin(sets)]
            for mid, group in frame.groupby("material_id", sort=False):
                s = which[mid]
                ase.io.write(handles[(s, "start")], row_to_atoms(group.iloc[0]), format="extxyz")
                ase.io.write(handles[(s, "reference")], row_to_atoms(group.iloc[-1]), format="extxyz")
                counts[s] += 1
    finally:
        for h in handles.values():
            h.close()
    return counts
