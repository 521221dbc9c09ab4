"""Energy-only NequIP formation-energy models: inputs (per-cell targets, failed relaxations left
out), the generated config, a real tiny training in the nequip environment, and a failure that
is recorded instead of raised."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import ase.io
import numpy as np
import pandas as pd
import pytest
from formation_helpers import ROOT, demo_formation

from mlff2d.formation.nequip_config import hydra_config
from mlff2d.formation.nequip_model import DEFAULTS, build_inputs, resolve_settings

NEQUIP_MLFF2D = ROOT / ".venv" / "nequip" / "bin" / "mlff2d"
TINY = {"max_epochs": 3, "num_layers": 1, "num_features": 4, "radial_mlp_width": 8, "r_max": 3.5, "batch_size": 16}


@pytest.fixture(scope="module")
def mows2(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return demo_formation(tmp_path_factory.mktemp("nequip_mows2"))


def test_inputs_have_per_cell_targets_and_leave_failed_relaxations_out(tmp_path: Path, mows2: tuple[Path, Path]) -> None:
    relax, fe = mows2
    table = pd.read_csv(fe, dtype={"material_id": str}).set_index("material_id")
    # an ML relaxation set: one failed, one stopped at the step limit (kept), one with a wrong atom count
    final = ase.io.read(relax / "train_reference.extxyz", index=":")
    final[0].info["failure"] = "exploded"
    final[1].info["failure"] = "step_limit"
    final[2] = final[2][:-1]
    ase.io.write(tmp_path / "final.extxyz", final)
    info = build_inputs(fe, {"train": tmp_path / "final.extxyz", "val": relax / "val_reference.extxyz",
                             "test": relax / "test_reference.extxyz"}, tmp_path / "data")
    left = info["left_out"]["train"]
    assert left[final[0].info["material_id"]] == "exploded"
    assert left[final[2].info["material_id"]].startswith("atom_count")
    assert info["counts"]["train"] == len(final) - 2
    for atoms in ase.io.read(tmp_path / "data" / "train.extxyz", index=":"):
        expected = table.loc[atoms.info["material_id"], "formation_energy_per_atom_eV"] * len(atoms) * 1000.0
        assert atoms.get_potential_energy() == pytest.approx(expected, abs=1e-6)  # extensive target, meV per cell
        assert atoms.pbc.all()


def test_config_is_energy_only_with_thesis_defaults(tmp_path: Path) -> None:
    s = resolve_settings({})
    assert s["lr"] == 0.0075 and s["batch_size"] == 16
    cfg = hydra_config(tmp_path, tmp_path / "run", ["Mo", "S", "W"], ["train", "val", "test"], s)
    module = cfg["training_module"]
    assert module["_target_"] == "nequip.train.NequIPLightningModule"
    assert module["loss"] == {"_target_": "nequip.train.EnergyOnlyLoss", "per_atom_energy": True}
    assert module["model"]["do_derivatives"] is False
    assert module["optimizer"]["lr"] == 0.0075 and cfg["data"]["train_dataloader"]["batch_size"] == 16
    assert cfg["data"]["stats_manager"]["_target_"] == "nequip.data.EnergyOnlyDataStatisticsManager"
    with pytest.raises(ValueError, match="unknown NequIP formation setting"):
        resolve_settings({"epochs": 3})
    assert set(TINY) <= set(DEFAULTS)


@pytest.mark.slow
@pytest.mark.skipif(not NEQUIP_MLFF2D.exists(), reason="needs the nequip environment (.venv/nequip)")
def test_tiny_energy_only_training_in_the_nequip_environment(tmp_path: Path, mows2: tuple[Path, Path]) -> None:
    relax, fe = mows2
    out = tmp_path / "split~80-10-10" / "dft"  # '~' as in the campaign's paths (Hydra overrides reject it)
    cmd = [str(NEQUIP_MLFF2D), "formation-nequip", "--formation", str(fe),
           *[x for s in ("train", "val", "test") for x in (f"--{s}", str(relax / f"{s}_reference.extxyz"))],
           "--outdir", str(out), "--params", json.dumps(TINY)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    status = json.loads((out / "status.json").read_text())
    assert status["status"] == "ok", status.get("reason")
    metrics = pd.read_csv(out / "metrics.csv")
    assert list(metrics["epoch"]) == [1, 2, 3] and np.isfinite(metrics["energy_mae_meV_per_atom"]).all()
    pred = pd.read_csv(out / "predictions.csv", dtype={"material_id": str})
    table = pd.read_csv(fe, dtype={"material_id": str})
    assert sorted(pred["material_id"]) == sorted(table["material_id"])
    merged = pred.merge(table, on="material_id", suffixes=("", "_fe"))
    assert (merged["set"] == merged["set_fe"]).all()
    assert np.allclose(merged["formation_energy_per_atom_eV"], merged["formation_energy_per_atom_eV_fe"], atol=1e-6)
    assert np.isfinite(pred["predicted_per_atom_eV"]).all()
    assert np.allclose(pred["predicted_per_atom_eV"] * pred["n_atoms"], pred["predicted_per_cell_eV"])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["sets"]["test"]["n"] == (table["set"] == "test").sum()
    config = (out / "config.yaml").read_text()
    assert "do_derivatives: false" in config and "EnergyOnlyLoss" in config


@pytest.mark.slow
@pytest.mark.skipif(not NEQUIP_MLFF2D.exists(), reason="needs the nequip environment (.venv/nequip)")
def test_failed_training_is_recorded_not_raised(tmp_path: Path, mows2: tuple[Path, Path]) -> None:
    relax, fe = mows2
    final = ase.io.read(relax / "val_reference.extxyz", index=":")
    for atoms in final:
        atoms.info["failure"] = "training_failed: x"  # a failed MACE model relaxes nothing
    ase.io.write(tmp_path / "val_failed.extxyz", final)
    out = tmp_path / "ml1"
    cmd = [str(NEQUIP_MLFF2D), "formation-nequip", "--formation", str(fe), "--train", str(relax / "train_reference.extxyz"),
           "--val", str(tmp_path / "val_failed.extxyz"), "--test", str(relax / "test_reference.extxyz"),
           "--outdir", str(out), "--params", json.dumps(TINY)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    status = json.loads((out / "status.json").read_text())
    assert status["status"] == "failed" and "too few usable structures" in status["reason"]
    assert pd.read_csv(out / "predictions.csv").empty


@pytest.mark.slow
@pytest.mark.skipif(not NEQUIP_MLFF2D.exists(), reason="needs the nequip environment (.venv/nequip)")
def test_data_parallel_training_on_two_cpu_processes(tmp_path: Path, mows2: tuple[Path, Path]) -> None:
    """devices > 1: Lightning DDP with nequip's SimpleDDPStrategy (gloo on CPU here, NCCL on GPUs),
    then the predictions on one device, in the input order."""
    relax, fe = mows2
    out = tmp_path / "split~80-10-10" / "dft"
    cmd = [str(NEQUIP_MLFF2D), "formation-nequip", "--formation", str(fe),
           *[x for s in ("train", "val", "test") for x in (f"--{s}", str(relax / f"{s}_reference.extxyz"))],
           "--outdir", str(out), "--params", json.dumps({**TINY, "batch_size": 8, "devices": 2})]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    status = json.loads((out / "status.json").read_text())
    assert status["status"] == "ok", status.get("reason")
    train_config = (out / "config.yaml").read_text()
    assert "SimpleDDPStrategy" in train_config and "devices: 2" in train_config
    assert (out / "run" / "train_ddp_process_1.log").exists()  # a second rank really ran
    assert list(pd.read_csv(out / "metrics.csv")["epoch"]) == [1, 2, 3]
    pred = pd.read_csv(out / "predictions.csv", dtype={"material_id": str})
    assert sorted(pred["material_id"]) == sorted(pd.read_csv(fe, dtype={"material_id": str})["material_id"])
    assert np.isfinite(pred["predicted_per_atom_eV"]).all()


@pytest.mark.slow
@pytest.mark.skipif(not NEQUIP_MLFF2D.exists(), reason="needs the nequip environment (.venv/nequip)")
def test_a_diverged_training_is_failed_with_its_epoch(tmp_path: Path, mows2: tuple[Path, Path]) -> None:
    relax, fe = mows2
    out = tmp_path / "diverged"
    cmd = [str(NEQUIP_MLFF2D), "formation-nequip", "--formation", str(fe),
           *[x for s in ("train", "val", "test") for x in (f"--{s}", str(relax / f"{s}_reference.extxyz"))],
           "--outdir", str(out), "--params", json.dumps({**TINY, "lr": 1.0e6})]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    status = json.loads((out / "status.json").read_text())
    assert status["status"] == "failed" and status["reason"].startswith("diverged at epoch "), status
    assert pd.read_csv(out / "predictions.csv").empty
