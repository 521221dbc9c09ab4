"""The campaign through `--profile profiles/slurm` on a real one-node SLURM cluster.

The cluster (tests/slurm_cluster.py) is started once per session; without SLURM (not root, no
apt-get, or it does not start) every test here is skipped with the reason. The profile is used
as a user would after filling in its placeholders: its `<...>` partition values are replaced
by the test partition and the account is dropped (the test cluster has no accounting), passed
on the command line; everything else comes from profiles/slurm/config.yaml. The settings that
only make the tests faster are in FAST.

* test_training_sbatch_lines: the sbatch line of a training for 1 GPU, for 4 GPUs (with a GPU
  model) and for a retry (memory and run time doubled), from the plugin's own log (--verbose),
  and SLURM's record of the 4-GPU job;
* test_campaign_slice_through_slurm: data pipeline (locally), then training, relaxation and
  aggregation through SLURM: every relaxation shard is killed by SLURM for exceeding its memory
  on attempt 1 and succeeds on attempt 2; the training is requeued (`scontrol requeue`) while
  it trains and resumes from its checkpoint; the results have the form of a local run's.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from slurm_cluster import GPU_TYPE, SlurmCluster, slurm_cluster  # noqa: E402,F401  (the fixture)

from mlff2d.synthetic import write_alexandria  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PROFILE = ROOT / "profiles" / "slurm"
CAMPAIGN = "sl"
POINT = f"results/{CAMPAIGN}/uff/m3gnet/ecut~1e6/lr~0.001/bs~4"
EXPORT = f"results/{CAMPAIGN}/data/2d/export/m3gnet/ecut~1e6/split~80-10-10"
TINY_M3GNET = {"epochs": 8, "nblocks": 1, "units": 16, "dim_node_embedding": 16, "dim_edge_embedding": 16}
TINY_MACE = {"epochs": 2, "num_channels": 8, "max_L": 0, "correlation": 2, "r_max": 4.0, "swa": False}
#: Status checks every second and no file-system latency: test speed only.
FAST = ["--slurm-init-seconds-before-status-checks", "1", "--seconds-between-status-checks", "1",
        "--latency-wait", "5", "--max-threads", "2"]
#: Peak memory of a relaxation shard's job step here is ~850 MB (nested Snakemake + mlff2d relax
#: with torch and matgl): attempt 1 gets 600 MB and is killed, attempt 2 gets 1200 MB.
RELAX_MEM_MB = 600

pytestmark = pytest.mark.slow


def profile_args(cluster: SlurmCluster) -> list[str]:
    """--profile profiles/slurm with its placeholders filled in for the test cluster."""
    profile = yaml.safe_load((PROFILE / "config.yaml").read_text())

    def fill(resources: dict[str, object]) -> list[str]:
        out = []
        for key, value in resources.items():
            if isinstance(value, str) and value.startswith("<"):
                if key == "slurm_account":  # no accounting on the test cluster
                    continue
                value = cluster.partition
            out.append(f"{key}={value}")
        return out

    args = ["--profile", str(PROFILE), "--default-resources", *fill(profile["default-resources"])]
    set_resources = [f"{rule}:{item}" for rule, res in profile.get("set-resources", {}).items() for item in fill(res)]
    if set_resources:
        args += ["--set-resources", *set_resources]
    return args + FAST


def snakemake_cmd(workdir: Path, *args: str) -> list[str]:
    return [str(BIN / "snakemake"), "-s", str(ROOT / "Snakefile"), "--directory", str(workdir), *args]


def run_env() -> dict[str, str]:
    return {**os.environ, "PATH": f"{os.environ['PATH']}{os.pathsep}{BIN}"}


def write_config(workdir: Path, **families: dict[str, object]) -> None:
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    config["data"]["sources"][0]["path"] = str(workdir / "alexandria" / "*.json.bz2")
    config.pop("alloys", None)
    uff_families = {"m3gnet": {"grid": {"e_cut": [1000000.0], "lr": [0.001], "batch_size": [4]}, "params": TINY_M3GNET,
                               "resources": {"gpu": 0, "cpus": 1, "mem_mb": 2000, "runtime": 10}},
                    "mace": {"enabled": False}}
    uff_families.update(families)
    config.update(
        campaign=CAMPAIGN, selection={"e_cuts": [1000000.0]}, splits={"80-10-10": [0.8, 0.1, 0.1]},
        export={"families": ["m3gnet", "mace"]}, figures={"enabled": False},
        uff={"split": "80-10-10", "families": uff_families},
        relax={"fmax": 0.1, "max_steps": 20, "shard_size": 50, "sets": ["val"], "mem_mb": RELAX_MEM_MB, "runtime": 10},
    )
    (workdir / "config").mkdir(exist_ok=True)
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config))


@pytest.fixture(scope="module")
def data_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A campaign directory whose data pipeline has run (locally: the SLURM part is what follows)."""
    work = tmp_path_factory.mktemp("slurm_base")
    write_alexandria(work / "alexandria", 14, n_steps=6, per_file=5, seed=3)
    write_config(work)
    out = subprocess.run(snakemake_cmd(work, "--cores", "2", "data"), capture_output=True, text=True, env=run_env(),
                         timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return work


def copy_workdir(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True, ignore=shutil.ignore_patterns(".snakemake"))
    # the copied data keeps its modification times: nothing upstream reruns
    return dst


def sbatch_calls(log: str) -> list[str]:
    return re.findall(r"sbatch call: (sbatch .*)", log)


def option(call: str, pattern: str) -> str | None:
    found = re.search(pattern, call.split("--wrap=")[0])
    return found.group(1) if found else None


def wait_for(predicate, timeout: float, proc: subprocess.Popen[bytes] | None = None, what: str = "") -> None:  # type: ignore[no-untyped-def]
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"snakemake ended (rc {proc.returncode}) before {what}")
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def test_training_sbatch_lines(slurm_cluster: SlurmCluster, data_workdir: Path, tmp_path: Path) -> None:
    """1 GPU (m3gnet, attempts 1 and 2) and 4 GPUs of a model (mace), as the plugin submits them."""
    work = copy_workdir(data_workdir, tmp_path / "w")
    write_config(
        work,
        # 100 MB: SLURM kills attempt 1 at once (the job step alone needs ~250 MB), attempt 2 gets 200 MB
        m3gnet={"grid": {"e_cut": [1000000.0], "lr": [0.001], "batch_size": [4]}, "params": TINY_M3GNET,
                "resources": {"gpu": 1, "cpus": 1, "mem_mb": 100, "runtime": 7}},
        mace={"grid": {"e_cut": [1000000.0], "lr": [0.01], "batch_size": [4]}, "params": TINY_MACE,
              "resources": {"gpu": 4, "gpu_model": GPU_TYPE, "cpus": 1, "mem_mb": 3000, "runtime": 11}},
    )
    targets = [f"{POINT}/status.json", f"results/{CAMPAIGN}/uff/mace/ecut~1e6/lr~0.01/bs~4/status.json"]
    log_path = tmp_path / "snakemake.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(snakemake_cmd(work, *profile_args(slurm_cluster), "--verbose", *targets), stdout=log,
                                stderr=subprocess.STDOUT, env=run_env(), start_new_session=True)
    try:
        def seen() -> bool:
            calls = sbatch_calls(log_path.read_text())
            return any("wildcards_mace" in c for c in calls) and any(
                "wildcards_m3gnet" in c and "--attempt 2" in c for c in calls)

        wait_for(seen, 150, proc, "the m3gnet retry and the mace submission")
        mace_ids = [line.split("SLURM jobid ")[1].split()[0] for line in log_path.read_text().splitlines()
                    if "has been submitted with SLURM jobid" in line and "rule_train_uff/mace" in line]
        shown = slurm_cluster.run("scontrol", "show", "job", mace_ids[0], check=False).stdout
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)  # Snakemake cancels its SLURM jobs (scancel)
        proc.wait(timeout=120)
    calls = sbatch_calls(log_path.read_text())
    m3gnet = {re.search(r"--attempt (\d+)", c).group(1): c for c in calls if "wildcards_m3gnet" in c}  # type: ignore[union-attr]
    mace = next(c for c in calls if "wildcards_mace" in c)
    print("1 GPU, attempt 1:", m3gnet["1"].split(" --wrap=")[0])
    print("1 GPU, attempt 2:", m3gnet["2"].split(" --wrap=")[0])
    print("4 GPUs:          ", mace.split(" --wrap=")[0])
    one, retry = m3gnet["1"], m3gnet["2"]
    assert option(one, r"--gpus=(\S+)") == "1" and option(retry, r"--gpus=(\S+)") == "1"
    assert option(one, r"--mem (\d+)") == "100" and option(retry, r"--mem (\d+)") == "200"
    assert option(one, r" -t (\d+)") == "7" and option(retry, r" -t (\d+)") == "14"
    assert option(one, r"--cpus-per-task=(\d+)") == "1"
    assert option(one, r" -p (\S+)") == slurm_cluster.partition
    assert "--requeue" in one
    assert option(mace, r"--gpus=(\S+)") == f"{GPU_TYPE}:4"
    assert option(mace, r"--mem (\d+)") == "3000" and option(mace, r" -t (\d+)") == "11"
    assert "--ntasks" not in mace.split("--wrap=")[0] or "--ntasks-per-gpu" in mace
    # SLURM took the 4-GPU request as it is
    assert f"gpu:{GPU_TYPE}:4" in shown, shown
    # attempt 1 was really killed by SLURM for its memory
    states = {r.get("JobState") for r in slurm_cluster.jobcomp() if r.get("WorkDir") == str(work)}
    assert "FAILED" in states or "OUT_OF_MEMORY" in states, slurm_cluster.jobcomp()


def result_form(results: Path) -> dict[str, object]:
    """Files and table columns of a campaign's results, without run-specific files."""
    skip = ("/checkpoints/", "/graphs/", "/logs/", "/benchmarks/", "/.")
    form: dict[str, object] = {}
    for path in sorted(results.rglob("*")):
        rel = "/" + str(path.relative_to(results))
        if not path.is_file() or any(s in rel + ("/" if path.is_dir() else "") for s in skip):
            continue
        if path.suffix == ".csv":
            form[rel] = list(pd.read_csv(path).columns)
        elif path.suffix == ".parquet":
            form[rel] = list(pd.read_parquet(path).columns)
        elif path.suffix == ".json" and "provenance" not in path.name:
            form[rel] = sorted(json.loads(path.read_text()))
        else:
            form[rel] = None
    return form


def test_campaign_slice_through_slurm(slurm_cluster: SlurmCluster, data_workdir: Path, tmp_path: Path) -> None:
    work = copy_workdir(data_workdir, tmp_path / "slurm")
    local = copy_workdir(data_workdir, tmp_path / "local")
    env = run_env()
    # the same slice locally, alongside (the SLURM run mostly waits)
    local_proc = subprocess.Popen(snakemake_cmd(local, "--profile", str(ROOT / "profiles" / "default"), "--cores", "1"),
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    log_path = tmp_path / "slurm.log"
    history = work / POINT / "checkpoints" / "metrics.csv"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(snakemake_cmd(work, *profile_args(slurm_cluster), "--verbose"), stdout=log,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        # pre-emption: requeue the training once it has a checkpoint
        wait_for(lambda: history.exists() and len(pd.read_csv(history)) >= 1, 240, proc, "the training's first epoch")
        jobs = slurm_cluster.run("squeue", "--noheader", "--format=%i|%k|%T").stdout.split()
        train_id = next(j.split("|")[0] for j in jobs if "rule_train_uff" in j and j.endswith("RUNNING"))
        assert not (work / POINT / "status.json").exists()
        slurm_cluster.run("scontrol", "requeue", train_id)
        proc.wait(timeout=420)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            proc.wait(timeout=60)
        local_out = local_proc.communicate(timeout=420)[0].decode()
    text = log_path.read_text()
    assert proc.returncode == 0, text[-5000:]
    assert local_proc.returncode == 0, local_out[-3000:]

    # every job went through sbatch: SLURM's record of finished jobs, the plugin's job logs
    records = [r for r in slurm_cluster.jobcomp() if r.get("WorkDir") == str(work)]
    submitted = re.findall(r"has been submitted with SLURM jobid (\d+)", text)
    assert {r["JobId"] for r in records} >= set(submitted) and len(submitted) >= 5
    assert all(r["Name"].startswith("mlff2d_") for r in records)
    rules = set(re.findall(r"--comment '?rule_(\w+?)_wildcards", text))
    assert {"train_uff", "relax_shard", "gather_relax", "evaluate_relaxation"} <= rules, rules
    slurm_logs = work / ".snakemake" / "slurm_logs"
    assert (slurm_logs / "rule_train_uff" / "m3gnet_1e6_0.001_4" / f"{train_id}.log").exists()

    # the training was requeued by SLURM, resumed from its checkpoint and finished
    train_records = [r["JobState"] for r in records if r["JobId"] == train_id]
    assert train_records[-1] == "COMPLETED" and len(train_records) >= 2, train_records
    assert "resuming" in (work / POINT / "train.log").read_text()
    assert pd.read_csv(work / POINT / "metrics.csv")["epoch"].tolist() == list(range(1, TINY_M3GNET["epochs"] + 1))
    assert json.loads((work / POINT / "status.json").read_text())["status"] == "ok"

    # the relaxation shard failed once (killed by SLURM for its memory) and succeeded on retry
    shard_calls = [c for c in sbatch_calls(text) if "rule_relax_shard" in c]
    mems = sorted(int(option(c, r"--mem (\d+)")) for c in shard_calls)  # type: ignore[arg-type]
    assert mems == [RELAX_MEM_MB, 2 * RELAX_MEM_MB], shard_calls
    states = [r["JobState"] for r in records]
    assert states.count("FAILED") + states.count("OUT_OF_MEMORY") >= 1, records
    summary = json.loads((work / POINT / "relax" / "val" / "summary.json").read_text())
    assert summary["n"] > 0

    # the same files and columns as the local run
    slurm_form, local_form = result_form(work / "results"), result_form(local / "results")
    assert slurm_form == local_form
    assert f"/{POINT.removeprefix('results/')}/relax/val/summary.json" in slurm_form
    assert any(k.startswith(f"/{CAMPAIGN}/tables/") for k in slurm_form)


# --- multi-device training (no SLURM needed) -------------------------------------------------


def test_m3gnet_trains_data_parallel_on_two_cpu_processes(data_workdir: Path, tmp_path: Path) -> None:
    """`mlff2d train --gpus 2 --device cpu`: Lightning DDP (gloo) with 2 processes, rank 0 writes."""
    out = tmp_path / "point"
    params = json.dumps({**TINY_M3GNET, "epochs": 2})
    res = subprocess.run([str(BIN / "mlff2d"), "train", "--family", "m3gnet", "--data", str(data_workdir / EXPORT),
                          "--outdir", str(out), "--lr", "0.001", "--batch-size", "4", "--params", params,
                          "--device", "cpu", "--gpus", "2"], capture_output=True, text=True, timeout=300, env=run_env())
    assert res.returncode == 0, res.stderr[-3000:]
    assert "Starting with 2 processes" in res.stdout + res.stderr
    assert json.loads((out / "status.json").read_text())["status"] == "ok"
    metrics = pd.read_csv(out / "metrics.csv")
    assert metrics["epoch"].tolist() == [1, 2] and metrics["energy_mae_meV_per_atom"].notna().all()
    assert (out / "model").is_dir() and (out / "checkpoints" / "last.ckpt").exists()


def test_mace_distributed_launch(tmp_path: Path) -> None:
    """MACE on N GPUs: torchrun with N ranks of the worker entry, MACE's torchrun launcher.

    Not run: MACE 0.3.16's distributed mode needs CUDA (it opens an NCCL process group and
    wraps the model in DDP with a device id), see mlff2d.families.mace.distributed_command."""
    from mlff2d.families import mace

    cmd = mace.distributed_command(tmp_path / "spec.json", 4)
    assert cmd[:5] == [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=4"]
    assert cmd[5:] == ["-m", "mlff2d.families.mace", "--distributed-worker", str(tmp_path / "spec.json")]
    settings = mace.mace_settings(tmp_path, tmp_path / "out", mace.DEFAULTS, None, "cuda", False)
    ranked = mace.distributed_settings(settings)
    json.dumps(ranked)  # what the ranks read
    args = mace.mace_namespace(ranked)
    assert args.distributed is True and args.launcher == "torchrun" and args.device == "cuda"
    with pytest.raises(ValueError, match="needs CUDA"):
        mace._run_distributed(settings | {"device": "cpu"}, False, 0, 2, tmp_path)


def test_train_gpus_option() -> None:
    from mlff2d.cli import build_parser, training_devices

    args = build_parser().parse_args(["train", "--family", "m3gnet", "--data", "d", "--outdir", "o", "--lr", "0.1",
                                      "--batch-size", "2"])
    assert args.gpus == 0 and training_devices(0, None) == (None, 1)
    assert training_devices(2, "cpu") == ("cpu", 2)
    assert training_devices(4, None) == ("cuda", 4)  # on a machine without CUDA: logged, fails in training
