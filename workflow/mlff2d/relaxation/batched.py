"""Batched relaxation: many structures per model call, ASE's FIRE kept per structure.

:func:`relax_batched` gives every structure the same relaxation as
:func:`mlff2d.relaxation.relax.relax_structure` – ASE's ``FIRE`` on the package's in-plane cell filter
(:func:`mlff2d.relaxation.cell_filter.cell_filter`; positions and a, b relax, c stays fixed), the same ``fmax``
criterion on atoms and cell, the same non-finite and explosion checks and the same outcomes
(``""``, ``step_limit``, ``non_finite_energy``, ``exploded``, ``exception: ...``) – but the
model is called once per round for all structures in flight:

1. the structures in flight (their total atom count within the batch budget) are evaluated
   by one batched model call (a family's ``batch_evaluator``: energy, forces, stress);
2. each structure's results are served to its own FIRE through a :class:`ServedCalculator`,
   and the structure takes the part of ASE's ``Optimizer.irun`` loop between two evaluations:
   convergence check (the optimiser's own), the failure checks, then one ``FIRE.step``;
3. structures that converged or failed leave; waiting ones enter while the atom budget allows
   (in-flight batching), in file order.

So FIRE's state (dt, α, velocities, step count) is each structure's own ASE object and the step
counts are the ASE path's up to the float differences between a batched and a single model
evaluation. A batched call that raises, or that gives a non-finite result while covering several
structures (a NaN in one graph can reach the others' forces through the batched backward pass),
is split in halves until the structures at fault are found (a CUDA out-of-memory error also
halves the atom budget); only those get ``exception`` or ``non_finite_energy``.

The atom budget (:func:`batch_budget`): ``batch_atoms`` when set; else :data:`CPU_BATCH_ATOMS`
on the CPU, and on CUDA a start of :data:`GPU_START_ATOMS` that is raised after the first call
to what :data:`GPU_MEMORY_SHARE` of the device's memory holds, measured per atom.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ase import Atoms

from mlff2d.relaxation import relax

from mlff2d.relaxation import checks as relax_checks

from mlff2d.relaxation import cell_filter as relax_filter
from mlff2d.config import schema_default

logger = logging.getLogger(__name__)

#: energy (eV), forces (N×3, eV/Å), stress (Voigt xx yy zz yz xz xy, eV/Å³, tension positive)
Evaluation = tuple[float, np.ndarray, np.ndarray]
BatchEvaluator = Callable[[Sequence[Atoms]], list[Evaluation]]

#: Atoms per model call on the CPU: on one thread the arithmetic dominates above ~100 atoms.
CPU_BATCH_ATOMS = 256
#: Atoms of the first call on CUDA, before the memory per atom is known.
GPU_START_ATOMS = 2048
#: The most atoms per call on CUDA, and the share of the device memory a batch may fill.
GPU_MAX_ATOMS = 100_000
GPU_MEMORY_SHARE = 0.5


class ServedCalculator:
    """Serves results computed elsewhere (a batched call) for one geometry; any other
    geometry is an error, so a result is never used for positions it was not computed at.

    Duck-typed for ``Atoms.get_potential_energy/get_forces/get_stress``: ASE's
    ``Calculator.check_state`` (``np.isclose`` over positions and cell, three times per FIRE
    step) would cost more than the rest of a step; here the geometry is compared bytewise.
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self) -> None:
        self._key: bytes | None = None
        self._energy = math.nan
        self._forces = np.zeros((0, 3))
        self._stress = np.zeros(6)

    @staticmethod
    def _geometry(atoms: Atoms) -> bytes:
        return atoms.positions.tobytes() + atoms.cell.array.tobytes() + atoms.numbers.tobytes()

    def serve(self, atoms: Atoms, evaluation: Evaluation) -> None:
        """Store ``evaluation`` as the results for ``atoms`` as they are now."""
        energy, forces, stress = evaluation
        self._key = self._geometry(atoms)
        self._energy = float(energy)
        self._forces = np.array(forces, dtype=float).reshape(len(atoms), 3)
        self._stress = np.array(stress, dtype=float).reshape(6)

    def _check(self, atoms: Atoms | None) -> None:
        if atoms is not None and self._geometry(atoms) != self._key:
            raise RuntimeError("no served results for this geometry (the batched relaxer evaluates first)")

    def get_potential_energy(self, atoms: Atoms | None = None, force_consistent: bool = False) -> float:
        self._check(atoms)
        return self._energy

    def get_forces(self, atoms: Atoms | None = None) -> np.ndarray:
        self._check(atoms)
        return self._forces.copy()

    def get_stress(self, atoms: Atoms | None = None) -> np.ndarray:
        self._check(atoms)
        return self._stress.copy()


def calculator_evaluator(calc: Any) -> BatchEvaluator:
    """A :data:`BatchEvaluator` calling an ASE calculator one structure at a time (the fallback
    for a family without a batched evaluation)."""

    def evaluate(structures: Sequence[Atoms]) -> list[Evaluation]:
        out = []
        for atoms in structures:
            probe = atoms.copy()
            if callable(getattr(calc, "reset", None)):
                calc.reset()
            probe.calc = calc
            out.append((float(probe.get_potential_energy()), np.array(probe.get_forces()), np.array(probe.get_stress())))
        return out

    return evaluate


def _finite(evaluation: Evaluation) -> bool:
    energy, forces, stress = evaluation
    return math.isfinite(energy) and bool(np.isfinite(forces).all()) and bool(np.isfinite(stress).all())


@dataclass
class Limits:
    """Relaxation settings shared by every structure (see :func:`mlff2d.relaxation.relax.relax_structure`)."""

    fmax: float = schema_default("relax.fmax")
    max_steps: int = schema_default("relax.max_steps")
    min_distance: float = relax_checks.MIN_DISTANCE
    bond_cutoff: float = relax_checks.BOND_CUTOFF
    max_area_factor: float = relax_checks.MAX_AREA_FACTOR
    check_every: int = 5


@dataclass
class Relaxation:
    """One structure in flight: its Atoms, served calculator, filter, FIRE and outcome."""

    start: Atoms
    limits: Limits
    work: Atoms = field(init=False)
    opt: Any = field(init=False, default=None)
    steps: int = 0
    converged: bool = False
    failure: str = ""
    done: bool = False
    own_seconds: float = 0.0  # FIRE, filter and checks of this structure
    calc_seconds: float = 0.0  # its share of the batched model calls

    def __post_init__(self) -> None:
        from ase.optimize import FIRE

        t0 = time.perf_counter()
        self.work = self.start.copy()
        self.work.calc = ServedCalculator()
        try:
            cutoff = self.limits.bond_cutoff
            self.start_area = relax_checks.area_per_atom(self.start)
            distances = relax_checks._min_image_distances(self.start.positions, self.start.cell.array, cutoff)
            self.start_pieces = relax_checks._n_pieces(distances, cutoff)
            self.opt = FIRE(relax_filter.cell_filter(self.work), logfile=None)
            self.opt.fmax = self.limits.fmax  # what Optimizer.irun(fmax=...) sets
        except Exception as exc:
            self._fail(f"exception: {relax._exception_text(exc)}")
        self.own_seconds += time.perf_counter() - t0

    def _fail(self, failure: str) -> None:
        self.failure, self.converged, self.done = failure, False, True

    def advance(self, evaluation: Evaluation | BaseException) -> None:
        """Take the results at the current geometry, then ASE irun's loop body up to the next
        evaluation: converged?, checks (as relax_structure), one FIRE step."""
        t0 = time.perf_counter()
        try:
            self._advance(evaluation)
        except Exception as exc:  # a failed relaxation is a result, not an error
            self._fail(f"exception: {relax._exception_text(exc)}")
        self.own_seconds += time.perf_counter() - t0

    def _advance(self, evaluation: Evaluation | BaseException) -> None:
        if isinstance(evaluation, BaseException):
            raise evaluation
        self.work.calc.serve(self.work, evaluation)
        opt, lim = self.opt, self.limits
        self.converged = bool(opt.gradient_converged(opt.optimizable.get_gradient()))
        self.steps = opt.nsteps
        if not _finite(evaluation):
            self._fail("non_finite_energy")
            return
        last = self.converged or self.steps >= lim.max_steps
        if last or self.steps % max(1, int(lim.check_every)) == 0:
            why = relax_checks.explosion(self.work, self.start_area, self.start_pieces, lim.min_distance, lim.bond_cutoff, lim.max_area_factor)
            if why:
                logger.warning("%s exploded after %d steps: %s", self.start.info["material_id"], self.steps, why)
                self._fail("exploded")
                return
        if last:
            self.failure, self.done = ("" if self.converged else "step_limit"), True
            return
        opt.step()
        opt.nsteps += 1

    def result(self) -> tuple[Atoms, dict[str, Any]]:
        """The final structure and record, as :func:`mlff2d.relaxation.relax.relax_structure` gives them."""
        kept = self.failure in ("", "step_limit")
        final = self.work if kept or np.isfinite(self.work.positions).all() else self.start
        if self.failure.startswith("exception: "):
            final = self.start
        energy = float(self.work.get_potential_energy()) / len(self.work) if kept else math.nan
        area = relax_checks.area_per_atom(self.work) if kept else math.nan
        record = relax._record(
            self.start, converged=self.converged and not self.failure, steps=int(self.steps),
            energy_per_atom=energy, area_per_atom=area, wall_time_s=self.own_seconds + self.calc_seconds,
            calc_time_s=self.calc_seconds, failure=self.failure,
        )  # fmt: skip
        self.work.calc = None
        return relax._final_structure(final, record["converged"], self.failure), record


# ------------------------------------------------------------------------------ the batch loop


def _is_out_of_memory(exc: BaseException) -> bool:
    return type(exc).__name__ == "OutOfMemoryError" or "out of memory" in str(exc).lower()


def evaluate_isolated(evaluate: BatchEvaluator, structures: Sequence[Atoms], on_oom: Callable[[], None] | None = None) -> list[Evaluation | BaseException]:
    """``evaluate(structures)``; if it raises, or gives a non-finite result while evaluating more
    than one structure (a NaN in one graph can reach the others' forces through the batched
    backward pass: seen with MACE), the halves are evaluated apart (recursively), so one
    structure that breaks the model fails alone. Returns an evaluation or the exception for
    each structure."""
    try:
        out = list(evaluate(structures))
        if len(out) != len(structures):
            raise RuntimeError(f"the batched evaluation returned {len(out)} results for {len(structures)} structures")
        if len(structures) == 1 or all(_finite(e) for e in out):
            return out
    except Exception as exc:
        if len(structures) == 1:
            return [exc]
        if _is_out_of_memory(exc) and on_oom is not None:
            on_oom()
    half = len(structures) // 2
    return evaluate_isolated(evaluate, structures[:half], on_oom) + evaluate_isolated(evaluate, structures[half:], on_oom)


class AtomBudget:
    """The most atoms per batched call; on CUDA, sized from the memory one call used per atom."""

    def __init__(self, batch_atoms: int = schema_default("relax.batch_atoms"), device: str | None = None) -> None:
        self.device = str(device or "cpu")
        self.cuda = self.device.startswith("cuda")
        self.fixed = int(batch_atoms) > 0
        self.atoms = int(batch_atoms) if self.fixed else (GPU_START_ATOMS if self.cuda else CPU_BATCH_ATOMS)
        self._measure = self.cuda and not self.fixed
        self._base = 0

    def before_call(self) -> None:
        """Before a call: start measuring the CUDA memory of the first automatic one."""
        if self._measure:
            import torch

            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)

    def after_call(self, n_atoms: int) -> None:
        """After the first automatic CUDA call: budget = memory share × free / peak bytes per atom."""
        if not self._measure or n_atoms < 1:
            return
        import torch

        per_atom = max(1.0, (torch.cuda.max_memory_allocated(self.device) - self._base) / n_atoms)
        free, _total = torch.cuda.mem_get_info(self.device)
        self.atoms = int(min(GPU_MAX_ATOMS, max(GPU_START_ATOMS // 4, GPU_MEMORY_SHARE * free / per_atom)))
        self._measure = False
        logger.info("batched relaxation on %s: %.0f bytes per atom, batch budget %d atoms", self.device, per_atom, self.atoms)

    def halve(self) -> None:
        """After an out-of-memory error: half the budget (and no more measuring)."""
        self.atoms = max(1, self.atoms // 2)
        self._measure = False
        if self.cuda:
            import torch

            torch.cuda.empty_cache()
        logger.warning("out of memory: batch budget halved to %d atoms", self.atoms)


def batch_budget(batch_atoms: int = schema_default("relax.batch_atoms"), device: str | None = None) -> AtomBudget:
    """The atom budget of a batched relaxation (``batch_atoms`` 0: automatic, module docstring)."""
    return AtomBudget(batch_atoms, device)


def _admit(pending: deque[int], active: list[int], runs: list[Relaxation], budget: int) -> None:
    """Move waiting structures into the batch in order while its atom count stays within the
    budget (an empty batch always takes the next one, however large)."""
    total = sum(len(runs[i].work) for i in active)
    while pending:
        run = runs[pending[0]]
        if run.done:  # failed before its first evaluation
            pending.popleft()
            continue
        if active and total + len(run.work) > budget:
            return
        active.append(pending.popleft())
        total += len(run.work)


def relax_batched(
    structures: Sequence[Atoms],
    evaluate: BatchEvaluator,
    limits: Limits | None = None,
    budget: AtomBudget | None = None,
) -> list[tuple[Atoms, dict[str, Any]]]:
    """Relax ``structures`` with in-flight batching; never raises for a structure.

    Returns the final structure and record (:data:`mlff2d.relaxation.relax.RECORD_COLUMNS`) of each, in
    the input order. A record's ``calc_time_s`` is its share (by atoms) of each batched call it
    was part of; ``wall_time_s`` adds its own FIRE, filter and check time.
    """
    limits = limits or Limits()
    budget = budget or AtomBudget()
    runs = [Relaxation(relax._prepare(atoms), limits) for atoms in structures]
    pending, active = deque(range(len(runs))), []
    calls = 0
    while pending or active:
        _admit(pending, active, runs, budget.atoms)
        if not active:
            break
        batch = [runs[i] for i in active]
        n_atoms = sum(len(r.work) for r in batch)
        budget.before_call()
        t0 = time.perf_counter()
        results = evaluate_isolated(evaluate, [r.work for r in batch], budget.halve)
        seconds = time.perf_counter() - t0
        budget.after_call(n_atoms)
        calls += 1
        for run, evaluation in zip(batch, results, strict=True):
            run.calc_seconds += seconds * len(run.work) / n_atoms
            run.advance(evaluation)
        active = [i for i in active if not runs[i].done]
    logger.info("batched relaxation: %d structures in %d model calls", len(runs), calls)
    return [run.result() for run in runs]
