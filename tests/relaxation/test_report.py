"""Tables 4.1/4.2 from sweep-point directories: evaluated, failed and pending points."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from mlff2d.relaxation.tables import collect, point_labels, write_relaxation_tables


def point(root: Path, family: str, ecut: str, lr: str, status: str | None, energy: float = 0.0) -> tuple[str, str]:
    d = root / family / f"ecut~{ecut}" / f"lr~{lr}" / "bs~128"
    d.mkdir(parents=True)
    if status:
        (d / "status.json").write_text(json.dumps({"status": status}))
    if status == "ok":
        for s in ("val", "test"):
            (d / "relax" / s).mkdir(parents=True)
            summary = {"n": 10, "n_evaluated": 10, "n_converged": 9, "convergence_rate": 0.9,
                       "energy": {"mae": energy, "median": energy}, "area": {"mae": 0.5, "median": 0.4}}
            (d / "relax" / s / "summary.json").write_text(json.dumps(summary))
    return family, str(d)


def test_failed_and_pending_points_show_dash(tmp_path: Path) -> None:
    points = [
        point(tmp_path, "m3gnet", "0.01", "0.001", "ok", 87.4),
        point(tmp_path, "m3gnet", "1e6", "0.001", "ok", 82.7),
        point(tmp_path, "m3gnet", "0.02", "0.001", "failed"),
        point(tmp_path, "mace", "1e6", "0.003", None),  # not trained yet
    ]
    assert point_labels(points[0][1]) == {"ecut": "0.01", "lr": "0.001", "bs": "128"}
    rows = collect(points, ["val", "test"], None)
    assert rows.groupby("status").size().to_dict() == {"failed": 2, "ok": 4, "pending": 2}
    write_relaxation_tables(points, ["val", "test"], None, tmp_path / "tables")
    md = (tmp_path / "tables" / "table_4_1.md").read_text()
    assert "**82.70**" in md and "87.40" in md and "–" in md
    assert "–" in (tmp_path / "tables" / "table_4_2.md").read_text()
    summary = pd.read_csv(tmp_path / "tables" / "relaxation_summary.csv")
    assert summary.loc[summary["status"] == "ok", "energy_mae"].tolist() == [87.4, 87.4, 82.7, 82.7]
