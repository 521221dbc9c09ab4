"""NequIP (nequip 0.19.1) as a universal force-field family: energy, forces and in-plane stress.

Runs in the ``nequip`` environment (NequIP 0.19, e3nn 0.6: it cannot share an interpreter with
mace-torch). This module imports only the standard library, NumPy, pandas, ASE and cheap
mlff2d modules at top level, so the main environment reads :data:`SPEC` and :data:`DEFAULTS`
without nequip; torch, lightning and nequip are imported inside the functions (and by the
Lightning callback classes, built on first access through the module's ``__getattr__``).

Training (:func:`train`) writes a Hydra config (``outdir/config.yaml``) and runs
``nequip-train`` on it in a subprocess (as :mod:`mlff2d.nequip_model` does for the energy-only
formation models; its output goes to ``outdir/nequip-train.log``):
``NequIPLightningModule``, a ``NequIPGNNModel`` with forces and stress by autograd
(``do_derivatives``), ``EnergyForceStressLoss(per_atom_energy=True)`` (MSE of the per-atom
energy, forces and stress, weights ``energy_weight``, ``forces_weight``, ``stress_weight``),
``CommonDataStatisticsManager`` (per-atom energy mean as shift, force RMS as scale, mean
neighbour count), Adam.

* **Data.** The ``nequip`` export (:mod:`mlff2d.export`): ``train.extxyz`` and ``val.extxyz``
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
  ``last.previous.ckpt``, :mod:`mlff2d.checkpoints`), and the rows so far to
  ``checkpoints/metrics.csv``. A rerun on the same ``outdir`` resumes with nequip-train's
  ``ckpt_path`` from the newest readable one; ``checkpoints/best.ckpt`` (Lightning's
  ``ModelCheckpoint``) is the best validation epoch by ``val0_epoch/weighted_sum``
  (per-atom energy MAE + force MAE, eV units).
* **Divergence.** The recorder runs :class:`mlff2d.divergence.DivergenceGuard` on each epoch's
  row; a divergence gets no checkpoint, is written to ``outdir/diverged.json`` and stops the
  trainer; :func:`train` then raises :class:`~mlff2d.divergence.TrainingDiverged` (as every
  family does for :func:`mlff2d.sweep.train_point`).
* **Model.** ``outdir/model/`` holds ``nequip.ckpt`` (the best-validation checkpoint, which
  NequIP's ``load_saved_model`` and ``NequIPCalculator`` read) and ``meta.json`` (type names,
  r_max, the epoch of the checkpoint, settings, init model).
* **Transfer** (``init_model``, an ``outdir/model`` of this family): the model is built by
  ``nequip.model.ModelFromCheckpoint`` from its checkpoint (copied to
  ``outdir/model/init.ckpt``, which the new checkpoint then references: keep it there),
  architecture, type names, cutoff and per-type energy shifts/scales included; the data's
  elements must be among its type names. The model-size settings in ``params`` are ignored.
  The per-element energies are not refitted and no blocks are frozen (no such settings).
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
import numpy as np
import pandas as pd

from mlff2d import checkpoints, divergence
from mlff2d.families import METRIC_COLUMNS, STRESS_UNIT, FamilySpec, epoch_line, eta_seconds, in_plane_stress_mae, pick_device
from mlff2d.units import EV_PER_A3_IN_GPA

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
    **divergence.DEFAULTS,
}

#: Row-major 3×3 indices of the out-of-plane stress components (xz, yz, zx, zy, zz).
OUT_OF_PLANE_ROWS_COLS = ((0, 2), (1, 2), (2, 0), (2, 1), (2, 2))
DIVERGED = "diverged.json"
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


def hydra_config(data_dir: Path, outdir: Path, symbols: list[str], p: Mapping[str, Any], device: str,
                 init_ckpt: Path | None = None, resume_ckpt: Path | None = None) -> dict[str, Any]:
    """The nequip-train config (plain data, written as YAML)."""
    loader = {"_target_": "torch.utils.data.DataLoader", "batch_size": int(p["batch_size"]),
              "num_workers": int(p["num_workers"])}
    ignore_nan = {"stress": True}
    coeffs = {"total_energy": float(p["energy_weight"]), "forces": float(p["forces_weight"]),
              "stress": float(p["stress_weight"])}
    metrics = {"_target_": "nequip.train.EnergyForceStressMetrics", "ignore_nan": ignore_nan,
               "coeffs": {"total_energy_rmse": None, "per_atom_energy_rmse": None, "forces_rmse": None, "stress_rmse": None,
                          "total_energy_mae": None, "per_atom_energy_mae": 1.0, "forces_mae": 1.0, "stress_mae": None}}
    if init_ckpt is not None:
        model: dict[str, Any] = {"_target_": "nequip.model.ModelFromCheckpoint", "checkpoint_path": str(init_ckpt)}
    else:
        model = {
            "_target_": "nequip.model.NequIPGNNModel",
            "seed": int(p["seed"]),
            "model_dtype": str(p["model_dtype"]),
            "type_names": symbols,
            "r_max": float(p["r_max"]),
            "num_layers": int(p["num_layers"]),
            "l_max": int(p["l_max"]),
            "num_features": int(p["num_features"]),
            "radial_mlp_depth": int(p["radial_mlp_depth"]),
            "radial_mlp_width": int(p["radial_mlp_width"]),
            "num_bessels": int(p["num_bessels"]),
            "avg_num_neighbors": "${training_data_stats:num_neighbors_mean}",
            "per_type_energy_shifts": "${training_data_stats:per_atom_energy_mean}",
            "per_type_energy_scales": "${training_data_stats:forces_rms}",
            "per_type_energy_scales_trainable": False,
            "per_type_energy_shifts_trainable": False,
        }
    accelerator = "gpu" if device.startswith("cuda") else "cpu"
    devices: Any = [int(device.partition(":")[2])] if device.startswith("cuda:") else 1
    config: dict[str, Any] = {
        "run": ["train"],
        "data": {
            "_target_": "nequip.data.datamodule.ASEDataModule",
            "seed": int(p["seed"]),
            "train_file_path": str(data_dir / "train.extxyz"),
            "val_file_path": str(data_dir / "val.extxyz"),
            "transforms": [
                {"_target_": "mlff2d.families.nequip.OutOfPlaneStressToNaN"},
                {"_target_": "nequip.data.transforms.ChemicalSpeciesToAtomTypeMapper", "model_type_names": symbols,
                 "chemical_species_to_atom_type_map": {x: x for x in symbols}},
                {"_target_": "nequip.data.transforms.NeighborListTransform", "r_max": float(p["r_max"])},
            ],
            "train_dataloader": {**loader, "shuffle": True},
            "val_dataloader": loader,
            "stats_manager": {"_target_": "nequip.data.CommonDataStatisticsManager", "type_names": symbols,
                              "dataloader_kwargs": {"batch_size": 64}},
        },
        "trainer": {
            "_target_": "lightning.Trainer",
            "accelerator": accelerator,
            "devices": devices,
            "max_epochs": int(p["epochs"]),
            "check_val_every_n_epoch": 1,
            "num_sanity_val_steps": 0,
            "log_every_n_steps": 1,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "logger": {"_target_": "lightning.pytorch.loggers.CSVLogger", "save_dir": str(outdir), "name": "logs"},
            "callbacks": [
                {"_target_": "lightning.pytorch.callbacks.ModelCheckpoint", "monitor": "val0_epoch/weighted_sum",
                 "dirpath": str(outdir / "checkpoints"), "filename": "best", "save_last": False,
                 "enable_version_counter": False},
                {"_target_": "mlff2d.families.nequip.MetricsRecorder", "outdir": str(outdir),
                 "divergence_factor": p["divergence_factor"]},
            ],
        },
        "training_module": {
            "_target_": "nequip.train.NequIPLightningModule",
            "loss": {"_target_": "nequip.train.EnergyForceStressLoss", "per_atom_energy": True, "coeffs": coeffs,
                     "ignore_nan": ignore_nan},
            "val_metrics": metrics,
            "optimizer": {"_target_": "torch.optim.Adam", "lr": float(p["lr"])},
            "model": model,
        },
        "global_options": {"allow_tf32": False, "seed": int(p["seed"])},
        # set here, not as a command-line override: Hydra's override grammar rejects paths with '~'
        "hydra": {"run": {"dir": str(outdir / "nequip")}},
    }
    if resume_ckpt is not None:
        config["ckpt_path"] = str(resume_ckpt)
    return config


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
    device = pick_device(device) if device else _default_device()

    last = outdir / "checkpoints" / "last.ckpt"
    ckpt, notes = checkpoints.first_readable([last, checkpoints.previous_path(last)])
    checkpoints.record_resume(outdir, ckpt, notes)
    (outdir / DIVERGED).unlink(missing_ok=True)
    config = hydra_config(data_dir, outdir, symbols, p, device, init_ckpt, ckpt)
    (outdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    try:
        _nequip_train(outdir)
    finally:  # also for a diverged or failed run: metrics.csv shows its epochs
        history = outdir / "checkpoints" / "metrics.csv"
        if history.exists():
            shutil.copyfile(history, outdir / "metrics.csv")
        elif not (outdir / "metrics.csv").exists():
            pd.DataFrame(columns=METRIC_COLUMNS).to_csv(outdir / "metrics.csv", index=False)
    if (outdir / DIVERGED).exists():
        raise divergence.TrainingDiverged(json.loads((outdir / DIVERGED).read_text())["reason"])

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


def _out_of_plane_transform() -> type:
    import torch

    class OutOfPlaneStressToNaN(torch.nn.Module):
        """Data transform: the out-of-plane stress labels (xz, yz, zx, zy, zz) become NaN, so the
        loss and metrics (``ignore_nan``) leave them out."""

        def forward(self, data: dict[str, Any]) -> dict[str, Any]:
            if "stress" in data:
                stress = data["stress"].clone()
                view = stress.view(-1, 3, 3)
                for i, j in OUT_OF_PLANE_ROWS_COLS:
                    view[:, i, j] = float("nan")
                data["stress"] = stress
            return data

    return OutOfPlaneStressToNaN


def _metrics_recorder() -> type:
    import lightning.pytorch as pl
    import torch

    class MetricsRecorder(pl.Callback):
        """Per-epoch validation metrics (metrics.csv), the last checkpoint and the divergence test."""

        def __init__(self, outdir: str, divergence_factor: float | None = None) -> None:
            self.outdir = Path(outdir)
            self.metrics_path = self.outdir / "metrics.csv"
            self.history_path = self.outdir / "checkpoints" / "metrics.csv"
            self.ckpt_path = self.outdir / "checkpoints" / "last.ckpt"
            self.guard = divergence.DivergenceGuard(divergence_factor)
            self.rows: list[dict[str, Any]] = []
            self.first_epoch: int | None = None
            self._reset()

        def _reset(self) -> None:
            self.sums = np.zeros(2)
            self.counts = np.zeros(2)
            self.stress_deltas: list[np.ndarray] = []

        def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            self.first_epoch = trainer.current_epoch
            self.run_start = time.perf_counter()
            if self.history_path.exists():
                rows = pd.read_csv(self.history_path)
                self.rows = rows[rows["epoch"] <= trainer.current_epoch].to_dict("records")
            for row in self.rows:
                self.guard.reason(int(row["epoch"]), {c: row[c] for c in divergence.WATCHED})

        def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            self.t0 = time.perf_counter()

        def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            self._reset()

        def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:  # type: ignore[no-untyped-def]
            if trainer.sanity_checking:
                return
            out = outputs[f"val_{dataloader_idx}_output"]
            with torch.no_grad():
                n = batch["num_atoms"].double().reshape(-1)
                de = (out["total_energy"].detach().double().reshape(-1) - batch["total_energy"].double().reshape(-1)).abs() / n
                df = (out["forces"].detach().double() - batch["forces"].double()).abs()
                for k, d in enumerate((de, df)):
                    d = d[~torch.isnan(d)] if k == 1 else d  # a NaN energy prediction is kept, so it shows
                    self.sums[k] += float(d.sum())
                    self.counts[k] += d.numel()
                if "stress" in batch and "stress" in out:
                    ds = out["stress"].detach().double().reshape(-1, 3, 3) - batch["stress"].double().reshape(-1, 3, 3)
                    self.stress_deltas.append(ds.cpu().numpy())

        def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            mae = np.divide(self.sums, self.counts, out=np.full(2, np.nan), where=self.counts > 0)
            stress = (in_plane_stress_mae(np.concatenate(self.stress_deltas), EV_PER_A3_IN_GPA)
                      if self.stress_deltas else float("nan"))
            epoch = trainer.current_epoch + 1
            self.rows = [r for r in self.rows if r["epoch"] < epoch]
            row = {"epoch": epoch, "energy_mae_meV_per_atom": 1000 * mae[0], "forces_mae_meV_per_A": 1000 * mae[1],
                   "stress_mae": stress, "stress_unit": STRESS_UNIT, "time_s": time.perf_counter() - self.t0}
            self.rows.append(row)
            self.history_path.parent.mkdir(parents=True, exist_ok=True)
            for path in (self.history_path, self.metrics_path):
                tmp = path.with_name(f".{path.name}.tmp")
                pd.DataFrame(self.rows, columns=METRIC_COLUMNS).to_csv(tmp, index=False)
                os.replace(tmp, path)
            done = epoch - (self.first_epoch or 0)
            eta = eta_seconds(time.perf_counter() - self.run_start, done, int(trainer.max_epochs or epoch) - epoch)
            log.info("%s", epoch_line(epoch, int(trainer.max_epochs or epoch), row, row["time_s"], eta))
            reason = self.guard.reason(epoch, {c: row[c] for c in divergence.WATCHED})
            if reason:  # no checkpoint of a diverged epoch
                (self.outdir / DIVERGED).write_text(json.dumps({"reason": reason}) + "\n")
                log.error("%s", reason)
                trainer.should_stop = True
                return
            checkpoints.save_keeping_previous(lambda tmp: trainer.save_checkpoint(tmp, weights_only=False), self.ckpt_path)

    return MetricsRecorder


_LAZY = {"OutOfPlaneStressToNaN": _out_of_plane_transform, "MetricsRecorder": _metrics_recorder}
_BUILT: dict[str, type] = {}


def __getattr__(name: str) -> Any:
    """The torch/lightning classes named in the generated config, built on first access (so that
    importing this module stays cheap)."""
    if name in _LAZY:
        if name not in _BUILT:
            cls = _LAZY[name]()
            cls.__module__, cls.__qualname__ = __name__, name
            _BUILT[name] = cls
        return _BUILT[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
