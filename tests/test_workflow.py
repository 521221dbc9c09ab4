"""The Snakemake campaign: lint, a dry run of the full study config, a real run of the data
pipeline on generated Alexandria files, and the NequIP export read by NequIP itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import ase.io
import pandas as pd
import pytest
import yaml

from mlff2d.demo.synthetic import write_alexandria

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
STAGES = ("ingest", "filter_outliers", "select_steps", "split", "export", "relax_sets", "dataset_figures", "train_uff", "validation_curves", "all")


def snakemake(workdir: Path, *args: str, timeout: int = 900) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    cmd = [str(BIN / "snakemake"), "-s", str(ROOT / "Snakefile"), "--directory", str(workdir), *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)


def campaign_dir(tmp_path: Path, n_materials: int, alloys: int = 0, **overrides: object) -> Path:
    """A working directory whose config/config.yaml is the study's, pointed at generated data:
    ``n_materials`` 2D materials and, when ``alloys`` > 0, that many materials for each of the
    study's alloy datasets (none otherwise)."""
    write_alexandria(tmp_path / "alexandria", n_materials, n_steps=8, per_file=max(1, n_materials // 3), seed=3)
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    config["data"]["sources"][0]["path"] = str(tmp_path / "alexandria" / "*.json.bz2")
    for k, dataset in enumerate(config["alloys"]["datasets"]):
        write_alexandria(tmp_path / "alloys" / dataset["name"], max(alloys, 1), n_steps=8, seed=10 + k, prefix=f"{dataset['name']}-")
        dataset["sources"][0]["path"] = str(tmp_path / "alloys" / dataset["name"] / "*.json.bz2")
    if not alloys:
        config["alloys"]["datasets"] = []
    config.update(overrides)
    if "uff" in overrides and "repeats" not in overrides:
        config.pop("repeats", None)  # the study's repeat points are not in a grid of the test's own
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    return tmp_path


@pytest.mark.slow
def test_lint_is_clean() -> None:
    out = snakemake(ROOT, "--lint")
    assert out.returncode == 0, out.stderr
    assert "Congratulations, your workflow is in a good condition" in out.stdout + out.stderr


@pytest.mark.slow
def test_dry_run_of_the_study_lists_every_stage(tmp_path: Path) -> None:
    work = campaign_dir(tmp_path, 30, alloys=3)
    out = snakemake(work, "-n", "--cores", "1")
    assert out.returncode == 0, out.stderr
    text = out.stdout + out.stderr
    for stage in STAGES:
        assert f"\n{stage} " in text or f"rule {stage}:" in text, f"stage {stage} missing from the dry run"
    # only the exports a training reads: 2d, the sweeps' (M3GNet 3 cutoffs, MACE 1, split 90-5-5);
    # 9 alloys + combined: M3GNet 0.01 x 90-5-5, MACE 2 cutoffs x 2 splits (the curves' among them)
    # split repeats (90-5-5 x 3): the repeated sweep points (M3GNet 0.01, MACE 1e6) and the MACE
    # alloy models (2 cutoffs) train on repeats 1 and 2 too
    assert text.count("rule export:") == 4 + 10 * (1 + 4) + 2 * (2 + 10 * 2)
    exports = {job_field(b, "output") for b in jobs(text, "rule export:")}
    read = {i for rule in ("rule train_uff:", "rule train_uff_repeat:", "rule train_alloy:", "rule curve_subset:") for b in jobs(text, rule)
            for i in job_field(b, "input").split(", ") if "/export/" in i}
    assert len(exports) == 98 and exports == read, (sorted(exports - read), sorted(read - exports))
    assert not any("/export/nequip/" in e for e in exports)
    assert text.count("rule ingest:") == 1 + 10 and text.count("checkpoint relax_sets:") == 2 + 10 * 2 + 2 * (1 + 10)
    assert text.count("rule train_uff_repeat:") == 2 * 2
    assert text.count("rule train_uff:") == 18 + 6
    assert "uff/m3gnet/ecut~1e6/lr~0.0001/bs~512/status.json" in text


def jobs(text: str, header: str) -> list[str]:
    """The dry run's job blocks of one rule (``rule export:``)."""
    return [b for b in text.split("\n\n") if any(l.strip() == header for l in b.splitlines())]


def job_field(block: str, field: str) -> str:
    return next(l.split(":", 1)[1].strip() for l in block.splitlines() if l.strip().startswith(f"{field}:"))


@pytest.mark.slow
def test_extra_exports_are_asked_for(tmp_path: Path) -> None:
    """export.families adds exports no rule reads, for every e_cut x split of every dataset."""
    work = campaign_dir(tmp_path, 6, export={"families": ["nequip"]})
    out = snakemake(work, "data", "-n", "--cores", "1")
    assert out.returncode == 0, out.stderr[-3000:]
    exports = {job_field(b, "output") for b in jobs(out.stdout + out.stderr, "rule export:")}
    nequip = {e for e in exports if "/export/nequip/" in e}
    assert len(nequip) == 4 * 2 and len(exports - nequip) == 4  # 2d only: 4 cutoffs x 2 splits


@pytest.mark.slow
def test_bad_config_stops_with_key(tmp_path: Path) -> None:
    work = campaign_dir(tmp_path, 3)
    cfg = yaml.safe_load((work / "config" / "config.yaml").read_text())
    cfg["outliers"]["force_maximum"] = 3.0
    (work / "config" / "config.yaml").write_text(yaml.safe_dump(cfg))
    out = snakemake(work, "-n", "--cores", "1")
    assert out.returncode != 0
    assert "unknown config key 'outliers.force_maximum'" in out.stdout + out.stderr


@pytest.mark.slow
def test_data_pipeline_end_to_end(tmp_path: Path) -> None:
    work = campaign_dir(
        tmp_path, 40, alloys=10, campaign="e2e", selection={"e_cuts": [0.01, 0.02, 1000000.0]}, splits={"80-10-10": [0.8, 0.1, 0.1]},
        uff={"split": "80-10-10"}, export={"families": ["nequip"]},
    )
    cfg = yaml.safe_load((work / "config" / "config.yaml").read_text())
    cfg["alloys"].update(datasets=cfg["alloys"]["datasets"][:2], e_cuts=[1000000.0], splits=["80-10-10"])
    cfg["alloys"]["learning_curve"]["split"] = "80-10-10"  # a configured alloy split (checked at parse time)
    for family in cfg["alloys"]["families"].values():  # the study's per-family cutoffs and splits -> these
        family.update(e_cuts=None, splits=None)
    (work / "config" / "config.yaml").write_text(yaml.safe_dump(cfg))
    out = snakemake(work, "--cores", "2", "data")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    data = work / "results" / "e2e" / "data" / "2d"
    ledger = pd.read_csv(data / "ledger_materials.csv")
    assert len(ledger) == 40 and set(ledger["reason"]) == {"kept"}
    split = pd.read_csv(data / "split~80-10-10.csv")
    assert split["split"].value_counts().to_dict() == {"train": 32, "val": 4, "test": 4}
    # e_cut 1e6 always falls back to first, middle, last: 3 frames per material
    fallback = ase.io.read(data / "export" / "mace" / "ecut~1e6" / "split~80-10-10" / "train.extxyz", index=":")
    assert len(fallback) == 32 * 3
    assert pd.read_parquet(data / "export" / "m3gnet" / "ecut~0.01" / "split~80-10-10" / "val.parquet")["energy"].lt(0).all()
    assert len(ase.io.read(data / "relax" / "split~80-10-10" / "test_reference.extxyz", index=":")) == 4
    for stem in ("elements", "elements_ptable", "spacegroups", "distributions", "selected_steps_per_element"):
        assert (data / "figures" / f"{stem}.png").stat().st_size > 1000
        assert (data / "figures" / f"{stem}.pdf").exists()
    assert (work / "results" / "e2e" / "benchmarks" / "ingest" / "2d.tsv").exists()
    resolved = yaml.safe_load((work / "results" / "e2e" / "config.resolved.yaml").read_text())
    assert resolved["campaign"] == "e2e" and resolved["outliers"]["max_sites"] == 20  # defaults filled
    assert json.loads((work / "results" / "e2e" / "provenance.json").read_text())["packages"]["mlff2d"]
    # alloy datasets: their own pipeline; the combined dataset's split is the union of theirs
    alloy_splits = [pd.read_csv(work / "results" / "e2e" / "data" / a / "split~80-10-10.csv") for a in ("IrRuS2", "MoTaS2")]
    combined = pd.read_csv(work / "results" / "e2e" / "data" / "alloys" / "split~80-10-10.csv")
    pd.testing.assert_frame_equal(combined, pd.concat(alloy_splits).sort_values("material_id").reset_index(drop=True))
    assert combined["material_id"].str.startswith("MoTaS2-").sum() == 10
    alloy_sets = work / "results" / "e2e" / "data" / "alloys" / "relax" / "split~80-10-10"
    assert len(ase.io.read(alloy_sets / "train_start.extxyz", index=":")) == (combined["split"] == "train").sum() == 16
    # nothing left to do on a second run
    again = snakemake(work, "-n", "--cores", "1", "data")
    assert "Nothing to be done" in again.stdout + again.stderr

    # the NequIP export loads in the nequip environment through NequIP's own ASE dataset
    nequip_python = ROOT / ".venv" / "nequip" / "bin" / "python"
    val = data / "export" / "nequip" / "ecut~0.01" / "split~80-10-10" / "val.extxyz"
    ref = ase.io.read(val, index=0)
    code = (
        "import sys; from nequip.data.dataset import ASEDataset; "
        f"d = ASEDataset(file_path={str(val)!r}, ase_args={{'format': 'extxyz'}}); x = d[0]; "
        "print(len(d), float(x['total_energy']), float(x['stress'].reshape(-1)[0]))"
    )
    res = subprocess.run([str(nequip_python), "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    n, energy, sxx = res.stdout.split()[-3:]
    assert int(n) == len(ase.io.read(val, index=":"))
    assert float(energy) == pytest.approx(ref.get_potential_energy())
    assert float(sxx) == pytest.approx(ref.get_stress()[0])


@pytest.mark.slow
def test_missing_data_is_named(tmp_path: Path) -> None:
    work = campaign_dir(tmp_path, 3)
    cfg = yaml.safe_load((work / "config" / "config.yaml").read_text())
    cfg["data"]["sources"][0]["path"] = "nowhere/*.json.bz2"
    (work / "config" / "config.yaml").write_text(yaml.safe_dump(cfg))
    out = snakemake(work, "-n", "--cores", "1")
    assert out.returncode != 0
    assert "data source 'nowhere/*.json.bz2' (alexandria) of dataset '2d' matches no input files; set data.sources" in out.stdout + out.stderr


@pytest.mark.slow
def test_sweep_point_by_path_and_named_target(tmp_path: Path) -> None:
    tiny = {"epochs": 1, "nblocks": 1, "units": 16, "dim_node_embedding": 16, "dim_edge_embedding": 16}
    work = campaign_dir(
        tmp_path, 20, campaign="sw", selection={"e_cuts": [1000000.0]}, splits={"80-10-10": [0.8, 0.1, 0.1]},
        export={"families": ["m3gnet"]}, figures={"enabled": False},
        uff={"split": "80-10-10", "families": {
            "m3gnet": {"grid": {"e_cut": [1000000.0], "lr": [0.001, 0.0001], "batch_size": [4]}, "params": tiny,
                       "resources": {"gpu": 0, "cpus": 1}},
            "mace": {"enabled": False}}},
    )
    uff = work / "results" / "sw" / "uff" / "m3gnet" / "ecut~1e6"
    point = "results/sw/uff/m3gnet/ecut~1e6/lr~0.001/bs~4/status.json"
    out = snakemake(work, "--cores", "2", point)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert json.loads((work / point).read_text())["status"] == "ok"
    assert len(pd.read_csv(uff / "lr~0.001" / "bs~4" / "metrics.csv")) == 1
    assert not (uff / "lr~0.0001").exists()  # only the asked-for point ran
    before = (work / point).stat().st_mtime

    out = snakemake(work, "--cores", "2", "sweep_m3gnet")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert (uff / "lr~0.0001" / "bs~4" / "status.json").exists()
    assert (work / "results" / "sw" / "uff" / "m3gnet" / "validation_curves.png").exists()
    assert (work / point).stat().st_mtime == before  # the finished point was not retrained

    forced = snakemake(work, "-n", "--cores", "1", "--force", point)
    text = forced.stdout + forced.stderr
    assert text.count("rule train_uff:") == 1 and "lr~0.001/bs~4" in text


@pytest.mark.slow
def test_killed_training_resumes_when_the_rule_reruns(tmp_path: Path) -> None:
    import signal
    import time

    # 40 epochs of 0.1-0.3 s: the kill comes as soon as the training's own checkpoint history
    # shows 2 finished epochs, with 38 left, so the training cannot end before it
    epochs = 40
    tiny = {"epochs": epochs, "nblocks": 1, "units": 16, "dim_node_embedding": 16, "dim_edge_embedding": 16}
    work = campaign_dir(
        tmp_path, 20, campaign="kill", selection={"e_cuts": [1000000.0]}, splits={"80-10-10": [0.8, 0.1, 0.1]},
        export={"families": ["m3gnet"]}, figures={"enabled": False},
        uff={"split": "80-10-10", "families": {
            "m3gnet": {"grid": {"e_cut": [1000000.0], "lr": [0.001], "batch_size": [4]}, "params": tiny,
                       "resources": {"gpu": 0, "cpus": 1}},
            "mace": {"enabled": False}}},
    )
    point = work / "results" / "kill" / "uff" / "m3gnet" / "ecut~1e6" / "lr~0.001" / "bs~4"
    target = str((point / "status.json").relative_to(work))
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    cmd = [str(BIN / "snakemake"), "-s", str(ROOT / "Snakefile"), "--directory", str(work), "--cores", "1"]
    proc = subprocess.Popen([*cmd, target], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    history = point / "checkpoints" / "metrics.csv"
    deadline = time.time() + 600
    while not (history.exists() and len(pd.read_csv(history)) >= 2):
        assert proc.poll() is None, "snakemake ended before the training had checkpointed 2 epochs"
        assert time.time() < deadline, "no checkpointed epoch within 10 minutes"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # pre-emption: the whole job dies at once
    proc.wait()
    before = pd.read_csv(history)
    assert 2 <= len(before) < epochs and not (point / "status.json").exists()

    subprocess.run([*cmd, "--unlock"], capture_output=True, env=env, check=True)
    out = subprocess.run([*cmd, "--rerun-incomplete", target], capture_output=True, text=True, env=env, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    status = json.loads((point / "status.json").read_text())
    assert status["status"] == "ok"
    assert Path(status["resume"]["resumed_from"]).name in ("last.ckpt", "last.previous.ckpt")
    after = pd.read_csv(point / "metrics.csv")
    assert after["epoch"].tolist() == list(range(1, epochs + 1))
    pd.testing.assert_frame_equal(after.iloc[: len(before) - 1], before.iloc[: len(before) - 1])
    log = (point / "train.log").read_text()
    assert "resuming" in log


@pytest.mark.slow
def test_tables_target_never_trains(tmp_path: Path) -> None:
    work = campaign_dir(tmp_path, 10, alloys=3)
    out = snakemake(work, "tables", "ptables", "-n", "--cores", "1")
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-3000:]
    assert "rule tables:" in text and "rule ptables:" in text
    assert "rule train_uff:" not in text and "rule relax_shard:" not in text
    # the alloy tables with them: still nothing is trained
    out = snakemake(work, "tables", "ptables", "alloy_tables", "-n", "--cores", "1")
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-3000:]
    assert "rule alloy_tables:" in text and "rule train_alloy:" not in text and "rule train_uff:" not in text
    # the full campaign waits for every point: 2 sets x (18 + 6) points are evaluated
    full = snakemake(work, "-n", "--cores", "1")
    assert (full.stdout + full.stderr).count("rule train_uff:") == 24


@pytest.mark.slow
def test_all_asks_for_the_thesis_figures_and_tables(tmp_path: Path) -> None:
    """Figs. 6.6, 6.10-6.13, 6.15-6.24, the training-frequency figure and table 6.2 come from `all`."""
    work = campaign_dir(tmp_path, 30, alloys=3)
    out = snakemake(work, "-n", "--cores", "1")
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout + out.stderr
    wanted = set(job_field(jobs(text, "rule all:")[0], "input").split(", "))
    point = "results/thesis/uff/m3gnet/ecut~1e6/lr~0.0001/bs~128/relax/test"
    for name in ("error_distributions", "spacegroup_mae", "element_frequency"):
        assert f"{point}/{name}.png" in wanted, name
    assert "results/thesis/alloys/mace/TiTaS2/transfer/ecut~0.001/split~80-10-10/relax/val/error_distributions.png" in wanted
    assert {"results/thesis/data/alloys/figures", "results/thesis/data/alloy_figures/energy_per_atom.png",
            "results/thesis/formation/report/table_6_2.csv"} <= wanted
    assert text.count("rule alloy_energy_figure:") == 1 and text.count("rule dataset_figures:") == 2  # 2d and alloys
    # one per split instance: 2d (the uff split 90-5-5, 3 repeats) and 10 alloy datasets x (90-5-5 x 3 + 80-10-10)
    assert text.count("rule train_elements:") == 3 + 10 * (3 + 1)
