"""The demo's second campaign (config/demo_families.yaml): NequIP and GAP, the two families beside
M3GNet and MACE, through the same sweep, relaxation, tables, alloy models and diagnostics, on the
committed demo data; GAP in normal mode only (a kernel fit has no fine-tuning)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import ase.io
import numpy as np
import pandas as pd
import pytest
import yaml

from mlff2d.families import element_energies

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
CONFIG = ROOT / "config" / "demo_families.yaml"


def composition_baseline_mae(export: Path) -> float:
    """The validation energy MAE (meV/atom) of per-element energies fitted on the export's
    training frames: what a force field's direct validation error must beat."""
    train = ase.io.read(export / "train.extxyz", index=":")
    val = ase.io.read(export / "val.extxyz", index=":")
    mu = element_energies(train, [a.info["REF_energy"] for a in train])
    err = [abs(a.info["REF_energy"] / len(a) - sum(mu[s] for s in a.get_chemical_symbols()) / len(a)) for a in val]
    return 1000.0 * float(np.mean(err))


@pytest.fixture(scope="module")
def campaign(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("demo_families")
    (work / "config").mkdir()
    shutil.copy(CONFIG, work / "config" / "demo_families.yaml")
    (work / "resources").symlink_to(ROOT / "resources")
    cmd = [str(BIN / "snakemake"), "-s", str(ROOT / "Snakefile"), "--directory", str(work),
           "--configfile", "config/demo_families.yaml", "--cores", "2"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ), timeout=2400)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    assert "mlff2d: campaign 'demo_families' is complete" in out.stdout + out.stderr
    return work / "results" / "demo_families"


@pytest.mark.slow
@pytest.mark.skipif(not (ROOT / "resources" / "demo" / "2d").is_dir(), reason="demo data not generated")
def test_nequip_and_gap_sweeps_relax_and_tabulate(campaign: Path) -> None:
    config = yaml.safe_load(CONFIG.read_text())
    base = json.loads((campaign / "baseline" / "test" / "summary.json").read_text())
    for family in ("nequip", "gap"):
        points = sorted((campaign / "uff" / family).glob("ecut~*/lr~*/bs~*"))
        assert len(points) == 2, family
        for point in points:
            status = json.loads((point / "status.json").read_text())
            assert status["status"] == "ok" and status["family"] == family, (point, status.get("reason"))
            metrics = pd.read_csv(point / "metrics.csv")
            assert metrics[["energy_mae_meV_per_atom", "forces_mae_meV_per_A", "stress_mae"]].notna().all().all()
            if family == "gap":  # a one-shot fit: one row, the fitted model's validation errors
                assert len(metrics) == 1
            else:
                assert len(metrics) == config["uff"]["families"][family]["params"]["epochs"]
                forces = metrics["forces_mae_meV_per_A"]
                assert forces.iloc[-1] <= 0.8 * forces.iloc[0], (point, forces.tolist())  # NequIP: 0.74 in the demo
            for relax_set in ("val", "test"):
                summary = json.loads((point / "relax" / relax_set / "summary.json").read_text())
                assert summary["n_evaluated"] == summary["n"] > 0, (point, relax_set)
                assert summary["steps"]["median"] >= 5 and summary["steps"]["share_step0"] <= 0.1, (point, summary["steps"])
        best = min(points, key=lambda p: json.loads((p / "relax" / "val" / "summary.json").read_text())["energy"]["mae"])
        test = json.loads((best / "relax" / "test" / "summary.json").read_text())
        assert test["energy"]["mae"] < base["energy"]["mae"], (family, best, test["energy"], base["energy"])
        table = pd.read_csv(campaign / "tables" / f"table_{family}.csv")
        assert set(table["set"]) == {"val", "test"} and table["baseline"].notna().all()
        assert (campaign / "tables" / f"table_{family}.html").stat().st_size > 500
    assert not (campaign / "tables" / "table_4_1.csv").exists()  # M3GNet and MACE are off here
    summary = pd.read_csv(campaign / "tables" / "relaxation_summary.csv")
    assert set(summary["status"]) == {"ok"} and set(summary["family"]) == {"nequip", "gap", "baseline"}


@pytest.mark.slow
@pytest.mark.skipif(not (ROOT / "resources" / "demo" / "2d").is_dir(), reason="demo data not generated")
def test_alloy_models_gap_normal_only_and_below_the_baseline(campaign: Path) -> None:
    alloys = campaign / "alloys"
    for alloy in ("MoWS2", "IrRuS2"):
        gap = alloys / "gap" / alloy / "normal" / "ecut~1e6" / "split~80-10-10"
        assert json.loads((gap / "status.json").read_text())["status"] == "ok"
        assert not (alloys / "gap" / alloy / "transfer").exists()  # no fine-tuning: normal mode only
        direct = pd.read_csv(gap / "metrics.csv").iloc[0]
        export = campaign / "data" / alloy / "export" / "mace" / "ecut~1e6" / "split~80-10-10"
        baseline = composition_baseline_mae(export)
        assert np.isfinite(direct[["energy_mae_meV_per_atom", "forces_mae_meV_per_A"]].to_numpy(dtype=float)).all()
        assert direct["energy_mae_meV_per_atom"] < baseline, (alloy, direct["energy_mae_meV_per_atom"], baseline)
        for mode in ("normal", "transfer"):
            nequip = alloys / "nequip" / alloy / mode / "ecut~1e6" / "split~80-10-10"
            status = json.loads((nequip / "status.json").read_text())
            assert status["status"] == "ok", (nequip, status.get("reason"))
        source = json.loads((alloys / "nequip" / alloy / "transfer" / "ecut~1e6" / "split~80-10-10" / "transfer_source.json").read_text())
        assert source["criterion"] == "best" and source["refit_element_energies"] is True
    gap_table = (alloys / "tables" / "table_alloys_gap_split~80-10-10.md").read_text()
    header = gap_table.splitlines()[0]
    assert "MoWS2" in gap_table and "IrRuS2" in gap_table and "normal" in header and "transfer" not in header
    nequip_table = pd.read_csv(alloys / "tables" / "table_alloys_nequip_split~80-10-10.csv")
    assert any("transfer" in str(c) for c in nequip_table.columns)
    best = (alloys / "tables" / "table_4_7_split~80-10-10.md").read_text()
    assert "GAP" in best and "NequIP" in best  # the best configuration of each family, side by side
    diagnostics = (campaign / "diagnostics.md").read_text()
    # every model is checked (4 sweep points, 4 NequIP and 2 GAP alloy models) and named by its path
    assert "of 10 models" in diagnostics and "uff/nequip/" in diagnostics and "alloys/gap/" in diagnostics
