"""Checkpoints that survive a kill at any moment.

Our code writes every checkpoint to a temporary file and renames it into place, keeping the
previous one beside it (:func:`save_keeping_previous`). On resume, :func:`first_readable` takes
the newest readable candidate; an unreadable one (cut short by a kill, a full disk or a copy)
is set aside as ``<name>.unreadable`` and the next is tried, else training starts afresh.
What happened is written to ``<outdir>/resume.json`` (:func:`record_resume`), which
:func:`mlff2d.training.sweep.train_point` copies into ``status.json`` and the log.
"""

from __future__ import annotations

import json
import logging
import os
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

RESUME_FILE = "resume.json"


def readable(path: str | Path) -> bool:
    """True if ``path`` is a complete torch checkpoint: torch saves a zip archive, and every
    member's CRC is checked (a file cut short or damaged fails)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip() is None
    except (OSError, zipfile.BadZipFile, EOFError):
        return False


def previous_path(path: str | Path) -> Path:
    """Where the checkpoint before ``path`` is kept: ``last.ckpt`` -> ``last.previous.ckpt``."""
    path = Path(path)
    return path.with_name(f"{path.stem}.previous{path.suffix}")


def save_keeping_previous(write: Callable[[Path], None], path: str | Path) -> None:
    """``write(tmp)``, then the current ``path`` becomes :func:`previous_path` and ``tmp`` becomes
    ``path``: a kill at any moment leaves a complete checkpoint in one of the two places."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    if path.exists():
        os.replace(path, previous_path(path))
    os.replace(tmp, path)


def first_readable(candidates: Sequence[str | Path]) -> tuple[Path | None, list[str]]:
    """The first readable existing candidate (newest first), and notes on those set aside."""
    notes = []
    for candidate in map(Path, candidates):
        if not candidate.exists():
            continue
        if readable(candidate):
            return candidate, notes
        aside = candidate.with_name(candidate.name + ".unreadable")
        os.replace(candidate, aside)
        notes.append(f"checkpoint {candidate.name} is unreadable (cut short?); set aside as {aside.name}")
        log.warning("%s", notes[-1])
    return None, notes


def record_resume(outdir: str | Path, resumed_from: str | Path | None, notes: Sequence[str]) -> dict[str, Any]:
    """Write ``outdir/resume.json``: the checkpoint resumed from (None: a fresh start) and notes."""
    record = {"resumed_from": str(resumed_from) if resumed_from else None, "notes": list(notes)}
    if notes and not resumed_from:
        record["notes"].append("no readable checkpoint left: training starts afresh")
    if resumed_from or notes:
        log.info("resume: %s", record)
    Path(outdir, RESUME_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return record
