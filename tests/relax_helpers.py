"""Shared helpers of the batched-relaxation tests: tiny models of each family trained on the
demo MoWS2 alloy (CHGNet labels, 3-18 atoms, 15 Å vacuum), and its start structures."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))

from mlff2d.data.ingest import Source  # noqa: E402
from mlff2d.data.ingest_alexandria import read_alexandria  # noqa: E402

DEMO_MOWS2 = ROOT / "resources" / "demo" / "alloys" / "MoWS2.json.bz2"

#: Tiny trainings (seconds on one core); stress is trained, so the cell relaxes.
TINY = {
    "m3gnet": {"nblocks": 1, "units": 16, "dim_node_embedding": 16, "dim_edge_embedding": 16,
               "batch_size": 16, "epochs": 6, "lr": 3e-3, "stress_weight": 1.0, "element_types": ["S", "Mo", "W"]},
    "mace": {"epochs": 3, "lr": 0.01, "batch_size": 8, "valid_batch_size": 16, "r_max": 4.0, "max_L": 0,
             "num_channels": 8, "correlation": 2, "swa": False, "stress_weight": 10.0, "seed": 7},
}  # fmt: skip


def demo_materials() -> list[Any]:
    """The demo MoWS2 materials (:class:`mlff2d.data.ingest_frames.Material`), in file order."""
    source = Source(path=str(DEMO_MOWS2), format="alexandria")
    return list(read_alexandria(Path(source.path), source))


def frame_atoms(frame: Any, material_id: str = "") -> Atoms:
    """A frame as periodic Atoms whose calculator holds its labels (ASE units)."""
    atoms = Atoms(numbers=frame.numbers, positions=frame.positions, cell=frame.cell, pbc=True)
    atoms.calc = SinglePointCalculator(atoms, energy=float(frame.energy), forces=np.asarray(frame.forces), stress=np.asarray(frame.stress))
    atoms.info["material_id"] = material_id
    return atoms


def start_structures(n: int | None = None) -> list[Atoms]:
    """First frames of the demo materials (the relaxation sets' start structures), bare."""
    out = []
    for m in demo_materials()[:n]:
        atoms = frame_atoms(m.frames[0], m.material_id)
        atoms.calc = None
        out.append(atoms)
    return out


def lennard_jones(atoms: Atoms) -> Atoms:
    """``atoms`` rattled by 0.1 Å and relabelled by a Lennard-Jones potential plus per-element
    offsets: stronger, smoother forces than the demo's near-converged frames, which a tiny
    M3GNet learns in a few epochs (on the demo labels it predicts forces near zero)."""
    from ase.calculators.lj import LennardJones

    out = atoms.copy()
    out.rattle(0.1, seed=len(atoms) + int(1000 * atoms.cell.array[0, 0]))
    probe = out.copy()
    probe.calc = LennardJones(sigma=2.2, epsilon=0.2, rc=6.0, smooth=True)
    energy = probe.get_potential_energy() + sum(LJ_OFFSETS[z] for z in out.numbers)
    out.calc = SinglePointCalculator(out, energy=energy, forces=probe.get_forces(), stress=probe.get_stress())
    return out


LJ_OFFSETS = {42: -10.0, 74: -12.0, 16: -4.0}  # eV per atom of Mo, W, S
#: Labels of each family's tiny training: the demo's (CHGNet) or Lennard-Jones (:func:`lennard_jones`).
LABELS = {"m3gnet": "lj", "mace": "demo"}


def write_export(family: str, outdir: Path, every: int = 3) -> Path:
    """Every ``every``-th frame of the demo materials as the family's training export (labels:
    :data:`LABELS`): materials 0, 3, 6, ... validate, the rest train."""
    from mlff2d.data.export import write_labelled

    outdir.mkdir(parents=True, exist_ok=True)
    splits: dict[str, list[Atoms]] = {"train": [], "val": []}
    for i, m in enumerate(demo_materials()):
        for k, frame in enumerate(m.frames[::every]):
            atoms = frame_atoms(frame, f"{m.material_id}-{k}")
            splits["val" if i % 3 == 0 else "train"].append(lennard_jones(atoms) if LABELS[family] == "lj" else atoms)
    for split, frames in splits.items():
        write_labelled(family, frames, outdir, split)
    return outdir


def train_tiny(family: str, workdir: Path) -> Path:
    """A trained tiny sweep point of ``family`` (``status.json`` and model) under ``workdir``."""
    import torch

    from mlff2d.training.sweep import train_point

    torch.set_num_threads(1)
    data = write_export(family, workdir / "export")
    point = workdir / "point"
    status = train_point(family, data, point, TINY[family], device="cpu")
    if status["status"] != "ok":
        raise RuntimeError(f"tiny {family} training failed: {status.get('reason')}")
    return point


def model_path(point: Path) -> Path:
    """The model of a trained sweep point."""
    import json

    return Path(json.loads((point / "status.json").read_text())["model"])
