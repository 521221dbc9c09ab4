"""The nequip-train (Hydra) config of the NequIP family (:mod:`mlff2d.families.nequip`).

Plain data, written as YAML. The data transform and the Lightning callback of this package are
named by their import paths in :mod:`mlff2d.families.nequip` (built there on first access).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: Import paths (in the nequip environment) of the package's transform and callback.
TRANSFORM_TARGET = "mlff2d.families.nequip.OutOfPlaneStressToNaN"
RECORDER_TARGET = "mlff2d.families.nequip.MetricsRecorder"


def _model(symbols: list[str], p: Mapping[str, Any], init_ckpt: Path | None) -> dict[str, Any]:
    """A new ``NequIPGNNModel``, or the model of ``init_ckpt`` (``ModelFromCheckpoint``)."""
    shifts = p.get("element_energy_shifts")
    if init_ckpt is not None:
        model = {"_target_": "nequip.model.ModelFromCheckpoint", "checkpoint_path": str(init_ckpt)}
        if shifts:  # the target's element energies (NequIP's fine-tuning recipe)
            model = {"_target_": "nequip.model.modify", "model": model,
                     "modifiers": [{"modifier": "modify_PerTypeScaleShift", "shifts": dict(shifts)}]}
        return model
    return {
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
        "per_type_energy_shifts": {s: float(shifts[s]) for s in symbols} if shifts else "${training_data_stats:per_atom_energy_mean}",
        "per_type_energy_scales": "${training_data_stats:forces_rms}",
        "per_type_energy_scales_trainable": False,
        "per_type_energy_shifts_trainable": False,
    }


def _data(data_dir: Path, symbols: list[str], p: Mapping[str, Any]) -> dict[str, Any]:
    """``ASEDataModule`` on ``train.extxyz`` and ``val.extxyz`` with the out-of-plane stress mask."""
    loader = {"_target_": "torch.utils.data.DataLoader", "batch_size": int(p["batch_size"]),
              "num_workers": int(p["num_workers"])}
    return {
        "_target_": "nequip.data.datamodule.ASEDataModule",
        "seed": int(p["seed"]),
        "train_file_path": str(data_dir / "train.extxyz"),
        "val_file_path": str(data_dir / "val.extxyz"),
        "transforms": [
            {"_target_": TRANSFORM_TARGET},
            {"_target_": "nequip.data.transforms.ChemicalSpeciesToAtomTypeMapper", "model_type_names": symbols,
             "chemical_species_to_atom_type_map": {x: x for x in symbols}},
            {"_target_": "nequip.data.transforms.NeighborListTransform", "r_max": float(p["r_max"])},
        ],
        "train_dataloader": {**loader, "shuffle": True},
        "val_dataloader": loader,
        "stats_manager": {"_target_": "nequip.data.CommonDataStatisticsManager", "type_names": symbols,
                          "dataloader_kwargs": {"batch_size": 64}},
    }


def _trainer(outdir: Path, p: Mapping[str, Any], device: str) -> dict[str, Any]:
    """``lightning.Trainer``: CSV logger, best-validation checkpoint and the metrics recorder."""
    accelerator = "gpu" if device.startswith("cuda") else "cpu"
    devices: Any = [int(device.partition(":")[2])] if device.startswith("cuda:") else 1
    return {
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
            {"_target_": RECORDER_TARGET, "outdir": str(outdir), "divergence_factor": p["divergence_factor"]},
        ],
    }


def _training_module(p: Mapping[str, Any], model: dict[str, Any]) -> dict[str, Any]:
    """``NequIPLightningModule``: per-atom energy, force and stress MSE loss, validation MAEs, Adam."""
    ignore_nan = {"stress": True}  # one object for both: the YAML shows them as one (an alias)
    coeffs = {"total_energy": float(p["energy_weight"]), "forces": float(p["forces_weight"]),
              "stress": float(p["stress_weight"])}
    metrics = {"_target_": "nequip.train.EnergyForceStressMetrics", "ignore_nan": ignore_nan,
               "coeffs": {"total_energy_rmse": None, "per_atom_energy_rmse": None, "forces_rmse": None, "stress_rmse": None,
                          "total_energy_mae": None, "per_atom_energy_mae": 1.0, "forces_mae": 1.0, "stress_mae": None}}
    return {
        "_target_": "nequip.train.NequIPLightningModule",
        "loss": {"_target_": "nequip.train.EnergyForceStressLoss", "per_atom_energy": True, "coeffs": coeffs,
                 "ignore_nan": ignore_nan},
        "val_metrics": metrics,
        "optimizer": {"_target_": "torch.optim.Adam", "lr": float(p["lr"])},
        "model": model,
    }


def hydra_config(data_dir: Path, outdir: Path, symbols: list[str], p: Mapping[str, Any], device: str,
                 init_ckpt: Path | None = None, resume_ckpt: Path | None = None) -> dict[str, Any]:
    """The nequip-train config (plain data, written as YAML)."""
    config: dict[str, Any] = {
        "run": ["train"],
        "data": _data(data_dir, symbols, p),
        "trainer": _trainer(outdir, p, device),
        "training_module": _training_module(p, _model(symbols, p, init_ckpt)),
        "global_options": {"allow_tf32": False, "seed": int(p["seed"])},
        # set here, not as a command-line override: Hydra's override grammar rejects paths with '~'
        "hydra": {"run": {"dir": str(outdir / "nequip")}},
    }
    if resume_ckpt is not None:
        config["ckpt_path"] = str(resume_ckpt)
    return config
