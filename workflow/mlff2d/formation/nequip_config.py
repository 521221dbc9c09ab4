"""The nequip-train configuration (Hydra, written as YAML) of the energy-only NequIP models of
alloy formation energies (:mod:`mlff2d.formation.nequip_model`): data, trainer and training module."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: The targets are stored in meV per cell (eV × this factor): formation energies are a few meV/atom,
#: and in eV the per-atom MSE (~1e-6) leaves Adam's gradient steps near its epsilon, so the model
#: barely moves off the mean. Predictions are converted back to eV.
TARGET_SCALE = 1000.0
#: Where the run's divergence callback records why it stopped the training.
DIVERGED = "diverged.json"
#: The validation metric that picks the best checkpoint and stops early.
_METRIC = "val0_epoch/weighted_sum"


def hydra_config(data_dir: Path, run_dir: Path, symbols: list[str], test_sets: list[str], s: Mapping[str, Any]) -> dict[str, Any]:
    """The nequip-train config (plain data; written as YAML)."""
    return {
        "run": ["train", "test"],
        "data": _data_config(data_dir, symbols, test_sets, s),
        "trainer": _trainer_config(run_dir, symbols, s),
        "training_module": _training_module_config(symbols, s),
        "global_options": {"allow_tf32": False},
        # set here, not as a command-line override: Hydra's override grammar rejects paths with '~'
        "hydra": {"run": {"dir": str(run_dir)}},
    }


def _data_config(data_dir: Path, symbols: list[str], test_sets: list[str], s: Mapping[str, Any]) -> dict[str, Any]:
    """nequip's ``ASEDataModule`` over the exported extxyz files, with its loaders."""
    loader = {"_target_": "torch.utils.data.DataLoader", "batch_size": int(s["batch_size"]), "num_workers": 0}
    return {
        "_target_": "nequip.data.datamodule.ASEDataModule",
        "seed": int(s["seed"]),
        "train_file_path": str(data_dir / "train.extxyz"),
        "val_file_path": str(data_dir / "val.extxyz"),
        "test_file_path": [str(data_dir / f"{t}.extxyz") for t in test_sets],
        "transforms": [
            {"_target_": "nequip.data.transforms.ChemicalSpeciesToAtomTypeMapper", "model_type_names": symbols,
             "chemical_species_to_atom_type_map": {x: x for x in symbols}},
            {"_target_": "nequip.data.transforms.NeighborListTransform", "r_max": float(s["r_max"])},
        ],
        "train_dataloader": {**loader, "shuffle": True},
        "val_dataloader": loader,
        "test_dataloader": loader,
        "stats_manager": {"_target_": "nequip.data.EnergyOnlyDataStatisticsManager", "type_names": symbols,
                          "dataloader_kwargs": {"batch_size": 64}},
    }


def _trainer_config(run_dir: Path, symbols: list[str], s: Mapping[str, Any]) -> dict[str, Any]:
    """The Lightning trainer: devices, epochs, CSV logs, best/last checkpoints, early stopping,
    the test-set prediction writer, and mlff2d's divergence stop and progress lines."""
    metric = _METRIC
    return {
        "_target_": "lightning.Trainer",
        "accelerator": "gpu" if str(s["device"]).startswith("cuda") else "cpu",
        "devices": int(s["devices"]),
        **({"strategy": {"_target_": "nequip.train.SimpleDDPStrategy"}} if int(s["devices"]) > 1 else {}),
        "max_epochs": int(s["max_epochs"]),
        "check_val_every_n_epoch": 1,
        "log_every_n_steps": 1,
        "enable_progress_bar": False,
        "logger": {"_target_": "lightning.pytorch.loggers.CSVLogger", "save_dir": str(run_dir), "name": "csv",
                   "version": 0},
        "callbacks": [
            {"_target_": "lightning.pytorch.callbacks.ModelCheckpoint", "monitor": metric, "dirpath": str(run_dir),
             "filename": "best", "save_last": True},
            {"_target_": "lightning.pytorch.callbacks.EarlyStopping", "monitor": metric, "min_delta": 0.0,
             "patience": int(s["patience"])},
            {"_target_": "nequip.train.callbacks.TestTimeXYZFileWriter", "out_file": str(run_dir / "pred"),
             "output_fields_from_original_dataset": ["total_energy"], "chemical_symbols": symbols},
            {"_target_": "mlff2d.training.lightning_guard.DivergenceStop", "monitor": "val0_epoch/per_atom_energy_mae",
             "name": "energy_mae_meV_per_atom", "record": str(run_dir / DIVERGED), "factor": s["divergence_factor"],
             "scale": 1000.0 / TARGET_SCALE},
            {"_target_": "mlff2d.training.lightning_guard.EpochProgress", "monitor": "val0_epoch/per_atom_energy_mae",
             "name": "energy_mae_meV_per_atom", "scale": 1000.0 / TARGET_SCALE},
        ],
    }


def _training_module_config(symbols: list[str], s: Mapping[str, Any]) -> dict[str, Any]:
    """nequip's Lightning module: energy-only loss and metrics, Adam, and the NequIP model."""
    metrics = {"_target_": "nequip.train.EnergyOnlyMetrics",
               "coeffs": {"per_atom_energy_mae": 1.0, "per_atom_energy_rmse": None, "total_energy_mae": None,
                          "total_energy_rmse": None}}
    return {
        "_target_": "nequip.train.NequIPLightningModule",
        "loss": {"_target_": "nequip.train.EnergyOnlyLoss", "per_atom_energy": True},
        "val_metrics": metrics,
        "test_metrics": metrics,
        "optimizer": {"_target_": "torch.optim.Adam", "lr": float(s["lr"])},
        "model": {
            "_target_": "nequip.model.NequIPGNNModel",
            "seed": int(s["seed"]),
            "model_dtype": s["model_dtype"],
            "type_names": symbols,
            "r_max": float(s["r_max"]),
            "num_layers": int(s["num_layers"]),
            "l_max": int(s["l_max"]),
            "num_features": int(s["num_features"]),
            "radial_mlp_depth": int(s["radial_mlp_depth"]),
            "radial_mlp_width": int(s["radial_mlp_width"]),
            "num_bessels": int(s["num_bessels"]),
            "avg_num_neighbors": "${training_data_stats:num_neighbors_mean}",
            "per_type_energy_shifts": "${training_data_stats:per_atom_energy_mean}",
            "per_type_energy_scales": "${training_data_stats:per_atom_energy_std}",
            "per_type_energy_scales_trainable": False,
            "per_type_energy_shifts_trainable": False,
            "do_derivatives": False,
        },
    }
