#!/usr/bin/env python3
"""Build the project's virtual environments from envs/*.yml (standard library only).

    python3 envs/setup.py                 # both environments: .venv/main and .venv/nequip
    python3 envs/setup.py --env main      # one of them
    python3 envs/setup.py --extra demo    # also the optional extra (CHGNet demo generator)
    python3 envs/setup.py --clean         # rebuild from scratch

The pip section of each conda-style YAML is the single source of truth (the same files serve
`snakemake --sdm conda`). torch is installed first, on its own, so that `torch==2.13.0` takes the
local CPU wheel where one is provided. A venv whose spec (YAML, pyproject.toml, Python version,
extras) is unchanged is reused as it is; one built with more extras than asked for counts as
unchanged.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENVS = ROOT / "envs"
MARKER = ".mlff2d-spec"


def pip_requirements(yml: Path) -> list[str]:
    """The entries of the ``- pip:`` list of a conda environment file (paths made absolute)."""
    reqs: list[str] = []
    in_pip = False
    pip_indent = 0
    for raw in yml.read_text().splitlines():
        line = raw.split(" #", 1)[0].rstrip()
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        indent = len(line) - len(line.lstrip())
        if line.strip() == "- pip:":
            in_pip, pip_indent = True, indent
            continue
        if in_pip:
            if indent <= pip_indent:
                in_pip = False
                continue
            item = line.strip()[2:].strip()
            if item.startswith("-e "):
                item = "-e " + str((yml.parent / item[3:].strip()).resolve())
            reqs.append(item)
    if not reqs:
        raise SystemExit(f"{yml}: no '- pip:' requirements found")
    return reqs


def spec_hash(yml: Path) -> str:
    h = hashlib.sha256()
    for part in (yml.read_bytes(), (ROOT / "pyproject.toml").read_bytes(), sys.version.encode()):
        h.update(part)
    return h.hexdigest()


def installed(marker: Path) -> tuple[str, set[str]]:
    """The spec hash and extras a venv was built with (from its marker file)."""
    if not marker.exists():
        return "", set()
    digest, _, extras = marker.read_text().strip().partition(" ")
    return digest, set(filter(None, extras.split(",")))


def build(name: str, prefix: Path, extras: list[str], clean: bool) -> Path:
    """Create or reuse ``prefix/name`` from ``envs/name.yml``; returns the venv path."""
    yml = ENVS / f"{name}.yml"
    target = prefix / name
    digest = spec_hash(yml)
    marker = target / MARKER
    have_digest, have_extras = installed(marker)
    if not clean and have_digest == digest and set(extras) <= have_extras:
        print(f"[setup] {target}: up to date", flush=True)
        return target
    if have_digest == digest:
        extras = sorted(set(extras) | have_extras)
    if clean and target.exists():
        shutil.rmtree(target)
    if not (target / "bin" / "python").exists():
        print(f"[setup] creating {target}", flush=True)
        venv.EnvBuilder(with_pip=True, clear=False).create(target)
    py = str(target / "bin" / "python")
    reqs = pip_requirements(yml)
    torch = [r for r in reqs if r.replace(" ", "").startswith("torch==")]
    rest = [r for r in reqs if r not in torch]
    if extras:
        rest = [f"{r}[{','.join(extras)}]" if r.startswith("-e ") else r for r in rest]
    pip = [py, "-m", "pip", "install", "--disable-pip-version-check", "--progress-bar", "off"]
    for step in (torch, [arg for r in rest for arg in (r.split(" ", 1) if r.startswith("-e ") else [r])]):
        if step:
            print(f"[setup] {name}: pip install {' '.join(step)}", flush=True)
            subprocess.run([*pip, *step], check=True)
    marker.write_text(f"{digest} {','.join(extras)}\n")
    print(f"[setup] {target}: ready", flush=True)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", choices=("main", "nequip", "all"), default="all")
    parser.add_argument("--prefix", type=Path, default=ROOT / ".venv")
    parser.add_argument("--extra", action="append", default=[], help="optional extra of the main env (demo)")
    parser.add_argument("--clean", action="store_true", help="delete and rebuild the environments")
    args = parser.parse_args()
    names = ["main", "nequip"] if args.env == "all" else [args.env]
    for name in names:
        build(name, args.prefix, sorted(args.extra) if name == "main" else [], args.clean)


if __name__ == "__main__":
    main()
