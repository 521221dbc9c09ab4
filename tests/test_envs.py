"""The two environments: built from envs/*.yml, reused when unchanged, each with its stack."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "envs"))

import setup  # noqa: E402


def test_pip_section_is_the_source_of_truth() -> None:
    main = setup.pip_requirements(ROOT / "envs" / "main.yml")
    assert main[0] == "torch==2.13.0"
    assert {"mace-torch==0.3.16", "matgl==4.1.2", "snakemake==9.27.1"} <= set(main)
    assert main[-1] == f"-e {ROOT}"
    assert "nequip==0.19.1" in setup.pip_requirements(ROOT / "envs" / "nequip.yml")


def test_setup_reuses_unchanged_envs() -> None:
    out = subprocess.run([sys.executable, str(ROOT / "envs" / "setup.py")], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("up to date") == 2


def test_each_env_has_its_stack() -> None:
    venv = ROOT / ".venv"
    main = subprocess.run(
        [str(venv / "main" / "bin" / "python"), "-c", "import mace, matgl, icet, snakemake, mlff2d, e3nn; print(e3nn.__version__)"],
        capture_output=True, text=True, timeout=300,
    )
    assert main.returncode == 0, main.stderr[-2000:]
    assert main.stdout.strip().splitlines()[-1] == "0.4.4"
    neq = subprocess.run(
        [str(venv / "nequip" / "bin" / "python"), "-c", "import nequip, mlff2d, e3nn; print(nequip.__version__, e3nn.__version__)"],
        capture_output=True, text=True, timeout=300,
    )
    assert neq.returncode == 0, neq.stderr[-2000:]
    assert neq.stdout.strip().splitlines()[-1].startswith("0.19.")
    assert neq.stdout.strip().split()[-1].startswith("0.6.")
