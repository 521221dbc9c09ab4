"""The divergence test (:mod:`mlff2d.divergence`) as a Lightning callback, for trainings run by a
library's own trainer from a config (NequIP's ``nequip-train``): at the end of each validation
epoch the monitored metric is tested; a divergence stops the trainer and is written to
``record`` (JSON ``{"reason": ...}``) for the caller to report."""

from __future__ import annotations

import json
from pathlib import Path

import lightning.pytorch as pl

from mlff2d.divergence import DivergenceGuard


class DivergenceStop(pl.Callback):
    """Stop the training when ``monitor`` × ``scale`` (reported as ``name``) diverges."""

    def __init__(self, monitor: str, name: str, record: str, factor: float | None = None, scale: float = 1.0) -> None:
        self.monitor, self.name, self.record, self.scale = monitor, name, Path(record), float(scale)
        self.guard = DivergenceGuard(factor, growth=(name,))

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        value = trainer.callback_metrics.get(self.monitor)
        if trainer.sanity_checking or value is None:
            return
        reason = self.guard.reason(trainer.current_epoch + 1, {self.name: float(value) * self.scale})
        if reason:
            self.record.write_text(json.dumps({"reason": reason}) + "\n")
            trainer.should_stop = True
