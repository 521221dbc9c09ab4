"""Shared helpers of the formation-energy tests: relaxation sets of a demo alloy, written as the
data pipeline writes them (``{set}_start.extxyz``, ``{set}_reference.extxyz``, ``split~X.csv``)."""

from __future__ import annotations

import sys
from pathlib import Path

import ase.io
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))

from mlff2d.data.ingest import Source  # noqa: E402
from mlff2d.data.ingest_alexandria import read_alexandria  # noqa: E402
from mlff2d.data.split import split_materials  # noqa: E402

DEMO_ALLOYS = ROOT / "resources" / "demo" / "alloys"
SETS = ("train", "val", "test")


def _atoms(frame: object, material_id: str) -> Atoms:
    atoms = Atoms(numbers=frame.numbers, positions=frame.positions, cell=frame.cell, pbc=True)  # type: ignore[attr-defined]
    atoms.info["material_id"] = material_id
    atoms.calc = SinglePointCalculator(atoms, energy=float(frame.energy))  # type: ignore[attr-defined]
    return atoms


def demo_relax_sets(outdir: Path, alloy: str = "MoWS2", seed: int = 42) -> Path:
    """``outdir/relax`` with the train/val/test start and DFT-relaxed structures of a demo alloy
    (80:10:10 by material), and ``outdir/split.csv``; returns the relax directory."""
    source = Source(path=str(DEMO_ALLOYS / f"{alloy}.json.bz2"), format="alexandria")
    materials = list(read_alexandria(Path(source.path), source))
    split = split_materials([m.material_id for m in materials], [0.8, 0.1, 0.1], seed)
    which = dict(zip(split["material_id"], split["split"]))
    relax = outdir / "relax"
    relax.mkdir(parents=True, exist_ok=True)
    for s in SETS:
        chosen = [m for m in materials if which[m.material_id] == s]
        ase.io.write(relax / f"{s}_start.extxyz", [_atoms(m.frames[0], m.material_id) for m in chosen])
        ase.io.write(relax / f"{s}_reference.extxyz", [_atoms(m.frames[-1], m.material_id) for m in chosen])
    split.to_csv(outdir / "split.csv", index=False)
    return relax


def demo_formation(outdir: Path, alloy: str = "MoWS2") -> tuple[Path, Path]:
    """The relaxation sets of a demo alloy and its formation energies: (relax dir, CSV)."""
    from mlff2d.formation.energies import write_formation_energies

    relax = demo_relax_sets(outdir, alloy)
    write_formation_energies(alloy, relax, outdir / "formation_energies.csv", outdir / "end_members.json")
    return relax, outdir / "formation_energies.csv"
