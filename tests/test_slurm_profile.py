"""`mlff2d slurm-profile` and the placeholder check, without a cluster (sinfo etc. faked).

The real cluster's side (written profile, `snakemake --profile slurm` by name, refusal to
overwrite, placeholders stopping a run) is in test_slurm.py.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from mlff2d import slurm_profile as sp
from mlff2d.cli import main

ROOT = Path(__file__).resolve().parents[1]
#: A site as sinfo prints it: a default CPU partition, a short and a long GPU partition (one of
#: them with two kinds of node), a GPU partition that is down.
SINFO = """\
cpu*|up|1-00:00:00|(null)
gpu-debug|up|30:00|gpu:a100:4(S:0-1)
gpu|up|2-00:00:00|gpu:a100:4(S:0-1),shard:8
gpu|up|2-00:00:00|gpu:v100:2(S:0)
old-gpu|down|infinite|gpu:8
"""
NO_ACCOUNTING = "AccountingStorageType   = accounting_storage/none\n"


def fake_cluster(monkeypatch: pytest.MonkeyPatch, sinfo: str = SINFO, config: str = NO_ACCOUNTING,
                 sacctmgr: dict[str, str] | None = None) -> None:
    answers = {"sinfo": sinfo, "scontrol": config, **(sacctmgr or {})}

    def run(cmd: list[str]) -> str:
        key = cmd[0] if cmd[0] != "sacctmgr" else f"sacctmgr {cmd[4]}"
        if key not in answers:
            raise sp.ProfileError(f"`{' '.join(cmd)}` failed: not faked")
        return answers[key]

    monkeypatch.setattr(sp, "_run", run)


@pytest.fixture
def config_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """XDG_CONFIG_HOME in a temporary folder: nothing is written into the real home."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg"


def test_sinfo_fields() -> None:
    assert sp.gres_gpus("gpu:a100:4(S:0-1),shard:8") == 4 and sp.gres_gpus("gpu:2,gpu:v100:1") == 3
    assert sp.gres_gpus("(null)") == 0 and sp.gres_gpus("shard:8") == 0
    assert sp.time_limit_minutes("1-00:00:00") == 1440 and sp.time_limit_minutes("30:00") == 30
    assert sp.time_limit_minutes("2:30:00") == 150 and sp.time_limit_minutes("infinite") == float("inf")
    parts = {p.name: p for p in sp.parse_sinfo(SINFO)}
    assert list(parts) == ["cpu", "gpu-debug", "gpu", "old-gpu"]
    assert parts["cpu"].default and not parts["gpu"].default and parts["gpu"].gpus == 4
    assert not parts["old-gpu"].up


def test_choose_partitions() -> None:
    parts = sp.parse_sinfo(SINFO)
    cpu, gpu = sp.choose_partitions(parts)
    assert (cpu.name, gpu.name) == ("cpu", "gpu")  # the default; GPUs and the longest limit, up
    cpu, gpu = sp.choose_partitions(parts, cpu="gpu-debug", gpu="gpu-debug")
    assert (cpu.name, gpu.name) == ("gpu-debug", "gpu-debug")
    with pytest.raises(sp.ProfileError, match="--gpu-partition nope: no such partition"):
        sp.choose_partitions(parts, gpu="nope")
    with pytest.raises(sp.ProfileError, match="no default partition.*--cpu-partition"):
        sp.choose_partitions(sp.parse_sinfo(SINFO.replace("cpu*", "cpu")))
    with pytest.raises(sp.ProfileError, match="no partition with GPUs.*--gpu-partition"):
        sp.choose_partitions(sp.parse_sinfo("cpu*|up|infinite|(null)\n"))


def test_account(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_cluster(monkeypatch)
    assert sp.find_account() is None
    with_db = "AccountingStorageType   = accounting_storage/slurmdbd\n"
    fake_cluster(monkeypatch, config=with_db, sacctmgr={"sacctmgr user": "chem\n"})
    assert sp.find_account() == "chem"
    fake_cluster(monkeypatch, config=with_db, sacctmgr={"sacctmgr user": "\n", "sacctmgr assoc": "proj1\nproj1\n"})
    assert sp.find_account() == "proj1"
    fake_cluster(monkeypatch, config=with_db, sacctmgr={"sacctmgr user": "\n", "sacctmgr assoc": "a\nb\n"})
    with pytest.raises(sp.ProfileError, match="accounts a, b and no default account: pass --account"):
        sp.find_account()
    fake_cluster(monkeypatch, config=with_db)
    with pytest.raises(sp.ProfileError, match="pass --account"):
        sp.find_account()


def test_render_derives_the_template() -> None:
    """Only the placeholders change: the rest of the profile is profiles/slurm/config.yaml."""
    template = sp.TEMPLATE.read_text()
    text = sp.render(template, {"<your-partition>": "cpu", "<your-gpu-partition>": "gpu", "<your-account>": None})
    profile, original = yaml.safe_load(text), yaml.safe_load(template)
    assert {k: v for k, v in original["default-resources"].items() if k != "slurm_account"} | {
        "slurm_partition": "cpu"} == profile["default-resources"]
    assert profile["set-resources"] == {rule: {"slurm_partition": "gpu"} for rule in original["set-resources"]}
    assert {k: v for k, v in profile.items() if "resources" not in k} == {
        k: v for k, v in original.items() if "resources" not in k}
    with_account = yaml.safe_load(sp.render(template, {"<your-partition>": "c", "<your-gpu-partition>": "g",
                                                      "<your-account>": "chem"}))
    assert with_account["default-resources"]["slurm_account"] == "chem"
    with pytest.raises(sp.ProfileError, match="does not know"):
        sp.render(template, {"<your-partition>": "c", "<your-gpu-partition>": "g"})


def test_cli_writes_once(monkeypatch: pytest.MonkeyPatch, config_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fake_cluster(monkeypatch)
    assert main(["slurm-profile"]) == 0
    path = config_home / "snakemake" / "slurm" / "config.yaml"
    assert sp.profile_dir("slurm") == path.parent
    assert "snakemake --profile slurm" in capsys.readouterr().out
    written = path.read_text()
    assert yaml.safe_load(written)["set-resources"]["train_uff"] == {"slurm_partition": "gpu"}
    assert "partition gpu (4 GPUs per node, time limit 2-00:00:00)" in written
    # never overwritten: says so and offers the two ways out
    assert main(["slurm-profile", "--gpu-partition", "gpu-debug"]) == 2
    err = capsys.readouterr().err
    assert "exists already" in err and "--name mlff2d-slurm" in err and "--force" in err
    assert path.read_text() == written
    assert main(["slurm-profile", "--name", "mlff2d-slurm", "--gpu-partition", "gpu-debug", "--account", "chem"]) == 0
    other = yaml.safe_load((config_home / "snakemake" / "mlff2d-slurm" / "config.yaml").read_text())
    assert other["set-resources"]["train_uff"] == {"slurm_partition": "gpu-debug"}
    assert other["default-resources"]["slurm_account"] == "chem"
    assert main(["slurm-profile", "--force", "--cpu-partition", "gpu-debug"]) == 0
    assert yaml.safe_load(path.read_text())["default-resources"]["slurm_partition"] == "gpu-debug"


def test_cli_names_the_flag(monkeypatch: pytest.MonkeyPatch, config_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fake_cluster(monkeypatch, sinfo="cpu*|up|infinite|(null)\n")
    assert main(["slurm-profile"]) == 2
    assert "pass --gpu-partition" in capsys.readouterr().err
    assert not (config_home / "snakemake" / "slurm").exists()


def test_check_filled() -> None:
    """The Snakefile's check, on Snakemake's resource settings (values carry their raw text)."""
    def res(**values: object) -> dict[str, SimpleNamespace]:
        return {k: SimpleNamespace(raw=v) for k, v in values.items()}

    settings = SimpleNamespace(default_resources=res(slurm_partition="<your-partition>", mem_mb=4000),
                               overwrite_resources={"train_uff": res(slurm_partition='"<your-gpu-partition>"')})
    with pytest.raises(sp.ProfileError) as err:
        sp.check_filled(settings)
    assert "default-resources.slurm_partition (<your-partition>), set-resources.train_uff.slurm_partition" in str(err.value)
    sp.check_filled(SimpleNamespace(default_resources=res(slurm_partition="cpu"), overwrite_resources={}))
    sp.check_filled(SimpleNamespace(default_resources=None, overwrite_resources={}))


def test_workflow_profile_agrees_with_the_slurm_profile() -> None:
    """Snakemake reads profiles/default with `--profile slurm`, its keys winning: it may hold only
    settings the SLURM profile has with the same value (so `cores` is not there)."""
    default = yaml.safe_load((ROOT / "profiles" / "default" / "config.yaml").read_text())
    slurm = yaml.safe_load(sp.TEMPLATE.read_text())
    assert default and all(slurm.get(key) == value for key, value in default.items()), default
