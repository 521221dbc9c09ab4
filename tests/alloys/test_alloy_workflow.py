"""The alloy rules in a dry run of the study config (generated input files): a transfer model
trains from the family's whole universal sweep ("best") with the thesis learning rates, a
normal one from scratch, learning-curve points train on nested subsets, and a transfer source
that is not a sweep point stops the run naming the config key (a few seconds); and a real run
in which one alloy's training data is broken (about a minute and a half)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from mlff2d.demo.synthetic import write_alexandria

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    cmd = [str(BIN / "snakemake"), "-s", str(ROOT / "Snakefile"), "--directory", str(workdir), *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)


def study(tmp_path: Path, **alloy_overrides: object) -> Path:
    """The study's config with two generated alloys (and a generated 2D dataset)."""
    write_alexandria(tmp_path / "alexandria", 6, n_steps=4, per_file=3, seed=3)
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    config["data"]["sources"][0]["path"] = str(tmp_path / "alexandria" / "*.json.bz2")
    config["alloys"]["datasets"] = config["alloys"]["datasets"][2:4]  # MoWS2, NbMoS2
    for k, dataset in enumerate(config["alloys"]["datasets"]):
        write_alexandria(tmp_path / "alloys" / dataset["name"], 4, n_steps=4, seed=10 + k, prefix=f"{dataset['name']}-")
        dataset["sources"][0]["path"] = str(tmp_path / "alloys" / dataset["name"] / "*.json.bz2")
    for key, value in alloy_overrides.items():
        config["alloys"]["families"]["mace"][key] = value
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    return tmp_path


@pytest.mark.slow
def test_alloy_jobs_in_a_dry_run(tmp_path: Path) -> None:
    work = study(tmp_path)
    model = "results/thesis/alloys/mace/MoWS2/{}/ecut~1e6/split~90-5-5"
    curve = "results/thesis/alloys/mace/NbMoS2/{}/ecut~1e6/split~90-5-5/frac~0.05"
    targets = [f"{model.format(m)}/status.json" for m in ("normal", "transfer")] + [f"{curve.format('transfer')}/status.json"]
    out = snakemake(work, "-n", "-p", "--cores", "1", *targets)
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout + out.stderr
    commands = [line for line in text.splitlines() if "train-alloy" in line]
    transfer = next(c for c in commands if model.format("transfer") + " " in c)
    assert "--mode transfer --lr 0.0001 --batch-size 16" in transfer and "--transfer-from best" in transfer
    assert transfer.count("results/thesis/uff/mace/ecut~1e6/") == 6  # the whole MACE sweep
    normal = next(c for c in commands if model.format("normal") + " " in c)
    assert "--mode normal --lr 0.003 --batch-size 16" in normal and "--universal" not in normal
    # the learning-curve point trains on its nested subset of the training split
    assert "rule curve_subset:" in text and "--fraction 0.05" in text
    assert any("data/NbMoS2/subsets/mace/ecut~1e6/split~90-5-5/frac~0.05" in c and curve.format("transfer") in c for c in commands)
    # the universal sweep trains first
    assert text.count("rule train_uff:") == 6


def transfer_job_inputs(text: str, model: str) -> list[str]:
    """The input files of the dry run's train_alloy job that writes ``model``/status.json."""
    for block in text.split("\n\n"):
        if "rule train_alloy:" in block and f"{model}/status.json" in block:
            line = next(l for l in block.splitlines() if l.strip().startswith("input:"))
            return line.split("input:", 1)[1].strip().split(", ")
    raise AssertionError(f"no train_alloy job for {model}")


@pytest.mark.slow
@pytest.mark.parametrize("criterion", ["best", "best_direct"])
def test_best_transfer_waits_for_the_universal_val_relaxations(tmp_path: Path, criterion: str) -> None:
    """transfer_from best ranks by the val relaxation energy MAE: the transfer job reads every
    sweep point's relax/val/summary.json (so the universal val relaxations are scheduled first);
    best_direct reads only their status (and metrics)."""
    work = study(tmp_path, transfer_from=criterion)
    model = "results/thesis/alloys/mace/MoWS2/transfer/ecut~1e6/split~90-5-5"
    out = snakemake(work, "-n", "--cores", "1", f"{model}/status.json")
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout + out.stderr
    inputs = transfer_job_inputs(text, model)
    summaries = [i for i in inputs if i.endswith("/relax/val/summary.json")]
    statuses = [i for i in inputs if i.startswith("results/thesis/uff/mace/") and i.endswith("/status.json")]
    assert len(statuses) == 6
    if criterion == "best":
        assert sorted(summaries) == sorted(s.replace("status.json", "relax/val/summary.json") for s in statuses)
        assert "checkpoint relax_sets:" in text  # the universal relaxation sets, before the shards
    else:
        assert summaries == []


@pytest.mark.slow
def test_unknown_transfer_source_names_the_key(tmp_path: Path) -> None:
    work = study(tmp_path, transfer_from="ecut~1e6/lr~0.5/bs~64")
    out = snakemake(work, "-n", "--cores", "1", "results/thesis/alloys/mace/MoWS2/transfer/ecut~1e6/split~90-5-5/status.json")
    assert out.returncode != 0
    assert "alloys.families.mace.transfer_from" in out.stdout + out.stderr


@pytest.mark.slow
def test_a_broken_alloy_shows_a_dash_while_the_others_complete(tmp_path: Path) -> None:
    """A real run: one tiny universal M3GNet point, normal and transfer models of two alloys; the
    training data of one alloy is broken (a truncated export), so its trainings fail, are recorded
    as failed, and show as "–" in every alloy table, while the other alloy's models complete."""
    tiny = {"epochs": 1, "nblocks": 1, "units": 16, "dim_node_embedding": 16, "dim_edge_embedding": 16}
    work = study(tmp_path)
    config = yaml.safe_load((work / "config" / "config.yaml").read_text())
    write_alexandria(tmp_path / "alexandria", 12, n_steps=4, per_file=4, seed=3)
    for k, dataset in enumerate(config["alloys"]["datasets"]):
        write_alexandria(tmp_path / "alloys" / dataset["name"], 10, n_steps=4, seed=10 + k, prefix=f"{dataset['name']}-")
    config.update(
        campaign="broken", selection={"e_cuts": [1000000.0]}, splits={"80-10-10": [0.8, 0.1, 0.1]},
        export={"families": ["m3gnet"]}, figures={"enabled": False}, formation={"enabled": False},
        uff={"split": "80-10-10", "families": {
            "m3gnet": {"grid": {"e_cut": [1000000.0], "lr": [0.001], "batch_size": [4]}, "params": tiny,
                       "resources": {"gpu": 0, "cpus": 1}},
            "mace": {"enabled": False}}},
    )
    config.pop("repeats", None)  # the study's repeat points are not in this grid
    config["alloys"].update(combined=False, e_cuts=[1000000.0], splits=["80-10-10"])
    config["alloys"]["learning_curve"]["enabled"] = False
    config["alloys"]["families"]["mace"]["enabled"] = False
    config["alloys"]["families"]["m3gnet"].update(
        e_cuts=None, splits=None, normal={"lr": 0.001, "batch_size": 4}, transfer={"lr": 0.001, "batch_size": 4},
        resources={"gpu": 0, "cpus": 1})
    (work / "config" / "config.yaml").write_text(yaml.safe_dump(config))

    out = snakemake(work, "--cores", "2", "data")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    broken = work / "results" / "broken" / "data" / "NbMoS2" / "export" / "m3gnet" / "ecut~1e6" / "split~80-10-10" / "train.parquet"
    broken.write_bytes(broken.read_bytes()[:100])  # a truncated file: the dataset is broken

    out = snakemake(work, "--cores", "2")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    models = work / "results" / "broken" / "alloys" / "m3gnet"
    for mode in ("normal", "transfer"):
        good = json.loads((models / "MoWS2" / mode / "ecut~1e6" / "split~80-10-10" / "status.json").read_text())
        bad = json.loads((models / "NbMoS2" / mode / "ecut~1e6" / "split~80-10-10" / "status.json").read_text())
        assert good["status"] == "ok" and bad["status"] == "failed", (good, bad)
    table = pd.read_csv(work / "results" / "broken" / "alloys" / "tables" / "table_4_4_split~80-10-10.csv")
    markdown = (work / "results" / "broken" / "alloys" / "tables" / "table_4_4_split~80-10-10.md").read_text()
    assert "MoWS2" in markdown and "NbMoS2" in markdown
    rows = [line.rsplit("|", 2)[0] for line in markdown.splitlines() if line.startswith("|")]  # without the baseline
    nbmos2 = [line for line in rows if "NbMoS2" in line]
    mows2 = [line for line in rows if "MoWS2" in line]
    assert nbmos2 and all(line.count("–") == 2 for line in nbmos2)  # transfer and normal, every set
    assert mows2 and all("–" not in line for line in mows2)
    assert sum(line.count("–") for line in rows) == 2 * 2 * 2  # NbMoS2: energy and area, val and test, both modes
    assert "Baseline" in markdown and "composition baseline" in markdown
    assert table.filter(like="e_cut").notna().any().any()
