"""Collect the relaxation evaluations of every sweep point into one table per family (the thesis
tables 4.1, M3GNet, and 4.2, MACE; the stem and title of each are its FamilySpec's), a flat
summary, and the periodic-table maps (thesis 4.6-4.8).

A point whose training failed, whose relaxation failed as a whole, or that has not run yet
shows as "–" in the tables; the summary says which.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from mlff2d.relaxation.evaluation import compare_element_maps, relaxation_table, write_frame_html, write_table
from mlff2d.families import family_spec
from mlff2d.io.labels import model_label
from mlff2d.layout import label_parts, point_label


def point_labels(point_dir: str | Path) -> dict[str, str]:
    """ecut, lr and bs of a sweep point directory ``.../ecut~X/lr~Y/bs~Z``."""
    return label_parts(point_label(point_dir))


def table_families(points: Sequence[tuple[str, str | Path]]) -> list[str]:
    """The families with a relaxation table: those of ``points``, in their order."""
    return list(dict.fromkeys(family for family, _ in points))


def _row_label(family: str, labels: dict[str, str]) -> str:
    """A sweep point's row label in its family's table: its lr and batch size, or "one-shot fit"
    for a family without epochs (GAP), whose lr and batch size only name the point."""
    return model_label(lr=labels["lr"], bs=labels["bs"]) if model_label(family, lr=1, bs=1) != model_label(family) else "one-shot fit"


def point_status(point_dir: Path, relax_set: str) -> tuple[str, dict[str, Any] | None]:
    """('ok', summary) when evaluated; otherwise ('failed' | 'pending', None)."""
    status_file = point_dir / "status.json"
    if not status_file.exists():
        return "pending", None
    if json.loads(status_file.read_text())["status"] != "ok":
        return "failed", None
    summary_file = point_dir / "relax" / relax_set / "summary.json"
    if not summary_file.exists():
        return "pending", None
    summary = json.loads(summary_file.read_text())
    return ("ok" if summary.get("n_evaluated", 0) > 0 else "failed"), summary


def collect(points: Sequence[tuple[str, str | Path]], sets: Sequence[str], baseline_dir: str | Path | None) -> pd.DataFrame:
    """One row per (family, point, set): status and every summary metric."""
    rows = []
    for family, point in points:
        labels = point_labels(point)
        for relax_set in sets:
            status, summary = point_status(Path(point), relax_set)
            rows.append({"family": family, **labels, "model": _row_label(family, labels), "set": relax_set,
                         "status": status, "point": str(point), **flat(summary)})
    if baseline_dir is not None:
        for relax_set in sets:
            f = Path(baseline_dir) / relax_set / "summary.json"
            summary = json.loads(f.read_text()) if f.exists() else None
            rows.append({"family": "baseline", "model": "per-element mean energy, unrelaxed", "set": relax_set,
                         "status": "ok" if summary else "pending", "point": str(Path(baseline_dir) / relax_set), **flat(summary)})
    return pd.DataFrame(rows)


def flat(summary: Mapping[str, Any] | None) -> dict[str, Any]:
    """A summary's scalar entries, nested ones joined with '_'."""
    out: dict[str, Any] = {}
    for key, value in (summary or {}).items():
        if isinstance(value, Mapping):
            out.update({f"{key}_{k}": v for k, v in value.items()})
        else:
            out[key] = value
    return out


def write_relaxation_tables(points: Sequence[tuple[str, str | Path]], sets: Sequence[str], baseline_dir: str | Path | None, outdir: str | Path) -> list[Path]:
    """One table per family of ``points`` (CSV, Markdown, LaTeX, HTML; M3GNet: table 4.1, MACE:
    4.2) and ``relaxation_summary.csv``."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    summary = collect(points, sets, baseline_dir)
    summary.to_csv(outdir / "relaxation_summary.csv", index=False)
    written = [outdir / "relaxation_summary.csv"]
    written.append(write_frame_html(summary, outdir / "relaxation_summary.html",
                                    "Every evaluated model and set: status, N, energy (meV/atom) and area (Å²/atom) errors, FIRE steps."))
    base = baseline_by_set(summary)
    for family in table_families(points):
        spec = family_spec(family)
        stem, caption = spec.table, spec.table_title
        rows = summary[summary["family"] == family]
        table_rows = pd.DataFrame(
            {
                "set": rows.get("set", pd.Series(dtype=str)),
                "model": rows.get("model", pd.Series(dtype=str)),
                "ecut": rows.get("ecut", pd.Series(dtype=str)),
                "status": rows.get("status", pd.Series(dtype=str)).where(lambda s: s == "ok", "failed"),
                "energy_mae": rows.get("energy_mae", pd.Series(dtype=float)),
                "area_mae": rows.get("area_mae", pd.Series(dtype=float)),
            }
        )
        if base is not None:
            table_rows = table_rows.merge(base, on="set", how="left")
        written += write_table(relaxation_table(table_rows), outdir / stem, caption)
    return written


def baseline_by_set(summary: pd.DataFrame) -> pd.DataFrame | None:
    """set, n, baseline_energy_mae, baseline_area_mae of the baseline rows of a :func:`collect`
    frame (None when it has none): the reference every table row of that set must beat."""
    rows = summary[summary["family"] == "baseline"] if "family" in summary else summary.iloc[:0]
    if rows.empty:
        return None
    out = pd.DataFrame({"set": rows["set"].astype(str)})
    for column, target in (("n", "n"), ("energy_mae", "baseline_energy_mae"), ("area_mae", "baseline_area_mae")):
        out[target] = pd.to_numeric(rows[column], errors="coerce") if column in rows else float("nan")
    return out.reset_index(drop=True)


def _note_figure(text: str, stem: Path) -> list[Path]:
    """A figure that only says ``text`` (where a comparison cannot be drawn)."""
    from matplotlib.figure import Figure

    from mlff2d.io.ptable import save_figure

    fig = Figure(figsize=(8, 2))
    fig.text(0.5, 0.5, text, ha="center", va="center", fontsize=13)
    return save_figure(fig, stem)


def write_ptables(points: Sequence[tuple[str, str | Path]], sets: Sequence[str], baseline_dir: str | Path | None, outdir: str | Path) -> Path:
    """An index of every periodic-table map, and for each set the two best evaluated points
    (by validation energy MAE, preferring two families) side by side on one colour scale."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    summary = collect(points, sets, baseline_dir)
    lines = ["# Periodic-table maps of per-element relaxation MAE", ""]
    ok = summary[(summary["status"] == "ok") & (summary["family"] != "baseline")]
    for _, row in summary[summary["status"] == "ok"].iterrows():
        evaluated = Path(row["point"]) if row["family"] == "baseline" else Path(row["point"]) / "relax" / row["set"]
        name = "composition baseline" if row["family"] == "baseline" else model_label(row["family"], ecut=row["ecut"], lr=row["lr"], bs=row["bs"])
        lines.append(f"- {name} ({row['set']} set): {evaluated / 'elements.png'}")
    ranking = ok[ok["set"] == ("val" if "val" in sets else sets[0])].sort_values("energy_mae")
    best = ranking.drop_duplicates("family").head(2)
    if len(best) < 2:
        best = ranking.head(2)
    if len(best) == 2:
        a, b = best.iloc[0], best.iloc[1]
        lines += ["", "## Comparison on one colour scale", ""]
        for relax_set in sets:
            files = [Path(p) / "relax" / relax_set / "per_element.csv" for p in (a["point"], b["point"])]
            if all(f.exists() for f in files):
                labels = [model_label(r["family"], ecut=r["ecut"], lr=r["lr"], bs=r["bs"]) for r in (a, b)]
                paths = compare_element_maps(pd.read_csv(files[0]), pd.read_csv(files[1]), labels, outdir / f"compare_{relax_set}",
                                             title=f"{relax_set} set: per-element relaxation MAE, the two best models")
                lines.append(f"- {relax_set}: {paths[0].name} ({labels[0]} vs {labels[1]})")
    else:
        lines += ["", "Fewer than two evaluated models: no comparison yet."]
    for relax_set in sets:  # the report shows one page per set: say why there is no comparison
        if not (outdir / f"compare_{relax_set}.png").exists():
            _note_figure(f"{relax_set} set: fewer than two evaluated models, no comparison", outdir / f"compare_{relax_set}")
    index = outdir / "index.md"
    index.write_text("\n".join(lines) + "\n")
    return index
