"""The Lightning pieces of :mod:`mlff2d.families.m3gnet` training: DDP ranks, accelerator and
strategy, and the callback that records each epoch's validation metrics and checkpoint."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlff2d.training import checkpoints

from mlff2d.training import divergence
from mlff2d.families import IN_PLANE_STRESS_3X3, METRIC_COLUMNS, STRESS_UNIT, epoch_line, eta_seconds
from mlff2d.families._m3gnet_data import rank_and_world

logger = logging.getLogger("mlff2d.families.m3gnet")


#: In-plane Voigt components (xx, yy, xy, once each) as (row, column) of the 3×3 stress: the
#: definition every family's validation stress MAE uses (mlff2d.families.in_plane_stress_mae).
IN_PLANE_3X3 = IN_PLANE_STRESS_3X3


def worker_process() -> bool:
    """A DDP worker rank (> 0), started by Lightning before or within training."""
    from mlff2d.training.sweep import worker_rank

    return worker_rank() or rank_and_world()[0] > 0


def accelerator(device: str, n_devices: int = 1) -> tuple[str, Any]:
    """Lightning ``accelerator`` and ``devices`` for a torch device string and a device count."""
    if device.startswith("cuda"):
        index = device.partition(":")[2]
        if n_devices > 1:
            return "gpu", n_devices
        return "gpu", [int(index)] if index else 1
    if device == "mps":
        return "mps", 1
    return "cpu", n_devices


def strategy(n_devices: int) -> tuple[Any, list[Any]]:
    """Lightning ``strategy`` and ``plugins`` for ``n_devices`` devices on this node.

    More than one: DDP (NCCL on GPUs, gloo on CPUs) whose ranks Lightning starts itself by
    re-running this process's command line with ``LOCAL_RANK`` set. ``LightningEnvironment``
    keeps Lightning from taking the ranks from SLURM: a SLURM job step of this workflow is one
    task with N GPUs (``srun -n1``), not N tasks.
    """
    if n_devices <= 1:
        return "auto", []
    from lightning.pytorch.plugins.environments import LightningEnvironment

    return "ddp", [LightningEnvironment()]


def _metrics_from_rows(path: Path, keep_through_epoch: int) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    rows = pd.read_csv(path)
    return rows[rows["epoch"] <= keep_through_epoch].to_dict("records")


def _write_csv_atomic(rows: list[dict[str, Any]], path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    pd.DataFrame(rows, columns=METRIC_COLUMNS).to_csv(tmp, index=False)
    os.replace(tmp, path)


def epoch_recorder(outdir: Path, divergence_factor: float | None = None) -> Any:
    """Lightning callback: per-epoch validation metrics to ``metrics.csv`` and ``last.ckpt``
    (the one before kept as ``last.previous.ckpt``); a diverged epoch is recorded in
    ``metrics.csv``, gets no checkpoint, and stops the training with :class:`mlff2d.training.divergence.TrainingDiverged`."""
    import lightning as pl

    class EpochRecorder(pl.Callback):
        def __init__(self) -> None:
            self.metrics_path = outdir / "metrics.csv"
            self.ckpt_path = outdir / "checkpoints" / "last.ckpt"
            # a copy beside the checkpoint: Snakemake deletes metrics.csv (a declared output)
            # before it reruns an interrupted job, the checkpoint directory it leaves alone
            self.history_path = outdir / "checkpoints" / "metrics.csv"
            self.rows: list[dict[str, Any]] = []
            self.first_epoch: int | None = None
            self.guard = divergence.DivergenceGuard(divergence_factor)

        def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            # after a resume, current_epoch is the number of epochs the checkpoint covers
            self.first_epoch = trainer.current_epoch
            self.run_start = time.perf_counter()
            source = self.history_path if self.history_path.exists() else self.metrics_path
            self.rows = _metrics_from_rows(source, trainer.current_epoch)
            for row in self.rows:  # the resumed epochs' best values
                self.guard.reason(int(row["epoch"]), {c: row[c] for c in divergence.WATCHED})

        def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            self.t0 = time.perf_counter()
            self.sums = np.zeros(3)  # |dE|/N (eV/atom), |dF| (eV/Å), |dσ| (GPa) over the val set
            self.counts = np.zeros(3)

        def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:  # type: ignore[no-untyped-def]
            _add_validation_errors(outputs, self.sums, self.counts)

        def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            if not trainer.is_global_zero:  # DDP: rank 0 decides and writes; every rank joins its barriers
                reason = trainer.strategy.broadcast(None, src=0)
                if reason:
                    raise divergence.TrainingDiverged(reason)
                trainer.save_checkpoint(self.ckpt_path.with_name(".last.ckpt.tmp"), weights_only=False)
                return
            mae = np.divide(self.sums, self.counts, out=np.full(3, np.nan), where=self.counts > 0)
            epoch = trainer.current_epoch + 1
            self.rows = [r for r in self.rows if r["epoch"] < epoch]
            self.rows.append(_metrics_row(epoch, mae, time.perf_counter() - self.t0))
            self.ckpt_path.parent.mkdir(parents=True, exist_ok=True)
            _write_csv_atomic(self.rows, self.history_path)
            _write_csv_atomic(self.rows, self.metrics_path)
            done = epoch - (self.first_epoch or 0)
            eta = eta_seconds(time.perf_counter() - self.run_start, done, trainer.max_epochs - epoch)
            logger.info("%s", epoch_line(epoch, trainer.max_epochs, self.rows[-1], self.rows[-1]["time_s"], eta))
            reason = trainer.strategy.broadcast(self.guard.reason(epoch, {c: self.rows[-1][c] for c in divergence.WATCHED}), src=0)
            if reason:  # every rank stops (a DDP worker would wait in the checkpoint's barrier)
                raise divergence.TrainingDiverged(reason)
            checkpoints.save_keeping_previous(lambda tmp: trainer.save_checkpoint(tmp, weights_only=False), self.ckpt_path)

    return EpochRecorder()


def _add_validation_errors(outputs: Any, sums: np.ndarray, counts: np.ndarray) -> None:
    """Add one validation batch's absolute errors to ``sums`` and their number to ``counts``:
    |dE|/N (eV/atom), |dF| (eV/Å) and the in-plane |dσ| (GPa). Labels without a value (NaN) are
    left out; a NaN prediction is kept, so it shows."""
    import torch

    (e_pred, f_pred, s_pred), (e_true, f_true, s_true) = outputs["preds"][:3], outputs["labels"][:3]
    with torch.no_grad():
        n = outputs["num_atoms"].double()
        de = (e_pred.detach().double().reshape(-1) - e_true.double().reshape(-1)).abs() / n
        df = (f_pred.detach().double() - f_true.double()).abs()
        s_p = s_pred.detach().double().reshape(-1, 3, 3)
        s_t = s_true.double().reshape(-1, 3, 3)
        ds = torch.stack([(s_p[:, i, j] - s_t[:, i, j]) for i, j in IN_PLANE_3X3], dim=1).abs()
        s_l = torch.stack([s_t[:, i, j] for i, j in IN_PLANE_3X3], dim=1)
        for k, (d, label) in enumerate(((de, e_true.reshape(-1)), (df, f_true), (ds, s_l))):
            d = d[~torch.isnan(label.double())]
            sums[k] += float(d.sum())
            counts[k] += d.numel()


def _metrics_row(epoch: int, mae: np.ndarray, seconds: float) -> dict[str, Any]:
    """A ``metrics.csv`` row from the validation MAEs (eV/atom, eV/Å, GPa) of one epoch."""
    return {
        "epoch": epoch,
        "energy_mae_meV_per_atom": 1000 * mae[0],
        "forces_mae_meV_per_A": 1000 * mae[1],
        "stress_mae": mae[2],
        "stress_unit": STRESS_UNIT,
        "time_s": seconds,
    }
