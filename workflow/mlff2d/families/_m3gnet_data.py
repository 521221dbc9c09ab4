"""The training data of :mod:`mlff2d.families.m3gnet`: the exported Parquet splits read with the
out-of-plane stress labels masked, matgl graph datasets (cached), per-element energy offsets and
the loaders with an epoch-seeded order."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from ase.data import chemical_symbols

from mlff2d.data.export import OUT_OF_PLANE_3X3
from mlff2d.training.checkpoints import file_digest


SPLIT_FILES = {"train": "train.parquet", "val": "val.parquet"}
_COLUMNS = ["material_id", "step", "numbers", "positions", "cell", "energy", "forces", "stress_gpa"]
#: Bump when the way labels are built changes, so old graph caches are not reused.
_LABEL_VERSION = 1


def read_frames(path: str | Path) -> pd.DataFrame:
    """One exported ``m3gnet`` Parquet file, with the out-of-plane stress labels set to NaN."""
    frame = pd.read_parquet(path, columns=_COLUMNS)
    frame["stress_gpa"] = [mask_out_of_plane(s) for s in frame["stress_gpa"]]
    return frame


def mask_out_of_plane(stress_gpa: Any) -> np.ndarray:
    """3×3 stress (9 values, row-major) with xz, yz, zx, zy and zz set to NaN."""
    s = np.array(stress_gpa, dtype=float).reshape(9)
    s[list(OUT_OF_PLANE_3X3)] = np.nan
    return s.reshape(3, 3)


def _structures(frame: pd.DataFrame) -> list[Any]:
    from pymatgen.core import Lattice, Structure

    out = []
    for numbers, positions, cell in zip(frame["numbers"], frame["positions"], frame["cell"], strict=True):
        numbers = np.asarray(numbers, dtype=int)
        xyz = np.asarray(positions, dtype=float).reshape(len(numbers), 3)
        lattice = Lattice(np.asarray(cell, dtype=float).reshape(3, 3))
        out.append(Structure(lattice, numbers.tolist(), xyz, coords_are_cartesian=True))
    return out


def _labels(frame: pd.DataFrame) -> dict[str, list[Any]]:
    """matgl PES labels: total energy (eV), forces (n×3, eV/Å), stress (3×3 GPa, tension +)."""
    return {
        "energies": [float(e) for e in frame["energy"]],
        "forces": [np.asarray(f, dtype=float).reshape(-1, 3).tolist() for f in frame["forces"]],
        "stresses": [np.asarray(s, dtype=float).reshape(3, 3).tolist() for s in frame["stress_gpa"]],
    }


def check_elements(frame: pd.DataFrame, element_types: tuple[str, ...], where: str) -> None:
    present = {chemical_symbols[z] for numbers in frame["numbers"] for z in set(np.asarray(numbers).tolist())}
    missing = sorted(present - set(element_types))
    if missing:
        raise ValueError(f"{where}: elements {missing} are not in the model's element_types")


def dataset(frame: pd.DataFrame, source: Path, element_types: tuple[str, ...], cutoff: float, cache: Path) -> Any:
    """An ``MGLDataset`` of one split, cached under ``cache/<split>-<key>``.

    matgl's own cache check compares converter settings only, not the data, so the cache key
    here also covers the file's content and the label code.
    """
    from matgl.ext.pymatgen import Structure2Graph
    from matgl.graph.data import MGLDataset

    key = hashlib.sha256(
        json.dumps([file_digest(source), list(element_types), cutoff, list(OUT_OF_PLANE_3X3), _LABEL_VERSION]).encode()
    ).hexdigest()[:16]
    root = cache / f"{source.stem}-{key}"
    return MGLDataset(
        converter=Structure2Graph(element_types=element_types, cutoff=cutoff),
        structures=_structures(frame),
        labels=_labels(frame),
        root=str(root),
    )


def element_refs(frame: pd.DataFrame, element_types: tuple[str, ...]) -> np.ndarray:
    """Per-element energy offsets (eV) by least squares on the training compositions.

    Elements absent from the training set get 0 (minimum-norm solution).
    """
    col = {s: i for i, s in enumerate(element_types)}
    counts = np.zeros((len(frame), len(element_types)))
    for i, numbers in enumerate(frame["numbers"]):
        for z in np.asarray(numbers):
            counts[i, col[chemical_symbols[int(z)]]] += 1
    refs, *_ = np.linalg.lstsq(counts, frame["energy"].to_numpy(dtype=float), rcond=None)
    return refs


def loaders(
    datasets: Mapping[str, Any], batch_size: int, num_workers: int, seed: int, pin_memory: bool = False
) -> tuple[Any, Any]:
    """Train and validation loaders (matgl's ``collate_fn_pes``).

    The training order of epoch ``k`` is a permutation drawn from ``seed + k`` (Lightning calls
    ``set_epoch``), not from the global RNG, so a resumed run sees the same batches as an
    uninterrupted one. (``MGLDataLoader`` fixes ``shuffle=True`` and so takes no sampler.)
    """
    import torch
    from matgl.graph.data import collate_fn_pes
    from torch.utils.data import DataLoader, Sampler

    class EpochSeededSampler(Sampler[int]):
        def __init__(self, n: int) -> None:
            self.n, self.epoch = n, 0

        def set_epoch(self, epoch: int) -> None:
            self.epoch = epoch

        def __len__(self) -> int:
            return -(-self.n // rank_and_world()[1])  # per rank: Lightning counts batches with it

        def __iter__(self):  # type: ignore[no-untyped-def]
            generator = torch.Generator().manual_seed(seed + self.epoch)
            order = torch.randperm(self.n, generator=generator).tolist()
            rank, world = rank_and_world()
            if world > 1:  # DDP: every rank takes an equal share of the same order (wrapped)
                per_rank = -(-self.n // world)
                order = (order * world)[: per_rank * world][rank::world]
            return iter(order)

    common = {
        "batch_size": batch_size,
        "collate_fn": collate_fn_pes,
        "num_workers": num_workers,
        "persistent_workers": num_workers > 0,
        "pin_memory": pin_memory,
    }
    train = DataLoader(datasets["train"], sampler=EpochSeededSampler(len(datasets["train"])), **common)
    val = DataLoader(datasets["val"], shuffle=False, **common)
    return train, val


def rank_and_world() -> tuple[int, int]:
    """(rank, world size) of this process in a running DDP training, else (0, 1)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1
