"""MACE family: real (tiny) trainings through MACE's own entry point, on CPU, one thread.

One module-scoped training (3 epochs) is reused by most tests; the mask, resume and fine-tune
tests each run their own short trainings. The whole file takes about a minute on one core.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import ase.io
import numpy as np
import pandas as pd
import pytest
from ase import Atoms
from lj_monolayers import ref_labelled

os.environ.setdefault("OMP_NUM_THREADS", "1")
torch = pytest.importorskip("torch")
pytest.importorskip("mace")

from mlff2d.families import METRIC_COLUMNS, get_family  # noqa: E402

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),  # torch.jit, from MACE's model compilation
    pytest.mark.filterwarnings("ignore:Environment variable TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"),  # set by mace itself
]

mace_family = get_family("mace")
torch.set_num_threads(1)

TINY = {
    "epochs": 3,
    "lr": 0.01,
    "batch_size": 4,
    "valid_batch_size": 6,
    "r_max": 4.0,
    "max_L": 0,
    "num_channels": 8,
    "correlation": 2,
    "swa": False,
    "stress_weight": 10.0,
    "seed": 7,
}


def frames(n: int, seed: int) -> list[Atoms]:
    """MoS2 / WS2 monolayers (1x1 and 2x1, 15 Å vacuum), rattled and strained in-plane,
    labelled by a Lennard-Jones potential and written the way :func:`mlff2d.data.export.mace_atoms` does."""
    return ref_labelled(n, seed)


def write_data(d: Path, garbage_out_of_plane: bool = False) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    for split, n, seed in (("train", 24, 1), ("val", 6, 2)):
        images = frames(n, seed)
        if garbage_out_of_plane:
            rng = np.random.default_rng(99)
            for atoms in images:
                atoms.info["REF_stress"][[2, 3, 4]] = rng.normal(0, 5.0, 3)  # zz, yz, xz
        ase.io.write(d / f"{split}.extxyz", images, format="extxyz")
    return d


def eval_lines(outdir: Path, tag: str = "mace_run-7") -> list[dict[str, Any]]:
    lines = (outdir / "mace" / "results" / f"{tag}_train.txt").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["mode"] == "eval"]


def opt_losses(outdir: Path, tag: str = "mace_run-7") -> list[float]:
    lines = (outdir / "mace" / "results" / f"{tag}_train.txt").read_text().splitlines()
    return [r["loss"] for r in map(json.loads, lines) if r["mode"] == "opt"]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_data(tmp_path_factory.mktemp("mace_data"))


@pytest.fixture(scope="module")
def trained(data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    outdir = tmp_path_factory.mktemp("mace_run")
    model = mace_family.train(data, outdir, TINY, device="cpu")
    val = ase.io.read(data / "val.extxyz", index=":")
    calc = mace_family.calculator(model, device="cpu")
    energies = [calc.get_potential_energy(a.copy()) for a in val]
    return {"outdir": outdir, "model": model, "val_energies": energies}


def test_metrics_one_row_per_epoch(trained: dict[str, Any]) -> None:
    assert trained["model"] == trained["outdir"] / "model" / "mace.model" and trained["model"].is_file()
    metrics = pd.read_csv(trained["outdir"] / "metrics.csv")
    assert list(metrics.columns) == METRIC_COLUMNS
    assert metrics["epoch"].tolist() == [1, 2, 3]
    numeric = metrics.drop(columns="stress_unit").to_numpy(dtype=float)
    assert np.isfinite(numeric).all() and (numeric[:, 1:] > 0).all()
    assert set(metrics["stress_unit"]) == {"GPa"}
    # MACE's own numbers, converted: meV/atom and meV/Å; epoch k is MACE's epoch k - 1
    line = eval_lines(trained["outdir"])[-1]
    assert line["epoch"] == 2
    assert metrics["energy_mae_meV_per_atom"].iloc[-1] == pytest.approx(1000 * line["mae_e_per_atom"])
    assert metrics["forces_mae_meV_per_A"].iloc[-1] == pytest.approx(1000 * line["mae_f"])


def test_in_plane_stress_mae_matches_calculator(trained: dict[str, Any], data: Path) -> None:
    """The metric is the mean |error| of xx, yy, xy (once each) in GPa, as M3GNet's; check it for
    the best epoch's model."""
    metrics = pd.read_csv(trained["outdir"] / "metrics.csv")
    evals = [r for r in eval_lines(trained["outdir"]) if r["epoch"] is not None]
    best = min(evals, key=lambda r: r["loss"])  # the checkpoint MACE saves as the model
    calc = mace_family.calculator(trained["model"], device="cpu")
    errors = []
    for atoms in ase.io.read(data / "val.extxyz", index=":"):
        ref = atoms.info["REF_stress"]
        pred = calc.get_stress(atoms.copy())
        errors += [abs(ref[0] - pred[0]), abs(ref[1] - pred[1]), abs(ref[5] - pred[5])]
    row = metrics[metrics["epoch"] == best["epoch"] + 1].iloc[0]
    assert row["stress_mae"] == pytest.approx(160.21766208 * np.mean(errors), rel=1e-6)


def test_model_reloads_with_same_energy(trained: dict[str, Any], data: Path) -> None:
    calc = mace_family.calculator(trained["model"], device="cpu")
    again = [calc.get_potential_energy(a) for a in ase.io.read(data / "val.extxyz", index=":")]
    assert again == pytest.approx(trained["val_energies"], abs=1e-10)


def test_calculator_stress_has_ase_sign(trained: dict[str, Any]) -> None:
    calc = mace_family.calculator(trained["model"], device="cpu")
    atoms = frames(3, 5)[1]
    atoms.calc = calc
    analytic = atoms.get_stress()
    numeric = calc.calculate_numerical_stress(atoms, d=1e-5)
    assert analytic.shape == (6,)
    assert np.abs(analytic).max() > 1e-5  # not trivially zero
    assert analytic == pytest.approx(numeric, abs=1e-7)


def test_stress_mask_ignores_out_of_plane_labels(data: Path, tmp_path: Path) -> None:
    """Garbage zz/yz/xz labels: the same training, loss for loss and metric for metric, in
    stage one (epoch 1) and stage two (epochs 2-3, MACE builds its loss a second time)."""
    garbage = write_data(tmp_path / "garbage", garbage_out_of_plane=True)
    params = {**TINY, "swa": True, "start_swa": 1}
    runs = {}
    for label, d in (("clean", data), ("garbage", garbage)):
        runs[label] = tmp_path / label
        model = mace_family.train(d, runs[label], params, device="cpu")
        assert model.read_bytes() == (runs[label] / "mace" / "models" / "mace_stagetwo.model").read_bytes()
    log = (runs["garbage"] / "mace" / "logs" / "mace_run-7.log").read_text()
    assert "Stage Two (after 1 epochs) with loss function: InPlaneStressLoss(energy_weight=10.000" in log
    clean, dirty = runs["clean"], runs["garbage"]
    assert len(opt_losses(dirty)) == 18
    assert opt_losses(dirty) == pytest.approx(opt_losses(clean), rel=1e-10, abs=1e-14)
    for a, b in zip(eval_lines(dirty), eval_lines(clean), strict=True):
        for key in ("loss", "mae_e_per_atom", "mae_f", "mae_stress_in_plane_GPa"):
            assert a[key] == pytest.approx(b[key], rel=1e-10, abs=1e-14), key
        assert a["mae_stress"] != pytest.approx(b["mae_stress"])  # MACE's own 9-component MAE does see them
    cols = ["energy_mae_meV_per_atom", "forces_mae_meV_per_A", "stress_mae"]
    pd.testing.assert_frame_equal(pd.read_csv(dirty / "metrics.csv")[cols], pd.read_csv(clean / "metrics.csv")[cols], rtol=1e-10)


def test_resume_from_checkpoint(data: Path, tmp_path: Path) -> None:
    outdir = tmp_path / "run"
    mace_family.train(data, outdir, {**TINY, "epochs": 1}, device="cpu")
    first = pd.read_csv(outdir / "metrics.csv")
    assert first["epoch"].tolist() == [1]
    assert (outdir / "checkpoints" / "mace_run-7_epoch-0.pt").is_file()
    mace_family.train(data, outdir, {**TINY, "epochs": 3}, device="cpu")
    log = (outdir / "mace" / "logs" / "mace_run-7.log").read_text()
    assert "Loading checkpoint" in log and "mace_run-7_epoch-0.pt" in log
    assert "resuming after epoch 1" in log
    metrics = pd.read_csv(outdir / "metrics.csv")
    assert metrics["epoch"].tolist() == [1, 2, 3]
    pd.testing.assert_series_equal(metrics.iloc[0], first.iloc[0], check_names=False)
    # epochs 1 and 2 (MACE's numbering) ran once each, MACE's epoch 0 was not trained again
    epochs = [r["epoch"] for r in eval_lines(outdir)]
    assert epochs == [None, 0, None, 1, 2]


def test_fine_tune_starts_from_trained_weights(trained: dict[str, Any], data: Path, tmp_path: Path) -> None:
    """Transfer to a subset of the source's elements (MoS2 only; the source also saw W): the
    fine-tuning run's first validation, before any step, equals the source model's errors."""
    subset = tmp_path / "mos2"
    subset.mkdir()
    for split in ("train", "val"):
        images = [a for a in ase.io.read(data / f"{split}.extxyz", index=":") if "W" not in a.get_chemical_symbols()]
        ase.io.write(subset / f"{split}.extxyz", images, format="extxyz")
    calc = mace_family.calculator(trained["model"], device="cpu")
    val = ase.io.read(subset / "val.extxyz", index=":")
    de = [(calc.get_potential_energy(a.copy()) - a.info["REF_energy"]) / len(a) for a in val]
    outdir = tmp_path / "ft"
    model = mace_family.train(subset, outdir, {**TINY, "epochs": 1, "lr": 1e-4, "batch_size": 2}, init_model=trained["model"], device="cpu")
    initial = eval_lines(outdir)[0]
    assert initial["epoch"] is None
    assert initial["mae_e_per_atom"] == pytest.approx(np.mean(np.abs(de)), rel=1e-8)
    assert model.is_file() and len(pd.read_csv(outdir / "metrics.csv")) == 1
    log = (outdir / "mace" / "logs" / "mace_run-7.log").read_text()
    assert "Using foundation model" in log


def test_rejects_unknown_settings(data: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown mace training setting"):
        mace_family.train(data, tmp_path, {"no_such": 1})
    with pytest.raises(ValueError, match="loss"):
        mace_family.train(data, tmp_path, {"loss": "huber"})
    with pytest.raises(ValueError, match="unknown mace_run_train option"):
        mace_family.train(data, tmp_path, {**TINY, "extra_args": {"no_such_flag": 1}})
    with pytest.raises(ValueError, match="fewer training structures"):
        mace_family.train(data, tmp_path / "big_batch", {**TINY, "batch_size": 100}, device="cpu")
