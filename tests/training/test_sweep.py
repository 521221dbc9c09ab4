"""Sweep grids, failure recording and validation curves (without training)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from mlff2d.families import METRIC_COLUMNS
from mlff2d.training.sweep import best_point, grid_table, plot_validation_curves, train_point


def test_grid_expands_every_combination() -> None:
    table = grid_table({"e_cut": [0.01, 0.02, 1000000.0], "lr": [0.001, 0.0001], "batch_size": [128, 256, 512]})
    assert len(table) == 18
    assert table.iloc[-1].to_dict() == {"ecut": "1e6", "lr": "0.0001", "bs": "512"}
    from snakemake.utils import Paramspace

    space = Paramspace(table)
    assert space.wildcard_pattern == "ecut~{ecut}/lr~{lr}/bs~{bs}"
    assert "ecut~0.01/lr~0.001/bs~128" in list(space.instance_patterns)


def write_point(d: Path, status: str, energies: list[float]) -> Path:
    d.mkdir(parents=True)
    rows = [[i + 1, e, 2 * e, 0.1, "GPa", 1.0] for i, e in enumerate(energies)]
    pd.DataFrame(rows, columns=METRIC_COLUMNS).to_csv(d / "metrics.csv", index=False)
    (d / "status.json").write_text(json.dumps({"status": status}))
    return d


def test_best_point_and_curves(tmp_path: Path) -> None:
    points = {
        "lr~0.001": write_point(tmp_path / "a", "ok", [50.0, 30.0, 20.0]),
        "lr~0.0001": write_point(tmp_path / "b", "ok", [60.0, 40.0, 25.0]),
        "lr~0.1": write_point(tmp_path / "c", "failed", []),
    }
    assert best_point(points) == "lr~0.001"
    paths = plot_validation_curves(points, tmp_path / "curves", title="t")
    assert [p.suffix for p in paths] == [".png", ".pdf"] and all(p.stat().st_size > 1000 for p in paths)
    with pytest.raises(ValueError, match="no sweep point"):
        best_point({"x": points["lr~0.1"]})


def test_failed_training_is_recorded(tmp_path: Path) -> None:
    status = train_point("m3gnet", tmp_path / "no_such_data", tmp_path / "point", {"epochs": 1})
    assert status["status"] == "failed"
    saved = json.loads((tmp_path / "point" / "status.json").read_text())
    assert saved["status"] == "failed" and saved["reason"]
    assert list(pd.read_csv(tmp_path / "point" / "metrics.csv").columns) == METRIC_COLUMNS
    provenance = json.loads((tmp_path / "point" / "provenance.json").read_text())
    assert {"mlff2d", "torch", "matgl", "mace-torch", "snakemake"} <= set(provenance["packages"])
    assert provenance["host"] and provenance["git_commit"]


def test_curves_are_linear_over_a_narrow_range_with_integer_epochs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import mlff2d.io.ptable

    figures = []
    monkeypatch.setattr(mlff2d.io.ptable, "save_figure", lambda fig, stem: figures.append(fig) or [])
    narrow = {"a": write_point(tmp_path / "a", "ok", [101.90, 101.89, 101.88])}  # a 0.02 % range
    plot_validation_curves(narrow, tmp_path / "narrow")
    energy, force, stress = figures[-1].axes
    assert energy.get_yscale() == "linear" and force.get_yscale() == "linear"
    assert all(float(t).is_integer() for t in energy.get_xticks())
    assert stress.get_ylabel() == "in-plane stress MAE (GPa)"
    figures[-1].canvas.draw()
    assert "×10" not in " ".join(t.get_text() for t in energy.get_yticklabels())  # no offset notation
    wide = {"b": write_point(tmp_path / "b", "ok", [500.0, 40.0, 5.0])}
    plot_validation_curves(wide, tmp_path / "wide")
    assert figures[-1].axes[0].get_yscale() == "log"


def test_failed_points_are_named_with_their_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import mlff2d.io.ptable

    figures = []
    monkeypatch.setattr(mlff2d.io.ptable, "save_figure", lambda fig, stem: figures.append(fig) or [])
    failed = write_point(tmp_path / "f", "failed", [])
    (failed / "status.json").write_text(json.dumps({"status": "failed", "reason": "diverged at epoch 1 (x = nan)"}))
    plot_validation_curves({"ok": write_point(tmp_path / "o", "ok", [3.0, 2.0]), "bad": failed}, tmp_path / "c")
    legend = [t.get_text() for t in figures[-1].axes[0].get_legend().get_texts()]
    assert "bad (failed: diverged at epoch 1 (x = nan))" in legend
