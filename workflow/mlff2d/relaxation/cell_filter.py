"""The in-plane cell filter of a relaxation (:mod:`mlff2d.relaxation.relax`) and its small-matrix functions.

:func:`cell_filter` is ASE's ``FrechetCellFilter(atoms, mask=[1, 1, 0, 0, 0, 1])`` – positions
and the in-plane cell relax, the out-of-plane cell vector stays exactly fixed – as a subclass
with the same positions, forces and FIRE path (to ~1e-14) at a fraction of the cost: ASE's
spends ~7 ms of scipy matrix functions per step on one core, more than a tiny model's
evaluation; this one ~0.3 ms.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from ase import Atoms

#: The Voigt mask (xx, yy, zz, yz, xz, xy) of the cell degrees of freedom: in-plane only.
IN_PLANE_MASK = (1, 1, 0, 0, 0, 1)


def _expm(m: np.ndarray) -> np.ndarray:
    """exp of a small matrix: Taylor series with scaling and squaring (to rounding error),
    after taking out the multiple of the identity, exp(m) = e^c exp(m - c 1), c = tr(m)/n."""
    shift = float(np.trace(m)) / len(m)
    m = m - shift * np.eye(len(m))
    norm = float(np.abs(m).sum(axis=0).max())
    squarings = max(0, math.ceil(math.log2(norm / 0.5))) if norm > 0.5 else 0
    x = m / 2.0**squarings
    # |x| <= 0.5: the Taylor remainder after the term x^k/k! is below 2 |x|^(k+1)/(k+1)!
    r = norm / 2.0**squarings
    order = 1
    while r > 0 and 2 * r ** (order + 1) / math.factorial(order + 1) > 1e-17:
        order += 1
    result = np.eye(len(m)) + x
    term = x
    for k in range(2, order + 1):
        term = term @ x / k
        result += term
    for _ in range(squarings):
        result = result @ result
    return result * math.exp(shift)


def _expm_frechet(a: np.ndarray, e: np.ndarray) -> np.ndarray:
    """Fréchet derivative of exp at ``a`` in direction ``e``: the upper-right block of
    exp([[a, e], [0, a]]). The derivative is linear in ``e``, so ``e`` is scaled to 1e-6 first
    (its block then adds nothing to the norm that sets the scaling and squaring; the
    upper-right block of every power holds only terms linear in ``e``, so nothing is lost)."""
    size = float(np.abs(e).max())
    if size == 0.0:
        return np.zeros_like(e)
    n = len(a)
    block = np.zeros((2 * n, 2 * n))
    block[:n, :n] = block[n:, n:] = a
    block[:n, n:] = e * (1e-6 / size)
    return _expm(block)[:n, n:] * (size / 1e-6)


def _logm(m: np.ndarray) -> np.ndarray:
    """Principal matrix log of a real matrix near a positive multiple of the identity.

    With ``s = det(m)^(1/3)`` and ``z = (m/s - 1)(m/s + 1)^-1``:
    ``log m = log(s) 1 + 2 (z + z³/3 + z⁵/5 + …)``. Falls back to :func:`scipy.linalg.logm`
    when ``m`` is far from that (|z| > 0.5) or its determinant is not positive.
    """
    det = float(np.linalg.det(m))
    eye = np.eye(len(m))
    if det > 0:
        scale = det ** (1.0 / len(m))
        x = m / scale
        z = np.linalg.solve((x + eye).T, (x - eye).T).T
        r = float(np.abs(z).sum(axis=0).max())
        if r <= 0.5:
            # remainder after the term z^(2k+1)/(2k+1) is below |z|^(2k+3) / (1 - |z|²)
            terms = 0
            while r > 0 and r ** (2 * terms + 3) / (1 - r * r) > 1e-17:
                terms += 1
            z2 = z @ z
            term, result = z, z.copy()
            for k in range(1, terms + 1):
                term = term @ z2
                result += term / (2 * k + 1)
            return 2.0 * result + math.log(scale) * eye
    from scipy.linalg import logm

    return np.real(logm(m))


def cell_filter(atoms: Atoms, mask: Sequence[int] = IN_PLANE_MASK) -> Any:
    """ASE's ``FrechetCellFilter(atoms, mask=mask)``: same positions, forces and steps, less
    overhead (see ``FastFrechetCellFilter`` in :func:`_fast_filter_class`)."""
    filt = _fast_filter_class()(atoms, mask)
    if filt.scalar_pressure or filt.hydrostatic_strain or filt.constant_volume:  # pragma: no cover
        raise RuntimeError("FastFrechetCellFilter supports none of pressure, hydrostatic or constant volume")
    return filt


class _FastFrechetMethods:
    """The methods of ``FastFrechetCellFilter`` (:func:`_fast_filter_class`): mixed in before
    ASE's ``FrechetCellFilter``, which is imported only when a filter is first made."""

    def __init__(self, atoms: Atoms, mask: Sequence[int]) -> None:
        super().__init__(atoms, mask=list(mask))
        self._forces_key: bytes | None = None
        self._forces: np.ndarray | None = None
        self._log_key: bytes | None = None
        self._log = np.zeros((3, 3))

    def _deform(self) -> np.ndarray:
        return np.linalg.solve(self.orig_cell, self.atoms.cell.array).T

    def _log_deform(self, deform: np.ndarray) -> np.ndarray:
        """logm of the deformation gradient; the last one is kept (forces and positions
        of one step need the same)."""
        key = deform.tobytes()
        if key != self._log_key:
            self._log, self._log_key = _logm(deform), key
        return self._log

    def get_positions(self) -> np.ndarray:
        deform = self._deform()
        n = len(self.atoms)
        pos = np.empty((n + 3, 3))
        pos[:n] = np.linalg.solve(deform, self.atoms.positions.T).T
        # ASE: logm(cell_factor * deform) * exp_cell_factor
        pos[n:] = (self._log_deform(deform) + math.log(self.cell_factor) * np.eye(3)) * self.exp_cell_factor
        return pos

    def set_positions(self, new: np.ndarray, **kwargs: Any) -> None:
        n = len(self.atoms)
        deform = _expm(new[n:] / self.exp_cell_factor) / self.cell_factor
        step = np.eye(3) + (deform - np.eye(3)).T * self.mask
        # ASE scales the atoms with the cell first; they are all set right after anyway
        self.atoms.set_cell(self.orig_cell @ step, scale_atoms=False)
        self.atoms.set_positions(new[:n] @ step, **kwargs)

    def get_forces(self, **kwargs: Any) -> np.ndarray:
        key = self.atoms.positions.tobytes() + self.atoms.cell.array.tobytes() + repr(sorted(kwargs.items())).encode()
        if key != self._forces_key or self._forces is None:
            self._forces = self._frechet_forces(**kwargs)
            self._forces_key = key
        return self._forces.copy()

    def _frechet_forces(self, **kwargs: Any) -> np.ndarray:
        from ase.stress import full_3x3_to_voigt_6_stress, voigt_6_to_full_3x3_stress

        stress = self.atoms.get_stress(**kwargs)
        atoms_forces = self.atoms.get_forces(**kwargs)
        volume = self.atoms.cell.volume
        virial = -volume * voigt_6_to_full_3x3_stress(stress) * self.mask
        deform = self._deform()
        ucf_cell_grad = virial @ np.linalg.inv(deform.T)
        log_force = _expm_frechet(self._log_deform(deform).T, ucf_cell_grad)
        self.stress = full_3x3_to_voigt_6_stress(-(virial / volume))
        n = len(atoms_forces)
        forces = np.empty((n + 3, 3))
        forces[:n] = atoms_forces @ deform
        forces[n:] = log_force / self.exp_cell_factor
        return forces


@functools.cache
def _fast_filter_class() -> type:
    from ase.filters import FrechetCellFilter

    class FastFrechetCellFilter(_FastFrechetMethods, FrechetCellFilter):  # type: ignore[misc]
        """``FrechetCellFilter`` (ASE 3.29; no pressure, hydrostatic or constant-volume
        options) whose matrix functions cost microseconds, not milliseconds.

        ASE recomputes a matrix log and nine matrix-exponential Fréchet derivatives (scipy,
        ~3–10 ms on one core) every time the optimiser asks for the forces, three times per
        FIRE step. Here the forces are cached per (positions, cell); the log and exp of the
        3×3 deformation gradient use the small-matrix series above; and the nine derivatives
        ``<L(A, e_μ e_ν^T), G>`` are one, ``L(A^T, G)``, by the adjoint identity
        ``<L(A, E), G> = <E, L(A^T, G)>`` of the exponential's Fréchet derivative.
        """

    return FastFrechetCellFilter
