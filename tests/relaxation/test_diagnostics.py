"""Diagnostics: models that do not beat the baseline, relaxations that stop at step 0 and
validation force errors that do not fall are reported; good models are not."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlff2d.alloys.report import crossover_verdict
from mlff2d.relaxation.diagnostics import diagnose, relaxation_checks, training_check, write_diagnostics
from mlff2d.relaxation.statistics import step_statistics
from mlff2d.relaxation.table_format import relaxation_table, write_table


def summary(energy: float, area: float, share_step0: float = 0.0, n_evaluated: int = 10) -> dict:
    return {"n": 10, "n_evaluated": n_evaluated, "energy": {"mae": energy}, "area": {"mae": area},
            "steps": {"median": 12.0, "p90": 30.0, "share_step0": share_step0}}


def model_dir(root: Path, name: str, forces: list[float], sets: dict[str, dict], status: str = "ok") -> Path:
    d = root / name
    d.mkdir(parents=True)
    (d / "status.json").write_text(json.dumps({"status": status, "reason": "ValueError: boom"}))
    pd.DataFrame({"epoch": range(1, len(forces) + 1), "forces_mae_meV_per_A": forces}).to_csv(d / "metrics.csv", index=False)
    for s, sm in sets.items():
        (d / "relax" / s).mkdir(parents=True)
        (d / "relax" / s / "summary.json").write_text(json.dumps(sm))
    return d


def test_step_statistics_count_only_relaxations_that_ran() -> None:
    errors = pd.DataFrame({
        "failure": ["", "", "step_limit", "exploded", "missing", "training_failed: x"],
        "steps": [0, 0, 100, 10, np.nan, 0],
    })  # fmt: skip
    stats = step_statistics(errors)
    assert stats["n"] == 4 and stats["median"] == 5.0 and stats["share_step0"] == 0.5
    assert stats["p90"] == pytest.approx(np.percentile([0, 0, 100, 10], 90))
    assert np.isnan(step_statistics(errors.iloc[4:])["median"])


def test_training_check(tmp_path: Path) -> None:
    good = model_dir(tmp_path, "good", [170.0, 120.0, 90.0], {})
    flat = model_dir(tmp_path, "flat", [101.9, 101.9, 101.9], {})
    worse = model_dir(tmp_path, "worse", [101.9, 111.0], {})
    diverged = model_dir(tmp_path, "nan", [101.9, float("nan")], {})
    failed = model_dir(tmp_path, "failed", [], {}, status="failed")
    assert training_check(good, {"status": "ok"}, "good") == []
    for d in (flat, worse):
        (row,) = training_check(d, {"status": "ok"}, d.name)
        assert row["check"] == "validation_force_not_falling" and "did not fall" in row["message"]
    (row,) = training_check(diverged, {"status": "ok"}, "nan")
    assert row["check"] == "validation_force_not_falling" and "nan after the last" in row["message"]
    (row,) = training_check(failed, json.loads((failed / "status.json").read_text()), "failed")
    assert row["check"] == "failed" and "ValueError: boom" in row["message"]


def test_relaxation_checks_against_the_baseline() -> None:
    base = summary(80.0, 0.11)
    assert relaxation_checks(summary(30.0, 0.07), base, "m", "test") == []
    rows = relaxation_checks(summary(90.0, 0.11, share_step0=0.8), base, "m", "test")
    assert [r["check"] for r in rows] == ["not_better_than_baseline", "not_better_than_baseline", "stopped_at_step_0"]
    assert "energy MAE 90 meV/atom is not below the composition baseline's 80" in rows[0]["message"]
    assert "80 % of the test relaxations stopped at step 0" in rows[2]["message"]
    (row,) = relaxation_checks(summary(float("nan"), float("nan"), n_evaluated=0), base, "m", "val")
    assert row["check"] == "failed"


def test_diagnose_writes_every_warning(tmp_path: Path) -> None:
    base = tmp_path / "baseline"
    for s in ("val", "test"):
        (base / s).mkdir(parents=True)
        (base / s / "summary.json").write_text(json.dumps(summary(80.0, 0.11)))
    good = model_dir(tmp_path, "uff/good", [170.0, 90.0], {"val": summary(30.0, 0.07), "test": summary(35.0, 0.08)})
    bad = model_dir(tmp_path, "uff/bad", [101.9, 101.9], {"val": summary(85.0, 0.11, 1.0), "test": summary(79.0, 0.11, 1.0)})
    frame = diagnose([(good, base), (bad, base)], ["val", "test"], tmp_path)
    assert set(frame["model"]) == {"uff/bad"}
    assert sorted(frame["check"].value_counts().items()) == [
        ("not_better_than_baseline", 3), ("stopped_at_step_0", 2), ("validation_force_not_falling", 1)]
    md, csv, html = write_diagnostics(frame, 2, tmp_path / "diagnostics.md", tmp_path / "diagnostics.csv")
    text = md.read_text()
    assert "6 warnings for 1 of 2 models" in text and text.count("- WARNING uff/bad:") == 6
    page = html.read_text()  # the report's page: the same warnings, as HTML
    assert page.count("<li>WARNING uff/bad:") == 6 and "<h2>Not better than the baseline (3)</h2>" in page
    assert len(pd.read_csv(csv)) == 6
    clean = write_diagnostics(diagnose([(good, base)], ["val", "test"], tmp_path), 1, tmp_path / "ok.md", tmp_path / "ok.csv")
    assert "No warnings for 1 models" in clean[0].read_text()


def test_tables_show_n_and_the_baseline_unranked(tmp_path: Path) -> None:
    rows = pd.DataFrame([
        {"set": "test", "model": "lr0.001", "ecut": "0.01", "status": "ok", "energy_mae": 30.0, "area_mae": 0.07},
        {"set": "test", "model": "lr0.001", "ecut": "1e6", "status": "ok", "energy_mae": 32.0, "area_mae": 0.08},
    ]).assign(n=22, baseline_energy_mae=78.2, baseline_area_mae=0.1135)  # fmt: skip
    table = relaxation_table(rows)
    assert list(table.columns) == ["set", "model", "n", "quantity", "unit", "0.01", "1e6", "baseline", "best", "second"]
    assert table["baseline"].tolist() == pytest.approx([78.2, 11.35])
    assert table["best"].tolist() == ["0.01", "0.01"]
    _, md, tex = write_table(table, tmp_path / "t", "M3GNet")
    lines = md.read_text().splitlines()
    assert lines[0] == "| Set | Model | N |  | e_cut 0.01 | e_cut 1e6 (none) | Baseline |"
    assert lines[2] == "| Test | lr0.001 | 22 | Energy (meV/atom) | **30.00** | 32.00 | 78.20 |"
    assert lines[3] == "|  |  |  | Area (Å²/atom × 100) | **7.00** | 8.00 | 11.35 |"
    assert "composition baseline" in md.read_text() and r"\textbf{30.00}" in tex.read_text()


@pytest.mark.parametrize(
    ("answer", "verdict"),
    [(0.25, "transfer never pays"), ("never", "transfer pays at every fraction"),
     (0.5, "normal matches transfer from fraction 0.5"), ("–", "no finished point")],
)  # fmt: skip
def test_crossover_verdict(answer: object, verdict: str) -> None:
    assert crossover_verdict(answer, [0.25, 0.5, 1.0]) == verdict
