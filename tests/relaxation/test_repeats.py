"""Mean ± std over split repeats, computed by hand on a tiny case, and the spread-aware best."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from mlff2d.relaxation.repeats import mean_std, rank_with_spread, write_repeats


def _summary(directory: Path, relax_set: str, energy: float, area: float) -> Path:
    f = directory / "relax" / relax_set / "summary.json"
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text(json.dumps({"n_evaluated": 5, "energy": {"mae": energy}, "area": {"mae": area}}))  # as evaluate writes it
    return directory


def test_mean_std_is_the_sample_std() -> None:
    assert mean_std([10.0, 14.0]) == (12.0, pytest.approx(math.sqrt(8.0)), 2)
    mean, std, k = mean_std([3.0, float("nan")])
    assert (mean, k) == (3.0, 1) and math.isnan(std)


def test_best_only_where_the_gap_beats_the_spread() -> None:
    assert rank_with_spread({"a": (10.0, 1.0), "b": (13.0, 1.0)}) == (["a"], True)
    assert rank_with_spread({"a": (10.0, 2.0), "b": (13.0, 1.5)}) == (["a", "b"], False)
    assert rank_with_spread({"a": (10.0, 0.5), "b": (10.9, 0.5), "c": (20.0, 1.0)}) == (["a", "b"], False)


def test_table_shows_mean_and_std_by_hand(tmp_path: Path) -> None:
    # cutoff 0.01: energies 10, 14 (mean 12, std sqrt 8 = 2.83); cutoff 1e6: 20, 22 (21, 1.41)
    # areas x 100: 0.01 -> 1, 3 (2, 1.41); 1e6 -> 2, 2.2 (2.1, 0.14): areas tie, energies do not
    models = []
    for ecut, energies, areas in (("0.01", (10.0, 14.0), (0.01, 0.03)), ("1e6", (20.0, 22.0), (0.02, 0.022))):
        for k, (e, a) in enumerate(zip(energies, areas)):
            models.append(("lr0.001bs16", ecut, _summary(tmp_path / f"{ecut}_{k}", "test", e, a)))
    paths = write_repeats(models, ["test"], tmp_path / "t", "caption", "Cutoff =")
    md = paths[1].read_text()
    assert "| test | lr0.001bs16 | Energy | 2 | **12.00 ± 2.83** | 21.00 ± 1.41 | 0.01 |" in md
    assert "| test | lr0.001bs16 | Area | 2 | 2.00 ± 1.41 | 2.10 ± 0.14 | tie: 0.01, 1e6 |" in md
    import pandas as pd

    csv = pd.read_csv(paths[0])
    energy = csv[csv["quantity"] == "Energy"].iloc[0]
    assert energy["0.01 mean"] == pytest.approx(12.0) and energy["0.01 std"] == pytest.approx(math.sqrt(8))
    assert energy["1e6 mean"] == pytest.approx(21.0) and energy["1e6 std"] == pytest.approx(math.sqrt(2))
    assert not energy["tie"] and energy["best"] == "0.01"
    assert r"\textbf{12.00 ± 2.83}" in paths[2].read_text()
