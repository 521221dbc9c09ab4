"""Model families as plug-ins with one small surface.

Each family module (``mlff2d.families.<name>``) provides:

* ``DEFAULTS: dict[str, Any]`` – its training settings and their defaults;
* ``train(data_dir, outdir, params, init_model=None, device=None) -> Path`` – trains on the
  exported ``data_dir/{train,val}`` files (see :mod:`mlff2d.export`), writes
  ``outdir/model`` (the trained model), ``outdir/metrics.csv`` (one row per epoch:
  ``epoch, energy_mae_meV_per_atom, forces_mae_meV_per_A, stress_mae, stress_unit, time_s``,
  validation set, stress in-plane components only, in the family's unit), checkpoints under
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

FAMILY_MODULES = {"m3gnet": "mlff2d.families.m3gnet", "mace": "mlff2d.families.mace"}
METRIC_COLUMNS = ["epoch", "energy_mae_meV_per_atom", "forces_mae_meV_per_A", "stress_mae", "stress_unit", "time_s"]


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
