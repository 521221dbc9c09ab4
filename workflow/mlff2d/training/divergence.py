"""Divergence of a training: validation errors that turn NaN/inf, or grow far beyond their best.

Every family feeds the validation errors of each epoch to one :class:`DivergenceGuard`. A
training that diverges stops (the guard raises :class:`TrainingDiverged`) and is recorded as
``failed`` with the reason ``diverged at epoch k (<metric> = <value>)``; the same test runs over
a finished ``metrics.csv`` (:func:`diverged_at`) as a last check before a point is called ok.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

#: The training setting every family accepts (its one default): a validation error above this
#: factor × its best value so far is a divergence; 0 or null checks NaN/inf only.
DEFAULTS: dict[str, Any] = {"divergence_factor": 20.0}
#: The ``metrics.csv`` columns that are watched for NaN/inf: the validation energy and force MAE
#: (stress is NaN by design in some set-ups, so it is not).
WATCHED = ("energy_mae_meV_per_atom", "forces_mae_meV_per_A")
#: Those also watched for growth: the force MAE, which dominates the loss of a force field. The
#: energy MAE of a model weighted towards forces can swing several-fold in a healthy training
#: (5× within 3 epochs in the tests' tiny MACE), so its growth alone is no sign of divergence.
GROWTH = ("forces_mae_meV_per_A",)


class TrainingDiverged(RuntimeError):
    """A training whose validation errors diverged; the message is the recorded reason."""


@dataclass
class DivergenceGuard:
    """The best value of each watched metric so far, and the divergence test of a new epoch."""

    factor: float | None = DEFAULTS["divergence_factor"]
    growth: Sequence[str] = GROWTH
    best: dict[str, float] = field(default_factory=dict)

    def reason(self, epoch: int, metrics: Mapping[str, Any]) -> str | None:
        """Why epoch ``epoch`` (1-based) diverged, or None; updates the best values."""
        for name, value in metrics.items():
            value = float(value)
            if not math.isfinite(value):
                return f"diverged at epoch {epoch} ({name} = {value})"
            best = self.best.get(name)
            if name not in self.growth:
                continue
            if best is not None and self.factor and best > 0 and value > float(self.factor) * best:
                return (f"diverged at epoch {epoch} ({name} = {value:.4g}, more than "
                        f"{float(self.factor):g} × its best {best:.4g})")
            self.best[name] = value if best is None else min(best, value)
        return None

    def check(self, epoch: int, metrics: Mapping[str, Any]) -> None:
        """Raise :class:`TrainingDiverged` if epoch ``epoch`` diverged."""
        reason = self.reason(epoch, metrics)
        if reason:
            raise TrainingDiverged(reason)


def diverged_at(rows: Sequence[Mapping[str, Any]], factor: float | None, columns: Sequence[str] = WATCHED,
                growth: Sequence[str] = GROWTH) -> str | None:
    """The divergence reason of a finished training's metrics rows (in epoch order), or None.
    Columns a family does not write are skipped."""
    guard = DivergenceGuard(factor, growth)
    for row in rows:
        reason = guard.reason(int(row["epoch"]), {c: row[c] for c in columns if c in row})
        if reason:
            return reason
    return None


def failure_reason(exc: BaseException) -> str:
    """The recorded reason of a failed training: a divergence as its own message, else the
    exception's type and message."""
    return str(exc) if isinstance(exc, TrainingDiverged) else f"{type(exc).__name__}: {exc}"
