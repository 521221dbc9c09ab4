"""Model families as plug-ins with one small surface.

Each family module (``mlff2d.families.<name>``) provides:

* ``DEFAULTS: dict[str, Any]`` – its training settings and their defaults;
* ``train(data_dir, outdir, params, init_model=None, device=None) -> Path`` – trains on the
  exported ``data_dir/{train,val}`` files (see :mod:`mlff2d.export`), writes
  ``outdir/model`` (the trained model), ``outdir/metrics.csv`` (one row per epoch:
  ``epoch, energy_mae_meV_per_atom, forces_mae_meV_per_A, stress_mae, stress_unit, time_s``,
  validation set; ``stress_mae`` is :func:`in_plane_stress_mae` in GPa, the same definition
  and unit for every family: xx, yy and xy once each), checkpoints under
  ``outdir/checkpoints`` (a rerun resumes from the last one) and returns the model path.
  ``init_model`` fine-tunes from a trained model of the same family instead of starting from
  scratch (transfer learning);
* ``calculator(model_path, device=None) -> ase.calculators.calculator.Calculator`` – an ASE
  calculator returning energy (eV), forces (eV/Å) and stress (eV/Å³, tension positive);
* ``batch_evaluator(model_path, device=None)`` (optional) – a callable taking a list of Atoms
  and returning, per structure, ``(energy eV, forces eV/Å, stress eV/Å³ Voigt, tension
  positive)`` from one model call: the same numbers as the calculator, for the batched
  relaxation engine (:mod:`mlff2d.batched_relax`). A family without one is relaxed through its
  calculator, one structure at a time.

Adding a family means one new module here plus its block in the config.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

FAMILY_MODULES = {"m3gnet": "mlff2d.families.m3gnet", "mace": "mlff2d.families.mace"}
METRIC_COLUMNS = ["epoch", "energy_mae_meV_per_atom", "forces_mae_meV_per_A", "stress_mae", "stress_unit", "time_s"]
#: The in-plane stress components of the validation stress MAE, as (row, column) of the 3×3
#: stress: xx, yy and xy, each once (yx is xy again). Every family's metrics.csv uses them.
IN_PLANE_STRESS_3X3 = ((0, 0), (1, 1), (0, 1))
#: The unit of ``stress_mae`` in every family's metrics.csv.
STRESS_UNIT = "GPa"


def in_plane_stress_mae(delta: Any, to_gpa: float = 1.0) -> float:
    """Mean |Δσ| over the in-plane components xx, yy, xy (once each) of every structure, in GPa.

    Args:
        delta: stress differences (prediction - reference or the reverse), shape (n, 3, 3) or
            (n, 9) row-major; non-finite entries (missing labels) are left out.
        to_gpa: the factor from ``delta``'s unit to GPa (``mlff2d.units.EV_PER_A3_IN_GPA`` for
            eV/Å³).

    Returns:
        The MAE in GPa; NaN when no finite in-plane component is left.
    """
    import numpy as np

    d = np.asarray(delta, dtype=float).reshape(-1, 3, 3)
    rows, cols = zip(*IN_PLANE_STRESS_3X3)
    values = np.abs(d[:, list(rows), list(cols)]).reshape(-1) * float(to_gpa)
    values = values[np.isfinite(values)]
    return float(values.mean()) if values.size else float("nan")


def get_family(name: str) -> ModuleType:
    """The module of model family ``name``."""
    if name not in FAMILY_MODULES:
        raise ValueError(f"unknown model family {name!r}; one of {sorted(FAMILY_MODULES)}")
    return importlib.import_module(FAMILY_MODULES[name])


def pick_device(device: str | None = None) -> str:
    """``device`` if given, else CUDA when available, else CPU."""
    if device:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def epoch_line(epoch: int, epochs: int, row: dict[str, Any], epoch_s: float, eta_s: float | None) -> str:
    """The one progress line of a training epoch, the same for every family: ``epoch k/N`` (1-based,
    as in metrics.csv), the validation errors present in ``row`` (metrics.csv columns), the epoch's
    time and the ETA of the run."""
    units = {"energy_mae_meV_per_atom": ("energy", "meV/atom"), "forces_mae_meV_per_A": ("force", "meV/Å"),
             "stress_mae": ("stress", STRESS_UNIT)}
    errors = ", ".join(f"{name} {float(row[col]):.4g} {unit}" for col, (name, unit) in units.items() if col in row)
    eta = "" if eta_s is None else f", ETA {eta_s:.0f} s"
    return f"epoch {epoch}/{epochs}: val MAE {errors}; {epoch_s:.1f} s{eta}"


def eta_seconds(elapsed_s: float, done: int, left: int) -> float:
    """Remaining time of a run at the mean pace of its ``done`` epochs so far."""
    return elapsed_s / max(done, 1) * left
