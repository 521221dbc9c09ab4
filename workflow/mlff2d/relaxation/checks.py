"""The checks a relaxation (:mod:`mlff2d.relaxation.relax`) runs on its way, and the area per atom.

* Non-finite values: :class:`TimedCalculator` notes any NaN/inf energy, force or stress the
  calculator hands out (and adds up the time spent inside it).
* Explosion (:func:`explosion`): two atoms closer than ``min_distance`` (any periodic images),
  the in-plane area per atom changed by more than a factor ``max_area_factor`` either way from
  the start, or the layer split into more pieces than it started with (atoms ``i`` and ``j``
  are joined when some periodic image of ``j`` lies within ``bond_cutoff`` of ``i``).
"""

from __future__ import annotations

import functools
import math
import time
from typing import Any

import numpy as np
from ase import Atoms

MIN_DISTANCE = 0.5  # Å
BOND_CUTOFF = 5.0  # Å
MAX_AREA_FACTOR = 3.0


def area_per_atom(atoms: Atoms) -> float:
    """In-plane area |a × b| of the cell divided by the number of atoms (Å²/atom)."""
    (ax, ay, az), (bx, by, bz) = np.asarray(atoms.cell.array, dtype=float)[:2].tolist()
    cross = (ay * bz - az * by, az * bx - ax * bz, ax * by - ay * bx)
    return math.sqrt(sum(c * c for c in cross)) / len(atoms)



class TimedCalculator:
    """Wraps an ASE calculator and adds up the wall time spent inside it.

    Attach it as ``atoms.calc``: every energy/forces/stress request that the optimiser (through
    the filter and the Atoms) makes is timed, cache hits included. It also notes whether any
    value it handed out was not finite. Anything else is passed to the wrapped calculator.
    """

    def __init__(self, calc: Any) -> None:
        self.calc = calc
        self.seconds = 0.0
        self.calls = 0
        self.non_finite = False

    def __getattr__(self, name: str) -> Any:
        if name == "calc":  # not set yet (e.g. while being copied): no recursion
            raise AttributeError(name)
        return getattr(self.calc, name)

    def _timed(self, method: str, *args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            value = getattr(self.calc, method)(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - t0
            self.calls += 1
        if isinstance(value, float):
            finite = math.isfinite(value)
        else:
            finite = value is None or bool(np.isfinite(value).all())
        if not finite:
            self.non_finite = True
        return value

    def get_potential_energy(self, *args: Any, **kwargs: Any) -> Any:
        return self._timed("get_potential_energy", *args, **kwargs)

    def get_forces(self, *args: Any, **kwargs: Any) -> Any:
        return self._timed("get_forces", *args, **kwargs)

    def get_stress(self, *args: Any, **kwargs: Any) -> Any:
        return self._timed("get_stress", *args, **kwargs)

    def get_property(self, *args: Any, **kwargs: Any) -> Any:
        return self._timed("get_property", *args, **kwargs)



@functools.lru_cache(maxsize=64)
def _image_grid(ra: int, rb: int, rc: int) -> tuple[np.ndarray, int]:
    """Integer image shifts -ra..ra × -rb..rb × -rc..rc and the index of (0, 0, 0)."""
    ranges = [np.arange(-r, r + 1) for r in (ra, rb, rc)]
    grid = np.stack(np.meshgrid(*ranges, indexing="ij"), axis=-1).reshape(-1, 3)
    grid.flags.writeable = False
    return grid, int(np.flatnonzero((grid == 0).all(axis=1))[0])


def _min_image_distances(positions: np.ndarray, cell: np.ndarray, cutoff: float) -> np.ndarray:
    """N×N matrix of the shortest distance from atom i to any periodic image of atom j, for
    distances up to ``cutoff`` (farther ones are inf); the diagonal holds the distance to the
    atom's own nearest image (inf if none is within ``cutoff``)."""
    n = len(positions)
    inv = np.linalg.inv(cell)
    plane_spacing = 1.0 / np.linalg.norm(inv, axis=0)
    reps = np.ceil(cutoff / plane_spacing).astype(int)
    grid, zero = _image_grid(*(int(r) for r in reps))
    shifts = grid @ cell
    diff = (positions[None, :, :] - positions[:, None, :]).reshape(n * n, 3)  # r_j - r_i
    diff2 = np.einsum("ij,ij->i", diff, diff)[:, None]
    shift2 = np.einsum("kj,kj->k", shifts, shifts)[None, :]
    best = np.empty(n * n)
    chunk = max(1, 1_000_000 // max(len(shifts), 1))  # pairs per block (bounded memory)
    for lo in range(0, n * n, chunk):
        # |r + s|² = |r|² + 2 r·s + |s|²  (a matrix product instead of an n²·K·3 array)
        d2 = diff2[lo : lo + chunk] + 2.0 * (diff[lo : lo + chunk] @ shifts.T) + shift2
        own = np.arange(0, n * n, n + 1)  # the pairs (i, i): not with themselves unshifted
        own = own[(own >= lo) & (own < lo + len(d2))]
        d2[own - lo, zero] = np.inf
        best[lo : lo + chunk] = d2.min(axis=1)
    best = np.maximum(best, 0.0).reshape(n, n)
    best = np.sqrt(best)
    best[best > cutoff] = np.inf
    return best


def _n_pieces(distances: np.ndarray, cutoff: float) -> int:
    """Number of connected pieces when atoms closer than ``cutoff`` (any images) are joined."""
    joined = distances <= cutoff
    if joined.all():
        return 1
    n = len(joined)
    np.fill_diagonal(joined, True)
    labels = np.arange(n)
    while True:  # each atom takes the smallest label among its neighbours, until stable
        new = np.where(joined, labels[None, :], n).min(axis=1)
        if (new == labels).all():
            return len(np.unique(labels))
        labels = new


def explosion(
    atoms: Atoms,
    start_area: float,
    start_pieces: int,
    min_distance: float = MIN_DISTANCE,
    bond_cutoff: float = BOND_CUTOFF,
    max_area_factor: float = MAX_AREA_FACTOR,
) -> str:
    """Why ``atoms`` count as exploded, or ``""``: see the module docstring."""
    cell = np.asarray(atoms.cell.array, dtype=float)
    positions = atoms.positions
    if not (np.isfinite(cell).all() and np.isfinite(positions).all()):
        return "non-finite positions or cell"
    area = area_per_atom(atoms)
    if not (start_area / max_area_factor <= area <= start_area * max_area_factor):
        return f"area per atom {area:.3g} Å² (start {start_area:.3g})"
    distances = _min_image_distances(positions, cell, bond_cutoff)
    closest = float(distances.min()) if distances.size else math.inf
    if closest < min_distance:
        return f"two atoms {closest:.3g} Å apart"
    pieces = _n_pieces(distances, bond_cutoff)
    if pieces > start_pieces:
        return f"{pieces} pieces (start {start_pieces}) at a {bond_cutoff} Å bond cutoff"
    return ""
