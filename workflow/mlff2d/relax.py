"""Relaxation of the val/test start structures with a trained force field (thesis 4.1–4.2).

Every model family is used only through its ASE calculator
(``mlff2d.families.get_family(family).calculator(model, device)``, engine ``ase``) or its
batched evaluation (``batch_evaluator(model, device)``, engine ``batched``, the default: many
structures per model call, :mod:`mlff2d.batched_relax`, same outcomes), so this module never
branches on the family.

One relaxation (:func:`relax_structure`): ASE's FIRE on
``FrechetCellFilter(atoms, mask=[1, 1, 0, 0, 0, 1])`` – positions and the in-plane cell relax,
the out-of-plane cell vector stays exactly fixed – until the largest force (and in-plane cell
"force") is below ``fmax`` or ``max_steps`` FIRE steps have been taken. Atoms are made
periodic in all three directions (a 2D cell carries vacuum along z; matgl treats non-periodic
Atoms as a molecule). The filter is :func:`cell_filter`, a subclass of ASE's with the same
positions, forces and FIRE path (to ~1e-14) at a fraction of the cost: ASE's spends ~7 ms of
scipy matrix functions per step on one core, more than a tiny model's evaluation; this one
~0.3 ms, so ≥ 90 % of a relaxation is spent inside the calculator even for a tiny M3GNet.

Outcomes (``failure`` in the record; the non-finite check runs after every FIRE step, the
explosion check every ``check_every`` steps and on the last one):

* ``""`` – converged within ``max_steps``;
* ``"exception: <Type>: <message>"`` – anything raised, by the calculator or the optimiser;
* ``"non_finite_energy"`` – the calculator returned a NaN/inf energy, force or stress
  component (the run stops at the first one);
* ``"exploded"`` – the structure fell apart (:func:`explosion`): two atoms closer than
  ``min_distance`` (0.5 Å; any periodic images), the in-plane area per atom changed by more
  than a factor ``max_area_factor`` (3) either way from the start, or the layer split into
  more pieces than it started with – atoms ``i`` and ``j`` are joined when some periodic image
  of ``j`` lies within ``bond_cutoff`` (5 Å) of ``i``, so an atom (or group) that flew more than
  5 Å from the rest of the layer counts as a new piece;
* ``"step_limit"`` – ``max_steps`` steps without converging.

Energy per atom and area per atom are recorded for converged and step-limit runs (the final
structure is a real structure); they are NaN for the other failures. A failure never raises.

A shard (:func:`relax_shard`) relaxes a contiguous slice of a start file with the model of one
sweep point, loading the model once. A point whose training failed, or whose model does
not load, gives every structure ``"training_failed: <reason>"`` / ``"model_failed: <reason>"``
and the shard still writes its files. :func:`gather` concatenates the shards in order.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import ase.io
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from ase import Atoms

from mlff2d.config import schema_default

logger = logging.getLogger(__name__)

#: The Voigt mask (xx, yy, zz, yz, xz, xy) of the cell degrees of freedom: in-plane only.
IN_PLANE_MASK = (1, 1, 0, 0, 0, 1)
MIN_DISTANCE = 0.5  # Å
BOND_CUTOFF = 5.0  # Å
MAX_AREA_FACTOR = 3.0

RECORD_SCHEMA = pa.schema(
    [
        ("material_id", pa.string()),
        ("formula", pa.string()),
        ("n_atoms", pa.int64()),
        ("converged", pa.bool_()),
        ("steps", pa.int64()),
        ("energy_per_atom", pa.float64()),  # eV/atom
        ("area_per_atom", pa.float64()),  # Å²/atom
        ("wall_time_s", pa.float64()),
        ("calc_time_s", pa.float64()),
        ("failure", pa.string()),
    ],
    metadata={b"units": b"energy_per_atom eV/atom; area_per_atom A^2/atom; times s"},
)
RECORD_COLUMNS = RECORD_SCHEMA.names


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


# ------------------------------------------------------------------------------- cell filter


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


@functools.cache
def _fast_filter_class() -> type:
    from ase.filters import FrechetCellFilter

    class FastFrechetCellFilter(FrechetCellFilter):  # type: ignore[misc]
        """``FrechetCellFilter`` (ASE 3.29; no pressure, hydrostatic or constant-volume
        options) whose matrix functions cost microseconds, not milliseconds.

        ASE recomputes a matrix log and nine matrix-exponential Fréchet derivatives (scipy,
        ~3–10 ms on one core) every time the optimiser asks for the forces, three times per
        FIRE step. Here the forces are cached per (positions, cell); the log and exp of the
        3×3 deformation gradient use the small-matrix series above; and the nine derivatives
        ``<L(A, e_μ e_ν^T), G>`` are one, ``L(A^T, G)``, by the adjoint identity
        ``<L(A, E), G> = <E, L(A^T, G)>`` of the exponential's Fréchet derivative.
        """

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

    return FastFrechetCellFilter


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


def _clean_message(text: str, limit: int = 300) -> str:
    """One line without double quotes or backslashes (it goes into extxyz comment lines, whose
    reader drops backslashes), at most ``limit`` characters."""
    text = re.sub(r"\s+", " ", str(text)).strip().replace('"', "'").replace("\\", "/")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _exception_text(exc: BaseException) -> str:
    return _clean_message(f"{type(exc).__name__}: {exc}")


def _prepare(atoms: Atoms) -> Atoms:
    """A bare periodic copy (no calculator, no labels) keeping ``material_id``."""
    out = Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell.array, pbc=True)
    out.info["material_id"] = str(atoms.info.get("material_id", ""))
    return out


def _record(atoms: Atoms, **values: Any) -> dict[str, Any]:
    rec = {
        "material_id": str(atoms.info.get("material_id", "")),
        "formula": atoms.get_chemical_formula(),
        "n_atoms": len(atoms),
        "converged": False,
        "steps": 0,
        "energy_per_atom": math.nan,
        "area_per_atom": math.nan,
        "wall_time_s": 0.0,
        "calc_time_s": 0.0,
        "failure": "",
    }
    rec.update(values)
    return rec


def relax_structure(
    atoms: Atoms,
    calc: Any,
    fmax: float = schema_default("relax.fmax"),
    max_steps: int = schema_default("relax.max_steps"),
    min_distance: float = MIN_DISTANCE,
    bond_cutoff: float = BOND_CUTOFF,
    max_area_factor: float = MAX_AREA_FACTOR,
    check_every: int = 5,
) -> tuple[Atoms, dict[str, Any]]:
    """Relax positions and the in-plane cell of ``atoms`` with ``calc``; never raises.

    Args:
        atoms: the start structure (not modified; ``info["material_id"]`` is carried over).
        calc: an ASE calculator (energy eV, forces eV/Å, stress eV/Å³).
        fmax: convergence threshold (eV/Å) on the filter's forces, cell included.
        max_steps: the most FIRE steps.
        min_distance, bond_cutoff, max_area_factor: the explosion limits (module docstring).
        check_every: run the explosion check every this many steps and on the last one (FIRE
            moves an atom at most 0.2 Å per step, so 5 steps are at most 1 Å).

    Returns:
        The final structure (periodic, no calculator; the start structure after an exception)
        and its record (keys :data:`RECORD_COLUMNS`).
    """
    from ase.optimize import FIRE

    t0 = time.perf_counter()
    check_every = max(1, int(check_every))
    start = _prepare(atoms)
    work = start.copy()
    timed = TimedCalculator(calc)
    steps = 0
    failure = ""
    converged = False
    final = work
    try:
        start_area = area_per_atom(start)
        start_pieces = _n_pieces(_min_image_distances(start.positions, start.cell.array, bond_cutoff), bond_cutoff)
        if callable(getattr(calc, "reset", None)):
            calc.reset()  # no results cached from the previous structure (same geometry, other id)
        work.calc = timed
        opt = FIRE(cell_filter(work), logfile=None)
        for converged in opt.irun(fmax=fmax, steps=max_steps):
            steps = opt.nsteps
            if timed.non_finite:
                failure = "non_finite_energy"
                break
            if steps % check_every and not converged and steps < max_steps:
                continue  # the explosion check runs every check_every steps and at the end
            why = explosion(work, start_area, start_pieces, min_distance, bond_cutoff, max_area_factor)
            if why:
                logger.warning("%s exploded after %d steps: %s", start.info["material_id"], steps, why)
                failure = "exploded"
                break
        converged = bool(converged) and not failure
        if not converged and not failure:
            failure = "step_limit"
        energy = float(work.get_potential_energy()) / len(work) if failure in ("", "step_limit") else math.nan
        area = area_per_atom(work) if failure in ("", "step_limit") else math.nan
    except Exception as exc:  # a failed relaxation is a result, not an error
        failure = f"exception: {_exception_text(exc)}"
        converged, energy, area, final = False, math.nan, math.nan, start
    work.calc = None
    if failure and failure != "step_limit" and not np.isfinite(final.positions).all():
        final = start
    record = _record(
        start,
        converged=converged,
        steps=int(steps),
        energy_per_atom=energy,
        area_per_atom=area,
        wall_time_s=time.perf_counter() - t0,
        calc_time_s=timed.seconds,
        failure=failure,
    )
    return _final_structure(final, converged, failure), record


def _final_structure(atoms: Atoms, converged: bool, failure: str) -> Atoms:
    """A bare periodic copy with info ``material_id``, ``converged`` and, for a failure,
    ``failure`` (ASE's extxyz cannot write an empty string: it would not read back)."""
    out = _prepare(atoms)
    out.info["converged"] = bool(converged)
    if failure:
        out.info["failure"] = failure
    return out


# ---------------------------------------------------------------------------------------- shards


def count_structures(path: str | Path) -> int:
    """Number of frames in an extxyz file, without parsing them."""
    n = 0
    with open(path) as f:
        while True:
            line = f.readline()
            if not line:
                return n
            if not line.strip():
                continue
            natoms = int(line.split()[0])
            for _ in range(natoms + 1):
                if not f.readline():
                    raise ValueError(f"{path}: truncated frame {n}")
            n += 1


def n_shards(start_file: str | Path, shard_size: int) -> int:
    """ceil(N / shard_size), at least 1 (an empty set has one shard that writes empty files)."""
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    return max(1, math.ceil(count_structures(start_file) / shard_size))


def read_shard(start_file: str | Path, shard: int, shard_size: int) -> list[Atoms]:
    """Structures [shard*shard_size, (shard+1)*shard_size) of ``start_file`` (fewer at the end)."""
    if shard < 0 or shard_size < 1:
        raise ValueError(f"need shard >= 0 and shard_size >= 1, got {shard}, {shard_size}")
    lo, hi = shard * shard_size, (shard + 1) * shard_size
    if lo >= count_structures(start_file):
        return []
    return list(ase.io.read(start_file, index=f"{lo}:{hi}", format="extxyz"))


ENGINES = ("ase", "batched")


def _load_model(family: str, point_dir: Path, device: str | None, engine: str) -> tuple[Any, str]:
    """The sweep point's model, or None and the failure every structure gets: an ASE calculator
    (engine ``ase``) or a batched evaluator (``batched``; the family's ``batch_evaluator``, else
    its calculator one structure at a time)."""
    status = json.loads((point_dir / "status.json").read_text())
    if status.get("status") != "ok":
        return None, "training_failed: " + _clean_message(status.get("reason") or f"status {status.get('status')!r}")
    from mlff2d.families import get_family

    model = Path(status.get("model", ""))
    if not model.is_absolute() and not model.exists():
        model = point_dir / model
    try:
        module = get_family(family)
        if engine == "ase":
            return module.calculator(model, device), ""
        from mlff2d.batched_relax import calculator_evaluator

        if callable(getattr(module, "batch_evaluator", None)):
            return module.batch_evaluator(model, device), ""
        return calculator_evaluator(module.calculator(model, device)), ""
    except Exception as exc:
        if not model.exists():
            return None, (f"model_missing: {model} is gone (deleted after training?); retrain with "
                          f"snakemake --forcerun {point_dir / 'status.json'}")
        return None, f"model_failed: {_exception_text(exc)}"


def write_records(records: Sequence[dict[str, Any]] | pd.DataFrame, path: str | Path) -> pd.DataFrame:
    """Write relaxation records (columns :data:`RECORD_COLUMNS`) to Parquet; returns them."""
    frame = pd.DataFrame(records, columns=RECORD_COLUMNS)
    table = pa.Table.from_pandas(frame, schema=RECORD_SCHEMA, preserve_index=False)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")  # a kill or a full disk never leaves half a file
    pq.write_table(table, tmp)
    os.replace(tmp, path)
    return frame


def relax_shard(
    family: str,
    point_dir: str | Path,
    start_file: str | Path,
    shard: int,
    shard_size: int,
    records_out: str | Path,
    structures_out: str | Path,
    fmax: float = schema_default("relax.fmax"),
    max_steps: int = schema_default("relax.max_steps"),
    device: str | None = None,
    engine: str = schema_default("relax.engine"),
    batch_atoms: int = schema_default("relax.batch_atoms"),
) -> pd.DataFrame:
    """Relax one shard of ``start_file`` with the model of sweep point ``point_dir``.

    Reads ``point_dir/status.json`` (a missing file is an error: it is the training rule's
    output) and loads the model once. ``engine`` ``ase`` relaxes one structure at a time with
    the ASE calculator (:func:`relax_structure`); ``batched`` relaxes many per model call
    (:func:`mlff2d.batched_relax.relax_batched`, at most ``batch_atoms`` atoms per call, 0:
    automatic), with the same outcomes. Writes the records (Parquet, :data:`RECORD_SCHEMA`)
    and the final structures (extxyz, same order, info ``material_id``, ``converged`` and
    ``failure`` – absent when converged, as extxyz cannot hold an empty string; the start
    structure where there is no final one) and returns the records.
    """
    if engine not in ENGINES:
        raise ValueError(f"unknown relaxation engine {engine!r}; one of {ENGINES}")
    point_dir = Path(point_dir)
    structures = read_shard(start_file, shard, shard_size)
    model, load_failure = (None, "") if not structures else _load_model(family, point_dir, device, engine)
    if load_failure:
        logger.warning("%s: %s; recording it for all %d structures", point_dir, load_failure, len(structures))
        finals = [_final_structure(atoms, False, load_failure) for atoms in structures]
        results = [(final, _record(final, failure=load_failure)) for final in finals]
    elif engine == "batched" and structures:
        from mlff2d.batched_relax import Limits, batch_budget, relax_batched
        from mlff2d.families import pick_device

        budget = batch_budget(batch_atoms, pick_device(device))
        results = relax_batched(structures, model, Limits(fmax=fmax, max_steps=max_steps), budget)
    else:
        results = []
        start = time.perf_counter()
        for k, atoms in enumerate(structures, 1):  # one at a time: progress as it goes
            results.append(relax_structure(atoms, model, fmax=fmax, max_steps=max_steps))
            _log_record(results[-1][1], f"{k}/{len(structures)}", (time.perf_counter() - start) / k * (len(structures) - k))
    for k, (_, record) in enumerate(results if engine == "batched" and not load_failure else [], 1):
        _log_record(record, f"{k}/{len(results)}")
    _write_structures([final for final, _ in results], structures_out)
    return write_records([record for _, record in results], records_out)


def _log_record(record: Mapping[str, Any], progress: str, eta_s: float | None = None) -> None:
    """One line per relaxed structure: k/N, outcome, steps, time (and the shard's ETA)."""
    logger.info(
        "%s %s %s: %s after %d steps, %.2f s (%.0f %% in the model)%s",
        progress, record["material_id"], record["formula"], record["failure"] or "converged", record["steps"],
        record["wall_time_s"], 100 * record["calc_time_s"] / max(record["wall_time_s"], 1e-12),
        "" if eta_s is None else f", shard ETA {eta_s:.0f} s",
    )  # fmt: skip


def _write_structures(finals: Sequence[Atoms], path: str | Path) -> None:
    """Write the final structures (extxyz) through a temporary file."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(path).with_name(f".{Path(path).name}.tmp")
    ase.io.write(tmp, list(finals), format="extxyz")
    os.replace(tmp, path)


def gather(
    records_files: Sequence[str | Path],
    structures_files: Sequence[str | Path],
    records_out: str | Path,
    structures_out: str | Path,
) -> pd.DataFrame:
    """Concatenate shard outputs in the given order; returns the gathered records."""
    if len(records_files) != len(structures_files):
        raise ValueError(f"{len(records_files)} records files but {len(structures_files)} structures files")
    frames = [pd.read_parquet(p, columns=RECORD_COLUMNS) for p in records_files]
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=RECORD_COLUMNS)
    Path(structures_out).parent.mkdir(parents=True, exist_ok=True)
    with open(structures_out, "w") as out:
        for path in structures_files:
            text = Path(path).read_text()
            out.write(text if not text or text.endswith("\n") else text + "\n")
    return write_records(frame, records_out)
