"""What a user reads in a training's log: one progress line per epoch (``epoch k/N``, 1-based as
in metrics.csv, validation errors, time, ETA) for every family, no DEBUG lines, nothing twice."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
EPOCH_LINE = re.compile(r"epoch (\d+)/(\d+): val MAE energy [-0-9.e+]+ meV/atom.*; [0-9.]+ s, ETA \d+ s")

pytestmark = pytest.mark.slow  # real trainings


def _check(log: str, epochs: int) -> None:
    found = [tuple(map(int, m.groups())) for m in EPOCH_LINE.finditer(log)]
    assert found == [(k, epochs) for k in range(1, epochs + 1)], (found, log[-3000:])
    assert "DEBUG" not in log and "Namespace(" not in log
    lines = [re.sub(r"^\S+ \S+ ", "", line) for line in log.splitlines() if "epoch " in line]
    assert len(lines) == len(set(lines)), "a line printed twice"


@pytest.mark.parametrize("family", ["m3gnet", "mace"])
def test_train_log_has_one_line_per_epoch(family: str, tmp_path: Path) -> None:
    from test_family_m3gnet import labelled_rows, write_export
    from test_family_mace import TINY, write_data

    if family == "m3gnet":
        data = write_export(tmp_path / "data", {"train": labelled_rows(16, 0), "val": labelled_rows(4, 1)})
        params = {"nblocks": 1, "units": 16, "dim_node_embedding": 16, "dim_edge_embedding": 16, "epochs": 3}
    else:
        data = write_data(tmp_path / "data")
        params = {k: v for k, v in TINY.items() if k not in ("lr", "batch_size")}
    out = subprocess.run([str(BIN / "mlff2d"), "train", "--family", family, "--data", str(data), "--outdir", str(tmp_path / "point"),
                          "--lr", "0.01", "--batch-size", "4", "--params", json.dumps(params)],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    _check(out.stdout + out.stderr, int(params["epochs"]))


def test_nequip_log_has_one_line_per_epoch(tmp_path: Path) -> None:
    from test_nequip_model import NEQUIP_MLFF2D, TINY

    if not NEQUIP_MLFF2D.exists():
        pytest.skip("needs the nequip environment (.venv/nequip)")
    from formation_helpers import demo_formation

    relax, fe = demo_formation(tmp_path / "inputs")
    out = tmp_path / "dft"
    cmd = [str(NEQUIP_MLFF2D), "formation-nequip", "--formation", str(fe),
           *[x for s in ("train", "val", "test") for x in (f"--{s}", str(relax / f"{s}_reference.extxyz"))],
           "--outdir", str(out), "--params", json.dumps(TINY)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    _check((out / "nequip-train.log").read_text(), int(TINY["max_epochs"]))
