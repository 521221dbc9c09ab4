"""M3GNet (matgl, PyTorch Geometric backend) as a model family.

Trains on the ``m3gnet`` export (:mod:`mlff2d.export`): Parquet frames with total energy (eV),
forces (eV/Å) and a 3×3 stress in GPa, tension positive, the unit and sign matgl trains on.

* **Stress mask.** Alexandria 2D cells carry vacuum along z, so only the in-plane stress is
  physical. :func:`train` sets the out-of-plane components (xz, yz, zx, zy, zz) of every label
  to NaN itself, whatever the file holds, and trains with matgl's ``allow_missing_labels``,
  which drops NaN labels from the loss. The reported validation stress MAE is over the in-plane
  Voigt components xx, yy and xy only, once each, in GPa (as every family's, see
  :func:`mlff2d.families.in_plane_stress_mae`).
* **Checkpoints.** After every epoch the full Lightning state goes to
  ``outdir/checkpoints/last.ckpt`` (written to a temporary file, then renamed). A later call with
  the same ``outdir`` (and settings) resumes from it, and ``metrics.csv`` keeps the rows of the
  epochs that the checkpoint covers. The training order of each epoch is drawn from
  ``seed + epoch``, so on the CPU a resumed run ends exactly where an uninterrupted one would.
* **Transfer.** ``init_model`` (a saved ``outdir/model`` of this family) supplies the network,
  its weights and normalisation; the element references are refitted on the target training
  set (least squares, as in normal training) with ``refit_element_energies`` (the default),
  else kept from ``init_model``; the first ``freeze_blocks`` interaction
  blocks can be frozen. The model-size settings in ``params`` are then ignored (with a warning
  for those changed from DEFAULTS that differ from the initial model).
* **Elements.** ``element_types`` defaults to matgl's universal list (``DEFAULT_ELEMENTS``), in
  its order, so any model can later be fine-tuned on any alloy. Graph node indices are positions
  in this list: a model and its graphs must use the same list.

The heavy imports (torch, matgl, lightning) happen inside the functions, so reading
:data:`DEFAULTS` is cheap.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from ase.data import chemical_symbols

from mlff2d import checkpoints, divergence
from mlff2d.export import OUT_OF_PLANE_3X3
from mlff2d.families import IN_PLANE_STRESS_3X3, METRIC_COLUMNS, STRESS_UNIT, FamilySpec, epoch_line, eta_seconds, pick_device

if TYPE_CHECKING:
    from ase.calculators.calculator import Calculator

logger = logging.getLogger(__name__)

SPEC = FamilySpec(
    name="m3gnet",
    label="M3GNet",
    export_format="m3gnet",
    table="table_4_1",
    alloy_table="table_4_4",
    table_title="M3GNet relaxation MAE",
    thesis="Table 4.4 (M3GNet per alloy, 90:5:5, test set; validation set: Table 6.1)",
    description="M3GNet (matgl) sweep; the thesis grid is e_cut {0.01, 0.02, 1e6} × lr {1e-3, 1e-4} × bs {128, 256, 512}.",
    sweep_default={"grid": {"e_cut": [0.01, 0.02, 1000000.0], "lr": [0.001, 0.0001], "batch_size": [128, 256, 512]}},
    alloy_default={"enabled": True, "e_cuts": [0.01], "splits": ["90-5-5"], "normal": {"lr": 0.001, "batch_size": 128},
                   "transfer": {"lr": 0.001, "batch_size": 128},
                   "description": "M3GNet alloy models; the thesis trained lr 1e-3, bs 128 at cutoff 0.01 on the 90:5:5 split."},
)

#: matgl's ``matgl.config.DEFAULT_ELEMENTS`` (H..Pu without Po, At, Rn, Fr, Ra), in its order;
#: spelt out here so that reading DEFAULTS does not import matgl (a test checks they agree).
MATGL_DEFAULT_ELEMENTS: tuple[str, ...] = tuple(
    s for s in chemical_symbols[1:95] if s not in ("Po", "At", "Rn", "Fr", "Ra")
)

DEFAULTS: dict[str, Any] = {
    # optimisation (Adam; cosine decay of the lr, stepped once per epoch, to lr * decay_alpha)
    "epochs": 100,
    "lr": 1.0e-3,
    "batch_size": 128,
    "decay_steps": None,  # epochs over which the cosine decays; None: the whole run (= epochs)
    "decay_alpha": 0.01,
    "loss": "mse_loss",  # matgl: mse_loss, huber_loss, smooth_l1_loss or l1_loss
    "energy_weight": 1.0,  # energy loss is per atom
    "force_weight": 1.0,
    "stress_weight": 0.1,  # stress loss in GPa²; must be > 0 so the model learns the in-plane stress
    "gradient_clip_val": None,
    "seed": 42,
    "num_workers": 0,  # DataLoader workers
    # model (ignored when fine-tuning: the initial model's architecture is kept)
    "nblocks": 3,
    "units": 64,
    "dim_node_embedding": 64,
    "dim_edge_embedding": 64,
    "max_n": 3,
    "max_l": 3,
    "cutoff": 5.0,
    "threebody_cutoff": 4.0,
    "element_types": list(MATGL_DEFAULT_ELEMENTS),
    "fit_element_refs": True,  # least-squares per-element energy offsets from the training set
    "data_mean": 0.0,
    "data_std": 1.0,
    # transfer learning (only with init_model)
    "freeze_blocks": 0,  # freeze the first N interaction blocks (three-body + graph layer)
    "refit_element_energies": True,  # refit the element refs on the target training set (else keep init_model's)
    **divergence.DEFAULTS,  # stop (and fail) when the validation errors diverge
}

#: In-plane Voigt components (xx, yy, xy, once each) as (row, column) of the 3×3 stress: the
#: definition every family's validation stress MAE uses (mlff2d.families.in_plane_stress_mae).
IN_PLANE_3X3 = IN_PLANE_STRESS_3X3

_SPLIT_FILES = {"train": "train.parquet", "val": "val.parquet"}
_COLUMNS = ["material_id", "step", "numbers", "positions", "cell", "energy", "forces", "stress_gpa"]
#: Bump when the way labels are built changes, so old graph caches are not reused.
_LABEL_VERSION = 1


def _settings(params: Mapping[str, Any] | None) -> dict[str, Any]:
    """DEFAULTS updated by ``params``; unknown keys are an error (they would be silently ignored)."""
    params = dict(params or {})
    unknown = sorted(set(params) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"unknown m3gnet training settings {unknown}; known: {sorted(DEFAULTS)}")
    p = {**DEFAULTS, **params}
    if float(p["stress_weight"]) <= 0:
        raise ValueError("stress_weight must be > 0: the model must learn the in-plane stress for cell relaxation")
    if int(p["epochs"]) < 1 or int(p["batch_size"]) < 1:
        raise ValueError("epochs and batch_size must be >= 1")
    return p


def read_frames(path: str | Path) -> pd.DataFrame:
    """One exported ``m3gnet`` Parquet file, with the out-of-plane stress labels set to NaN."""
    frame = pd.read_parquet(path, columns=_COLUMNS)
    frame["stress_gpa"] = [mask_out_of_plane(s) for s in frame["stress_gpa"]]
    return frame


def mask_out_of_plane(stress_gpa: Any) -> np.ndarray:
    """3×3 stress (9 values, row-major) with xz, yz, zx, zy and zz set to NaN."""
    s = np.array(stress_gpa, dtype=float).reshape(9)
    s[list(OUT_OF_PLANE_3X3)] = np.nan
    return s.reshape(3, 3)


def _structures(frame: pd.DataFrame) -> list[Any]:
    from pymatgen.core import Lattice, Structure

    out = []
    for numbers, positions, cell in zip(frame["numbers"], frame["positions"], frame["cell"], strict=True):
        numbers = np.asarray(numbers, dtype=int)
        xyz = np.asarray(positions, dtype=float).reshape(len(numbers), 3)
        lattice = Lattice(np.asarray(cell, dtype=float).reshape(3, 3))
        out.append(Structure(lattice, numbers.tolist(), xyz, coords_are_cartesian=True))
    return out


def _labels(frame: pd.DataFrame) -> dict[str, list[Any]]:
    """matgl PES labels: total energy (eV), forces (n×3, eV/Å), stress (3×3 GPa, tension +)."""
    return {
        "energies": [float(e) for e in frame["energy"]],
        "forces": [np.asarray(f, dtype=float).reshape(-1, 3).tolist() for f in frame["forces"]],
        "stresses": [np.asarray(s, dtype=float).reshape(3, 3).tolist() for s in frame["stress_gpa"]],
    }


def _check_elements(frame: pd.DataFrame, element_types: tuple[str, ...], where: str) -> None:
    present = {chemical_symbols[z] for numbers in frame["numbers"] for z in set(np.asarray(numbers).tolist())}
    missing = sorted(present - set(element_types))
    if missing:
        raise ValueError(f"{where}: elements {missing} are not in the model's element_types")


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _dataset(frame: pd.DataFrame, source: Path, element_types: tuple[str, ...], cutoff: float, cache: Path) -> Any:
    """An ``MGLDataset`` of one split, cached under ``cache/<split>-<key>``.

    matgl's own cache check compares converter settings only, not the data, so the cache key
    here also covers the file's content and the label code.
    """
    from matgl.ext.pymatgen import Structure2Graph
    from matgl.graph.data import MGLDataset

    key = hashlib.sha256(
        json.dumps([_file_digest(source), list(element_types), cutoff, list(OUT_OF_PLANE_3X3), _LABEL_VERSION]).encode()
    ).hexdigest()[:16]
    root = cache / f"{source.stem}-{key}"
    return MGLDataset(
        converter=Structure2Graph(element_types=element_types, cutoff=cutoff),
        structures=_structures(frame),
        labels=_labels(frame),
        root=str(root),
    )


def _element_refs(frame: pd.DataFrame, element_types: tuple[str, ...]) -> np.ndarray:
    """Per-element energy offsets (eV) by least squares on the training compositions.

    Elements absent from the training set get 0 (minimum-norm solution).
    """
    col = {s: i for i, s in enumerate(element_types)}
    counts = np.zeros((len(frame), len(element_types)))
    for i, numbers in enumerate(frame["numbers"]):
        for z in np.asarray(numbers):
            counts[i, col[chemical_symbols[int(z)]]] += 1
    refs, *_ = np.linalg.lstsq(counts, frame["energy"].to_numpy(dtype=float), rcond=None)
    return refs


def _loaders(
    datasets: Mapping[str, Any], batch_size: int, num_workers: int, seed: int, pin_memory: bool = False
) -> tuple[Any, Any]:
    """Train and validation loaders (matgl's ``collate_fn_pes``).

    The training order of epoch ``k`` is a permutation drawn from ``seed + k`` (Lightning calls
    ``set_epoch``), not from the global RNG, so a resumed run sees the same batches as an
    uninterrupted one. (``MGLDataLoader`` fixes ``shuffle=True`` and so takes no sampler.)
    """
    import torch
    from matgl.graph.data import collate_fn_pes
    from torch.utils.data import DataLoader, Sampler

    class EpochSeededSampler(Sampler[int]):
        def __init__(self, n: int) -> None:
            self.n, self.epoch = n, 0

        def set_epoch(self, epoch: int) -> None:
            self.epoch = epoch

        def __len__(self) -> int:
            return -(-self.n // _rank_and_world()[1])  # per rank: Lightning counts batches with it

        def __iter__(self):  # type: ignore[no-untyped-def]
            generator = torch.Generator().manual_seed(seed + self.epoch)
            order = torch.randperm(self.n, generator=generator).tolist()
            rank, world = _rank_and_world()
            if world > 1:  # DDP: every rank takes an equal share of the same order (wrapped)
                per_rank = -(-self.n // world)
                order = (order * world)[: per_rank * world][rank::world]
            return iter(order)

    common = {
        "batch_size": batch_size,
        "collate_fn": collate_fn_pes,
        "num_workers": num_workers,
        "persistent_workers": num_workers > 0,
        "pin_memory": pin_memory,
    }
    train = DataLoader(datasets["train"], sampler=EpochSeededSampler(len(datasets["train"])), **common)
    val = DataLoader(datasets["val"], shuffle=False, **common)
    return train, val


def _worker_process() -> bool:
    """A DDP worker rank (> 0), started by Lightning before or within training."""
    from mlff2d.sweep import worker_rank

    return worker_rank() or _rank_and_world()[0] > 0


def _rank_and_world() -> tuple[int, int]:
    """(rank, world size) of this process in a running DDP training, else (0, 1)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _accelerator(device: str, n_devices: int = 1) -> tuple[str, Any]:
    """Lightning ``accelerator`` and ``devices`` for a torch device string and a device count."""
    if device.startswith("cuda"):
        index = device.partition(":")[2]
        if n_devices > 1:
            return "gpu", n_devices
        return "gpu", [int(index)] if index else 1
    if device == "mps":
        return "mps", 1
    return "cpu", n_devices


def _strategy(n_devices: int) -> tuple[Any, list[Any]]:
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


def _epoch_recorder(outdir: Path, divergence_factor: float | None = None) -> Any:
    """Lightning callback: per-epoch validation metrics to ``metrics.csv`` and ``last.ckpt``
    (the one before kept as ``last.previous.ckpt``); a diverged epoch is recorded in
    ``metrics.csv``, gets no checkpoint, and stops the training with :class:`TrainingDiverged`."""
    import lightning as pl
    import torch

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
            (e_pred, f_pred, s_pred), (e_true, f_true, s_true) = outputs["preds"][:3], outputs["labels"][:3]
            with torch.no_grad():
                n = outputs["num_atoms"].double()
                de = (e_pred.detach().double().reshape(-1) - e_true.double().reshape(-1)).abs() / n
                df = (f_pred.detach().double() - f_true.double()).abs()
                s_p = s_pred.detach().double().reshape(-1, 3, 3)
                s_t = s_true.double().reshape(-1, 3, 3)
                ds = torch.stack([(s_p[:, i, j] - s_t[:, i, j]) for i, j in IN_PLANE_3X3], dim=1).abs()
                s_l = torch.stack([s_t[:, i, j] for i, j in IN_PLANE_3X3], dim=1)
                # labels without a value (NaN) are left out; a NaN prediction is kept, so it shows
                for k, (d, label) in enumerate(((de, e_true.reshape(-1)), (df, f_true), (ds, s_l))):
                    d = d[~torch.isnan(label.double())]
                    self.sums[k] += float(d.sum())
                    self.counts[k] += d.numel()

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
            self.rows.append(
                {
                    "epoch": epoch,
                    "energy_mae_meV_per_atom": 1000 * mae[0],
                    "forces_mae_meV_per_A": 1000 * mae[1],
                    "stress_mae": mae[2],
                    "stress_unit": STRESS_UNIT,
                    "time_s": time.perf_counter() - self.t0,
                }
            )
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


def train(
    data_dir: str | Path,
    outdir: str | Path,
    params: Mapping[str, Any] | None = None,
    init_model: str | Path | None = None,
    device: str | None = None,
    devices: int = 1,
) -> Path:
    """Train (or, with ``init_model``, fine-tune) an M3GNet potential; returns ``outdir/model``.

    Args:
        data_dir: Directory with the ``m3gnet`` export's ``train.parquet`` and ``val.parquet``.
        outdir: Output directory: ``model/``, ``metrics.csv``, ``checkpoints/last.ckpt``,
            ``logs/`` (Lightning CSV logs, one version per call) and ``graphs/`` (graph cache).
        params: Settings overriding :data:`DEFAULTS`.
        init_model: A saved model of this family to start from (transfer learning).
        device: Torch device (``cpu``, ``cuda``, ``cuda:1``); default: CUDA if available.
        devices: Number of devices of that kind on this node. More than one trains with
            Lightning DDP (see :func:`_strategy`); the validation metrics, checkpoints and the
            model are written by rank 0 only (``LOCAL_RANK`` > 0 returns the model path after
            training without writing it). The batch size is per device.

    Returns:
        The directory of the saved potential (``matgl.load_model`` reads it).
    """
    import lightning as pl
    import matgl
    from lightning.pytorch.loggers import CSVLogger
    from matgl.apps.pes import Potential
    from matgl.models import M3GNet
    from matgl.utils.training import PotentialLightningModule

    p = _settings(params)
    data_dir, outdir = Path(data_dir), Path(outdir).absolute()
    outdir.mkdir(parents=True, exist_ok=True)
    device = pick_device(device)
    pl.seed_everything(int(p["seed"]), workers=True)

    frames = {split: read_frames(data_dir / name) for split, name in _SPLIT_FILES.items()}

    if init_model is not None:
        source = matgl.load_model(Path(init_model).absolute())
        model = source.model
        element_types = tuple(model.element_types)
        cutoff = float(model.cutoff)
        refs = source.element_refs.property_offset.detach().cpu().numpy() if source.element_refs is not None else None
        if p["refit_element_energies"]:  # the offsets of the target data, as normal training fits them
            refs = _element_refs(frames["train"], element_types)
        data_mean, data_std = float(source.data_mean), float(source.data_std)
        kept = {"nblocks": model.n_blocks, "units": model.units, "cutoff": model.cutoff}
        kept |= {"threebody_cutoff": model.threebody_cutoff, "element_types": list(element_types)}
        # warn about settings changed from DEFAULTS that the initial model overrides
        ignored = {k: p[k] for k in kept if p[k] not in (DEFAULTS[k], kept[k])}
        if ignored:
            logger.warning("fine-tuning keeps the architecture of %s; ignoring %s", init_model, ignored)
        freeze = int(p["freeze_blocks"])
        if not 0 <= freeze <= model.n_blocks:
            raise ValueError(f"freeze_blocks={freeze}, but the initial model has {model.n_blocks} blocks")
        for i in range(freeze):
            for block in (model.three_body_interactions[i], model.graph_layers[i]):
                block.requires_grad_(False)
    else:
        element_types = tuple(p["element_types"])
        cutoff = float(p["cutoff"])
        model = M3GNet(
            element_types=element_types,
            is_intensive=False,
            nblocks=int(p["nblocks"]),
            units=int(p["units"]),
            dim_node_embedding=int(p["dim_node_embedding"]),
            dim_edge_embedding=int(p["dim_edge_embedding"]),
            max_n=int(p["max_n"]),
            max_l=int(p["max_l"]),
            cutoff=cutoff,
            threebody_cutoff=float(p["threebody_cutoff"]),
        )
        refs = _element_refs(frames["train"], element_types) if p["fit_element_refs"] else None
        data_mean, data_std = float(p["data_mean"]), float(p["data_std"])

    for split, frame in frames.items():
        _check_elements(frame, element_types, f"{data_dir / _SPLIT_FILES[split]}")
    datasets = {
        split: _dataset(frame, data_dir / _SPLIT_FILES[split], element_types, cutoff, outdir / "graphs")
        for split, frame in frames.items()
    }
    train_loader, val_loader = _loaders(
        datasets, int(p["batch_size"]), int(p["num_workers"]), int(p["seed"]), pin_memory=device.startswith("cuda")
    )

    module = PotentialLightningModule(
        model=model,
        element_refs=refs,
        energy_weight=float(p["energy_weight"]),
        force_weight=float(p["force_weight"]),
        stress_weight=float(p["stress_weight"]),
        data_mean=data_mean,
        data_std=data_std,
        loss=str(p["loss"]),
        lr=float(p["lr"]),
        decay_steps=int(p["decay_steps"] or p["epochs"]),
        decay_alpha=float(p["decay_alpha"]),
        allow_missing_labels=True,
    )

    accelerator, lightning_devices = _accelerator(device, int(devices))
    strategy, plugins = _strategy(int(devices))
    recorder = _epoch_recorder(outdir, p["divergence_factor"])
    trainer = pl.Trainer(
        max_epochs=int(p["epochs"]),
        accelerator=accelerator,
        devices=lightning_devices,
        strategy=strategy,
        plugins=plugins,
        use_distributed_sampler=False,  # the epoch-seeded sampler shards the data itself
        inference_mode=False,  # forces and stress are gradients, also in validation
        logger=CSVLogger(str(outdir), name="logs"),
        callbacks=[recorder],
        enable_checkpointing=False,  # the recorder writes checkpoints/last.ckpt itself
        gradient_clip_val=p["gradient_clip_val"],
        num_sanity_val_steps=0,
        log_every_n_steps=1,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(outdir),
    )
    last = outdir / "checkpoints" / "last.ckpt"
    ckpt, notes = checkpoints.first_readable([last, checkpoints.previous_path(last)])
    if not _worker_process():  # rank 0 has set aside what the workers no longer see
        checkpoints.record_resume(outdir, ckpt, notes)
    if ckpt is not None:
        logger.info("resuming %s from %s", outdir, ckpt)
    trainer.fit(module, train_loader, val_loader, ckpt_path=str(ckpt) if ckpt else None, weights_only=False)
    if recorder.first_epoch is None:
        logger.info("%s: nothing to train, the checkpoint covers %d epochs", outdir, trainer.current_epoch)
        if recorder.history_path.exists() and not recorder.metrics_path.exists():
            shutil.copyfile(recorder.history_path, recorder.metrics_path)
    else:
        logger.info("%s: trained epochs %d..%d", outdir, recorder.first_epoch + 1, trainer.current_epoch)

    path = outdir / "model"
    if not trainer.is_global_zero:  # a DDP worker rank: rank 0 saves the model
        return path
    # a fresh Potential around the trained network, on the CPU, with stress always on
    trained = module.model
    potential = Potential(
        model=trained.model.cpu(),
        element_refs=None if trained.element_refs is None else trained.element_refs.property_offset.cpu().tolist(),
        data_mean=float(trained.data_mean),
        data_std=float(trained.data_std),
        calc_stresses=True,
    )
    potential.save(
        path,
        metadata={
            "family": "m3gnet",
            "params": {**p, "element_types": list(element_types)},
            "init_model": str(init_model) if init_model else None,
        },
    )
    return path


def calculator(model_path: str | Path, device: str | None = None) -> Calculator:
    """ASE calculator of a saved M3GNet potential: eV, eV/Å, stress in eV/Å³ (tension positive).

    Cells with vacuum are passed to matgl as fully periodic: matgl treats any Atoms that are
    not periodic in all three directions as a molecule.
    """
    import matgl
    from matgl.ext.ase import PESCalculator

    class PeriodicPESCalculator(PESCalculator):
        def calculate(self, atoms=None, properties=None, system_changes=None):  # type: ignore[no-untyped-def]
            atoms = self.atoms.copy() if atoms is None else atoms
            if not atoms.pbc.all() and atoms.cell.rank == 3:
                periodic = atoms.copy()
                periodic.pbc = True
                super().calculate(periodic, properties, system_changes)
                self.atoms = atoms.copy()
            else:
                super().calculate(atoms, properties, system_changes)

    potential = matgl.load_model(Path(model_path).absolute())
    potential.eval()
    potential.to(pick_device(device))
    return PeriodicPESCalculator(potential, stress_unit="eV/A3", use_voigt=True)


def batch_evaluator(model_path: str | Path, device: str | None = None) -> Any:
    """Batched evaluation of a saved potential: a callable ``list[Atoms] -> list[(energy eV,
    forces eV/Å, stress eV/Å³ Voigt, tension positive)]``, one potential call per list.

    Potential, graph converter and stress unit come from the ASE calculator
    (:func:`calculator`); the graphs are batched as ``collate_fn_pes`` does (a PyG ``Batch``,
    the lattices stacked), so each result equals the calculator's for that structure alone (to
    float32 rounding). Cells are made periodic in all three directions, as there.
    """
    calc = calculator(model_path, device)

    def evaluate(structures: Any) -> list[tuple[float, Any, Any]]:
        return _evaluate_batch(calc, list(structures))

    return evaluate


def _evaluate_batch(calc: Any, structures: list[Any]) -> list[tuple[float, Any, Any]]:
    """One ``Potential`` call over ``structures`` (see :func:`batch_evaluator`)."""
    import torch
    from ase.stress import full_3x3_to_voigt_6_stress
    from torch_geometric.data import Batch

    if not structures:
        return []
    graphs, lattices, states = [], [], []
    for atoms in structures:
        if not atoms.pbc.all():
            atoms = atoms.copy()
            atoms.pbc = True
        g, lat, state = calc._atoms2graph.get_graph(atoms)  # noqa: SLF001 (the calculator's own converter)
        graphs.append(g)
        lattices.append(lat.reshape(1, 3, 3))
        states.append(torch.as_tensor(np.asarray(state)))
    state_attr = torch.stack(states) if calc.state_attr is None else calc.state_attr
    energies, forces, stresses = calc.potential(Batch.from_data_list(graphs), torch.cat(lattices), state_attr)[:3]
    energies = energies.detach().cpu().numpy().reshape(-1)
    forces = forces.detach().cpu().numpy()
    stresses = stresses.detach().cpu().numpy().reshape(-1, 3, 3) * calc.conversion_factor
    ends = np.cumsum([len(a) for a in structures])
    return [
        (float(energies[i]), forces[ends[i] - len(structures[i]) : ends[i]], full_3x3_to_voigt_6_stress(stresses[i]))
        for i in range(len(structures))
    ]
