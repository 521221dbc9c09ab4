"""MACE (mace-torch 0.3.16) as a model family: training, fine-tuning and the ASE calculator.

Training goes through MACE's own entry point, in-process: the arguments are parsed by MACE's
own parser (``mace.tools.build_default_arg_parser``) and handed to ``mace.cli.run_train.run``.
Four pieces of MACE are swapped for the duration of one :func:`train` call and restored after
it (no installed file is edited):

* **In-plane stress loss.** ``--loss stress`` builds ``modules.WeightedEnergyForcesStressLoss``
  (stage one) and again for stage two, both looked up at call time by
  ``mace.tools.scripts_utils`` in the ``mace.modules`` namespace. That name is patched to
  :func:`mlff2d.families._mace_patches.in_plane_stress_loss_class`'s subclass, whose stress term is the mean squared error
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

import json
import logging
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlff2d.training import checkpoints, divergence
from mlff2d.families import FamilySpec, pick_device
from mlff2d.families._mace_batch import evaluate_batch
from mlff2d.families._mace_files import count_frames, read_metrics, resume_checkpoint
from mlff2d.families._mace_patches import frozen_blocks, patched_mace

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
        data_dir: Directory with the MACE export (:mod:`mlff2d.data.export`).
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
    p = _checked_params(params, data_dir, init_model)
    data_dir, outdir = Path(data_dir).resolve(), Path(outdir).resolve()
    outdir.mkdir(parents=True, exist_ok=True)
    tag = f"{p['name']}_run-{p['seed']}"
    guard = checkpoints.settings_guard(outdir, {**p, "init_model": str(init_model) if init_model else None}, data_dir)
    restart = resume_checkpoint(outdir, tag, guard)
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

    return _install_model(model_dir, str(p["name"]), outdir)


def _checked_params(params: Mapping[str, Any], data_dir: str | Path, init_model: str | Path | None) -> dict[str, Any]:
    """The settings of a :func:`train` call (:data:`DEFAULTS` overridden by ``params``) after
    checking them, the exported data and ``init_model`` (the errors :func:`train` raises)."""
    unknown = sorted(set(params) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"unknown mace training setting(s) {unknown}; known: {sorted(DEFAULTS)}")
    p = {**DEFAULTS, **params}
    if p["loss"] not in _LOSSES:
        raise ValueError(f"mace loss must be one of {_LOSSES} (the in-plane stress mask covers 'stress' only), got {p['loss']!r}")
    data_dir = Path(data_dir).resolve()
    for split in ("train", "val"):
        if not (data_dir / f"{split}.extxyz").is_file():
            raise FileNotFoundError(data_dir / f"{split}.extxyz")
    n_train = count_frames(data_dir / "train.extxyz")
    if n_train < int(p["batch_size"]):  # MACE drops the last partial batch: nothing would train
        raise ValueError(f"fewer training structures ({n_train}) than batch_size ({p['batch_size']})")
    if init_model is not None and not Path(init_model).is_file():
        raise FileNotFoundError(init_model)
    return p


def _install_model(model_dir: Path, name: str, outdir: Path) -> Path:
    """Copy MACE's final model (stage two's when it ran, else stage one's) and its compiled
    version, when there is one, to ``outdir/model``; returns the path of ``mace.model``."""
    stage_two = model_dir / f"{name}_stagetwo.model"
    final = stage_two if stage_two.is_file() else model_dir / f"{name}.model"
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
    with patched_mace(expect_restart=restart, guard=guard, epochs=int(settings["max_num_epochs"])), frozen_blocks(freeze):
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
        return evaluate_batch(calc, list(structures))

    return evaluate


if __name__ == "__main__":  # a rank of a distributed training (see distributed_command)
    import sys

    if len(sys.argv) == 3 and sys.argv[1] == "--distributed-worker":
        _distributed_worker(sys.argv[2])
    else:
        raise SystemExit("usage: python -m mlff2d.families.mace --distributed-worker SPEC.json")
