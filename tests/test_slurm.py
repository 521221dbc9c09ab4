"""The campaign through `snakemake --profile slurm` on a real two-node SLURM cluster.

The cluster (tests/slurm_cluster.py: a CPU partition, the default, and a GPU partition) is
started once per session; where SLURM cannot be installed (not root, apt-get fails) every test
here is skipped with the reason, and any other start-up error fails them. The profile is made
as a user makes it: `mlff2d slurm-profile` (XDG_CONFIG_HOME is a temporary folder, so nothing is
written into the real home), then `snakemake --profile slurm` by name. The settings that only
make the tests faster are in FAST.

* test_slurm_profile_from_the_cluster: the written profile sends the trainings to the GPU
  partition and everything else to the default one, without an account (no accounting here);
  a second `mlff2d slurm-profile` refuses to overwrite it;
* test_placeholders_stop_before_submission: `--profile profiles/slurm` as shipped stops with
  one message naming every placeholder key, and submits nothing;
* test_training_sbatch_lines: the sbatch line of a training for 1 GPU, for 4 GPUs (with a GPU
  model) and for a retry (memory and run time doubled), from the plugin's own log (--verbose),
  and SLURM's record of the 4-GPU job;
* test_campaign_slice_through_slurm: from a project folder, `snakemake --profile slurm`: data
  pipeline (locally, before), then training, relaxation and aggregation through SLURM, each in
  its partition: every relaxation shard is killed by SLURM for exceeding its memory on attempt
  1 and succeeds on attempt 2; the training is requeued (`scontrol requeue`) once its first
  checkpoint is written and resumes from it; the results have the form of a local run's.
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

from slurm_cluster import GPU_PARTITION, GPU_TYPE, PARTITION, SlurmCluster, slurm_cluster  # noqa: E402,F401

from mlff2d.demo.synthetic import write_alexandria  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PROFILE = ROOT / "profiles" / "slurm"
CAMPAIGN = "sl"
POINT = f"results/{CAMPAIGN}/uff/m3gnet/ecut~1e6/lr~0.001/bs~4"
EXPORT = f"results/{CAMPAIGN}/data/2d/export/m3gnet/ecut~1e6/split~80-10-10"
#: Enough epochs that the training is still running when the test requeues it after epoch 1.
TINY_M3GNET = {"epochs": 12, "nblocks": 1, "units": 16, "dim_node_embedding": 16, "dim_edge_embedding": 16}
TINY_MACE = {"epochs": 2, "num_channels": 8, "max_L": 0, "correlation": 2, "r_max": 4.0, "swa": False}
#: Status checks every second and no file-system latency: test speed only.
FAST = ["--slurm-init-seconds-before-status-checks", "1", "--seconds-between-status-checks", "1",
        "--latency-wait", "5", "--max-threads", "2"]
#: Peak memory of a relaxation shard's job step here is ~850 MB (nested Snakemake + mlff2d relax
#: with torch and matgl): attempt 1 gets 600 MB and is killed, attempt 2 gets 1200 MB.
RELAX_MEM_MB = 600

pytestmark = pytest.mark.slow


TRAINING_RULES = {"train_uff", "train_alloy", "train_alloy_curve", "formation_nequip"}


@pytest.fixture(scope="module")
def config_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """XDG_CONFIG_HOME of every command here: Snakemake's profiles by name live under it."""
    return tmp_path_factory.mktemp("xdg")


@pytest.fixture(scope="module")
def site_profile(slurm_cluster: SlurmCluster, config_home: Path) -> Path:
    """`mlff2d slurm-profile`, as a user runs it: the profile `slurm` of the test cluster."""
    res = subprocess.run([str(BIN / "mlff2d"), "slurm-profile"], capture_output=True, text=True, timeout=60,
                         env=run_env(config_home))
    assert res.returncode == 0, res.stdout + res.stderr
    print(res.stdout)
    return config_home / "snakemake" / "slurm" / "config.yaml"


def snakemake_cmd(workdir: Path, *args: str) -> list[str]:
    return [str(BIN / "snakemake"), "-s", str(ROOT / "Snakefile"), "--directory", str(workdir), *args]


def run_env(config_home: Path) -> dict[str, str]:
    return {**os.environ, "PATH": f"{os.environ['PATH']}{os.pathsep}{BIN}", "XDG_CONFIG_HOME": str(config_home)}


def write_config(workdir: Path, **families: dict[str, object]) -> None:
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    config["data"]["sources"][0]["path"] = str(workdir / "alexandria" / "*.json.bz2")
    config.pop("alloys", None)
    config.pop("repeats", None)  # the study's repeat points are not in this grid
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
def data_workdir(tmp_path_factory: pytest.TempPathFactory, config_home: Path) -> Path:
    """A campaign directory whose data pipeline has run (locally: the SLURM part is what follows)."""
    work = tmp_path_factory.mktemp("slurm_base")
    write_alexandria(work / "alexandria", 14, n_steps=6, per_file=5, seed=3)
    write_config(work)
    out = subprocess.run(snakemake_cmd(work, "--cores", "2", "data"), capture_output=True, text=True,
                         env=run_env(config_home), timeout=300)
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


def test_bad_slurm_conf_fails_not_skips(monkeypatch: pytest.MonkeyPatch) -> None:
    """A start-up error after the install (here a slurm.conf slurmctld rejects) is a failure."""
    import slurm_cluster as sc

    try:
        sc.ensure_installed()
    except sc.ClusterUnavailable as exc:
        pytest.skip(f"no SLURM cluster: {exc}")
    good = sc.slurm_conf
    monkeypatch.setattr(sc, "slurm_conf", lambda *args: good(*args) + "NoSuchSlurmOption=1\n")
    with pytest.raises(sc.ClusterStartError, match="did not start") as err:
        sc.start_cluster(timeout=20)
    assert not isinstance(err.value, sc.ClusterUnavailable)
    print(str(err.value)[:600])


def test_slurm_profile_from_the_cluster(site_profile: Path, config_home: Path) -> None:
    """Trainings to the partition with GPUs, the rest to the default one; never overwritten."""
    profile = yaml.safe_load(site_profile.read_text())
    template = yaml.safe_load((PROFILE / "config.yaml").read_text())
    # no slurm_account: the test cluster has no accounting
    expected = {k: v for k, v in template["default-resources"].items() if k != "slurm_account"}
    assert profile["default-resources"] == {**expected, "slurm_partition": PARTITION}
    assert set(profile["set-resources"]) == TRAINING_RULES
    assert all(r == {"slurm_partition": GPU_PARTITION} for r in profile["set-resources"].values())
    assert {k: v for k, v in profile.items() if "resources" not in k} == {
        k: v for k, v in template.items() if "resources" not in k}
    before = site_profile.read_text()
    again = subprocess.run([str(BIN / "mlff2d"), "slurm-profile"], capture_output=True, text=True, timeout=60,
                           env=run_env(config_home))
    assert again.returncode == 2 and "exists already" in again.stderr, again.stdout + again.stderr
    assert "--name mlff2d-slurm" in again.stderr and "--force" in again.stderr
    assert site_profile.read_text() == before


def test_placeholders_stop_before_submission(slurm_cluster: SlurmCluster, data_workdir: Path, config_home: Path,
                                             tmp_path: Path) -> None:
    """`--profile profiles/slurm` as shipped: one message naming the keys, no job submitted."""
    work = copy_workdir(data_workdir, tmp_path / "w")
    res = subprocess.run(snakemake_cmd(work, "--profile", str(PROFILE), *FAST), capture_output=True,
                         text=True, timeout=120, env=run_env(config_home))
    out = res.stdout + res.stderr
    assert res.returncode != 0
    assert out.count("the SLURM profile still has placeholders") == 1, out[-3000:]
    for key in ("default-resources.slurm_partition", "default-resources.slurm_account",
                *(f"set-resources.{rule}.slurm_partition" for rule in TRAINING_RULES)):
        assert key in out
    assert "mlff2d slurm-profile" in out
    assert "submitted with SLURM jobid" not in out and "Building DAG" not in out
    assert not [r for r in slurm_cluster.jobcomp() if r.get("WorkDir") == str(work)]
    queued = slurm_cluster.run("squeue", "--states=all", "--noheader", "--format=%Z").stdout.split()
    assert str(work) not in queued


def test_training_sbatch_lines(slurm_cluster: SlurmCluster, site_profile: Path, data_workdir: Path,
                               config_home: Path, tmp_path: Path) -> None:
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
        proc = subprocess.Popen(snakemake_cmd(work, "--profile", "slurm", *FAST, "--verbose", *targets), stdout=log,
                                stderr=subprocess.STDOUT, env=run_env(config_home), start_new_session=True)
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
    assert option(one, r" -p (\S+)") == GPU_PARTITION and option(mace, r" -p (\S+)") == GPU_PARTITION
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


def epochs_done(history: Path) -> int:
    """Rows of a training's own epoch record (0 while it is missing or being written)."""
    try:
        return len(pd.read_csv(history))
    except (OSError, pd.errors.EmptyDataError, pd.errors.ParserError):
        return 0


def submitted_job(log_path: Path, rule: str) -> str | None:
    """The SLURM job id of the first job of ``rule``, from the plugin's submission line."""
    for line in log_path.read_text().splitlines():
        if "has been submitted with SLURM jobid" in line and f"rule_{rule}/" in line:
            return line.split("SLURM jobid ")[1].split()[0]
    return None


def requeue_after_first_checkpoint(cluster: SlurmCluster, proc: subprocess.Popen[bytes], log_path: Path,
                                   point: Path) -> str:
    """Pre-empt the training: `scontrol requeue` once its first checkpoint and epoch row exist.

    Synchronised on the training itself (its submission line, then checkpoints/last.ckpt and a
    row of checkpoints/metrics.csv), with generous deadlines; fails, saying so, where the
    training ended before it could be requeued."""
    wait_for(lambda: submitted_job(log_path, "train_uff") is not None, 300, proc, "the training's submission")
    job = submitted_job(log_path, "train_uff")
    assert job is not None
    ckpt, history = point / "checkpoints" / "last.ckpt", point / "checkpoints" / "metrics.csv"
    wait_for(lambda: ckpt.exists() and epochs_done(history) >= 1, 600, proc,
             f"the first checkpoint of training job {job} ({ckpt} and a row of {history.name})")
    state = cluster.run("squeue", "--noheader", "--jobs", job, "--format=%T", check=False).stdout.strip()
    done = epochs_done(history)
    assert state == "RUNNING" and not (point / "status.json").exists(), (
        f"training job {job} is {state or 'gone'} after {done} of {TINY_M3GNET['epochs']} epochs: it ended before "
        "it could be requeued (raise TINY_M3GNET['epochs'] if this machine trains that fast)")
    res = cluster.run("scontrol", "requeue", job, check=False)
    assert res.returncode == 0, f"scontrol requeue {job} after {done} epochs: {res.stderr}"
    print(f"requeued training job {job} after {done} of {TINY_M3GNET['epochs']} epochs")
    return job


def project_folder(data_workdir: Path, dst: Path) -> Path:
    """A campaign folder laid out as a clone of this project: Snakefile, workflow/, profiles/."""
    work = copy_workdir(data_workdir, dst)
    for name in ("Snakefile", "workflow", "profiles"):
        (work / name).symlink_to(ROOT / name)
    return work


def test_campaign_slice_through_slurm(slurm_cluster: SlurmCluster, site_profile: Path, data_workdir: Path,
                                      config_home: Path, tmp_path: Path) -> None:
    work = project_folder(data_workdir, tmp_path / "slurm")
    local = copy_workdir(data_workdir, tmp_path / "local")
    env = run_env(config_home)
    # the same slice locally, alongside (the SLURM run mostly waits)
    local_proc = subprocess.Popen(snakemake_cmd(local, "--profile", str(ROOT / "profiles" / "default"), "--cores", "1"),
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    log_path = tmp_path / "slurm.log"
    with open(log_path, "w") as log:  # as a user types it, in the project folder
        proc = subprocess.Popen([str(BIN / "snakemake"), "--profile", "slurm", *FAST, "--verbose"], cwd=work,
                                stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        train_id = requeue_after_first_checkpoint(slurm_cluster, proc, log_path, work / POINT)
        proc.wait(timeout=420)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            proc.wait(timeout=60)
        local_out = local_proc.communicate(timeout=420)[0].decode()
    text = log_path.read_text()
    assert proc.returncode == 0, text[-5000:]
    assert local_proc.returncode == 0, local_out[-3000:]
    # the site profile by name, with the workflow profile (profiles/default) beside it
    assert "Using profiles slurm and workflow specific profile profiles/default" in text, text[:2000]

    # the trainings in the GPU partition, every other job in the default (CPU) partition
    partitions = {re.search(r"--comment '?rule_(\w+?)_wildcards", c).group(1): option(c, r" -p (\S+)")  # type: ignore[union-attr]
                  for c in sbatch_calls(text)}
    assert partitions.pop("train_uff") == GPU_PARTITION, partitions
    assert set(partitions.values()) == {PARTITION}, partitions

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


def test_m3gnet_trains_data_parallel_on_two_cpu_processes(data_workdir: Path, config_home: Path, tmp_path: Path) -> None:
    """`mlff2d train --gpus 2 --device cpu`: Lightning DDP (gloo) with 2 processes, rank 0 writes."""
    out = tmp_path / "point"
    params = json.dumps({**TINY_M3GNET, "epochs": 2})
    res = subprocess.run([str(BIN / "mlff2d"), "train", "--family", "m3gnet", "--data", str(data_workdir / EXPORT),
                          "--outdir", str(out), "--lr", "0.001", "--batch-size", "4", "--params", params,
                          "--device", "cpu", "--gpus", "2"], capture_output=True, text=True, timeout=300,
                         env=run_env(config_home))
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
    from mlff2d.cli import build_parser
    from mlff2d.cli.training import training_devices

    args = build_parser().parse_args(["train", "--family", "m3gnet", "--data", "d", "--outdir", "o", "--lr", "0.1",
                                      "--batch-size", "2"])
    assert args.gpus == 0 and training_devices(0, None) == (None, 1)
    assert training_devices(2, "cpu") == ("cpu", 2)
    assert training_devices(4, None) == ("cuda", 4)  # on a machine without CUDA: logged, fails in training
