"""The torch/Lightning classes of the NequIP family, built in the nequip environment.

:mod:`mlff2d.families.nequip` builds them on first access (its ``__getattr__``), under its own
name, where the generated config names them: the data transform ``OutOfPlaneStressToNaN``
and the Lightning callback ``MetricsRecorder`` (metrics.csv, the last checkpoint and the
divergence test; see :mod:`mlff2d.families.nequip`).
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mlff2d.training import checkpoints

from mlff2d.training import divergence
from mlff2d.families import METRIC_COLUMNS, STRESS_UNIT, epoch_line, eta_seconds, in_plane_stress_mae
from mlff2d.io.units import EV_PER_A3_IN_GPA

if TYPE_CHECKING:
    import lightning.pytorch as pl

log = logging.getLogger("mlff2d")

#: Row-major 3×3 indices of the out-of-plane stress components (xz, yz, zx, zy, zz).
OUT_OF_PLANE_ROWS_COLS = ((0, 2), (1, 2), (2, 0), (2, 1), (2, 2))
DIVERGED = "diverged.json"


def out_of_plane_transform() -> type:
    """The class ``OutOfPlaneStressToNaN`` (a ``torch.nn.Module``)."""
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


class _RecorderMethods:
    """The methods of ``MetricsRecorder`` (:func:`metrics_recorder`), mixed in before
    Lightning's ``Callback``, which is imported only when the class is built."""

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
        import torch

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


def metrics_recorder() -> type:
    """The class ``MetricsRecorder`` (a Lightning ``Callback``)."""
    import lightning.pytorch as pl

    class MetricsRecorder(_RecorderMethods, pl.Callback):
        """Per-epoch validation metrics (metrics.csv), the last checkpoint and the divergence test."""

    return MetricsRecorder
