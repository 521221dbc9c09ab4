"""Provenance of a result: package versions, git commit of the workflow, host and time."""

from __future__ import annotations

import datetime
import json
import platform
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

PACKAGES = ("mlff2d", "torch", "matgl", "mace-torch", "nequip", "e3nn", "ase", "pymatgen", "snakemake", "icet", "numpy", "pandas")
WORKFLOW_DIR = Path(__file__).resolve().parents[3]


def git_commit(directory: Path = WORKFLOW_DIR) -> str | None:
    """The commit of the workflow checkout (with '-dirty' for uncommitted changes), or None."""
    try:
        commit = subprocess.run(["git", "-C", str(directory), "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(directory), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("-dirty" if dirty else "")


def provenance() -> dict[str, Any]:
    """Versions of the packages that shape a result, the workflow's commit, host and time."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return {
        "time_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "git_commit": git_commit(),
        "packages": versions,
    }


def write_provenance(directory: str | Path, config: dict[str, Any] | None = None) -> Path:
    """Write ``provenance.json`` (and ``config.resolved.yaml`` when a config is given)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if config is not None:
        (directory / "config.resolved.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    path = directory / "provenance.json"
    path.write_text(json.dumps(provenance(), indent=2) + "\n")
    return path
