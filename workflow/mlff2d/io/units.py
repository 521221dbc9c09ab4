"""Units and sign conventions at every boundary of the pipeline.

The canonical store holds ASE units and sign: energy in eV, forces in eV/Å, stress in eV/Å³
with tension positive, Voigt order (xx, yy, zz, yz, xz, xy).

- VASP (and Alexandria files computed with VASP) report stress in kbar, compression positive.
- M3GNet (matgl) trains on stress in GPa, tension positive.
- MACE and NequIP train on stress in eV/Å³, tension positive (ASE).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

#: 1 eV/Å³ in GPa (ase.units: 1 / GPa = 160.21766...).
EV_PER_A3_IN_GPA = 160.21766208
#: 1 kbar in GPa.
KBAR_IN_GPA = 0.1

StressUnit = Literal["kbar_vasp", "GPa", "eV/A3"]
STRESS_UNITS: tuple[str, ...] = ("kbar_vasp", "GPa", "eV/A3")

VOIGT_ORDER = ("xx", "yy", "zz", "yz", "xz", "xy")
#: Voigt components that involve the out-of-plane direction z (for 2D cells with vacuum along z).
OUT_OF_PLANE_VOIGT = (2, 3, 4)


def stress_to_ase(stress: np.ndarray, unit: str) -> np.ndarray:
    """Convert stress (any shape) in ``unit`` to eV/Å³, tension positive.

    ``kbar_vasp``: kbar with compression positive (VASP, Alexandria); ×(-0.1) gives GPa with
    tension positive, /160.21766 gives eV/Å³. ``GPa``: tension positive. ``eV/A3``: unchanged.
    """
    stress = np.asarray(stress, dtype=float)
    if unit == "kbar_vasp":
        return stress * (-KBAR_IN_GPA) / EV_PER_A3_IN_GPA
    if unit == "GPa":
        return stress / EV_PER_A3_IN_GPA
    if unit == "eV/A3":
        return stress
    raise ValueError(f"unknown stress unit {unit!r}; expected one of {STRESS_UNITS}")


def ase_stress_to_gpa(stress: np.ndarray) -> np.ndarray:
    """eV/Å³ (tension positive) to GPa (tension positive), the unit M3GNet trains on."""
    return np.asarray(stress, dtype=float) * EV_PER_A3_IN_GPA


def ase_stress_to_kbar_magnitude(stress: np.ndarray) -> np.ndarray:
    """eV/Å³ to kbar (1 GPa = 10 kbar), for thresholds quoted in kbar; the sign is ASE's."""
    return np.asarray(stress, dtype=float) * EV_PER_A3_IN_GPA / KBAR_IN_GPA


def to_voigt(stress: np.ndarray) -> np.ndarray:
    """Return the 6 Voigt components of a stress given as 6 values or a 3×3 matrix.

    Raises ValueError for any other shape.
    """
    arr = np.asarray(stress, dtype=float)
    if arr.shape == (6,):
        return arr
    if arr.shape == (3, 3):
        return np.array([arr[0, 0], arr[1, 1], arr[2, 2], arr[1, 2], arr[0, 2], arr[0, 1]])
    if arr.shape == (9,):
        return to_voigt(arr.reshape(3, 3))
    raise ValueError(f"stress must have 6 Voigt components or be 3x3, got shape {arr.shape}")


def voigt_to_matrix(voigt: np.ndarray) -> np.ndarray:
    """Symmetric 3×3 matrix from Voigt (xx, yy, zz, yz, xz, xy)."""
    xx, yy, zz, yz, xz, xy = np.asarray(voigt, dtype=float)
    return np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])
