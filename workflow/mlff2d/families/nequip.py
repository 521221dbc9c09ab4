"""NequIP (nequip 0.19.1) as a universal force-field family: energy, forces and in-plane stress.

Runs in the ``nequip`` environment (NequIP 0.19, e3nn 0.6: it cannot share an interpreter with
mace-torch). This module imports only the standard library, NumPy, pandas, ASE and cheap
mlff2d modules at top level, so the main environment reads :data:`SPEC` and :data:`DEFAULTS`
without nequip; torch, lightning and nequip are imported inside the functions (and by the
Lightning callback classes, built on first access through the module's ``__getattr__``).

Training (:func:`train`) writes a Hydra config (``outdir/config.yaml``) and runs
``nequip-train`` on it in a subprocess (as :mod:`mlff2d.formation.nequip_model` does for the energy-only
formation models; its output goes to ``outdir/nequip-train.log``):
``NequIPLightningModule``, a ``NequIPGNNModel`` with forces and stress by autograd
(``do_derivatives``), ``EnergyForceStressLoss(per_atom_energy=True)`` (MSE of the per-atom
energy, forces and stress, weights ``energy_weight``, ``forces_weight``, ``stress_weight``),
``CommonDataStatisticsManager`` (per-atom energy mean as shift, force RMS as scale, mean
neighbour count), Adam.

* **Data.** The ``nequip`` export (:mod:`mlff2d.data.export`): ``train.extxyz`` and ``val.extxyz``
  with ASE's ``energy`` (eV), ``forces`` (eV/Å) and ``stress`` (eV/Å³, tension positive, ASE
  Voigt order) read by NequIP's ``ASEDataModule``.
* **Stress convention.** NequIP's stress is ``virial / volume`` with the virial the derivative
  of the energy with respect to a symmetric strain, i.e. ``(1/V) dE/dε``: tension positive,
  eV/Å³ – ASE's convention (``StressSignFlipTransform`` exists for data with the other sign;
  ASE data needs none). NequIP's ``NequIPCalculator`` passes it through unchanged. So labels go
  in unchanged and the calculator's stress is ASE's; the tests check the trained model's stress
  against finite differences of its energy.
* **Out-of-plane stress.** The transform :class:`OutOfPlaneStressToNaN` (in the data
  pipeline, after loading) sets the xz, yz, zx, zy and zz components of every stress label to
  NaN, whatever the file holds, and the loss and validation metrics use NequIP 0.19's
  ``ignore_nan: {stress: true}`` (``MetricsManager`` drops target NaNs with ``masked_select``
  before the metric): those components never reach the loss (selected out, not weighted by
  zero). The stress MSE is then the mean over xx, xy, yx, yy.
* **metrics.csv** (:data:`mlff2d.families.METRIC_COLUMNS`): written by the callback
  :class:`MetricsRecorder` from NequIP's own per-epoch validation pass (the predictions
  ``validation_step`` returns): validation energy MAE per atom (meV/atom), force MAE (meV/Å),
  :func:`~mlff2d.families.in_plane_stress_mae` (GPa, xx, yy, xy once each), ``time_s`` of the
  epoch (training + validation), one row per epoch (1-based).
* **Checkpoints and resume.** After each epoch the full Lightning state goes to
  ``outdir/checkpoints/last.ckpt`` (temporary file, then renamed; the one before kept as
  ``last.previous.ckpt``, :mod:`mlff2d.training.checkpoints`), and the rows so far to
  ``checkpoints/metrics.csv``. A rerun on the same ``outdir`` resumes with nequip-train's
  ``ckpt_path`` from the newest readable one; ``checkpoints/best.ckpt`` (Lightning's
  ``ModelCheckpoint``) is the best validation epoch by ``val0_epoch/weighted_sum``
  (per-atom energy MAE + force MAE, eV units).
* **Divergence.** The recorder runs :class:`mlff2d.training.divergence.DivergenceGuard` on each epoch's
  row; a divergence gets no checkpoint, is written to ``outdir/diverged.json`` and stops the
  trainer; :func:`train` then raises :class:`~mlff2d.training.divergence.TrainingDiverged` (as every
  family does for :func:`mlff2d.training.sweep.train_point`).
* **Model.** ``outdir/model/`` holds ``nequip.ckpt`` (the best-validation checkpoint, which
  NequIP's ``load_saved_model`` and ``NequIPCalculator`` read) and ``meta.json`` (type names,
  r_max, the epoch of the checkpoint, settings, init model).
* **Transfer** (``init_model``, an ``outdir/model`` of this family): the model is built by
  ``nequip.model.ModelFromCheckpoint`` from its checkpoint (copied to
  ``outdir/model/init.ckpt``, which the new checkpoint then references: keep it there),
  architecture, type names, cutoff and per-type energy shifts/scales included; the data's
  elements must be among its type names. The model-size settings in ``params`` are ignored.
  With ``refit_element_energies`` (the default) the per-element energy shifts of the target's
  elements are refitted on its training set (``nequip.model.modify`` with
  ``modify_PerTypeScaleShift``, NequIP's fine-tuning recipe), as normal training fits them;
  else the initial model's are kept. No blocks are frozen: ``freeze_blocks`` must be 0.
* **Element energies.** ``fit_element_energies`` (the default) sets the per-type energy shifts
  to per-element energies fitted by least squares on the training set
  (:func:`mlff2d.families.element_energies`); an element absent from it gets the mean per-atom
  energy. A single mean shift for 40+ elements leaves the network to learn the chemistry's
  offsets of several eV/atom, which a short training does not.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import ase.io
import pandas as pd

from mlff2d.training import checkpoints

from mlff2d.training import divergence
from mlff2d.families import METRIC_COLUMNS, FamilySpec, _nequip_callbacks, pick_device
from mlff2d.families._nequip_callbacks import DIVERGED, OUT_OF_PLANE_ROWS_COLS  # noqa: F401  (part of this module's API)
from mlff2d.families._nequip_config import hydra_config

log = logging.getLogger("mlff2d")

SPEC = FamilySpec(
    name="nequip",
    label="NequIP",
    export_format="nequip",
    env="nequip",
    transfer=True,
    description="NequIP (nequip 0.19) universal force field: energy, forces and in-plane stress; not part of the thesis's sweeps.",
    sweep_default=None,
    alloy_default={"enabled": False, "e_cuts": None, "splits": None, "normal": {"lr": 0.005, "batch_size": 16},
                   "transfer": {"lr": 0.001, "batch_size": 16},
                   "description": "NequIP alloy models (not in the thesis); off unless enabled."},
)

DEFAULTS: dict[str, Any] = {
    "epochs": 100,
    "lr": 0.005,  # Adam
    "batch_size": 16,
    "r_max": 5.0,  # Å
    "num_layers": 3,
    "l_max": 1,
    "num_features": 32,
    "radial_mlp_depth": 1,
    "radial_mlp_width": 64,
    "num_bessels": 8,
    "model_dtype": "float32",
    "energy_weight": 1.0,  # per-atom energy MSE (eV²/atom²)
    "forces_weight": 1.0,  # force MSE (eV²/Å²)
    "stress_weight": 1.0,  # in-plane stress MSE (eV²/Å⁶)
    "seed": 42,
    "num_workers": 0,
    # per-element energy shifts (eV/atom) by least squares on the training set, as M3GNet's
    # element refs and MACE's E0s; false: NequIP's one mean per-atom energy for every element
    "fit_element_energies": True,
    # transfer (only with init_model): refit those shifts on the target training set (else keep the initial model's)
    "refit_element_energies": True,
    # transfer: freezing interaction blocks is not implemented for NequIP (only 0 is accepted)
    "freeze_blocks": 0,
    **divergence.DEFAULTS,
}

MODEL_FILE = "nequip.ckpt"
META_FILE = "meta.json"
_SPLITS = ("train", "val")


def _settings(params: Mapping[str, Any] | None) -> dict[str, Any]:
    params = dict(params or {})
    unknown = sorted(set(params) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"unknown nequip training setting(s) {unknown}; known: {sorted(DEFAULTS)}")
    p = {**DEFAULTS, **params}
    if int(p["epochs"]) < 1 or int(p["batch_size"]) < 1:
        raise ValueError("epochs and batch_size must be >= 1")
    if float(p["stress_weight"]) <= 0:
        raise ValueError("stress_weight must be > 0: the model must learn the in-plane stress for cell relaxation")
    if int(p["freeze_blocks"]) != 0:
        raise ValueError("freeze_blocks: freezing NequIP interaction blocks is not implemented; set it to 0")
    return p


def _symbols(paths: list[Path]) -> list[str]:
    symbols: set[str] = set()
    for path in paths:
        for atoms in ase.io.iread(path, index=":"):
            symbols.update(atoms.get_chemical_symbols())
    return sorted(symbols)


def model_file(model_path: str | Path) -> Path:
    """The checkpoint of a model: ``model_path`` itself, or ``model_path/nequip.ckpt``."""
    path = Path(model_path)
    return path / MODEL_FILE if path.is_dir() else path


def read_meta(model_path: str | Path) -> dict[str, Any]:
    """``meta.json`` of a model directory of this family."""
    return json.loads((model_file(model_path).parent / META_FILE).read_text())


def train(
    data_dir: str | Path,
    outdir: str | Path,
    params: Mapping[str, Any] | None = None,
    init_model: str | Path | None = None,
    device: str | None = None,
) -> Path:
    """Train (or, with ``init_model``, fine-tune) a NequIP force field; returns ``outdir/model``.

    Args:
        data_dir: The ``nequip`` export: ``train.extxyz`` and ``val.extxyz``.
        outdir: Output directory (see the module docstring); a rerun resumes from its last
            checkpoint.
        params: Settings overriding :data:`DEFAULTS`.
        init_model: A model directory (or its ``nequip.ckpt``) of this family to fine-tune.
        device: ``cpu``, ``cuda`` or ``cuda:<i>``; default CUDA when available.

    Raises:
        ValueError: unknown settings, or elements the initial model does not know.
        FileNotFoundError: missing data or initial model.
        TrainingDiverged: the validation errors diverged.
        RuntimeError: nequip-train failed (the last lines of its output).
    """
    import yaml

    p = _settings(params)
    data_dir, outdir = Path(data_dir).resolve(), Path(outdir).resolve()
    for split in _SPLITS:
        if not (data_dir / f"{split}.extxyz").is_file():
            raise FileNotFoundError(data_dir / f"{split}.extxyz")
    outdir.mkdir(parents=True, exist_ok=True)
    (outdir / "model").mkdir(exist_ok=True)
    symbols = _symbols([data_dir / f"{s}.extxyz" for s in _SPLITS])
    init_ckpt = None
    if init_model is not None:
        symbols, init_ckpt = _init_checkpoint(init_model, symbols, p, outdir)
    p["element_energy_shifts"] = _energy_shifts(data_dir / "train.extxyz", symbols, p, init_ckpt is not None)
    device = pick_device(device) if device else _default_device()

    last = outdir / "checkpoints" / "last.ckpt"
    guard = checkpoints.settings_guard(outdir, {**p, "init_model": str(init_model) if init_model else None}, data_dir)
    ckpt, notes = checkpoints.first_readable([last, checkpoints.previous_path(last)])
    checkpoints.record_resume(outdir, ckpt, guard + notes)
    (outdir / DIVERGED).unlink(missing_ok=True)
    config = hydra_config(data_dir, outdir, symbols, p, device, init_ckpt, ckpt)
    (outdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    try:
        _nequip_train(outdir)
    finally:  # also for a diverged or failed run: metrics.csv shows its epochs
        _copy_metrics(outdir)
    if (outdir / DIVERGED).exists():
        raise divergence.TrainingDiverged(json.loads((outdir / DIVERGED).read_text())["reason"])

    return _save_model(outdir, last, symbols, p, init_model)


def _energy_shifts(train: Path, symbols: list[str], p: Mapping[str, Any], fine_tune: bool) -> dict[str, float] | None:
    """Per-element energy shifts (eV/atom) fitted on ``train``: for every type name of a new
    model (the mean per-atom energy for one the training set lacks); for a fine-tuned model, the
    training set's elements only. None: NequIP's mean shift, or the initial model's."""
    import ase.io
    import numpy as np

    from mlff2d.families import element_energies

    if not (p["refit_element_energies"] if fine_tune else p["fit_element_energies"]):
        return None
    frames = ase.io.read(train, index=":", format="extxyz")
    energies = [a.get_potential_energy() for a in frames]
    fitted = element_energies(frames, energies)
    if fine_tune:
        return fitted
    mean = float(np.sum(energies) / sum(len(a) for a in frames))
    return {s: fitted.get(s, mean) for s in symbols}


def _init_checkpoint(init_model: str | Path, symbols: list[str], p: dict[str, Any], outdir: Path) -> tuple[list[str], Path]:
    """The initial model's type names (sets ``p["r_max"]`` to its cutoff) and its checkpoint,
    copied to ``outdir/model/init.ckpt``; the data's elements must be among its type names."""
    source = model_file(init_model)
    if not source.is_file():
        raise FileNotFoundError(source)
    meta = read_meta(source)
    missing = sorted(set(symbols) - set(meta["type_names"]))
    if missing:
        raise ValueError(f"elements {missing} of the data are not among the initial model's {meta['type_names']}")
    symbols, p["r_max"] = list(meta["type_names"]), float(meta["r_max"])
    init_ckpt = outdir / "model" / "init.ckpt"
    if source.resolve() != init_ckpt:
        shutil.copyfile(source, init_ckpt)
    return symbols, init_ckpt


def _copy_metrics(outdir: Path) -> None:
    """``outdir/metrics.csv`` from the recorder's ``checkpoints/metrics.csv`` (else an empty one,
    unless there is one already)."""
    history = outdir / "checkpoints" / "metrics.csv"
    if history.exists():
        shutil.copyfile(history, outdir / "metrics.csv")
    elif not (outdir / "metrics.csv").exists():
        pd.DataFrame(columns=METRIC_COLUMNS).to_csv(outdir / "metrics.csv", index=False)


def _save_model(outdir: Path, last: Path, symbols: list[str], p: Mapping[str, Any], init_model: str | Path | None) -> Path:
    """``outdir/model``: the best-validation checkpoint (else ``last``) and ``meta.json``."""
    best = outdir / "checkpoints" / "best.ckpt"
    chosen = best if best.is_file() else last
    if not chosen.is_file():
        raise RuntimeError(f"nequip-train wrote no checkpoint under {outdir / 'checkpoints'}")
    target = outdir / "model"
    shutil.copyfile(chosen, target / (MODEL_FILE + ".tmp"))
    os.replace(target / (MODEL_FILE + ".tmp"), target / MODEL_FILE)
    meta = {"family": "nequip", "type_names": symbols, "r_max": float(p["r_max"]), "epoch": _checkpoint_epoch(chosen),
            "source": chosen.name, "params": p, "init_model": str(init_model) if init_model else None}
    (target / META_FILE).write_text(json.dumps(meta, indent=1) + "\n")
    return target


def _default_device() -> str:
    try:
        return pick_device(None)
    except ImportError:  # no torch in this interpreter: nequip-train's environment decides
        return "cpu"


def _checkpoint_epoch(path: Path) -> int:
    """The epoch (1-based, as in metrics.csv) of a checkpoint saved at the end of an epoch
    (``ModelCheckpoint`` after its validation, or the recorder's ``last.ckpt``): Lightning's
    ``epoch`` is the 0-based epoch it was saved in."""
    import torch

    return int(torch.load(path, map_location="cpu", weights_only=False)["epoch"]) + 1


def nequip_train_command() -> str:
    """``nequip-train`` of this interpreter's environment (else the one on the PATH)."""
    local = Path(sys.executable).parent / "nequip-train"
    return str(local) if local.exists() else "nequip-train"


def _nequip_train(outdir: Path) -> None:
    """``nequip-train`` on ``outdir/config.yaml``; its output streams to ``outdir/nequip-train.log``
    (appended); a non-zero exit raises with its last lines. ``PYTHONPATH`` gets this copy of
    mlff2d first, so the callbacks and transform named in the config are this module's."""
    cmd = [nequip_train_command(), "-cp", str(outdir), "-cn", "config"]
    package_root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "HYDRA_FULL_ERROR": "1",
           "PYTHONPATH": os.pathsep.join([package_root, *filter(None, [os.environ.get("PYTHONPATH")])])}
    (outdir / "nequip").mkdir(exist_ok=True)
    logfile = outdir / "nequip-train.log"
    log.info("running %s (log: %s)", " ".join(cmd), logfile)
    with open(logfile, "a") as fh:
        fh.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(cmd)}\n")
        fh.flush()
        proc = subprocess.run(cmd, cwd=outdir / "nequip", env=env, stdout=fh, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        tail = logfile.read_text().strip().splitlines()[-8:]
        raise RuntimeError(f"nequip-train exited with {proc.returncode}: {' | '.join(tail)}")


# ------------------------------------------------------------------------------ calculator


def calculator(model_path: str | Path, device: str | None = None) -> Any:
    """ASE calculator of a trained model (a model directory or its ``nequip.ckpt``): energy (eV),
    forces (eV/Å), stress (eV/Å³, ASE sign, tension positive). Cells with a full cell are
    evaluated as periodic in all three directions (with their vacuum), as the other families."""
    from nequip.integrations.ase import NequIPCalculator

    class PeriodicNequIPCalculator(NequIPCalculator):
        def calculate(self, atoms=None, properties=("energy",), system_changes=None):  # type: ignore[no-untyped-def]
            from ase.calculators.calculator import all_changes

            system_changes = all_changes if system_changes is None else system_changes
            atoms = self.atoms.copy() if atoms is None else atoms
            if not atoms.pbc.all() and atoms.cell.rank == 3:
                periodic = atoms.copy()
                periodic.pbc = True
                super().calculate(periodic, properties, system_changes)
                self.atoms = atoms.copy()
            else:
                super().calculate(atoms, properties, system_changes)

    return PeriodicNequIPCalculator._from_saved_model(str(model_file(model_path)), device=pick_device(device))


# ------------------------------------------------------------------------------ callbacks (nequip env)


_LAZY = {"OutOfPlaneStressToNaN": "out_of_plane_transform", "MetricsRecorder": "metrics_recorder"}
_BUILT: dict[str, type] = {}


def __getattr__(name: str) -> Any:
    """The torch/lightning classes named in the generated config, built on first access (so that
    importing this module stays cheap)."""
    if name in _LAZY:
        if name not in _BUILT:
            cls = getattr(_nequip_callbacks, _LAZY[name])()
            cls.__module__, cls.__qualname__ = __name__, name
            _BUILT[name] = cls
        return _BUILT[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
