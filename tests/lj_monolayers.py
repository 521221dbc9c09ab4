"""Tiny labelled training data for the family tests: MoS2 / WS2 monolayers (1x1 and 2x1, 15 Å
vacuum), strained in-plane and rattled, labelled by a Lennard-Jones potential."""

from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.build import mx2
from ase.calculators.lj import LennardJones


def lj_monolayers(n: int, seed: int) -> list[tuple[Atoms, float, np.ndarray, np.ndarray]]:
    """``n`` frames as (atoms without a calculator, energy eV, forces eV/Å, stress eV/Å³ Voigt,
    ASE sign); W and Mo alternate, every third frame is a 2x1 cell."""
    rng = np.random.default_rng(seed)
    calc = LennardJones(sigma=2.1, epsilon=0.05, rc=4.0, smooth=True)
    out = []
    for i in range(n):
        atoms = mx2(f"{'Mo' if i % 2 else 'W'}S2", a=3.19, thickness=3.13, vacuum=7.5)
        if i % 3 == 0:
            atoms = atoms.repeat((2, 1, 1))
        strain = np.eye(3)
        strain[:2, :2] += rng.normal(0, 0.02, (2, 2))
        atoms.set_cell(atoms.cell[:] @ strain, scale_atoms=True)
        atoms.rattle(0.05, seed=int(rng.integers(1 << 30)))
        atoms.pbc = True
        atoms.calc = calc
        energy, forces, stress = float(atoms.get_potential_energy()), atoms.get_forces(), atoms.get_stress()
        atoms.calc = None
        out.append((atoms, energy, forces, stress))
    return out


def ref_labelled(n: int, seed: int) -> list[Atoms]:
    """:func:`lj_monolayers` with the labels as the ``mace`` export writes them
    (:func:`mlff2d.data.export.mace_atoms`: ``REF_energy``, ``REF_forces``, ``REF_stress``)."""
    out = []
    for atoms, energy, forces, stress in lj_monolayers(n, seed):
        atoms.info["REF_energy"], atoms.info["REF_stress"] = energy, stress
        atoms.arrays["REF_forces"] = forces
        out.append(atoms)
    return out
