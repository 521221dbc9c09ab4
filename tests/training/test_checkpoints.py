"""A checkpoint is resumed only by a training with its settings and data (checkpoints.settings_guard):
more epochs continue the run; any other change sets the checkpoints aside and starts afresh."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlff2d.training import checkpoints

SETTINGS = {"epochs": 5, "lr": 0.01, "stress_weight": 1.0, "element_types": ["Mo", "S"], "init_model": None}


@pytest.fixture()
def run(tmp_path: Path) -> tuple[Path, Path]:
    data, outdir = tmp_path / "data", tmp_path / "point"
    data.mkdir()
    (data / "train.extxyz").write_text("frames\n")
    (data / "val.extxyz").write_text("val\n")
    assert checkpoints.settings_guard(outdir, SETTINGS, data) == []  # a fresh start: nothing to set aside
    (outdir / "checkpoints" / "last.ckpt").write_bytes(b"weights")
    return data, outdir


def test_same_settings_or_more_epochs_resume(run: tuple[Path, Path]) -> None:
    data, outdir = run
    assert checkpoints.settings_guard(outdir, dict(SETTINGS), data) == []
    assert checkpoints.settings_guard(outdir, {**SETTINGS, "epochs": 50, "num_workers": 4}, data) == []
    assert (outdir / "checkpoints" / "last.ckpt").read_bytes() == b"weights"


def test_changed_setting_starts_afresh_and_says_which(run: tuple[Path, Path]) -> None:
    data, outdir = run
    notes = checkpoints.settings_guard(outdir, {**SETTINGS, "stress_weight": 10000.0}, data)
    assert len(notes) == 1 and "stress_weight: 1.0 -> 10000.0" in notes[0] and "starts afresh" in notes[0]
    assert not (outdir / "checkpoints" / "last.ckpt").exists()
    assert (outdir / "checkpoints.superseded" / "last.ckpt").read_bytes() == b"weights"
    stamp = json.loads((outdir / "checkpoints" / checkpoints.SETTINGS_FILE).read_text())
    assert stamp["settings"]["stress_weight"] == 10000.0 and "epochs" not in stamp["settings"]
    # the new stamp now holds: the same settings again resume
    (outdir / "checkpoints" / "last.ckpt").write_bytes(b"new")
    assert checkpoints.settings_guard(outdir, {**SETTINGS, "stress_weight": 10000.0}, data) == []


def test_changed_data_or_unknown_origin_starts_afresh(run: tuple[Path, Path], tmp_path: Path) -> None:
    data, outdir = run
    (data / "train.extxyz").write_text("other frames\n")
    notes = checkpoints.settings_guard(outdir, SETTINGS, data)
    assert notes and "training file train.extxyz changed" in notes[0]
    # checkpoints without a record of their settings (written before the guard existed)
    (outdir / "checkpoints" / checkpoints.SETTINGS_FILE).unlink()
    (outdir / "checkpoints" / "last.ckpt").write_bytes(b"old")
    notes = checkpoints.settings_guard(outdir, SETTINGS, data)
    assert notes and "no record of the settings" in notes[0]


def test_record_resume_carries_the_notes(run: tuple[Path, Path]) -> None:
    data, outdir = run
    notes = checkpoints.settings_guard(outdir, {**SETTINGS, "lr": 0.1}, data)
    record = checkpoints.record_resume(outdir, None, notes)
    assert record["resumed_from"] is None and "lr: 0.01 -> 0.1" in record["notes"][0]
    assert json.loads((outdir / checkpoints.RESUME_FILE).read_text()) == record
