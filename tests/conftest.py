"""Shared helpers: small DFT-like trajectories written in the real input formats."""

from __future__ import annotations

import bz2
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))

from mlff2d.demo.synthetic import structure_dict  # noqa: E402

os.environ.setdefault("OMP_NUM_THREADS", "1")

#: A 1H-MoS2 monolayer: a = 3.19 Å, 15 Å vacuum (c = 18.1 Å), fractional coordinates.
MOS2_FRAC = np.array([[0.0, 0.0, 0.5], [1 / 3, 2 / 3, 0.586], [1 / 3, 2 / 3, 0.414]])


def mos2_lattice(a: float = 3.19, c: float = 18.1) -> np.ndarray:
    return np.array([[a, 0.0, 0.0], [-a / 2, a * np.sqrt(3) / 2, 0.0], [0.0, 0.0, c]])


def step(
    energy: Any = -21.0,
    a: float = 3.19,
    symbols: tuple[str, ...] = ("Mo", "S", "S"),
    frac: np.ndarray = MOS2_FRAC,
    lattice: np.ndarray | None = None,
    forces: Any = None,
    stress: Any = None,
) -> dict[str, Any]:
    """One Alexandria step; forces default to small values, stress to 10 kbar (compression)."""
    lat = mos2_lattice(a) if lattice is None else lattice
    return {
        "structure": structure_dict(list(symbols), np.asarray(frac), lat),
        "energy": energy,
        "forces": [[0.01, -0.02, 0.0]] * len(symbols) if forces is None else forces,
        "stress": [[10.0, 0.0, 0.0], [0.0, 10.0, 0.0], [0.0, 0.0, 0.0]] if stress is None else stress,
    }


def trajectory(energies: list[float], **kw: Any) -> list[dict[str, Any]]:
    return [step(energy=e, **kw) for e in energies]


def write_alexandria(path: Path, data: dict[str, Any]) -> Path:
    """Write ``{material_id: [calc, ...]}`` as .json or .json.bz2 (by suffix)."""
    text = json.dumps(data).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bz2.compress(text) if path.suffix == ".bz2" else text)
    return path


def calc(steps: list[dict[str, Any]], functional: str = "PBE") -> dict[str, Any]:
    return {"functional": functional, "steps": steps}


@pytest.fixture
def root() -> Path:
    return ROOT


@pytest.fixture(scope="module")
def one_torch_thread() -> Any:
    """One torch thread for the tests of a module (one BLAS/torch thread per job, as in the rules)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
