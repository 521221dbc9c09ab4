"""Lightning callbacks for trainings run by a library's own trainer from a config (NequIP's
``nequip-train``): :class:`DivergenceStop`, the divergence test (:mod:`mlff2d.training.divergence`) at the
end of each validation run (where EarlyStopping looks too; a divergence stops the trainer and is written to ``record``, JSON
``{"reason": ...}``, for the caller to report), and :class:`EpochProgress`, one progress line
per epoch as every family writes it (:func:`mlff2d.families.epoch_line`)."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import lightning.pytorch as pl

from mlff2d.training.divergence import DivergenceGuard
from mlff2d.families import epoch_line, eta_seconds

log = logging.getLogger("mlff2d")


class DivergenceStop(pl.Callback):
    """Stop the training when ``monitor`` × ``scale`` (reported as ``name``) diverges."""

    def __init__(self, monitor: str, name: str, record: str, factor: float | None = None, scale: float = 1.0) -> None:
        self.monitor, self.name, self.record, self.scale = monitor, name, Path(record), float(scale)
        self.guard = DivergenceGuard(factor, growth=(name,))

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        value = trainer.callback_metrics.get(self.monitor)
        if trainer.sanity_checking or value is None:
            return
        reason = self.guard.reason(trainer.current_epoch + 1, {self.name: float(value) * self.scale})
        if reason:
            self.record.write_text(json.dumps({"reason": reason}) + "\n")
            trainer.should_stop = True


class EpochProgress(pl.Callback):
    """Log ``epoch k/N`` with ``monitor`` × ``scale`` (reported as metrics.csv column ``name``),
    the epoch's time and the ETA, once per validation epoch."""

    def __init__(self, monitor: str, name: str, scale: float = 1.0) -> None:
        self.monitor, self.name, self.scale = monitor, name, float(scale)
        self.started = self.last = time.perf_counter()
        self.done = 0

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        value = trainer.callback_metrics.get(self.monitor)
        if trainer.sanity_checking or value is None:
            return
        now, epoch = time.perf_counter(), trainer.current_epoch + 1
        self.done += 1
        eta = eta_seconds(now - self.started, self.done, int(trainer.max_epochs or epoch) - epoch)
        log.info("%s", epoch_line(epoch, int(trainer.max_epochs or epoch), {self.name: float(value) * self.scale}, now - self.last, eta))
        self.last = now
