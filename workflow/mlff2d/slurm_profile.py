"""The SLURM site profile: ``mlff2d slurm-profile`` writes it, the Snakefile refuses one left unfilled.

``profiles/slurm/config.yaml`` (TEMPLATE) is the one home of the profile's content. Its ``<...>``
values are the only site-specific part; ``write_profile`` fills them in from the cluster itself
(``sinfo`` for partitions, GPUs and time limits; ``scontrol show config`` and ``sacctmgr`` for
the account) and writes the result where Snakemake finds a profile by name
(``$XDG_CONFIG_HOME/snakemake/<name>/``, else ``~/.config/snakemake/<name>/``), so that
``snakemake --profile slurm`` works. ``check_filled`` stops a run whose resources still hold a
placeholder, before any job is submitted, with one message naming every such key.
"""

from __future__ import annotations

import getpass
import math
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mlff2d.io.provenance import WORKFLOW_DIR

TEMPLATE = WORKFLOW_DIR / "profiles" / "slurm" / "config.yaml"
#: The template's placeholders, each with the flag of ``mlff2d slurm-profile`` that sets it.
FLAGS = {"<your-partition>": "--cpu-partition", "<your-gpu-partition>": "--gpu-partition",
         "<your-account>": "--account"}
#: A resource value that was never filled in: ``<...>``, quoted or not.
PLACEHOLDER = re.compile(r"""^["']?(<[^<>]+>)["']?$""")
#: ``sinfo`` columns: partition (``*`` marks the default), availability, time limit, GRES.
SINFO = ["sinfo", "--noheader", "--format=%P|%a|%l|%G"]


class ProfileError(ValueError):
    """A profile cannot be written or used as it is; the message says what to pass or fill in."""


@dataclass(frozen=True)
class Partition:
    """One SLURM partition as ``sinfo`` reports it."""

    name: str
    default: bool
    up: bool
    time_limit: str
    gpus: int  #: GPUs on its best-equipped node

    @property
    def minutes(self) -> float:
        return time_limit_minutes(self.time_limit)


def time_limit_minutes(text: str) -> float:
    """``[days-]hours:minutes:seconds`` (or ``minutes:seconds``, ``infinite``) in minutes."""
    if text.lower() in ("infinite", "unlimited"):
        return math.inf
    days, _, clock = text.rpartition("-")
    parts = [int(p) for p in clock.split(":")]
    if len(parts) == 2:
        parts = [0, *parts]
    hours, minutes, seconds = parts
    return (int(days or 0) * 24 + hours) * 60 + minutes + seconds / 60


def gres_gpus(gres: str) -> int:
    """GPUs in a node's GRES string (``gpu:a100:4(S:0-1),shard:8`` → 4; ``(null)`` → 0)."""
    total = 0
    for entry in re.sub(r"\([^)]*\)", "", gres).split(","):
        fields = entry.split(":")
        if fields[0] == "gpu" and len(fields) > 1 and fields[-1].isdigit():
            total += int(fields[-1])
    return total


def parse_sinfo(text: str) -> list[Partition]:
    """Partitions from ``sinfo --format=%P|%a|%l|%G`` (one row per partition and kind of node)."""
    found: dict[str, Partition] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        name, avail, limit, gres = line.strip().split("|")
        part = Partition(name.rstrip("*"), name.endswith("*"), avail == "up", limit, gres_gpus(gres))
        if part.name in found:
            part = Partition(part.name, part.default, part.up, limit, max(part.gpus, found[part.name].gpus))
        found[part.name] = part
    return list(found.values())


def choose_partitions(partitions: list[Partition], cpu: str | None = None,
                      gpu: str | None = None) -> tuple[Partition, Partition]:
    """The CPU partition (the default one) and the GPU partition (the longest time limit, then
    the most GPUs, among those that are up and have GPUs); ``cpu``/``gpu`` name them instead."""
    by_name = {p.name: p for p in partitions}
    for name, flag in ((cpu, "--cpu-partition"), (gpu, "--gpu-partition")):
        if name is not None and name not in by_name:
            raise ProfileError(f"{flag} {name}: no such partition (sinfo lists {', '.join(by_name) or 'none'})")
    if cpu is None:
        default = [p for p in partitions if p.default]
        if not default:
            raise ProfileError("sinfo shows no default partition for the CPU jobs: pass --cpu-partition")
        cpu = default[0].name
    if gpu is None:
        with_gpus = sorted((p for p in partitions if p.up and p.gpus > 0), key=lambda p: (-p.minutes, -p.gpus, p.name))
        if not with_gpus:
            raise ProfileError("sinfo shows no partition with GPUs (GRES gpu) for the trainings: pass --gpu-partition")
        gpu = with_gpus[0].name
    return by_name[cpu], by_name[gpu]


def _run(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", "") or exc
        raise ProfileError(f"`{' '.join(cmd)}` failed: {str(detail).strip()}") from exc


def find_account() -> str | None:
    """The account to charge: None where the cluster has no accounting, else the user's default
    account (``sacctmgr show user``) or their only association (``sacctmgr show assoc``)."""
    config = _run(["scontrol", "show", "config"])
    storage = re.search(r"^AccountingStorageType\s*=\s*(\S+)", config, re.M)
    if storage is None or storage.group(1) == "accounting_storage/none":
        return None
    user = getpass.getuser()
    try:
        default = _run(["sacctmgr", "--noheader", "--parsable2", "show", "user", user, "format=DefaultAccount"])
        if default.strip():
            return default.split()[0]
        assoc = _run(["sacctmgr", "--noheader", "--parsable2", "show", "assoc", f"user={user}", "format=Account"])
    except ProfileError as exc:
        raise ProfileError(f"{exc}; pass --account (or --account none)") from exc
    accounts = sorted(set(assoc.split()))
    if len(accounts) != 1:
        raise ProfileError(f"user {user} has {'accounts ' + ', '.join(accounts) if accounts else 'no account'} "
                           "and no default account: pass --account")
    return accounts[0]


def unfilled(resources: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The keys (``<layer>.<resource>``) whose value is still a ``<...>`` placeholder."""
    return [f"{layer}.{key} ({match.group(1)})" for layer, values in resources.items() for key, value in values.items()
            if isinstance(value, str) and (match := PLACEHOLDER.match(value))]


def profile_resources(profile: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """A profile's resource layers by key: ``default-resources`` and ``set-resources.<rule>``."""
    sets = profile.get("set-resources") or {}
    return {"default-resources": profile.get("default-resources") or {},
            **{f"set-resources.{rule}": values for rule, values in sets.items()}}


def check_filled(resource_settings: Any) -> None:
    """Stop a Snakemake run whose profile left placeholders (``workflow.resource_settings``)."""
    def raw(values: Mapping[str, Any] | None) -> dict[str, Any]:
        return {key: getattr(value, "raw", value) for key, value in (values or {}).items()}

    layers = {"default-resources": raw(resource_settings.default_resources),
              **{f"set-resources.{rule}": raw(values) for rule, values in resource_settings.overwrite_resources.items()}}
    if keys := unfilled(layers):
        raise ProfileError(
            "the SLURM profile still has placeholders, nothing was submitted: " + ", ".join(keys)
            + ". Write a profile from this cluster with `mlff2d slurm-profile` and run `snakemake --profile slurm`, "
            "or fill these keys in profiles/slurm/config.yaml.")


def render(template: str, values: Mapping[str, str | None]) -> str:
    """The template with each placeholder replaced by its value; a line whose value is None
    (no account) is dropped. The result must have no placeholder left in its resources."""
    lines = []
    for line in template.splitlines(keepends=True):
        tokens = [t for t in values if t in line]
        if any(values[t] is None for t in tokens) and not line.lstrip().startswith("#"):
            continue
        for token in tokens:
            line = line.replace(token, values[token] or "")
        lines.append(line)
    text = "".join(lines)
    if left := unfilled(profile_resources(yaml.safe_load(text))):
        raise ProfileError(f"{TEMPLATE} has placeholders mlff2d slurm-profile does not know: {', '.join(left)}")
    return text


def profile_dir(name: str) -> Path:
    """Where Snakemake looks for ``--profile <name>`` (its user config dir, as snakemake.common.get_appdirs)."""
    from platformdirs import user_config_dir

    return Path(user_config_dir("snakemake", "snakemake")) / name


def write_profile(name: str = "slurm", cpu_partition: str | None = None, gpu_partition: str | None = None,
                  account: str | None = None, force: bool = False) -> tuple[Path, str]:
    """Write the site profile ``name``; returns its config.yaml and a summary of the choices."""
    target = profile_dir(name)
    if target.exists() and not force:
        raise ProfileError(f"a Snakemake profile named {name!r} exists already ({target}); it was not changed. "
                           "Write this one under another name with `--name mlff2d-slurm` (then "
                           "`snakemake --profile mlff2d-slurm`), or replace it with `--force`.")
    cpu, gpu = choose_partitions(parse_sinfo(_run(SINFO)), cpu_partition, gpu_partition)
    if account is None:
        account = find_account()
        account_note = f"{account} (sacctmgr)" if account else "none (the cluster has no accounting)"
    else:
        account = None if account.lower() == "none" else account
        account_note = f"{account or 'none'} (--account)"
    summary = (f"#   CPU jobs:  partition {cpu.name} ({'the default, ' if cpu.default else ''}time limit {cpu.time_limit})\n"
               f"#   trainings: partition {gpu.name} ({gpu.gpus} GPUs per node, time limit {gpu.time_limit})\n"
               f"#   account:   {account_note}\n")
    text = render(TEMPLATE.read_text(), {"<your-partition>": cpu.name, "<your-gpu-partition>": gpu.name,
                                         "<your-account>": account})
    header = (f"# Written by `mlff2d slurm-profile` from {TEMPLATE}, for this cluster:\n{summary}"
              "# Write it again with `mlff2d slurm-profile --force`. The template's notes follow.\n#\n")
    target.mkdir(parents=True, exist_ok=True)
    path = target / "config.yaml"
    path.write_text(header + text)
    return path, summary
