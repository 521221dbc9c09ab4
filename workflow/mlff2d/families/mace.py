"""MACE (mace-torch 0.3.16) as a model family: training, fine-tuning and the ASE calculator.

Training goes through MACE's own entry point, in-process: the arguments are parsed by MACE's
own parser (``mace.tools.build_default_arg_parser``) and handed to ``mace.cli.run_train.run``.
Four pieces of MACE are swapped for the duration of one :func:`train` call and restored after
it (no installed file is edited):

* **In-plane stress loss.** ``--loss stress`` builds ``modules.WeightedEnergyForcesStressLoss``
  (stage one) and again for stage two, both looked up at call time by
  ``mace.tools.scripts_utils`` in the ``mace.modules`` namespace. That name is patched to
  :func:`_in_plane_stress_loss_class`'s subclass, whose stress term is the mean squared error
  over the in-plane components xx, xy, yx, yy only (the mean over those 4, where MACE's
  averages 9): zz, xz, yz, zx, zy never reach the loss (selected out, not multiplied by zero, so
  even NaN labels there are harmless). This is the thesis's "remove any z-stress components
  from the loss".
* **In-plane stress metric.** MACE's logged ``mae_stress`` averages all 9 components. Its
  per-epoch validation metric object (``mace.tools.train.MACELoss``) is replaced by a subclass
  that adds ``mae_stress_in_plane_GPa`` (:func:`mlff2d.families.in_plane_stress_mae`: mean
  |Δσ| over xx, yy and xy, once each, converted from MACE's eV/Å³ to GPa: the definition and
  unit of every family's ``metrics.csv``) and ``wall_time`` (Unix time) to the metrics MACE
  writes to ``results/<tag>_train.txt``. (The loss still sums xx, xy, yx, yy: a weight, not a
  reported number.) So every ``metrics.csv`` value comes from
  MACE's own per-epoch evaluation of the validation set, with the same parameters (EMA ones if
  ``ema``) it used for its own numbers.
* **Resume offset.** ``--restart_latest`` loads ``<tag>_epoch-<e>.pt`` (saved *after* epoch
  ``e``) and then starts the loop at epoch ``e`` again, training that epoch twice. A rerun
  therefore starts at ``e + 1`` (``mace.tools.train`` is wrapped; the offset is applied only
  when a checkpoint was actually loaded).
* Logging handlers, the torch default dtype and ``mace.modules``' loss class are restored.

Files under ``outdir``: ``model/mace.model`` (the final model: the stage-two one when stage two
ran, else stage one; both are MACE's best-validation-loss checkpoint of that stage) and
``model/mace_compiled.model`` (TorchScript, when MACE could compile it), ``metrics.csv``,
``checkpoints/`` and MACE's own ``mace/{logs,results,models}``.

``metrics.csv`` (see :data:`mlff2d.families.METRIC_COLUMNS`): ``epoch`` counts completed
epochs (1-based; MACE's internal epoch + 1); validation energy MAE per atom (meV/atom), force MAE
(meV/Å), in-plane stress MAE (GPa, ``stress_unit`` ``GPa``; xx, yy, xy once each); ``time_s`` is the wall time
of that epoch alone (not cumulative): from the end of the previous validation (or of the
initial one after a (re)start) to the end of this epoch's validation; ``stress_mae`` is NaN with
``loss: weighted`` (no stress trained or evaluated). When a resumed run
re-trains an epoch (its checkpoint was older than its last epoch) the later row wins.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import itertools
import json
import logging
import math
import re
import shutil
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from mlff2d import checkpoints, divergence
from mlff2d.families import METRIC_COLUMNS, STRESS_UNIT, FamilySpec, epoch_line, eta_seconds, in_plane_stress_mae, pick_device
from mlff2d.units import EV_PER_A3_IN_GPA

#: Training settings and their defaults. MACE's own defaults unless the thesis says otherwise:
#: L = 2 (``max_L``), 192 channels, stage two ("SWA") from epoch 50 with energy weight 10 and
#: lr 1e-3 (thesis 4.2.2). The thesis does not state the epoch count; 200 is ours.
SPEC = FamilySpec(
    name="mace",
    label="MACE",
    export_format="mace",
    table="table_4_2",
    alloy_table="table_4_5",
    table_title="MACE relaxation MAE",
    thesis="Tables 4.5 (MACE per alloy, 90:5:5) and 4.6 (80:10:10), test set",
    description="MACE (mace-torch) sweep; the thesis grid is lr {0.01, 0.003} × bs {64, 128, 192}.",
    sweep_default={"grid": {"e_cut": [1000000.0], "lr": [0.01, 0.003], "batch_size": [64, 128, 192]}},
    alloy_default={"enabled": True, "e_cuts": [0.001, 1000000.0], "splits": None, "normal": {"lr": 0.003, "batch_size": 16},
                   "transfer": {"lr": 0.0001, "batch_size": 16},
                   "description": "MACE alloy models; the thesis trained bs 16 with lr 0.003 (normal) and 0.0001 (transfer) at cutoffs 0.001 and 1e6 on both splits."},
)

DEFAULTS: dict[str, Any] = {
    "epochs": 200,  # --max_num_epochs
    "lr": 0.01,
    "batch_size": 64,
    "valid_batch_size": 64,
    "r_max": 6.0,  # Å
    "max_L": 2,
    "num_channels": 192,
    "correlation": 3,
    "num_interactions": 2,
    "model": "MACE",  # MACE builds a ScaleShiftMACE with zero shift; "ScaleShiftMACE" also works
    "E0s": "average",  # least-squares per-element energies; fine-tuning: see refit_element_energies
    "loss": "stress",  # "stress" (energy, forces, in-plane stress) or "weighted" (no stress)
    "energy_weight": 1.0,
    "forces_weight": 100.0,
    "stress_weight": 1.0,
    "swa": True,  # MACE's "stage two": new loss weights and lr from start_swa on
    "start_swa": 50,  # epoch (0-based, MACE's); ignored when >= epochs
    "swa_lr": 1.0e-3,
    "swa_energy_weight": 10.0,
    "swa_forces_weight": 100.0,
    "swa_stress_weight": 10.0,
    "ema": False,
    "ema_decay": 0.99,
    "amsgrad": True,
    "weight_decay": 5.0e-7,
    "scheduler_patience": 50,
    "lr_factor": 0.8,
    "patience": 2048,  # early stop after this many epochs without improvement
    "clip_grad": 10.0,
    "seed": 123,
    "default_dtype": "float64",
    "keep_checkpoints": False,
    "num_workers": 0,
    "name": "mace",  # MACE's run name: the tag is <name>_run-<seed>
    # transfer learning (only with init_model): freeze the node embedding and the first N
    # interaction blocks (interaction + product) of the initial model; 0 trains every weight
    "freeze_blocks": 0,
    # transfer learning: E0s fitted on the target training set (E0s, "average": least squares) with
    # True, else the initial model's (MACE's E0s "foundation")
    "refit_element_energies": True,
    "extra_args": {},  # further mace_run_train flags, e.g. {"radial_MLP": "[64, 64, 64]"}
    **divergence.DEFAULTS,  # stop (and fail) when the validation errors diverge
}

#: MACE setting names for DEFAULTS keys that differ.
_FLAG_NAMES = {"epochs": "max_num_epochs"}
#: Keys handled by train() itself rather than passed as flags.
_NOT_FLAGS = {"swa", "start_swa", "extra_args", "loss", "freeze_blocks", "refit_element_energies", *divergence.DEFAULTS}
_LOSSES = ("stress", "weighted")
#: In-plane (x, y) block of a 3×3 stress.
IN_PLANE = ((0, 0), (0, 1), (1, 0), (1, 1))

def mace_settings(
    data_dir: Path, outdir: Path, params: Mapping[str, Any], init_model: Path | None, device: str, restart: bool
) -> dict[str, Any]:
    """MACE's settings (``mace_run_train`` option names) for one training."""
    p = {**DEFAULTS, **params}
    work = outdir / "mace"
    settings: dict[str, Any] = {
        "train_file": data_dir / "train.extxyz",
        "valid_file": data_dir / "val.extxyz",
        "energy_key": "REF_energy",
        "forces_key": "REF_forces",
        "stress_key": "REF_stress",
        "work_dir": work,
        "log_dir": work / "logs",
        "results_dir": work / "results",
        "model_dir": work / "models",
        "checkpoints_dir": outdir / "checkpoints",
        "device": device,
        "loss": p["loss"],
        "error_table": "PerAtomMAE",  # MACE's all-component stress MAE would only mislead
        "eval_interval": 1,
        "plot": False,
        "save_cpu": True,
        "restart_latest": restart,
    }
    for key, value in p.items():
        if key not in _NOT_FLAGS:
            settings[_FLAG_NAMES.get(key, key)] = value
    stage_two = bool(p["swa"]) and int(p["start_swa"]) < int(p["epochs"])
    settings["swa"] = stage_two
    settings["start_swa"] = int(p["start_swa"]) if stage_two else None
    if init_model is not None:
        refit = bool(p["refit_element_energies"]) and p["E0s"] != "foundation"
        settings.update(foundation_model=Path(init_model).resolve(), multiheads_finetuning=False,
                        E0s=p["E0s"] if refit else "foundation")
    settings.update(dict(p["extra_args"]))
    return settings


def mace_namespace(settings: Mapping[str, Any]) -> Any:
    """Parse ``settings`` with MACE's own argument parser.

    Booleans are set on the parsed namespace directly: MACE mixes ``store_true`` flags (some
    with default True, e.g. ``--amsgrad``, which the command line cannot switch off) and
    ``str2bool`` options. ``None`` keeps MACE's default.
    """
    from mace.tools import build_default_arg_parser

    parser = build_default_arg_parser()
    known = {a.dest for a in parser._actions}  # noqa: SLF001 (argparse has no public listing)
    unknown = sorted(k for k in settings if k not in known)
    if unknown:
        raise ValueError(f"unknown mace_run_train option(s) {unknown}")
    argv = [item for k, v in settings.items() if v is not None and not isinstance(v, bool) for item in (f"--{k}", str(v))]
    args = parser.parse_args(argv)
    for key, value in settings.items():
        if isinstance(value, bool):
            setattr(args, key, value)
    return args


def _in_plane_stress_loss_class() -> type:
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


def _in_plane_metrics_class(base: type) -> type:
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


def _atomic_checkpoint_save(self: Any, checkpoint: Any, epochs: int, keep_last: bool = False) -> None:
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


def _guarded_valid_err_log(original: Any, guard: divergence.DivergenceGuard, epochs: int) -> Any:
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
def _patched_mace(expect_restart: bool, guard: divergence.DivergenceGuard | None = None, epochs: int = 0) -> Iterator[None]:
    """Swap MACE's stress loss, validation metric, validation log (divergence test), checkpoint
    writer and epoch loop (see the module docstring); restore them, the root logger and torch's
    default dtype afterwards."""
    import mace.tools
    import torch
    from mace.tools import checkpoint, scripts_utils

    train_module = importlib.import_module("mace.tools.train")
    loaded: list[int] = []

    original_load_latest = checkpoint.CheckpointHandler.load_latest
    original_train = mace.tools.train

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
        modules.WeightedEnergyForcesStressLoss = _in_plane_stress_loss_class()
        train_module.MACELoss = _in_plane_metrics_class(train_module.MACELoss)
        checkpoint.CheckpointHandler.load_latest = load_latest
        checkpoint.CheckpointIO.save = _atomic_checkpoint_save
        train_module.valid_err_log = _guarded_valid_err_log(train_module.valid_err_log, guard or divergence.DivergenceGuard(), epochs)
        for handler in saved_logging[0]:  # MACE adds its own console handler: one copy of each line
            root.removeHandler(handler)
        mace.tools.train = train_loop
        yield
    finally:
        for owner, name, value in saved:
            setattr(owner, name, value)
        for handler in root.handlers[:]:
            if handler not in saved_logging[0]:
                root.removeHandler(handler)
                handler.close()
        for handler in saved_logging[0]:
            if handler not in root.handlers:
                root.addHandler(handler)
        root.filters[:] = saved_logging[1]
        root.setLevel(saved_logging[2])
        torch.set_default_dtype(saved_dtype)


@contextlib.contextmanager
def _frozen_blocks(n_blocks: int) -> Iterator[None]:
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


def count_frames(path: str | Path) -> int:
    """Number of frames in an (ext)xyz file, read by the atom-count lines only."""
    count = 0
    with open(path) as handle:
        for line in handle:
            if not line.strip():
                continue
            count += 1
            for _ in itertools.islice(handle, int(line) + 1):
                pass
    return count


def _resume_checkpoint(outdir: Path, tag: str) -> bool:
    """Whether MACE resumes: its newest checkpoint of ``tag`` that is readable; newer unreadable
    ones are set aside (see :mod:`mlff2d.checkpoints`), and with none left the run starts
    afresh (MACE's per-epoch results of the old run set aside too). Recorded in resume.json."""
    pattern = re.compile(rf"^{re.escape(tag)}_epoch-(\d+)(_swa)?\.pt$")
    folder = outdir / "checkpoints"
    found = [(int(m.group(1)), bool(m.group(2)), p) for p in (folder.iterdir() if folder.is_dir() else [])
             if (m := pattern.match(p.name))]
    ckpt, notes = checkpoints.first_readable([p for *_, p in sorted(found, reverse=True)])
    if ckpt is not None and ckpt.name.endswith("_swa.pt"):  # MACE reloads stage one's newest at the end too
        _, more = checkpoints.first_readable([p for _, swa, p in sorted(found, reverse=True) if not swa and p.exists()])
        notes += more
    results = outdir / "mace" / "results" / f"{tag}_train.txt"
    if ckpt is None and notes and results.exists():
        results.replace(results.with_name(results.name + ".before-fresh-start"))
    checkpoints.record_resume(outdir, ckpt, notes)
    return ckpt is not None


def read_metrics(results_file: str | Path, max_epochs: int | None = None) -> pd.DataFrame:
    """``metrics.csv`` rows from MACE's per-epoch JSON lines (``"mode": "eval"``); with
    ``max_epochs``, rows of later epochs (left by an earlier, longer run) are dropped."""
    rows: dict[int, list[Any]] = {}
    previous_time: float | None = None
    path = Path(results_file)
    lines = path.read_text().splitlines() if path.exists() else []
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # a line cut short (a kill, a full disk): the epochs before it count
            logging.getLogger(__name__).warning("%s: line %d is not JSON, skipped", path, number)
            continue
        if record.get("mode") != "eval":
            continue
        wall = record.get("wall_time")
        if record.get("epoch") is not None:
            epoch = int(record["epoch"]) + 1
            elapsed = wall - previous_time if wall is not None and previous_time is not None else math.nan
            rows[epoch] = [
                epoch,
                1000.0 * float(record["mae_e_per_atom"]),
                1000.0 * float(record["mae_f"]),
                float(record.get("mae_stress_in_plane_GPa", math.nan)),  # older runs' eV/Å³ key: NaN
                STRESS_UNIT,
                elapsed,
            ]
        previous_time = wall
    return pd.DataFrame([rows[e] for e in sorted(rows) if max_epochs is None or e <= max_epochs], columns=METRIC_COLUMNS)


def train(
    data_dir: str | Path,
    outdir: str | Path,
    params: Mapping[str, Any],
    init_model: str | Path | None = None,
    device: str | None = None,
    devices: int = 1,
) -> Path:
    """Train a MACE model on ``data_dir/{train,val}.extxyz``; returns ``outdir/model/mace.model``.

    Args:
        data_dir: Directory with the MACE export (:mod:`mlff2d.export`).
        outdir: Output directory; rerunning on the same one resumes from its last checkpoint
            (same ``name`` and ``seed``).
        params: Settings overriding :data:`DEFAULTS`.
        init_model: A ``.model`` trained by this family to fine-tune from (MACE's
            ``--foundation_model``): architecture, cutoff, scale/shift and weights come from
            it, and its elements must include the data's. The E0s are fitted on the training
            set (``E0s``, default ``average``) with ``refit_element_energies`` (the default),
            else taken from it (``--E0s foundation``).
        device: ``cpu``/``cuda``; default CUDA when available.
        devices: GPUs on this node; more than one runs MACE's distributed mode (DDP over NCCL)
            in ``devices`` processes started by ``torchrun`` (see :func:`distributed_command`).

    Raises:
        ValueError: an unknown setting or an unsupported loss.
        FileNotFoundError: missing data or ``init_model``.
    """
    unknown = sorted(set(params) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"unknown mace training setting(s) {unknown}; known: {sorted(DEFAULTS)}")
    p = {**DEFAULTS, **params}
    if p["loss"] not in _LOSSES:
        raise ValueError(f"mace loss must be one of {_LOSSES} (the in-plane stress mask covers 'stress' only), got {p['loss']!r}")
    data_dir, outdir = Path(data_dir).resolve(), Path(outdir).resolve()
    for split in ("train", "val"):
        if not (data_dir / f"{split}.extxyz").is_file():
            raise FileNotFoundError(data_dir / f"{split}.extxyz")
    n_train = count_frames(data_dir / "train.extxyz")
    if n_train < int(p["batch_size"]):  # MACE drops the last partial batch: nothing would train
        raise ValueError(f"fewer training structures ({n_train}) than batch_size ({p['batch_size']})")
    if init_model is not None and not Path(init_model).is_file():
        raise FileNotFoundError(init_model)
    outdir.mkdir(parents=True, exist_ok=True)
    tag = f"{p['name']}_run-{p['seed']}"
    restart = _resume_checkpoint(outdir, tag)
    model_dir = outdir / "mace" / "models"
    if model_dir.is_dir():  # MACE writes fresh ones at the end; never pick up stale ones
        shutil.rmtree(model_dir)

    settings = mace_settings(data_dir, outdir, p, Path(init_model) if init_model else None, pick_device(device), restart)
    freeze = int(p["freeze_blocks"]) if init_model is not None else 0
    results = outdir / "mace" / "results" / f"{tag}_train.txt"
    factor = p["divergence_factor"]
    try:
        if int(devices) > 1:
            _run_distributed(settings, restart, freeze, int(devices), outdir / "mace", factor)
        else:
            _run_mace(settings, restart, freeze, factor, read_metrics(results, int(p["epochs"])).to_dict("records"))
    finally:  # also for a diverged or failed run: metrics.csv shows its epochs
        read_metrics(results, int(p["epochs"])).to_csv(outdir / "metrics.csv", index=False)

    stage_two = model_dir / f"{p['name']}_stagetwo.model"
    final = stage_two if stage_two.is_file() else model_dir / f"{p['name']}.model"
    target = outdir / "model"
    target.mkdir(exist_ok=True)
    compiled = final.with_name(final.stem + "_compiled.model")
    (target / "mace_compiled.model").unlink(missing_ok=True)
    if compiled.is_file():
        shutil.copyfile(compiled, target / "mace_compiled.model")
    shutil.copyfile(final, target / "mace.model.tmp")
    (target / "mace.model.tmp").replace(target / "mace.model")
    return target / "mace.model"


def _run_mace(settings: Mapping[str, Any], restart: bool, freeze: int, divergence_factor: float | None = None,
              history: list[dict[str, Any]] | None = None) -> None:
    """MACE's ``run`` with this module's patches (one process, or one rank of a distributed run);
    ``history`` (metrics rows of the epochs a resumed run has done) seeds the divergence test."""
    from mace.cli.run_train import run

    guard = divergence.DivergenceGuard(divergence_factor)
    for row in history or []:
        guard.reason(int(row["epoch"]), {c: row[c] for c in divergence.WATCHED})
    args = mace_namespace(settings)
    with _patched_mace(expect_restart=restart, guard=guard, epochs=int(settings["max_num_epochs"])), _frozen_blocks(freeze):
        run(args)


def distributed_command(spec: str | Path, n_devices: int) -> list[str]:
    """The command that runs one MACE training on ``n_devices`` GPUs of this node.

    ``torchrun --standalone`` starts ``n_devices`` ranks of this module's worker entry, each with
    RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT set, which is what MACE's
    ``--distributed --launcher torchrun`` reads; every rank runs :func:`_run_mace` on the
    settings in ``spec`` (JSON) and MACE splits the data with ``DistributedSampler``. One SLURM
    task holds all the GPUs (the workflow's job step is ``srun -n1``), so MACE's own
    ``--launcher slurm``, which takes the ranks from ``SLURM_PROCID`` (one task per GPU), does
    not apply.

    Not run in the tests: MACE 0.3.16 initialises the process group only for CUDA (NCCL) or
    XPU and wraps the model in ``DistributedDataParallel(device_ids=[local_rank])``, which a CPU
    model rejects, so its distributed mode needs GPUs.
    """
    import sys

    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n_devices}",
            "-m", "mlff2d.families.mace", "--distributed-worker", str(spec)]


def distributed_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """``settings`` for a rank of MACE's distributed mode, as JSON-safe values."""
    out = {k: (str(v) if isinstance(v, Path) else v) for k, v in settings.items()}
    out.update(distributed=True, launcher="torchrun")
    return out


def _run_distributed(settings: Mapping[str, Any], restart: bool, freeze: int, n_devices: int, workdir: Path,
                     divergence_factor: float | None = None) -> None:
    import subprocess

    if not str(settings.get("device", "")).startswith("cuda"):
        raise ValueError(f"MACE's distributed mode needs CUDA devices; got device {settings.get('device')!r}")
    workdir.mkdir(parents=True, exist_ok=True)
    spec = workdir / "distributed.json"
    spec.write_text(json.dumps({"settings": distributed_settings(settings), "restart": restart, "freeze": freeze,
                                "divergence_factor": divergence_factor}, indent=1))
    logging.getLogger(__name__).info("MACE on %d GPUs: %s", n_devices, " ".join(distributed_command(spec, n_devices)))
    subprocess.run(distributed_command(spec, n_devices), check=True)


def _distributed_worker(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    _run_mace(spec["settings"], bool(spec["restart"]), int(spec["freeze"]), spec.get("divergence_factor"))


def calculator(model_path: str | Path, device: str | None = None, default_dtype: str = "float64") -> Any:
    """ASE calculator of a trained model: energy (eV), forces (eV/Å), stress (eV/Å³, ASE sign,
    tension positive)."""
    from mace.calculators import MACECalculator

    return MACECalculator(model_paths=str(model_path), device=pick_device(device), default_dtype=default_dtype)


def batch_evaluator(model_path: str | Path, device: str | None = None, default_dtype: str = "float64") -> Any:
    """Batched evaluation of a trained model: a callable ``list[Atoms] -> list[(energy eV,
    forces eV/Å, stress eV/Å³ Voigt, tension positive)]``, one model call per list.

    The model, element table, cutoff, head and dtype come from the ASE calculator
    (:func:`calculator`); the structures become MACE ``AtomicData`` graphs collated into one
    batch, as MACE's ``DataLoader`` does, and the outputs get the calculator's unit factors, so
    each result equals the calculator's for that structure alone (to float rounding). A cell
    that is not periodic along z is evaluated as fully periodic with its vacuum (MACE 0.3.16's
    stress of a ``pbc=(T, T, F)`` slab is wrong, ACEsuit/mace issue 1509).
    """
    calc = calculator(model_path, device, default_dtype)

    def evaluate(structures: Any) -> list[tuple[float, Any, Any]]:
        return _evaluate_batch(calc, list(structures))

    return evaluate


def _periodic(atoms: Any) -> Any:
    """``atoms``, or a copy periodic in all three directions when it has a full cell."""
    if atoms.pbc.all() or atoms.cell.rank < 3:
        return atoms
    out = atoms.copy()
    out.pbc = True
    return out


def _evaluate_batch(calc: Any, structures: list[Any]) -> list[tuple[float, Any, Any]]:
    """One forward pass of ``calc``'s model over ``structures`` (see :func:`batch_evaluator`)."""
    import torch
    from ase.stress import full_3x3_to_voigt_6_stress
    from mace import data as mace_data
    from mace.tools import torch_geometric, torch_tools

    if not structures:
        return []
    structures = [_periodic(atoms) for atoms in structures]
    keyspec = mace_data.KeySpecification(info_keys=calc.info_keys, arrays_keys={**calc.arrays_keys, calc.charges_key: "charges"})
    with torch_tools.default_dtype(calc.default_dtype):
        graphs = [
            mace_data.AtomicData.from_config(
                mace_data.config_from_atoms(atoms, key_specification=keyspec, head_name=calc.head),
                z_table=calc.z_table, cutoff=calc.r_max, heads=calc.available_heads,
            )
            for atoms in structures
        ]  # fmt: skip
    batch = torch_geometric.Batch.from_data_list(graphs).to(calc.device)
    model = calc.models[0]
    dtype = next(model.parameters()).dtype
    batch_dict = {k: (v.to(dtype) if torch.is_tensor(v) and torch.is_floating_point(v) else v) for k, v in batch.to_dict().items()}
    out = model(batch_dict, compute_stress=True, training=False)
    e_unit, l_unit = calc.energy_units_to_eV, calc.length_units_to_A
    energies = (out["energy"].detach().cpu().numpy() * e_unit).tolist()
    forces = out["forces"].detach().cpu().numpy() * (e_unit / l_unit)
    stresses = out["stress"].detach().cpu().numpy() * (e_unit / l_unit**3)
    ptr = batch["ptr"].cpu().numpy()
    return [
        (float(energies[i]), forces[ptr[i] : ptr[i + 1]], full_3x3_to_voigt_6_stress(stresses[i]))
        for i in range(len(structures))
    ]


if __name__ == "__main__":  # a rank of a distributed training (see distributed_command)
    import sys

    if len(sys.argv) == 3 and sys.argv[1] == "--distributed-worker":
        _distributed_worker(sys.argv[2])
    else:
        raise SystemExit("usage: python -m mlff2d.families.mace --distributed-worker SPEC.json")
