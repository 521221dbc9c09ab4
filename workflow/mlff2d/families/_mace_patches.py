"""The pieces of MACE (mace-torch 0.3.16) swapped for one training run of :mod:`mlff2d.families.mace`
(see its docstring): the in-plane stress loss and metric, the kill-safe checkpoint writer, the
validation log with the divergence test, the resume offset, and freezing blocks for fine-tuning."""

from __future__ import annotations

import contextlib
import functools
import importlib
import logging
import math
import time
from collections.abc import Iterator
from typing import Any

from mlff2d.training import divergence
from mlff2d.families import epoch_line, eta_seconds, in_plane_stress_mae
from mlff2d.io.units import EV_PER_A3_IN_GPA

#: In-plane (x, y) block of a 3×3 stress.
IN_PLANE = ((0, 0), (0, 1), (1, 0), (1, 1))


def in_plane_stress_loss_class() -> type:
    """MACE's ``WeightedEnergyForcesStressLoss`` with the stress term over xx, xy, yx, yy only."""
    import torch
    from mace.modules import loss as mace_loss

    class InPlaneStressLoss(mace_loss.WeightedEnergyForcesStressLoss):
        """Energy + forces + stress loss whose stress error ignores the out-of-plane (z) components."""

        def __init__(self, energy_weight: float = 1.0, forces_weight: float = 1.0, stress_weight: float = 1.0) -> None:
            super().__init__(energy_weight=energy_weight, forces_weight=forces_weight, stress_weight=stress_weight)
            mask = torch.zeros(3, 3, dtype=torch.bool)
            for i, j in IN_PLANE:
                mask[i, j] = True
            self.register_buffer("stress_mask", mask, persistent=False)

        def forward(self, ref: Any, pred: Any, ddp: bool | None = None) -> torch.Tensor:
            loss_energy = mace_loss.weighted_mean_squared_error_energy(ref, pred, ddp)
            loss_forces = mace_loss.mean_squared_error_forces(ref, pred, ddp)
            weight = (ref.weight * ref.stress_weight).view(-1, 1)
            # Select, do not multiply: garbage (even NaN) out-of-plane labels never enter.
            delta = ref["stress"][:, self.stress_mask] - pred["stress"][:, self.stress_mask]
            loss_stress = mace_loss.reduce_loss(weight * torch.square(delta), ddp)
            return self.energy_weight * loss_energy + self.forces_weight * loss_forces + self.stress_weight * loss_stress

    return InPlaneStressLoss


def in_plane_metrics_class(base: type) -> type:
    """MACE's per-epoch metric (``MACELoss``) plus the in-plane stress MAE (GPa) and a wall time."""

    class InPlaneMACELoss(base):  # type: ignore[misc, valid-type]
        def compute(self) -> tuple[float, dict[str, Any]]:
            loss, aux = super().compute()
            if self.stress_computed:
                # reference - prediction in eV/Å³; MACE keeps it flat (9 row-major values per
                # structure whose stress weight is non-zero)
                aux["mae_stress_in_plane_GPa"] = in_plane_stress_mae(self.convert(self.delta_stress), EV_PER_A3_IN_GPA)
            aux["wall_time"] = time.time()
            return loss, aux

    return InPlaneMACELoss


def atomic_checkpoint_save(self: Any, checkpoint: Any, epochs: int, keep_last: bool = False) -> None:
    """``mace.tools.checkpoint.CheckpointIO.save``, made safe against a kill: the checkpoint is
    written to a temporary file and renamed into place, and the one before it is kept until the
    next one is complete (MACE deletes the old checkpoint before writing the new one)."""
    import os

    import torch

    path = os.path.join(self.directory, self._get_checkpoint_filename(epochs, self.swa_start))
    os.makedirs(self.directory, exist_ok=True)
    torch.save(obj=checkpoint, f=path + ".tmp")
    os.replace(path + ".tmp", path)
    # MACE deletes old_path here unless keep_last; that deletion waits for the next save
    pending = getattr(self, "mlff2d_pending", None)
    if not self.keep and pending not in (None, path) and os.path.exists(pending):
        os.remove(pending)
    self.mlff2d_pending = None if keep_last else self.old_path
    self.old_path = path


def guarded_valid_err_log(original: Any, guard: divergence.DivergenceGuard, epochs: int) -> Any:
    """MACE's per-epoch validation log: the metrics go to MACE's results file as MACE writes them,
    the log line is :func:`mlff2d.families.epoch_line`'s (1-based epochs, as in metrics.csv,
    with the ETA) instead of MACE's own, and the divergence test of the epoch follows."""
    started, last, done = time.perf_counter(), [time.perf_counter()], [0]

    @functools.wraps(original)
    def valid_err_log(valid_loss: Any, eval_metrics: dict[str, Any], logger: Any, log_errors: Any, epoch: int | None = None,
                      valid_loader_name: str = "Default") -> None:
        eval_metrics.update(mode="eval", epoch=epoch, head=valid_loader_name)
        logger.log(eval_metrics)  # MACE's results file, read by read_metrics
        now = time.perf_counter()
        if epoch is None:  # the evaluation before any training
            last[0] = now
            return
        row = {"energy_mae_meV_per_atom": 1000.0 * float(eval_metrics.get("mae_e_per_atom", math.nan)),
               "forces_mae_meV_per_A": 1000.0 * float(eval_metrics.get("mae_f", math.nan))}
        if "mae_stress_in_plane_GPa" in eval_metrics:
            row["stress_mae"] = float(eval_metrics["mae_stress_in_plane_GPa"])
        done[0] += 1
        eta = eta_seconds(now - started, done[0], epochs - int(epoch) - 1)
        logging.info(epoch_line(int(epoch) + 1, epochs, row, now - last[0], eta) + f", loss {float(valid_loss):.4g}")
        last[0] = now
        guard.check(int(epoch) + 1, {k: row[k] for k in divergence.WATCHED})

    return valid_err_log


@contextlib.contextmanager
def patched_mace(expect_restart: bool, guard: divergence.DivergenceGuard | None = None, epochs: int = 0) -> Iterator[None]:
    """Swap MACE's stress loss, validation metric, validation log (divergence test), checkpoint
    writer and epoch loop (see the module docstring); restore them, the root logger and torch's
    default dtype afterwards."""
    import mace.tools
    import torch
    from mace.tools import checkpoint, scripts_utils

    train_module = importlib.import_module("mace.tools.train")
    original_load_latest = checkpoint.CheckpointHandler.load_latest
    original_train = mace.tools.train
    load_latest, train_loop = _resume_offset(expect_restart, original_load_latest, original_train)

    root = logging.getLogger()
    saved_logging = (list(root.handlers), list(root.filters), root.level)
    saved_dtype = torch.get_default_dtype()
    modules = scripts_utils.modules  # what get_loss_fn/get_swa resolve the loss class in
    saved = [
        (modules, "WeightedEnergyForcesStressLoss", modules.WeightedEnergyForcesStressLoss),
        (train_module, "MACELoss", train_module.MACELoss),
        (checkpoint.CheckpointHandler, "load_latest", original_load_latest),
        (checkpoint.CheckpointIO, "save", checkpoint.CheckpointIO.save),
        (train_module, "valid_err_log", train_module.valid_err_log),
        (mace.tools, "train", original_train),
    ]
    try:
        modules.WeightedEnergyForcesStressLoss = in_plane_stress_loss_class()
        train_module.MACELoss = in_plane_metrics_class(train_module.MACELoss)
        checkpoint.CheckpointHandler.load_latest = load_latest
        checkpoint.CheckpointIO.save = atomic_checkpoint_save
        train_module.valid_err_log = guarded_valid_err_log(train_module.valid_err_log, guard or divergence.DivergenceGuard(), epochs)
        for handler in saved_logging[0]:  # MACE adds its own console handler: one copy of each line
            root.removeHandler(handler)
        mace.tools.train = train_loop
        yield
    finally:
        for owner, name, value in saved:
            setattr(owner, name, value)
        _restore_logging(root, saved_logging)
        torch.set_default_dtype(saved_dtype)


def _resume_offset(expect_restart: bool, original_load_latest: Any, original_train: Any) -> tuple[Any, Any]:
    """Wrappers of MACE's ``CheckpointHandler.load_latest`` (records the epoch of a loaded
    checkpoint) and ``mace.tools.train`` (starts after that epoch; refuses to start afresh when
    a checkpoint was expected but not loaded)."""
    loaded: list[int] = []

    @functools.wraps(original_load_latest)
    def load_latest(self: Any, *args: Any, **kwargs: Any) -> int | None:
        epochs = original_load_latest(self, *args, **kwargs)
        if epochs is not None:
            loaded.append(epochs)
        return epochs

    @functools.wraps(original_train)
    def train_loop(*args: Any, **kwargs: Any) -> Any:
        if expect_restart and not loaded:  # MACE swallows load errors and would start afresh
            raise RuntimeError(
                "a checkpoint exists but MACE could not load it (changed settings?); "
                "remove the output directory's checkpoints to train from scratch"
            )
        if loaded:  # a checkpoint saved after epoch e was loaded: go on with epoch e + 1
            kwargs["start_epoch"] = loaded[-1] + 1
            logging.info(f"mlff2d: resuming after epoch {loaded[-1] + 1} (1-based; MACE checkpoint epoch {loaded[-1]})")
        return original_train(*args, **kwargs)

    return load_latest, train_loop


def _restore_logging(root: logging.Logger, saved: tuple[list[Any], list[Any], int]) -> None:
    """Put back the root logger's handlers, filters and level (closing the handlers MACE added)."""
    for handler in root.handlers[:]:
        if handler not in saved[0]:
            root.removeHandler(handler)
            handler.close()
    for handler in saved[0]:
        if handler not in root.handlers:
            root.addHandler(handler)
    root.filters[:] = saved[1]
    root.setLevel(saved[2])


@contextlib.contextmanager
def frozen_blocks(n_blocks: int) -> Iterator[None]:
    """Freeze the node embedding and the first ``n_blocks`` interaction and product blocks of
    the model MACE builds (for fine-tuning): MACE's ``get_params_options``, which run_train
    calls with the model just before it builds the optimizer, is wrapped to switch their
    ``requires_grad`` off; frozen weights get no gradient, so the optimizer leaves them as
    they are. Restored afterwards."""
    if n_blocks <= 0:
        yield
        return
    from mace.cli import run_train

    original = run_train.get_params_options

    @functools.wraps(original)
    def get_params_options(args: Any, model: Any) -> Any:
        if n_blocks > len(model.interactions):
            raise ValueError(f"freeze_blocks={n_blocks}, but the initial model has {len(model.interactions)} interaction blocks")
        frozen = [model.node_embedding, *model.interactions[:n_blocks], *model.products[:n_blocks]]
        for module in frozen:
            module.requires_grad_(False)
        logging.info(f"mlff2d: froze the node embedding and the first {n_blocks} interaction block(s)")
        return original(args, model)

    run_train.get_params_options = get_params_options
    try:
        yield
    finally:
        run_train.get_params_options = original
