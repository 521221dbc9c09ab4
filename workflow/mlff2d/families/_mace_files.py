"""MACE's files in a training directory of :mod:`mlff2d.families.mace`: the frames of the export,
the checkpoint a rerun resumes from, and the per-epoch results read as ``metrics.csv`` rows."""

from __future__ import annotations

import itertools
import json
import logging
import math
import re
from pathlib import Path
from typing import Any

import pandas as pd

from mlff2d.training import checkpoints
from mlff2d.families import METRIC_COLUMNS, STRESS_UNIT


def count_frames(path: str | Path) -> int:
    """Number of frames in an (ext)xyz file, read by the atom-count lines only."""
    count = 0
    with open(path) as handle:
        for line in handle:
            if not line.strip():
                continue
            count += 1
            for _ in itertools.islice(handle, int(line) + 1):
                pass
    return count


def resume_checkpoint(outdir: Path, tag: str, guard_notes: list[str] | None = None) -> bool:
    """Whether MACE resumes: its newest checkpoint of ``tag`` that is readable; newer unreadable
    ones are set aside (see :mod:`mlff2d.training.checkpoints`), and with none left the run starts
    afresh (MACE's per-epoch results of the old run set aside too). ``guard_notes``: checkpoints
    of other settings already set aside (:func:`~mlff2d.training.checkpoints.settings_guard`).
    Recorded in resume.json."""
    notes_before = list(guard_notes or [])
    pattern = re.compile(rf"^{re.escape(tag)}_epoch-(\d+)(_swa)?\.pt$")
    folder = outdir / "checkpoints"
    found = [(int(m.group(1)), bool(m.group(2)), p) for p in (folder.iterdir() if folder.is_dir() else [])
             if (m := pattern.match(p.name))]
    ckpt, notes = checkpoints.first_readable([p for *_, p in sorted(found, reverse=True)])
    if ckpt is not None and ckpt.name.endswith("_swa.pt"):  # MACE reloads stage one's newest at the end too
        _, more = checkpoints.first_readable([p for _, swa, p in sorted(found, reverse=True) if not swa and p.exists()])
        notes += more
    results = outdir / "mace" / "results" / f"{tag}_train.txt"
    if ckpt is None and (notes or notes_before) and results.exists():
        results.replace(results.with_name(results.name + ".before-fresh-start"))
    checkpoints.record_resume(outdir, ckpt, notes_before + notes)
    return ckpt is not None


def read_metrics(results_file: str | Path, max_epochs: int | None = None) -> pd.DataFrame:
    """``metrics.csv`` rows from MACE's per-epoch JSON lines (``"mode": "eval"``); with
    ``max_epochs``, rows of later epochs (left by an earlier, longer run) are dropped."""
    rows: dict[int, list[Any]] = {}
    previous_time: float | None = None
    path = Path(results_file)
    lines = path.read_text().splitlines() if path.exists() else []
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # a line cut short (a kill, a full disk): the epochs before it count
            logging.getLogger(__name__).warning("%s: line %d is not JSON, skipped", path, number)
            continue
        if record.get("mode") != "eval":
            continue
        wall = record.get("wall_time")
        if record.get("epoch") is not None:
            epoch = int(record["epoch"]) + 1
            elapsed = wall - previous_time if wall is not None and previous_time is not None else math.nan
            rows[epoch] = [
                epoch,
                1000.0 * float(record["mae_e_per_atom"]),
                1000.0 * float(record["mae_f"]),
                float(record.get("mae_stress_in_plane_GPa", math.nan)),  # older runs' eV/Å³ key: NaN
                STRESS_UNIT,
                elapsed,
            ]
        previous_time = wall
    return pd.DataFrame([rows[e] for e in sorted(rows) if max_epochs is None or e <= max_epochs], columns=METRIC_COLUMNS)
