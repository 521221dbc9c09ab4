"""NequIP family: its spec and config in the main environment, and real tiny trainings (CPU, one
thread) in the nequip environment, run as subprocesses of this (main-environment) pytest, as
tests/formation/test_nequip_model.py does: the ``mlff2d train`` and ``mlff2d relax`` commands, reload and
calculator against the training's own validation metrics, the stress sign against finite
differences, the out-of-plane stress mask, resume and fine-tuning. About a minute on one core.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import ase.io
import numpy as np
import pandas as pd
import pytest
from ase import Atoms
from lj_monolayers import lj_monolayers
from ase.calculators.singlepoint import SinglePointCalculator

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / "workflow"
NEQUIP_PYTHON = ROOT / ".venv" / "nequip" / "bin" / "python"

from mlff2d.families import METRIC_COLUMNS, family_spec, get_family  # noqa: E402

needs_env = pytest.mark.skipif(not NEQUIP_PYTHON.exists(), reason="needs the nequip environment (.venv/nequip)")
#: A tiny model: ~8 s per training of a few epochs on one core.
TINY = {"epochs": 5, "num_layers": 1, "num_features": 8, "radial_mlp_width": 16, "r_max": 4.0, "stress_weight": 100.0, "seed": 3}


def frames(n: int, seed: int, garbage_out_of_plane: bool = False) -> list[Atoms]:
    """MoS2 / WS2 monolayers (1x1 and 2x1, 15 Å vacuum), rattled and strained in-plane, labelled by
    a Lennard-Jones potential through a single-point calculator, as the ``nequip`` export writes
    them (ASE ``energy``, ``forces``, ``stress`` in eV/Å³). ``garbage_out_of_plane``: huge xz, yz,
    zz stress labels (1 eV/Å³, 160 GPa)."""
    junk = np.random.default_rng(seed + 100)
    out = []
    for i, (atoms, energy, forces, stress) in enumerate(lj_monolayers(n, seed)):
        if garbage_out_of_plane:
            stress[2:5] = 1.0 + junk.random(3)  # zz, yz, xz
        atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=forces, stress=stress)
        atoms.info["material_id"] = f"m{seed}-{i}"
        out.append(atoms)
    return out


def write_data(d: Path, garbage_out_of_plane: bool = False) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    for split, n, seed in (("train", 24, 1), ("val", 6, 2)):
        ase.io.write(d / f"{split}.extxyz", frames(n, seed, garbage_out_of_plane), format="extxyz")
    return d


def run_in_env(args: list[str], timeout: int = 300) -> subprocess.CompletedProcess[str]:
    """``args`` with the nequip environment's Python, this checkout's package first, one thread."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(WORKFLOW), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    proc = subprocess.run([str(NEQUIP_PYTHON), *args], capture_output=True, text=True, timeout=timeout, env=env)
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-4000:])
    return proc


def run_script(script: str, **values: Any) -> dict[str, Any]:
    """Run ``script`` in the nequip environment with ``values`` as JSON in ``ARGS``; it prints
    one JSON object on its last line."""
    code = "import json, sys, torch\ntorch.set_num_threads(1)\nARGS = json.loads(sys.argv[1])\n" + script
    proc = run_in_env(["-c", code, json.dumps({k: str(v) if isinstance(v, Path) else v for k, v in values.items()})])
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------ main environment


def test_spec_and_defaults_read_without_torch() -> None:
    code = ("import sys; from mlff2d.families import family_spec, get_family; s = family_spec('nequip'); "
            "m = get_family('nequip'); assert m.DEFAULTS['epochs'] > 0 and s.env == 'nequip'; "
            "print(sorted(x for x in ('torch', 'nequip', 'lightning', 'e3nn') if x in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(WORKFLOW)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
    spec = family_spec("nequip")
    assert (spec.label, spec.export_format, spec.env, spec.transfer, spec.sweep_default) == ("NequIP", "nequip", "nequip", True, None)
    assert spec.alloy_default["enabled"] is False and {"lr", "batch_size"} <= set(spec.alloy_default["normal"])
    assert "divergence_factor" in get_family("nequip").DEFAULTS


def test_config_masks_out_of_plane_stress_and_rejects_unknown_settings(tmp_path: Path) -> None:
    nequip = get_family("nequip")
    p = nequip._settings({"epochs": 2})
    cfg = nequip.hydra_config(tmp_path, tmp_path / "out", ["Mo", "S"], p, "cpu")
    transforms = [t["_target_"] for t in cfg["data"]["transforms"]]
    assert transforms[0] == "mlff2d.families.nequip.OutOfPlaneStressToNaN"
    loss = cfg["training_module"]["loss"]
    assert loss["ignore_nan"] == {"stress": True} and loss["per_atom_energy"] is True
    assert loss["coeffs"]["stress"] == DEFAULTS_STRESS and cfg["training_module"]["val_metrics"]["ignore_nan"] == {"stress": True}
    assert cfg["trainer"]["max_epochs"] == 2 and "ckpt_path" not in cfg
    assert nequip.OUT_OF_PLANE_ROWS_COLS == ((0, 2), (1, 2), (2, 0), (2, 1), (2, 2))
    with pytest.raises(ValueError, match="unknown nequip training setting"):
        nequip._settings({"max_L": 2})
    with pytest.raises(ValueError, match="stress_weight"):
        nequip._settings({"stress_weight": 0})
    with pytest.raises(ValueError, match="freeze_blocks"):
        nequip._settings({"freeze_blocks": 1})
    assert nequip._settings({"freeze_blocks": 0})["freeze_blocks"] == 0  # what train-alloy passes for transfer


def test_element_energy_shifts_fitted_on_train_and_refitted_on_transfer(tmp_path: Path) -> None:
    """Per-element shifts are the least-squares energies of the training set (an element it lacks:
    the mean per-atom energy); a fine-tuned model gets its target's through NequIP's modifier,
    or keeps the initial model's with refit_element_energies false."""
    nequip = get_family("nequip")
    data = write_data(tmp_path / "data")
    train = ase.io.read(data / "train.extxyz", index=":")
    p = nequip._settings({})
    shifts = nequip._energy_shifts(data / "train.extxyz", ["Mo", "S", "W", "Nb"], p, fine_tune=False)
    fitted = __import__("mlff2d.families", fromlist=["element_energies"]).element_energies(train, [a.get_potential_energy() for a in train])
    assert set(fitted) == {"Mo", "S", "W"} and all(shifts[e] == pytest.approx(fitted[e]) for e in fitted)
    mean = sum(a.get_potential_energy() for a in train) / sum(len(a) for a in train)
    assert shifts["Nb"] == pytest.approx(mean)
    x = np.array([[list(a.numbers).count(z) / len(a) for z in (42, 16, 74)] for a in train])
    y = np.array([a.get_potential_energy() / len(a) for a in train])
    assert np.abs(x @ np.array([fitted[e] for e in ("Mo", "S", "W")]) - y).mean() < np.abs(y - y.mean()).mean()
    cfg = nequip.hydra_config(data, tmp_path / "out", ["Mo", "S", "W", "Nb"], {**p, "element_energy_shifts": shifts}, "cpu")
    assert cfg["training_module"]["model"]["per_type_energy_shifts"] == shifts
    plain = nequip.hydra_config(data, tmp_path / "out", ["Mo", "S"], {**p, "element_energy_shifts": None}, "cpu")
    assert plain["training_module"]["model"]["per_type_energy_shifts"].startswith("${training_data_stats:")
    refit = nequip._energy_shifts(data / "train.extxyz", ["Mo", "S", "W", "Nb"], p, fine_tune=True)
    assert set(refit) == {"Mo", "S", "W"}
    tuned = nequip.hydra_config(data, tmp_path / "out", ["Mo", "S", "W"], {**p, "element_energy_shifts": refit}, "cpu", init_ckpt=tmp_path / "i.ckpt")
    model = tuned["training_module"]["model"]
    assert model["_target_"] == "nequip.model.modify" and model["modifiers"] == [{"modifier": "modify_PerTypeScaleShift", "shifts": refit}]
    assert model["model"] == {"_target_": "nequip.model.ModelFromCheckpoint", "checkpoint_path": str(tmp_path / "i.ckpt")}
    assert nequip._energy_shifts(data / "train.extxyz", ["Mo"], {**p, "refit_element_energies": False}, fine_tune=True) is None
    kept = nequip.hydra_config(data, tmp_path / "out", ["Mo", "S", "W"], {**p, "element_energy_shifts": None}, "cpu", init_ckpt=tmp_path / "i.ckpt")
    assert kept["training_module"]["model"]["_target_"] == "nequip.model.ModelFromCheckpoint"


DEFAULTS_STRESS = get_family("nequip").DEFAULTS["stress_weight"]


# ------------------------------------------------------------------------------ nequip environment


@pytest.fixture(scope="module")
def point(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A sweep point trained by ``mlff2d train --family nequip`` in the nequip environment."""
    base = tmp_path_factory.mktemp("nequip_family")
    data = write_data(base / "data")
    out = base / "point~lr-0.01"  # '~' as in the campaign's paths (Hydra's override grammar rejects it)
    params = {k: v for k, v in TINY.items()}
    run_in_env(["-m", "mlff2d", "train", "--family", "nequip", "--data", str(data), "--outdir", str(out), "--lr", "0.01",
                "--batch-size", "4", "--device", "cpu", "--params", json.dumps(params)])
    return out


@pytest.mark.slow
@needs_env
def test_train_cli_writes_metrics_model_and_checkpoints(point: Path) -> None:
    status = json.loads((point / "status.json").read_text())
    assert status["status"] == "ok", status.get("reason")
    metrics = pd.read_csv(point / "metrics.csv")
    assert list(metrics.columns) == METRIC_COLUMNS
    assert list(metrics["epoch"]) == [1, 2, 3, 4, 5]
    assert np.isfinite(metrics[["energy_mae_meV_per_atom", "forces_mae_meV_per_A", "stress_mae", "time_s"]].to_numpy()).all()
    assert (metrics["stress_unit"] == "GPa").all()
    assert metrics["forces_mae_meV_per_A"].iloc[-1] < 0.9 * metrics["forces_mae_meV_per_A"].iloc[0]  # it learns
    model = Path(status["model"])
    assert (model / "nequip.ckpt").is_file() and (point / "checkpoints" / "last.ckpt").is_file()
    meta = json.loads((model / "meta.json").read_text())
    assert meta["type_names"] == ["Mo", "S", "W"] and 1 <= meta["epoch"] <= 5
    assert "epoch 5/5: val MAE energy" in (point / "nequip-train.log").read_text()


PROBE = """
import ase.io, numpy as np, pandas as pd
from mlff2d.families import get_family, in_plane_stress_mae
from mlff2d.io.units import EV_PER_A3_IN_GPA
nequip = get_family("nequip")
calc = nequip.calculator(ARGS["model"], "cpu")
de, df, ds = [], [], []
for ref in ase.io.read(ARGS["val"], ":"):
    atoms = ref.copy(); atoms.calc = calc
    de.append(abs(atoms.get_potential_energy() - ref.get_potential_energy()) / len(ref))
    df.append(np.abs(atoms.get_forces() - ref.get_forces()).ravel())
    ds.append(atoms.get_stress(voigt=False) - ref.get_stress(voigt=False))
slab = ase.io.read(ARGS["val"], 0); slab.calc = None
slab.set_cell(slab.cell[:] * [1.03, 1.03, 1.0], scale_atoms=True)  # stretched in-plane: tension
slab.calc = calc
analytic = slab.get_stress()
numeric = calc.calculate_numerical_stress(slab, d=1e-4)
slab.pbc = [True, True, False]
partial = slab.get_stress()
T = nequip.OutOfPlaneStressToNaN()
masked = T({"stress": torch.arange(9.0).reshape(1, 3, 3)})["stress"].reshape(9).tolist()
print(json.dumps({"energy": 1000 * float(np.mean(de)), "forces": 1000 * float(np.mean(np.concatenate(df))),
                  "stress": in_plane_stress_mae(np.array(ds), EV_PER_A3_IN_GPA),
                  "analytic": analytic.tolist(), "numeric": numeric.tolist(), "partial": partial.tolist(),
                  "masked": [None if x != x else x for x in masked]}))
"""


@pytest.mark.slow
@needs_env
def test_calculator_reproduces_validation_metrics_and_ase_stress_sign(point: Path) -> None:
    model = Path(json.loads((point / "status.json").read_text())["model"])
    out = run_script(PROBE, model=model, val=point.parent / "data" / "val.extxyz")
    meta = json.loads((model / "meta.json").read_text())
    row = pd.read_csv(point / "metrics.csv").set_index("epoch").loc[meta["epoch"]]  # the shipped (best) epoch
    assert out["energy"] == pytest.approx(row["energy_mae_meV_per_atom"], rel=1e-4, abs=1e-3)
    assert out["forces"] == pytest.approx(row["forces_mae_meV_per_A"], rel=1e-4)
    assert out["stress"] == pytest.approx(row["stress_mae"], rel=1e-4)
    analytic, numeric = np.array(out["analytic"]), np.array(out["numeric"])
    # ASE convention (1/V dE/dε, tension positive, eV/Å³): the analytic stress is the energy's strain derivative
    assert np.allclose(analytic, numeric, atol=2e-6 + 0.02 * np.abs(numeric).max())
    assert np.allclose(out["partial"], analytic, atol=1e-9)  # a pbc=(T, T, F) slab is evaluated with its vacuum
    assert out["masked"] == [0.0, 1.0, None, 3.0, 4.0, None, None, None, None]


MASK_AND_RESUME = """
import pandas as pd
from mlff2d.families import get_family
nequip = get_family("nequip")
params = json.loads(ARGS["params"])
nequip.train(ARGS["garbage"], ARGS["out_garbage"], {**params, "epochs": 3}, device="cpu")
nequip.train(ARGS["clean"], ARGS["out_clean"], {**params, "epochs": 2}, device="cpu")
first = pd.read_csv(ARGS["out_clean"] + "/metrics.csv").to_dict("records")
nequip.train(ARGS["clean"], ARGS["out_clean"], {**params, "epochs": 3}, device="cpu")  # resumes after epoch 2
print(json.dumps({"first": first}))
"""


@pytest.mark.slow
@needs_env
def test_out_of_plane_stress_labels_do_not_change_training_and_resume_continues(tmp_path: Path) -> None:
    clean, garbage = write_data(tmp_path / "clean"), write_data(tmp_path / "garbage", garbage_out_of_plane=True)
    assert abs(ase.io.read(garbage / "train.extxyz", 0).get_stress()[2]) > 1.0  # the file does hold them
    out = run_script(MASK_AND_RESUME, clean=clean, garbage=garbage, out_clean=tmp_path / "o_clean",
                     out_garbage=tmp_path / "o_garbage", params=json.dumps({**TINY, "batch_size": 4, "lr": 0.01}))
    resumed = pd.read_csv(tmp_path / "o_clean" / "metrics.csv")
    uninterrupted = pd.read_csv(tmp_path / "o_garbage" / "metrics.csv")
    cols = ["energy_mae_meV_per_atom", "forces_mae_meV_per_A", "stress_mae"]
    assert list(resumed["epoch"]) == [1, 2, 3]
    # epochs 1-2: the same training with and without huge zz/xz/yz labels (they never reach the loss)
    np.testing.assert_allclose(pd.DataFrame(out["first"])[cols].to_numpy(), uninterrupted[cols].to_numpy()[:2], rtol=1e-6)
    np.testing.assert_allclose(resumed[cols].to_numpy()[:2], uninterrupted[cols].to_numpy()[:2], rtol=1e-6)  # rows kept
    resume = json.loads((tmp_path / "o_clean" / "resume.json").read_text())
    assert resume["resumed_from"].endswith("last.ckpt")
    # epoch 3 after the resume: continues from the checkpoint (a fresh start's epoch 1 is far worse)
    assert resumed["forces_mae_meV_per_A"].iloc[2] < resumed["forces_mae_meV_per_A"].iloc[0]
    np.testing.assert_allclose(resumed[cols].to_numpy()[2], uninterrupted[cols].to_numpy()[2], rtol=0.05)


TRANSFER = """
from mlff2d.families import get_family
nequip = get_family("nequip")
print(json.dumps({"model": str(nequip.train(ARGS["data"], ARGS["out"], json.loads(ARGS["params"]), init_model=ARGS["init"], device="cpu"))}))
"""


@pytest.mark.slow
@needs_env
def test_fine_tuning_starts_from_the_initial_model(point: Path, tmp_path: Path) -> None:
    init = Path(json.loads((point / "status.json").read_text())["model"])
    # a tiny lr: one epoch barely moves the weights, so its validation errors are the initial model's
    params = {"epochs": 1, "batch_size": 4, "lr": 1e-7, "num_features": 64}  # size settings are the initial model's
    out = run_script(TRANSFER, data=point.parent / "data", out=tmp_path / "tl", init=init, params=json.dumps(params))
    meta = json.loads((Path(out["model"]) / "meta.json").read_text())
    assert meta["init_model"] == str(init) and (Path(out["model"]) / "init.ckpt").is_file()
    assert meta["type_names"] == ["Mo", "S", "W"] and meta["r_max"] == TINY["r_max"]
    fine = pd.read_csv(tmp_path / "tl" / "metrics.csv").iloc[0]
    shipped = pd.read_csv(point / "metrics.csv").set_index("epoch").loc[json.loads((init / "meta.json").read_text())["epoch"]]
    for col in ("energy_mae_meV_per_atom", "forces_mae_meV_per_A", "stress_mae"):
        assert fine[col] == pytest.approx(shipped[col], rel=0.01), col


@pytest.mark.slow
@needs_env
def test_relax_cli_in_the_nequip_environment(point: Path, tmp_path: Path) -> None:
    start = []
    for atoms in frames(3, 5):
        atoms.calc = None
        atoms.rattle(0.1, seed=1)
        start.append(atoms)
    ase.io.write(tmp_path / "start.extxyz", start)
    run_in_env(["-m", "mlff2d", "relax", "--family", "nequip", "--point", str(point), "--start", str(tmp_path / "start.extxyz"),
                "--shard", "0", "--shard-size", "3", "--fmax", "0.002", "--max-steps", "30", "--records", str(tmp_path / "r.parquet"),
                "--structures", str(tmp_path / "s.extxyz"), "--device", "cpu"])
    records = pd.read_parquet(tmp_path / "r.parquet")
    assert len(records) == 3
    finals = ase.io.read(tmp_path / "s.extxyz", ":")
    assert len(finals) == 3 and all(np.isfinite(a.positions).all() for a in finals)
    assert not any(str(a.info.get("failure", "")).startswith(("model_failed", "training_failed")) for a in finals), [a.info for a in finals]
    moved = [np.abs(a.positions - s.positions).max() for a, s in zip(finals, start)]
    assert max(moved) > 1e-4  # the model's forces moved the atoms
