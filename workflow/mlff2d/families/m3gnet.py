"""M3GNet (matgl, PyTorch Geometric backend) as a model family.

Trains on the ``m3gnet`` export (:mod:`mlff2d.data.export`): Parquet frames with total energy (eV),
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

import logging
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from ase.data import chemical_symbols

from mlff2d.training import checkpoints

from mlff2d.training import divergence
from mlff2d.families import FamilySpec, pick_device
from mlff2d.families._m3gnet_data import SPLIT_FILES, check_elements, dataset, element_refs, loaders, read_frames
from mlff2d.families._m3gnet_lightning import accelerator, epoch_recorder, strategy, worker_process

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
            Lightning DDP (see :func:`mlff2d.families._m3gnet_lightning.strategy`); the validation metrics, checkpoints and the
            model are written by rank 0 only (``LOCAL_RANK`` > 0 returns the model path after
            training without writing it). The batch size is per device.

    Returns:
        The directory of the saved potential (``matgl.load_model`` reads it).
    """
    import lightning as pl

    p = _settings(params)
    data_dir, outdir = Path(data_dir), Path(outdir).absolute()
    outdir.mkdir(parents=True, exist_ok=True)
    guard_notes = [] if worker_process() else checkpoints.settings_guard(outdir, {**p, "init_model": str(init_model or "")}, data_dir)
    device = pick_device(device)
    pl.seed_everything(int(p["seed"]), workers=True)

    frames = {split: read_frames(data_dir / name) for split, name in SPLIT_FILES.items()}
    if init_model is not None:
        model, element_types, cutoff, refs, data_mean, data_std = _fine_tuned_model(init_model, p, frames["train"])
    else:
        model, element_types, cutoff, refs, data_mean, data_std = _new_model(p, frames["train"])

    for split, frame in frames.items():
        check_elements(frame, element_types, f"{data_dir / SPLIT_FILES[split]}")
    datasets = {
        split: dataset(frame, data_dir / SPLIT_FILES[split], element_types, cutoff, outdir / "graphs")
        for split, frame in frames.items()
    }
    train_loader, val_loader = loaders(
        datasets, int(p["batch_size"]), int(p["num_workers"]), int(p["seed"]), pin_memory=device.startswith("cuda")
    )
    module = _lightning_module(model, refs, data_mean, data_std, p)
    recorder = epoch_recorder(outdir, p["divergence_factor"])
    trainer = _trainer(p, outdir, device, int(devices), recorder)
    _fit(trainer, module, train_loader, val_loader, recorder, outdir, guard_notes)

    path = outdir / "model"
    if not trainer.is_global_zero:  # a DDP worker rank: rank 0 saves the model
        return path
    _save_potential(module, path, p, element_types, init_model)
    return path


#: (model, element types, cutoff, element energy offsets, data mean, data std) to train.
_Start = tuple[Any, tuple[str, ...], float, Any, float, float]


def _fine_tuned_model(init_model: str | Path, p: Mapping[str, Any], train_frame: pd.DataFrame) -> _Start:
    """The saved model to fine-tune, with its architecture (settings that differ are ignored,
    with a warning), its offsets (refitted on the training data with
    ``refit_element_energies``) and its first ``freeze_blocks`` blocks frozen."""
    import matgl

    source = matgl.load_model(Path(init_model).absolute())
    model = source.model
    element_types = tuple(model.element_types)
    cutoff = float(model.cutoff)
    refs = source.element_refs.property_offset.detach().cpu().numpy() if source.element_refs is not None else None
    if p["refit_element_energies"]:  # the offsets of the target data, as normal training fits them
        refs = element_refs(train_frame, element_types)
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
    return model, element_types, cutoff, refs, data_mean, data_std


def _new_model(p: Mapping[str, Any], train_frame: pd.DataFrame) -> _Start:
    """A new M3GNet of the settings' architecture, offsets fitted with ``fit_element_refs``."""
    from matgl.models import M3GNet

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
    refs = element_refs(train_frame, element_types) if p["fit_element_refs"] else None
    data_mean, data_std = float(p["data_mean"]), float(p["data_std"])
    return model, element_types, cutoff, refs, data_mean, data_std


def _lightning_module(model: Any, refs: Any, data_mean: float, data_std: float, p: Mapping[str, Any]) -> Any:
    """matgl's ``PotentialLightningModule`` with the settings' loss weights and schedule."""
    from matgl.utils.training import PotentialLightningModule

    return PotentialLightningModule(
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


def _trainer(p: Mapping[str, Any], outdir: Path, device: str, devices: int, recorder: Any) -> Any:
    """The Lightning ``Trainer``: devices and strategy, CSV logs, the epoch recorder, no
    checkpointing or progress output of its own."""
    import lightning as pl
    from lightning.pytorch.loggers import CSVLogger

    accelerator_name, lightning_devices = accelerator(device, devices)
    strategy_name, plugins = strategy(devices)
    return pl.Trainer(
        max_epochs=int(p["epochs"]),
        accelerator=accelerator_name,
        devices=lightning_devices,
        strategy=strategy_name,
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


def _fit(trainer: Any, module: Any, train_loader: Any, val_loader: Any, recorder: Any, outdir: Path,
         guard_notes: list[str]) -> None:
    """Fit, resuming from the newest readable checkpoint (recorded in resume.json by rank 0, with
    ``guard_notes``: checkpoints of other settings set aside)."""
    last = outdir / "checkpoints" / "last.ckpt"
    ckpt, notes = checkpoints.first_readable([last, checkpoints.previous_path(last)])
    if not worker_process():  # rank 0 has set aside what the workers no longer see
        checkpoints.record_resume(outdir, ckpt, guard_notes + notes)
    if ckpt is not None:
        logger.info("resuming %s from %s", outdir, ckpt)
    trainer.fit(module, train_loader, val_loader, ckpt_path=str(ckpt) if ckpt else None, weights_only=False)
    if recorder.first_epoch is None:
        logger.info("%s: nothing to train, the checkpoint covers %d epochs", outdir, trainer.current_epoch)
        if recorder.history_path.exists() and not recorder.metrics_path.exists():
            shutil.copyfile(recorder.history_path, recorder.metrics_path)
    else:
        logger.info("%s: trained epochs %d..%d", outdir, recorder.first_epoch + 1, trainer.current_epoch)


def _save_potential(module: Any, path: Path, p: Mapping[str, Any], element_types: tuple[str, ...], init_model: str | Path | None) -> None:
    """Save the trained network as a fresh ``Potential`` (on the CPU, stress always on) with
    the family, settings and initial model as metadata."""
    from matgl.apps.pes import Potential

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
