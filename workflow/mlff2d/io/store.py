"""The canonical columnar frame store (Parquet), shared by every stage.

One row per relaxation step ("frame"). Units and sign are ASE's: positions and cell in Å,
``energy`` total in eV, ``forces`` in eV/Å (flattened n×3), ``stress`` in eV/Å³, tension
positive, Voigt order xx yy zz yz xz xy. Missing values are NaN. ``problem`` is empty for a
sound frame, otherwise the reason the frame cannot be used (see :mod:`mlff2d.data.ingest`).

Frames of one material are contiguous and ordered by ``step``. Files are written one row
group per input file, so a reader can stream them with bounded memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

FRAME_SCHEMA = pa.schema(
    [
        pa.field("material_id", pa.string()),
        pa.field("source", pa.string()),
        pa.field("step", pa.int32()),
        pa.field("n_atoms", pa.int32()),
        pa.field("numbers", pa.list_(pa.int16())),
        pa.field("positions", pa.list_(pa.float64())),
        pa.field("cell", pa.list_(pa.float64(), 9)),
        pa.field("energy", pa.float64()),
        pa.field("forces", pa.list_(pa.float64())),
        pa.field("stress", pa.list_(pa.float64(), 6)),
        pa.field("problem", pa.string()),
    ],
    metadata={
        b"units": b"positions,cell: A; energy: eV (total); forces: eV/A; "
        b"stress: eV/A^3, tension positive, Voigt xx yy zz yz xz xy",
    },
)

COLUMNS = tuple(FRAME_SCHEMA.names)


class FrameBuffer:
    """Collects frames column by column and flushes them as one Arrow table."""

    def __init__(self) -> None:
        self.cols: dict[str, list[Any]] = {name: [] for name in COLUMNS}

    def __len__(self) -> int:
        return len(self.cols["material_id"])

    def add(
        self,
        material_id: str,
        source: str,
        step: int,
        numbers: np.ndarray,
        positions: np.ndarray,
        cell: np.ndarray,
        energy: float,
        forces: np.ndarray,
        stress: np.ndarray,
        problem: str = "",
    ) -> None:
        """Append one frame; arrays are flattened here."""
        c = self.cols
        c["material_id"].append(material_id)
        c["source"].append(source)
        c["step"].append(step)
        c["n_atoms"].append(len(numbers))
        c["numbers"].append(np.asarray(numbers, dtype=np.int16))
        c["positions"].append(np.asarray(positions, dtype=float).ravel())
        c["cell"].append(np.asarray(cell, dtype=float).ravel())
        c["energy"].append(float(energy))
        c["forces"].append(np.asarray(forces, dtype=float).ravel())
        c["stress"].append(np.asarray(stress, dtype=float).ravel())
        c["problem"].append(problem)

    def to_table(self) -> pa.Table:
        """The buffered frames as a table with :data:`FRAME_SCHEMA` (built from flat arrays)."""
        c = self.cols
        arrays: list[pa.Array] = []
        for f in FRAME_SCHEMA:
            values = c[f.name]
            if pa.types.is_fixed_size_list(f.type):
                flat = np.concatenate(values) if values else np.zeros(0)
                arrays.append(pa.FixedSizeListArray.from_arrays(pa.array(flat, pa.float64()), f.type.list_size))
            elif pa.types.is_list(f.type):
                lengths = np.fromiter((len(v) for v in values), dtype=np.int32, count=len(values))
                offsets = np.zeros(len(values) + 1, dtype=np.int32)
                np.cumsum(lengths, out=offsets[1:])
                flat = np.concatenate(values) if values else np.zeros(0)
                flat_arr = pa.array(flat.astype(f.type.value_type.to_pandas_dtype()), f.type.value_type)
                arrays.append(pa.ListArray.from_arrays(pa.array(offsets), flat_arr))
            else:
                arrays.append(pa.array(values, type=f.type))
        return pa.Table.from_arrays(arrays, schema=FRAME_SCHEMA)

    def clear(self) -> None:
        for v in self.cols.values():
            v.clear()


class FrameWriter:
    """Streaming Parquet writer: one row group per :meth:`write` call."""

    def __init__(self, path: str | Path, schema: pa.Schema = FRAME_SCHEMA) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.schema = schema
        # dictionary-encode only the repetitive string columns: 2-3x faster writes than encoding all
        self._writer = pq.ParquetWriter(
            self.path, schema, compression="zstd", use_dictionary=[c for c in ("material_id", "source", "problem") if c in schema.names]
        )

    def write(self, table: pa.Table) -> None:
        if table.num_rows:
            self._writer.write_table(table.cast(self.schema))

    def close(self) -> None:
        self._writer.close()

    def __enter__(self) -> FrameWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def iter_tables(path: str | Path, columns: list[str] | None = None) -> Iterator[pa.Table]:
    """Stream a frame store one row group at a time."""
    pf = pq.ParquetFile(path)
    for i in range(pf.num_row_groups):
        yield pf.read_row_group(i, columns=columns)


def read_frames(path: str | Path, columns: list[str] | None = None) -> pd.DataFrame:
    """Read a whole frame store (or some columns) into a DataFrame."""
    return pq.read_table(path, columns=columns).to_pandas()


def row_to_atoms(row: Any) -> Atoms:
    """Build ASE Atoms (pbc in all three directions) with the frame's labels attached.

    ``row`` is a mapping or a pandas row with the store's columns. Energy, forces and stress
    are set through a SinglePointCalculator in ASE units and sign.
    """
    n = int(row["n_atoms"])
    atoms = Atoms(
        numbers=np.asarray(row["numbers"], dtype=int),
        positions=np.asarray(row["positions"], dtype=float).reshape(n, 3),
        cell=np.asarray(row["cell"], dtype=float).reshape(3, 3),
        pbc=True,
    )
    atoms.info["material_id"] = str(row["material_id"])
    atoms.info["step"] = int(row["step"])
    atoms.calc = SinglePointCalculator(
        atoms,
        energy=float(row["energy"]),
        forces=np.asarray(row["forces"], dtype=float).reshape(n, 3),
        stress=np.asarray(row["stress"], dtype=float),
    )
    return atoms
