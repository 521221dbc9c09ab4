"""CHGNet standing in for DFT in the demo dataset (see :mod:`mlff2d.demo.data`): one calculator per
process, the recorded FIRE relaxation, the drop criteria of a frame, and a frame as an Alexandria
geometry-optimisation step (VASP units)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

#: Label of the "functional" of every calc in the demo files.
FUNCTIONAL = "PBE-CHGNet-standin"
#: Relaxation settings of the recorded trajectories.
FMAX = 0.05
MAX_STEPS = 150
#: Drop criteria (a relaxation that "explodes"); the same limits as the pipeline's outlier filter.
ENERGY_RANGE = (-20.0, 0.0)
FORCE_MAX = 20.0  # eV/Å, norm of one atom's force
STRESS_MAX_KBAR = 500.0
ISOLATION_CUTOFF = 5.0

#: eV/Å³ → kbar: 1 eV/Å³ = 160.21766208 GPa = 1602.1766208 kbar.
EV_PER_A3_IN_KBAR = 1602.1766208


# ----------------------------------------------------------------------------- relaxation


@lru_cache(maxsize=1)
def chgnet_calculator() -> Any:
    """One CHGNet calculator per process (one thread; the small cells run fastest that way)."""
    import warnings

    import torch
    from chgnet.model import CHGNet

    warnings.filterwarnings("ignore", message="(?s).*tensor.detach")
    from chgnet.model.dynamics import CHGNetCalculator

    torch.set_num_threads(1)
    return CHGNetCalculator(model=CHGNet.load(verbose=False), use_device="cpu")


def relax(atoms: Any, fmax: float = FMAX, steps: int = MAX_STEPS, record: bool = True) -> tuple[list[dict[str, Any]], bool]:
    """Relax positions and the in-plane cell with FIRE; return every step and convergence.

    Each step is ``{"numbers", "positions", "cell", "energy" (eV), "forces" (eV/Å),
    "stress" (eV/Å³, ASE sign and Voigt order)}``: the state at which the optimiser evaluated
    the forces, from the starting structure (step 0) to the last one (at most ``steps`` + 1).
    """
    from ase.filters import FrechetCellFilter
    from ase.optimize import FIRE

    atoms.calc = chgnet_calculator()
    filt = FrechetCellFilter(atoms, mask=[1, 1, 0, 0, 0, 1])
    opt = FIRE(filt, logfile=None)
    frames: list[dict[str, Any]] = []
    converged = False
    for converged in opt.irun(fmax=fmax, steps=steps):
        if record:
            frames.append(
                {
                    "numbers": atoms.numbers.copy(),
                    "positions": atoms.positions.copy(),
                    "cell": atoms.cell.array.copy(),
                    "energy": float(atoms.get_potential_energy()),
                    "forces": atoms.get_forces().copy(),
                    "stress": atoms.get_stress(voigt=True).copy(),
                }
            )
    atoms.calc = None
    return frames, bool(converged)


def frame_problem(frame: dict[str, Any]) -> str:
    """Why a recorded frame counts as an exploded relaxation ('' when it is sound): the
    pipeline's outlier limits, an isolated atom, or a cell that lost its vacuum along z."""
    from mlff2d.data.ingest_frames import vacuum_along_z
    from mlff2d.data.outliers import has_isolated_atom

    n = len(frame["numbers"])
    values = np.concatenate([[frame["energy"]], frame["forces"].ravel(), frame["stress"], frame["positions"].ravel()])
    if not np.isfinite(values).all():
        return "non_finite"
    e = frame["energy"] / n
    if not ENERGY_RANGE[0] <= e <= ENERGY_RANGE[1]:
        return f"energy_per_atom={e:.3f}"
    fmax = float(np.linalg.norm(frame["forces"], axis=1).max())
    if fmax > FORCE_MAX:
        return f"force={fmax:.1f}"
    smax = float(np.abs(frame["stress"]).max() * EV_PER_A3_IN_KBAR)
    if smax > STRESS_MAX_KBAR:
        return f"stress_kbar={smax:.0f}"
    if has_isolated_atom(frame["positions"], frame["cell"], ISOLATION_CUTOFF):
        return "isolated_atom"
    if not vacuum_along_z(frame["cell"], frame["positions"], 5.0):
        return "vacuum_not_z"
    return ""


def _round(x: Any, nd: int) -> Any:
    return np.round(np.asarray(x, dtype=float), nd).tolist()


def structure_dict(numbers: np.ndarray, positions: np.ndarray, cell: np.ndarray) -> dict[str, Any]:
    """A pymatgen ``Structure.as_dict()`` (fractional ``abc`` only, no ``xyz``, to keep files
    small; ``Structure.from_dict`` needs only ``abc``), rounded to 6 decimals."""
    from ase.data import chemical_symbols

    frac = np.linalg.solve(cell.T, positions.T).T
    return {
        "@module": "pymatgen.core.structure",
        "@class": "Structure",
        "charge": 0,
        "lattice": {"matrix": _round(cell, 6), "pbc": [True, True, True]},
        "properties": {},
        "sites": [
            {"species": [{"element": chemical_symbols[z], "occu": 1}], "abc": f, "label": chemical_symbols[z], "properties": {}}
            for z, f in zip(numbers, _round(frac, 6))
        ],
    }


def to_alexandria_step(frame: dict[str, Any]) -> dict[str, Any]:
    """One recorded frame as an Alexandria step.

    Stress: CHGNet's model computes σ = (1/V) ∂E/∂ε in GPa and ``CHGNetCalculator`` multiplies
    it by ``ase.units.GPa``, so ``atoms.get_stress()`` is eV/Å³ with *tension positive* (ASE's
    convention). Checked against a central finite difference of the energy under strain on 1H
    MoS2 stretched to a = 3.30 Å: σ_xx = +0.02268 eV/Å³ from the calculator, +0.02270 from
    (1/V) ΔE/Δε. VASP/Alexandria write kbar with *compression positive*, hence
    kbar = -σ_ASE × 160.21766208 × 10. ``mlff2d.io.units.stress_to_ase(..., "kbar_vasp")`` undoes it.
    """
    from mlff2d.io.units import voigt_to_matrix

    kbar = -voigt_to_matrix(frame["stress"]) * EV_PER_A3_IN_KBAR
    return {
        "structure": structure_dict(frame["numbers"], frame["positions"], frame["cell"]),
        "energy": round(frame["energy"], 6),
        "forces": _round(frame["forces"], 5),
        "stress": _round(kbar, 4),
    }
