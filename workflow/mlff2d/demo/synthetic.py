"""Synthetic Alexandria-format relaxation trajectories, for tests, dry runs and benchmarks.

Each material is an MX2 monolayer (1H, hexagonal) with ~15 Å vacuum along z whose relaxation
is imitated: energy per atom decays exponentially towards its minimum, forces and stress decay
with it, and the lattice relaxes towards its equilibrium. The numbers are plausible in sign and
magnitude (stress in kbar, compression positive, as VASP writes it), not physics.
"""

from __future__ import annotations

import bz2
import json
from pathlib import Path
from typing import Any

import numpy as np

METALS = ("Mo", "W", "Nb", "Ta", "Ti", "V", "Zr", "Hf", "Cr", "Fe", "Ir", "Ru", "Pt", "Pd")
CHALCOGENS = ("S", "Se", "Te")
VACUUM = 15.0


def structure_dict(symbols: list[str], frac: np.ndarray, lattice: np.ndarray) -> dict[str, Any]:
    """A pymatgen ``Structure.as_dict()``-shaped dictionary."""
    xyz = frac @ lattice
    return {
        "@module": "pymatgen.core.structure",
        "@class": "Structure",
        "charge": 0,
        "lattice": {"matrix": lattice.tolist(), "pbc": [True, True, True]},
        "properties": {},
        "sites": [
            {
                "species": [{"element": s, "occu": 1}],
                "abc": f.tolist(),
                "xyz": x.tolist(),
                "label": s,
                "properties": {},
            }
            for s, f, x in zip(symbols, frac, xyz)
        ],
    }


def mx2_trajectory(rng: np.random.Generator, n_steps: int, supercell: int = 1) -> list[dict[str, Any]]:
    """Steps of one imitated relaxation of an MX2 monolayer (``supercell`` × ``supercell``)."""
    m, x = rng.choice(METALS), rng.choice(CHALCOGENS)
    a0 = {"S": 3.18, "Se": 3.32, "Te": 3.55}[x] * rng.uniform(0.97, 1.03)
    base = np.array([[0.0, 0.0, 0.5], [1 / 3, 2 / 3, 0.5 + 1.56 / (VACUUM + 3.1)], [1 / 3, 2 / 3, 0.5 - 1.56 / (VACUUM + 3.1)]])
    frac = np.concatenate([(base + [i, j, 0]) / [supercell, supercell, 1] for i in range(supercell) for j in range(supercell)])
    symbols = [m, x, x] * supercell**2
    n = len(symbols)
    e_min = rng.uniform(-8.0, -4.0)
    strain0 = rng.uniform(-0.04, 0.04)
    noise0 = rng.normal(0.0, 0.05, size=frac.shape) * [1 / supercell, 1 / supercell, 0.01]
    rate = rng.uniform(0.15, 0.5)
    steps = []
    for k in range(n_steps):
        decay = np.exp(-rate * k)
        a = a0 * supercell * (1 + strain0 * decay)
        lattice = np.array([[a, 0, 0], [-a / 2, a * np.sqrt(3) / 2, 0], [0, 0, VACUUM + 3.1]])
        pos = frac + noise0 * decay
        forces = rng.normal(0.0, 1.0, size=(n, 3)) * decay
        forces -= forces.mean(axis=0)
        s_in = -strain0 * decay * 800.0  # kbar, compression positive when stretched negative
        stress = np.diag([s_in, s_in, 0.0]) + rng.normal(0.0, 1.0, (3, 3)) * decay
        stress = (stress + stress.T) / 2
        stress[2, :] = stress[:, 2] = 0.0
        steps.append(
            {
                "structure": structure_dict(symbols, pos, lattice),
                "energy": float(n * (e_min + 0.3 * decay)),
                "forces": forces.tolist(),
                "stress": stress.tolist(),
            }
        )
    return steps


def write_alexandria(
    outdir: str | Path,
    n_materials: int,
    n_steps: int = 30,
    per_file: int = 1000,
    seed: int = 0,
    compress: bool = True,
    prefix: str = "agm",
) -> list[Path]:
    """Write ``n_materials`` synthetic materials in Alexandria geometry-optimisation files of
    ``per_file`` materials each; the steps of every material are split over two calcs
    (a restart). Returns the written paths."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for start in range(0, n_materials, per_file):
        data = {}
        for i in range(start, min(start + per_file, n_materials)):
            steps = mx2_trajectory(rng, n_steps)
            cut = max(1, len(steps) // 2)
            data[f"{prefix}{i:07d}"] = [
                {"functional": "PBE", "steps": steps[:cut]},
                {"functional": "PBE", "steps": steps[cut:]},
            ]
        text = json.dumps(data).encode()
        path = outdir / f"alexandria_2d_{start // per_file:04d}.json{'.bz2' if compress else ''}"
        path.write_bytes(bz2.compress(text, 1) if compress else text)
        paths.append(path)
    return paths
