"""Checkpoints that survive a kill at any moment.

Our code writes every checkpoint to a temporary file and renames it into place, keeping the
previous one beside it (:func:`save_keeping_previous`). On resume, :func:`first_readable` takes
the newest readable candidate; an unreadable one (cut short by a kill, a full disk or a copy)
is set aside as ``<name>.unreadable`` and the next is tried, else training starts afresh.
What happened is written to ``<outdir>/resume.json`` (:func:`record_resume`), which
:func:`mlff2d.training.sweep.train_point` copies into ``status.json`` and the log.

A checkpoint is resumed only by a training with the same settings and data
(:func:`settings_guard`): ``checkpoints/settings.json`` records both (every setting but
``epochs``, which a resumed run may extend, and a digest of every training file). When they
differ, the checkpoints are set aside as ``checkpoints.superseded`` and the training starts
afresh, saying which settings changed; a model trained with other settings never passes as
the result of new ones.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

RESUME_FILE = "resume.json"
SETTINGS_FILE = "settings.json"
#: Settings a resumed training may change: more epochs continue the run.
RESUMABLE = ("epochs", "num_workers")


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


def file_digest(path: str | Path) -> str:
    """The SHA-256 of a file's content (read in 1 MiB blocks)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _stamp(settings: dict[str, Any], data_dir: str | Path) -> dict[str, Any]:
    """The settings (but :data:`RESUMABLE`) and the digest of every file of ``data_dir``."""
    kept = {k: v for k, v in settings.items() if k not in RESUMABLE}
    files = sorted(p for p in Path(data_dir).iterdir() if p.is_file()) if Path(data_dir).is_dir() else []
    return json.loads(json.dumps({"settings": kept, "data": {p.name: file_digest(p) for p in files}}, default=str))


def _changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What differs between two stamps, in words."""
    diff = [f"{k}: {old['settings'].get(k)!r} -> {new['settings'].get(k)!r}"
            for k in sorted(set(old.get("settings", {})) | set(new["settings"])) if old.get("settings", {}).get(k) != new["settings"].get(k)]
    diff += [f"training file {k} changed" for k in sorted(set(old.get("data", {})) | set(new["data"])) if old.get("data", {}).get(k) != new["data"].get(k)]
    return diff


def settings_guard(outdir: str | Path, settings: dict[str, Any], data_dir: str | Path, folder: str = "checkpoints") -> list[str]:
    """Keep ``outdir/<folder>`` only if it was written with these settings and data; else set it
    aside as ``<folder>.superseded`` (replacing an older one). Records the stamp; returns notes
    for :func:`record_resume` (empty when nothing was set aside)."""
    ckpt_dir = Path(outdir) / folder
    new = _stamp(dict(settings), data_dir)
    notes: list[str] = []
    stamp_file = ckpt_dir / SETTINGS_FILE
    has_checkpoints = ckpt_dir.is_dir() and any(p.name != SETTINGS_FILE for p in ckpt_dir.iterdir())
    if has_checkpoints:
        old = json.loads(stamp_file.read_text()) if stamp_file.exists() else {"settings": {}, "data": {}}
        changed = _changes(old, new) if stamp_file.exists() else ["no record of the settings they were written with"]
        if changed:
            aside = ckpt_dir.with_name(f"{folder}.superseded")
            shutil.rmtree(aside, ignore_errors=True)
            os.replace(ckpt_dir, aside)
            notes.append(f"the checkpoints were written with other settings or data ({'; '.join(changed[:8])}): "
                         f"set aside as {aside.name}, training starts afresh")
            log.warning("%s", notes[-1])
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    stamp_file.write_text(json.dumps(new, indent=2) + "\n")
    return notes
