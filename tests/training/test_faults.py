"""The fault battery: each fault is injected for real and ends in a completed run or a clear,
named failure, never a false "ok".

1. a diverged training (M3GNet, MACE; NequIP in test_nequip_model); 2. a checkpoint cut to
1 kB; 3. a SIGKILL during a relaxation shard, then a rerun; 4. a model deleted after training;
5. a full disk while writing an export; 6. two ``snakemake`` processes on one campaign. The
campaign-level outcome of a diverged point (tables, transfer source, diagnostics) is in
:func:`test_a_diverged_point_is_a_dash_and_never_the_transfer_source`.
"""

from __future__ import annotations

import errno
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import ase.io
import numpy as np
import pandas as pd
import pytest

from mlff2d.training.checkpoints import previous_path, readable
from mlff2d.training.divergence import DivergenceGuard, TrainingDiverged, diverged_at
from mlff2d.relaxation.table_format import relaxation_table
from mlff2d.io.table_files import DASH
from mlff2d.training.sweep import best_of, resolve_params, train_point
from mlff2d.alloys.transfer import resolve_transfer_source
from test_export import prepared  # noqa: F401  (the fixture: a tiny dataset through the data stages)

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


# ----------------------------------------------------------------------------- ranking and guard


@pytest.mark.parametrize("order", [("a", "b", "c"), ("c", "a", "b"), ("b", "c", "a")])
def test_best_of_never_picks_nan_whatever_the_order(order: tuple[str, ...]) -> None:
    scores = {"a": math.nan, "b": 3.0, "c": 1.0}
    assert best_of({k: scores[k] for k in order}) == "c"
    assert best_of({"x": math.inf, "y": 2.0}) == "y"


def test_best_of_without_a_finite_score_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="no sweep point has a finite score"):
        best_of({"a": math.nan, "b": math.inf})
    with pytest.raises(ValueError, match="finite score"):
        best_of({})


def test_guard_names_the_epoch_and_metric() -> None:
    guard = DivergenceGuard(factor=20.0)
    guard.check(1, {"energy_mae_meV_per_atom": 50.0, "forces_mae_meV_per_A": 300.0})
    guard.check(2, {"energy_mae_meV_per_atom": 400.0, "forces_mae_meV_per_A": 100.0})  # energy swings: not watched for growth
    with pytest.raises(TrainingDiverged, match=r"^diverged at epoch 3 \(forces_mae_meV_per_A = 2500, more than 20 × its best 100\)$"):
        guard.check(3, {"energy_mae_meV_per_atom": 40.0, "forces_mae_meV_per_A": 2500.0})
    with pytest.raises(TrainingDiverged, match=r"^diverged at epoch 4 \(energy_mae_meV_per_atom = nan\)$"):
        DivergenceGuard().check(4, {"energy_mae_meV_per_atom": math.nan})
    rows = [{"epoch": 1, "forces_mae_meV_per_A": 10.0}, {"epoch": 2, "forces_mae_meV_per_A": 150.0}]
    assert diverged_at(rows, 20.0) is None and diverged_at(rows, 10.0).startswith("diverged at epoch 2")
    assert diverged_at(rows, 0) is None  # 0: NaN/inf only


# ---------------------------------------------------------------------------- real trainings


def _m3gnet_export(directory: Path) -> Path:
    from test_family_m3gnet import labelled_rows, write_export

    return write_export(directory, {"train": labelled_rows(24, 0), "val": labelled_rows(8, 1)})


M3GNET_TINY = {"nblocks": 1, "units": 16, "dim_node_embedding": 16, "dim_edge_embedding": 16, "epochs": 3}


@pytest.fixture(scope="module")
def m3gnet_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _m3gnet_export(tmp_path_factory.mktemp("m3gnet_export"))


@pytest.fixture(scope="module")
def mace_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from test_family_mace import write_data

    return write_data(tmp_path_factory.mktemp("mace_export"))


def _mace_tiny(epochs: int) -> dict[str, Any]:
    from test_family_mace import TINY

    return {**TINY, "epochs": epochs}


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.parametrize("family", ["m3gnet", "mace"])
def test_a_diverged_training_is_failed_with_its_epoch(family: str, m3gnet_data: Path, mace_data: Path, tmp_path: Path) -> None:
    data, tiny = (m3gnet_data, M3GNET_TINY) if family == "m3gnet" else (mace_data, _mace_tiny(3))
    point = tmp_path / "ecut~1e6" / "lr~500" / "bs~4"
    status = train_point(family, data, point, resolve_params(family, tiny, 500.0, 4), device="cpu")
    assert status["status"] == "failed"
    assert status["reason"].startswith("diverged at epoch 1 (") and "= nan)" in status["reason"], status["reason"]
    metrics = pd.read_csv(point / "metrics.csv")
    assert metrics["epoch"].tolist() == [1]  # it stopped at the diverged epoch
    assert metrics["energy_mae_meV_per_atom"].isna().all()


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
def test_m3gnet_checkpoint_cut_to_1kb_falls_back_to_the_previous_one(m3gnet_data: Path, tmp_path: Path) -> None:
    point = tmp_path / "point"
    params = resolve_params("m3gnet", {**M3GNET_TINY, "epochs": 2, "decay_steps": 3}, 1e-3, 8)
    assert train_point("m3gnet", m3gnet_data, point, params, device="cpu")["status"] == "ok"
    last = point / "checkpoints" / "last.ckpt"
    assert readable(last) and readable(previous_path(last))  # the one before is kept beside it
    last.write_bytes(last.read_bytes()[:1024])  # a kill, a full disk or a copy cut short
    assert not readable(last)

    status = train_point("m3gnet", m3gnet_data, point, {**params, "epochs": 3}, device="cpu")
    assert status["status"] == "ok", status.get("reason")
    assert Path(status["resume"]["resumed_from"]).name == "last.previous.ckpt"
    assert "last.ckpt is unreadable" in status["resume"]["notes"][0]
    assert (point / "checkpoints" / "last.ckpt.unreadable").exists()
    assert pd.read_csv(point / "metrics.csv")["epoch"].tolist() == [1, 2, 3]  # epoch 2 was retrained

    # both cut short: a fresh start, said so
    for path in (last, previous_path(last)):
        path.write_bytes(path.read_bytes()[:1024])
    status = train_point("m3gnet", m3gnet_data, point, {**params, "epochs": 3}, device="cpu")
    assert status["status"] == "ok"
    assert status["resume"]["resumed_from"] is None
    assert status["resume"]["notes"][-1] == "no readable checkpoint left: training starts afresh"
    assert pd.read_csv(point / "metrics.csv")["epoch"].tolist() == [1, 2, 3]


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
def test_mace_checkpoint_cut_to_1kb_falls_back_to_the_previous_one(mace_data: Path, tmp_path: Path) -> None:
    point = tmp_path / "point"
    params = resolve_params("mace", _mace_tiny(2), 0.01, 4)
    assert train_point("mace", mace_data, point, params, device="cpu")["status"] == "ok"
    saved = sorted((point / "checkpoints").glob("*_epoch-*.pt"))
    newest = max(saved, key=lambda p: int(p.stem.split("epoch-")[1].split("_")[0]))
    assert len(saved) >= 2 and all(readable(p) for p in saved)  # MACE would have kept only the newest
    newest.write_bytes(newest.read_bytes()[:1024])

    status = train_point("mace", mace_data, point, {**params, "epochs": 3}, device="cpu")
    assert status["status"] == "ok", status.get("reason")
    assert status["resume"]["resumed_from"] is not None and Path(status["resume"]["resumed_from"]) != newest
    assert f"{newest.name} is unreadable" in status["resume"]["notes"][0]
    assert pd.read_csv(point / "metrics.csv")["epoch"].tolist() == [1, 2, 3]


# ------------------------------------------------------------------------- relaxation faults


@pytest.fixture(scope="module")
def m3gnet_point(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    torch.set_num_threads(1)
    data = _m3gnet_export(tmp_path_factory.mktemp("relax_export"))
    point = tmp_path_factory.mktemp("uff") / "ecut~1e6" / "lr~0.003" / "bs~8"
    status = train_point("m3gnet", data, point, resolve_params("m3gnet", {**M3GNET_TINY, "epochs": 4, "stress_weight": 1.0}, 3e-3, 8))
    assert status["status"] == "ok", status.get("reason")
    return point


def _starts(n: int) -> list[Any]:
    from test_family_m3gnet import mx2

    rng = np.random.default_rng(5)
    out = []
    for i in range(n):
        atoms = mx2(42, 16, float(rng.uniform(3.0, 3.4)), rng)
        atoms.info["material_id"] = f"s{i:03d}"
        out.append(atoms)
    return out


def _relax_cmd(point: Path, start: Path, out: Path) -> list[str]:
    return [str(BIN / "mlff2d"), "relax", "--family", "m3gnet", "--point", str(point), "--start", str(start),
            "--shard", "0", "--shard-size", "1000", "--records", str(out / "records.parquet"),
            "--structures", str(out / "final.extxyz"), "--engine", "ase", "--fmax", "0.001", "--max-steps", "400"]


@pytest.mark.slow
def test_sigkill_during_a_relaxation_shard_leaves_nothing_half_written(m3gnet_point: Path, tmp_path: Path) -> None:
    start = tmp_path / "start.extxyz"
    ase.io.write(start, _starts(12), format="extxyz")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    killed = tmp_path / "killed"
    log = tmp_path / "shard.log"
    with open(log, "w") as fh:
        proc = subprocess.Popen(_relax_cmd(m3gnet_point, start, killed), stdout=fh, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
    deadline = time.time() + 300
    while " 1/12 s000 " not in log.read_text():  # the shard is under way: its first structure is done
        assert proc.poll() is None, log.read_text()[-2000:]
        assert time.time() < deadline, "the shard never started"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    # whatever the moment: no output, or a complete one; never half a file
    for name in ("records.parquet", "final.extxyz"):
        path = killed / name
        assert not path.exists() or len(pd.read_parquet(path) if name.endswith("parquet") else ase.io.read(path, ":")) == 12

    rerun = subprocess.run(_relax_cmd(m3gnet_point, start, killed), capture_output=True, text=True, env=env, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    reference = tmp_path / "reference"
    clean = subprocess.run(_relax_cmd(m3gnet_point, start, reference), capture_output=True, text=True, env=env, timeout=600)
    assert clean.returncode == 0, clean.stderr[-3000:]
    columns = ["material_id", "converged", "failure", "steps", "energy_per_atom", "area_per_atom"]
    pd.testing.assert_frame_equal(pd.read_parquet(killed / "records.parquet")[columns],
                                  pd.read_parquet(reference / "records.parquet")[columns])


@pytest.mark.slow
def test_a_model_deleted_after_training_is_a_named_failure(m3gnet_point: Path, tmp_path: Path) -> None:
    import shutil

    from mlff2d.relaxation.relax import relax_shard

    point = tmp_path / "ecut~1e6" / "lr~0.003" / "bs~8"
    shutil.copytree(m3gnet_point, point)
    status = json.loads((point / "status.json").read_text())
    status["model"] = str(point / "model")
    (point / "status.json").write_text(json.dumps(status))
    shutil.rmtree(point / "model")
    start = tmp_path / "start.extxyz"
    ase.io.write(start, _starts(2), format="extxyz")
    out = relax_shard("m3gnet", point, start, 0, 10, tmp_path / "r.parquet", tmp_path / "s.extxyz")
    assert len(out) == 2 and out["failure"].str.startswith("model_missing: ").all()
    assert f"--forcerun {point / 'status.json'}" in out["failure"].iloc[0]
    assert not out["converged"].any() and out["energy_per_atom"].isna().all()


# -------------------------------------------------------------------------------- disk full


def test_a_full_disk_while_writing_an_export_leaves_no_export(prepared: dict[str, Path], tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """ENOSPC injected through the write call of the extxyz and Parquet writers."""
    import pyarrow.parquet as pq

    from mlff2d.data import export

    clean, selected, split = prepared["clean"], prepared["selected"], prepared["split"]
    calls = {"n": 0}

    def full_disk(*args: Any, **kwargs: Any) -> None:
        calls["n"] += 1
        raise OSError(errno.ENOSPC, "No space left on device")

    for family, owner, name in (("mace", export.ase.io, "write"), ("m3gnet", pq.ParquetWriter, "write_table")):
        outdir = tmp_path / "export" / family
        with monkeypatch.context() as m:
            m.setattr(owner, name, full_disk)
            with pytest.raises(OSError, match=rf"writing {outdir} failed, nothing was written: No space left on device") as info:
                export.export_family(clean, selected, split, family, outdir)
        assert info.value.errno == errno.ENOSPC
        assert not outdir.exists() and not list(outdir.parent.glob(".*.tmp"))
        assert export.export_family(clean, selected, split, family, outdir)["train"] > 0  # space again: it works
    assert calls["n"] == 2


# ------------------------------------------------------------------------- campaign outcomes


@pytest.mark.slow
def test_two_snakemake_processes_on_one_campaign(tmp_path: Path) -> None:
    from test_workflow import campaign_dir

    tiny = {"epochs": 1000, "nblocks": 1, "units": 16, "dim_node_embedding": 16, "dim_edge_embedding": 16}
    work = campaign_dir(tmp_path, 12, campaign="lock", selection={"e_cuts": [1000000.0]}, splits={"80-10-10": [0.8, 0.1, 0.1]},
                        export={"families": ["m3gnet"]}, figures={"enabled": False},
                        uff={"split": "80-10-10", "families": {
                            "m3gnet": {"grid": {"e_cut": [1000000.0], "lr": [0.001], "batch_size": [4]}, "params": tiny,
                                       "resources": {"gpu": 0, "cpus": 1}},
                            "mace": {"enabled": False}}})  # a long training holds the first run's lock
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    cmd = [str(BIN / "snakemake"), "-s", str(ROOT / "Snakefile"), "--directory", str(work), "--cores", "1", "sweep_m3gnet"]
    first = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    locks = work / ".snakemake" / "locks"
    deadline = time.time() + 120
    try:
        while not (locks.is_dir() and any(locks.iterdir())):
            assert first.poll() is None, "the first snakemake ended before it locked the campaign"
            assert time.time() < deadline, "the first snakemake never locked the campaign"
            time.sleep(0.05)
        second = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
        assert first.poll() is None, "the first snakemake ended while the second ran: no overlap was tested"
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    text = second.stdout + second.stderr
    assert second.returncode != 0 and "Directory cannot be locked" in text, text[-2000:]
    assert "another Snakemake process" in text or "--unlock" in text
    assert not (work / "results" / "lock" / "uff" / "m3gnet" / "ecut~1e6" / "lr~0.001" / "bs~4" / "status.json").exists()


def test_a_diverged_point_is_never_bold_in_a_table() -> None:
    rows = pd.DataFrame({
        "set": ["test"] * 3, "model": ["lr~0.001/bs~16", "lr~0.01/bs~16", "lr~50/bs~16"], "ecut": ["1e6"] * 3,
        "status": ["ok", "ok", "failed"], "energy_mae": [0.020, 0.030, 0.0], "area_mae": [0.010, 0.020, 0.0],
    })
    # one column per cut-off: put the three models side by side as cut-offs of one row
    table = relaxation_table(rows.assign(ecut=["0.01", "0.02", "1e6"], model="m"))
    energy = table[table["quantity"] == "Energy"].iloc[0]
    assert energy["1e6"] == DASH and energy["best"] == "0.01" and energy["second"] == ""


@pytest.mark.slow
def test_a_diverged_point_is_a_dash_and_never_the_transfer_source(tmp_path: Path) -> None:
    """A campaign whose sweep has a point at lr 50: it finishes, the point is failed with its
    divergence, table 4.1 shows it as a dash, diagnostics name it, and "best" never picks it."""
    from test_workflow import campaign_dir, snakemake

    tiny = {"epochs": 2, "nblocks": 1, "units": 16, "dim_node_embedding": 16, "dim_edge_embedding": 16}
    work = campaign_dir(
        tmp_path, 20, campaign="div", selection={"e_cuts": [1000000.0]}, splits={"80-10-10": [0.8, 0.1, 0.1]},
        export={"families": ["m3gnet"]}, figures={"enabled": False}, relax={"max_steps": 20, "shard_size": 50},
        uff={"split": "80-10-10", "families": {
            "m3gnet": {"grid": {"e_cut": [1000000.0], "lr": [0.003, 50.0], "batch_size": [4]}, "params": tiny,
                       "resources": {"gpu": 0, "cpus": 1}},
            "mace": {"enabled": False}}},
    )
    out = snakemake(work, "--cores", "2")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    sweep = work / "results" / "div" / "uff" / "m3gnet" / "ecut~1e6"
    diverged = json.loads((sweep / "lr~50" / "bs~4" / "status.json").read_text())
    assert diverged["status"] == "failed" and diverged["reason"].startswith("diverged at epoch 1 ("), diverged
    assert json.loads((sweep / "lr~0.003" / "bs~4" / "status.json").read_text())["status"] == "ok"

    table = pd.read_csv(work / "results" / "div" / "tables" / "table_4_1.csv", dtype=str, keep_default_na=False)
    rows = table[table["model"] == "lr 50 · bs 4"]
    assert len(rows) and (rows["1e6"] == DASH).all() and not rows["best"].str.contains("1e6").any()
    md = (work / "results" / "div" / "tables" / "table_4_1.md").read_text()
    assert not any("lr 50 · bs 4" in line and "**" in line for line in md.splitlines())
    diagnostics = (work / "results" / "div" / "diagnostics.md").read_text()
    assert "diverged at epoch 1" in diagnostics

    source = resolve_transfer_source([sweep / "lr~50" / "bs~4", sweep / "lr~0.003" / "bs~4"], "best")
    assert source["label"] == "ecut~1e6/lr~0.003/bs~4"


def test_a_write_cut_short_leaves_no_relaxation_records(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A kill or a full disk inside the Parquet write: the records file is absent, never half written."""
    from mlff2d.relaxation import relax

    def cut_short(table: Any, where: Any, **kwargs: Any) -> None:
        Path(where).write_bytes(b"PAR1 half a file")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(relax.pq, "write_table", cut_short)
    out = tmp_path / "records.parquet"
    with pytest.raises(OSError, match="No space left"):
        relax.write_records([], out)
    assert not out.exists()


def test_m3gnet_recorder_keeps_a_nan_prediction(tmp_path: Path) -> None:
    """One structure predicted NaN among finite ones: the epoch's MAE is NaN (not the MAE of the
    rest), so the divergence test sees it."""
    import torch
    from types import SimpleNamespace

    from mlff2d.families import _m3gnet_lightning

    recorder = _m3gnet_lightning.epoch_recorder(tmp_path)
    trainer = SimpleNamespace(current_epoch=0, max_epochs=1, is_global_zero=True, strategy=SimpleNamespace(broadcast=lambda x, src=0: x),
                              save_checkpoint=lambda path, weights_only=False: Path(path).write_bytes(b""))
    recorder.on_train_start(trainer, None)
    recorder.on_train_epoch_start(trainer, None)
    e_true, f_true, s_true = torch.zeros(2), torch.zeros(6, 3), torch.zeros(2, 3, 3)
    e_pred = torch.tensor([0.1, float("nan")])
    outputs = {"preds": (e_pred, f_true, s_true), "labels": (e_true, f_true, s_true), "num_atoms": torch.tensor([3, 3])}
    recorder.on_validation_batch_end(trainer, None, outputs, None, 0)
    with pytest.raises(TrainingDiverged, match=r"diverged at epoch 1 \(energy_mae_meV_per_atom = nan\)"):
        recorder.on_train_epoch_end(trainer, None)
    assert pd.read_csv(tmp_path / "metrics.csv")["energy_mae_meV_per_atom"].isna().all()
