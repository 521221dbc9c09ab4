"""Model families as plug-ins with one small surface.

Each family module (``mlff2d.families.<name>``) provides:

* ``DEFAULTS: dict[str, Any]`` – its training settings and their defaults;
* ``train(data_dir, outdir, params, init_model=None, device=None) -> Path`` – trains on the
  exported ``data_dir/{train,val}`` files (see :mod:`mlff2d.data.export`), writes
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
  relaxation engine (:mod:`mlff2d.relaxation.batched`). A family without one is relaxed through its
  calculator, one structure at a time.

Each family module also declares its :class:`FamilySpec` as ``SPEC``: its name, label, the
export format it trains on, the environment it runs in, its table ids and its schema defaults.
The registry (:data:`REGISTRY`, filled by :func:`discover` from every module of this package
that has a ``SPEC``) is what the schema's family blocks, the wildcard constraints, the CLI
choices, the sweep targets (``sweep_<family>``), the table numbering and the alloy and
transfer consumers read. Adding a family means one new module here plus its block in the
config; :func:`register` adds one from elsewhere, and the environment variable
``MLFF2D_FAMILY_MODULES`` (module names, comma-separated, importable on the Python path) names
plug-in modules outside this package whose ``SPEC`` is registered the same way.

The family modules import their heavy packages (torch, matgl, mace, nequip, quippy) inside the
functions, so reading ``SPEC`` and ``DEFAULTS`` is cheap.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from dataclasses import dataclass, field
from types import ModuleType
from collections.abc import Sequence
from typing import Any

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
        to_gpa: the factor from ``delta``'s unit to GPa (``mlff2d.io.units.EV_PER_A3_IN_GPA`` for
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


@dataclass(frozen=True)
class FamilySpec:
    """What the campaign needs to know of a model family, without importing its packages.

    Attributes:
        name: the config key, ``{family}`` wildcard value and CLI choice (``mace``).
        label: its name in tables and figures (``MACE``).
        module: the module with ``DEFAULTS``, ``train``, ``calculator`` (and optionally
            ``batch_evaluator``); set by :func:`discover` for the modules of this package.
        export_format: the training-file format it reads (a format of :mod:`mlff2d.data.export`).
        env: the environment (``envs/<env>.yml``, ``.venv/<env>``) its trainings and
            relaxations run in.
        table: the stem of its universal relaxation table (thesis: ``table_4_1`` for M3GNet).
        alloy_table: the stem of its per-alloy table (thesis: ``table_4_4`` for M3GNet).
        table_title: the title of its universal table.
        thesis: the thesis table its per-alloy table reproduces ("" for a family the thesis
            does not have).
        transfer: whether a trained model can be fine-tuned (``train(init_model=...)``); a
            family without it trains alloy models in normal mode only.
        epochs: whether it trains in epochs (metrics.csv one row per epoch); a one-shot fit
            (a kernel model) writes one row, the validation errors of the fitted model.
        sweep_default: its default ``uff.families.<name>`` block (grid and params); None: swept
            only where a config names it.
        alloy_default: defaults of its ``alloys.families.<name>`` block (``enabled``,
            ``e_cuts``, ``splits``, ``normal``/``transfer`` lr and batch size).
        description: one line for the schema.
    """

    name: str
    label: str
    export_format: str
    module: str = ""
    env: str = "main"
    table: str = ""
    alloy_table: str = ""
    table_title: str = ""
    thesis: str = ""
    transfer: bool = True
    epochs: bool = True
    sweep_default: dict[str, Any] | None = None
    alloy_default: dict[str, Any] = field(default_factory=dict)
    description: str = ""

    def __post_init__(self) -> None:
        # derived names for families the thesis has no table for
        object.__setattr__(self, "table", self.table or f"table_{self.name}")
        object.__setattr__(self, "alloy_table", self.alloy_table or f"table_alloys_{self.name}")
        object.__setattr__(self, "table_title", self.table_title or f"{self.label} relaxation MAE")


#: Every known family by name, in registration order (M3GNet and MACE first, as the thesis).
REGISTRY: dict[str, FamilySpec] = {}


def register(spec: FamilySpec) -> FamilySpec:
    """Add ``spec`` to the registry (replacing one of the same name); returns it."""
    if not spec.module:
        raise ValueError(f"family {spec.name!r}: its spec names no module")
    REGISTRY[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    """Remove family ``name`` from the registry (a test's added family)."""
    REGISTRY.pop(name, None)


_ORDER = ("m3gnet", "mace")


#: The environment variable naming plug-in family modules (comma-separated module names).
PLUGINS_VARIABLE = "MLFF2D_FAMILY_MODULES"
_discovered: set[str] = set()


def _register_module(module_name: str) -> None:
    """Register the ``SPEC`` of module ``module_name`` (its module field filled in)."""
    module = importlib.import_module(module_name)
    spec = getattr(module, "SPEC", None)
    if not isinstance(spec, FamilySpec):
        raise ValueError(f"family module {module_name!r} has no SPEC (a mlff2d.families.FamilySpec)")
    register(spec if spec.module else FamilySpec(**{**spec.__dict__, "module": module.__name__}))


@functools.lru_cache(maxsize=1)
def _builtin_modules() -> tuple[str, ...]:
    """The family modules of this package (not ``_private`` ones), M3GNet and MACE first; the
    folder is listed once per process, not at every lookup."""
    names = [m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")]
    return tuple(f"{__name__}.{n}" for n in sorted(names, key=lambda n: (_ORDER.index(n) if n in _ORDER else len(_ORDER), n)))


def discover() -> dict[str, FamilySpec]:
    """Register the ``SPEC`` of every module of this package and of every plug-in module named
    in ``MLFF2D_FAMILY_MODULES`` (each once); returns the registry."""
    import os

    plugins = [m.strip() for m in os.environ.get(PLUGINS_VARIABLE, "").split(",") if m.strip()]
    for module_name in (*_builtin_modules(), *plugins):
        if module_name not in _discovered:
            _discovered.add(module_name)
            _register_module(module_name)
    return REGISTRY


def family_names() -> list[str]:
    """The names of every registered family."""
    return list(discover())


def family_spec(name: str) -> FamilySpec:
    """The spec of family ``name``; a clear error for an unknown one."""
    specs = discover()
    if name not in specs:
        raise ValueError(f"unknown model family {name!r}; one of {sorted(specs)}")
    return specs[name]


def get_family(name: str) -> ModuleType:
    """The module of model family ``name``."""
    return importlib.import_module(family_spec(name).module)


def element_energies(frames: Sequence[Any], energies: Sequence[float]) -> dict[str, float]:
    """Per-element energies (eV/atom) by least squares on ``E/N = Σ_el x_el μ_el`` (no
    intercept; minimum-norm solution when rank-deficient), as the composition baseline."""
    import numpy as np
    from ase.data import chemical_symbols

    zs = sorted({int(z) for a in frames for z in a.numbers})
    index = {z: i for i, z in enumerate(zs)}
    x = np.zeros((len(frames), len(zs)))
    for row, atoms in enumerate(frames):
        for z in atoms.numbers:
            x[row, index[int(z)]] += 1.0 / len(atoms)
    y = np.array([e / len(a) for a, e in zip(frames, energies)])
    mu, *_ = np.linalg.lstsq(x, y, rcond=None)
    return {chemical_symbols[z]: float(m) for z, m in zip(zs, mu)}


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
