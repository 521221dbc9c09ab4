"""Tables and figures of the alloy study (thesis 4.3): normal training against transfer from
the universal force field, per alloy and for all alloys combined, and the learning curves.

Tables (CSV, Markdown, LaTeX, through :func:`mlff2d.relaxation.evaluation.write_table`; every table holds
the validation set first and the test set below it, i.e. the thesis table and its validation
counterpart), one per alloy split ``S``:

* ``table_4_3_split~S``: the combined dataset (all alloys), one row pair per family (thesis
  Table 4.3: M3GNet, cutoff 0.01);
* one table per family (its FamilySpec.alloy_table): M3GNet per alloy ``table_4_4_split~S``
  (thesis Table 4.4, 90:5:5; validation: Table 6.1), MACE per alloy ``table_4_5_split~S``
  (thesis Tables 4.5, 90:5:5, and 4.6, 80:10:10), another family's ``table_alloys_<family>``;
* ``table_4_7_split~S``: per alloy, the best MACE configuration against the best M3GNet one
  (thesis Table 4.7). The best configuration (e_cut, mode) of a family is the one with the
  fewest failed alloys on the validation set, then the lowest mean validation energy MAE.

Columns are e_cut × mode (energy in meV/atom, area in Å²/atom × 100); in each row the best
value is bold and the second underlined; "–" marks a model whose training or relaxation
failed (or has not finished); an empty cell a combination not configured.

Learning curves (one figure per alloy; :mod:`mlff2d.alloys.learning_curves`): relaxed energy
and area MAE of the test set against the number of training materials, normal against
transfer, and ``learning_curve_crossover``: the smallest training fraction from which on
normal training matches transfer. The figures: :mod:`mlff2d.alloys.figures`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlff2d import layout
from mlff2d.alloys.figures import QUANTITIES, ecut_key, plot_learning_curve, plot_normal_vs_transfer  # noqa: F401
from mlff2d.alloys.learning_curves import (  # noqa: F401  (the learning curves, also importable from here)
    crossover,
    crossover_verdict,
    learning_curve_table,
    with_full_models,
    write_learning_curves,
)
from mlff2d.config import schema_default
from mlff2d.relaxation.evaluation import relaxation_table, write_table
from mlff2d.families import family_spec
from mlff2d.io.labels import FAMILY_NAMES
from mlff2d.relaxation.tables import flat, point_status

COMBINED = layout.COMBINED
#: The tables of the combined dataset and of the best configurations (one per split).
COMBINED_TABLE, BEST_TABLE = "table_4_3", "table_4_7"
#: The thesis table the combined and the best-configuration tables correspond to (a family's
#: per-alloy table: its FamilySpec.thesis).
THESIS = {
    "combined": "Table 4.3 (M3GNet, all alloys combined, cutoff 0.01)",
    "best": "Table 4.7 (best MACE against best M3GNet, 90:5:5 test set)",
}


def parse_model_dir(path: str | Path) -> dict[str, Any]:
    """family, dataset, mode, ecut, split and frac (None for a full model) of an alloy model dir."""
    parts = layout.model_parts(path)
    if "mode" not in parts:
        raise ValueError(f"not an alloy model directory: {path} ({layout.ALLOY_MODEL} or {layout.CURVE_MODEL})")
    return parts


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}


def collect_models(model_dirs: Sequence[str | Path], sets: Sequence[str]) -> pd.DataFrame:
    """One row per (model, set): its labels, status (ok / failed / pending), the size of its
    training data, the universal point it started from, and every summary metric."""
    rows = []
    for model in model_dirs:
        model = Path(model)
        labels = parse_model_dir(model)
        data = _read_json(model / "training_data.json")
        source = _read_json(model / "transfer_source.json")
        for relax_set in sets:
            status, summary = point_status(model, relax_set)
            rows.append(
                {
                    **labels,
                    "set": relax_set,
                    "status": status,
                    "n_train_materials": data.get("n_train_materials"),
                    "n_train_frames": data.get("n_train_frames"),
                    "transfer_from": source.get("label"),
                    "model_dir": str(model),
                    **flat(summary),
                }
            )
    columns = ["family", "dataset", "mode", "ecut", "split", "frac", "set", "status", "energy_mae", "area_mae"]
    frame = pd.DataFrame(rows)
    for col in columns:
        if col not in frame:
            frame[col] = pd.Series(dtype=float if col.endswith("_mae") else object)
    return frame


def alloy_baseline_dir(root: str | Path, dataset: str, split: str) -> Path:
    """Where the composition baselines of an alloy dataset's split live, one folder per set
    below it (rule alloy_baseline; ``root`` is results/<campaign>/alloys/baseline)."""
    return Path(root) / layout.BASELINE_SPLIT.format(dataset=dataset, split=split)


def attach_baselines(models: pd.DataFrame, root: str | Path | None) -> pd.DataFrame:
    """``models`` with ``baseline_energy_mae`` (meV/atom), ``baseline_area_mae`` (Å²/atom) and
    ``baseline_n`` of the composition baseline of each row's dataset, split and set (NaN where
    it is missing or ``root`` is None)."""
    out = models.copy()
    values: dict[str, list[float]] = {"baseline_energy_mae": [], "baseline_area_mae": [], "baseline_n": []}
    for r in out.itertuples(index=False):
        summary = _read_json(alloy_baseline_dir(root, r.dataset, r.split) / r.set / "summary.json") if root else {}
        values["baseline_energy_mae"].append(float(summary.get("energy", {}).get("mae", math.nan)))
        values["baseline_area_mae"].append(float(summary.get("area", {}).get("mae", math.nan)))
        values["baseline_n"].append(float(summary.get("n", math.nan)))
    for column, v in values.items():
        out[column] = v
    return out


def _column(ecut: str, mode: str, prefix: str = "") -> str:
    """A table column label; without spaces (relaxation_table lists the best columns space-separated)."""
    return f"{prefix}e_cut={ecut},{mode}"


def _write(rows: pd.DataFrame, order: list[str], stem: Path, caption: str) -> list[Path]:
    """relaxation_table + write_table with our column labels (``e_cut=<e>,<mode>``, shown as
    ``e_cut <e> · <mode>``) and order."""
    if rows.empty:
        table = pd.DataFrame(columns=["set", "model", "n", "quantity", "unit", "baseline", "best", "second"])
    else:
        rows = rows.assign(status=rows["status"].where(rows["status"] == "ok", "failed"))
        table = relaxation_table(rows)
        present = [c for c in order if c in table.columns]
        table = table[["set", "model", "n", "quantity", "unit", *present, "baseline", "best", "second"]]
    return write_table(table, stem, caption)


def _table_rows(models: pd.DataFrame, model_label: Any, column: Any) -> pd.DataFrame:
    """Rows for relaxation_table: the models' MAEs, N per set and the composition baseline."""
    nan = pd.Series(float("nan"), index=models.index)
    n = models["n"] if "n" in models else nan
    return pd.DataFrame(
        {
            "set": models["set"],
            "model": [model_label(r) for r in models.itertuples(index=False)],
            "ecut": [column(r) for r in models.itertuples(index=False)],
            "status": models["status"],
            "energy_mae": models["energy_mae"].astype(float),
            "area_mae": models["area_mae"].astype(float),
            "n": pd.to_numeric(n, errors="coerce").fillna(models.get("baseline_n", nan)),
            "baseline_energy_mae": models.get("baseline_energy_mae", nan).astype(float),
            "baseline_area_mae": models.get("baseline_area_mae", nan).astype(float),
        }
    )


def _columns(models: pd.DataFrame, prefix: str = "") -> list[str]:
    combos = sorted({(r.ecut, r.mode) for r in models.itertuples(index=False)}, key=lambda c: (ecut_key(c[0]), c[1] != "transfer"))
    return [_column(e, m, prefix) for e, m in combos]


def best_configuration(models: pd.DataFrame, family: str, split: str) -> tuple[str, str] | None:
    """(ecut, mode) of a family's best per-alloy configuration on a split: fewest alloys failed
    on the validation set (the test set when there is none), then the lowest mean energy MAE."""
    rows = models[(models["family"] == family) & (models["split"] == split) & (models["dataset"] != COMBINED)]
    select_set = "val" if (rows["set"] == "val").any() else "test"
    rows = rows[rows["set"] == select_set]
    if rows.empty:
        return None
    scores = []
    for (ecut, mode), group in rows.groupby(["ecut", "mode"]):
        ok = group[(group["status"] == "ok") & np.isfinite(group["energy_mae"].astype(float))]
        if ok.empty:
            continue
        scores.append((len(group) - len(ok), float(ok["energy_mae"].mean()), ecut, mode))
    if not scores:
        return None
    _, _, ecut, mode = min(scores)
    return ecut, mode


def _stem(outdir: Path, table: str, split: str) -> Path:
    return outdir / layout.ALLOY_TABLE.format(table=table, split=split)


def default_families(models: pd.DataFrame) -> list[str]:
    """The families of the alloy tables when none are named: those whose alloy models are
    enabled by default (M3GNet, MACE) and every other family with a model in ``models``."""
    from mlff2d.families import discover

    present = set(models["family"].dropna()) if "family" in models else set()
    return [f for f, spec in discover().items() if spec.alloy_default.get("enabled") or f in present]


def write_alloy_tables(models: pd.DataFrame, splits: Sequence[str], outdir: str | Path, families: Sequence[str] | None = None) -> list[Path]:
    """Table 4.3, one per-alloy table per family (4.4 M3GNet, 4.5 MACE) and 4.7 of every split (see the module docstring), the flat
    ``alloy_summary.csv`` and ``index.md``."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    families = default_families(models) if families is None else list(families)
    full = models[models["frac"].isna()] if "frac" in models else models
    full.to_csv(outdir / "alloy_summary.csv", index=False, lineterminator="\n")
    written = [outdir / "alloy_summary.csv"]
    index = ["# Alloy force fields: normal training against transfer (thesis 4.3)", ""]
    index += [
        "Energy MAE in meV/atom, area MAE in Å²/atom × 100, of the relaxed structures against DFT.",
        "Each table holds the validation set (thesis appendix) above the test set (thesis 4.3).",
        "Best per row in bold, second underlined; – = training or relaxation failed (or not finished).",
        "",
    ]
    for split in splits:
        at_split = full[full["split"] == split]
        index += [f"## Split {split}", ""]
        combined = at_split[at_split["dataset"] == COMBINED]
        stem = _stem(outdir, COMBINED_TABLE, split)
        rows = _table_rows(combined, lambda r: FAMILY_NAMES.get(r.family, r.family), lambda r: _column(r.ecut, r.mode))
        caption = f"Relaxation MAE of the force fields trained on all alloys combined, split {split}; thesis {THESIS['combined']}."
        written += _write(rows, _columns(combined), stem, caption)
        index.append(f"- [{stem.name}.md]({stem.name}.md): all alloys combined, every family; thesis {THESIS['combined']}")
        for family in families:
            spec = family_spec(family)
            per_alloy = at_split[(at_split["family"] == family) & (at_split["dataset"] != COMBINED)]
            stem = _stem(outdir, spec.alloy_table, split)
            rows = _table_rows(per_alloy, lambda r: r.dataset, lambda r: _column(r.ecut, r.mode))
            thesis = f"thesis {spec.thesis}" if spec.thesis else "no thesis counterpart"
            caption = f"Relaxation MAE of the {spec.label} alloy force fields, per alloy, split {split}; {thesis}."
            written += _write(rows, _columns(per_alloy), stem, caption)
            index.append(f"- [{stem.name}.md]({stem.name}.md): {spec.label} per alloy; {thesis}")
        best_rows, order, chosen = [], [], []
        for family in families:
            best = best_configuration(full, family, split)
            if best is None:
                continue
            ecut, mode = best
            prefix = f"{FAMILY_NAMES.get(family, family)}:"
            pick = at_split[(at_split["family"] == family) & (at_split["ecut"] == ecut) & (at_split["mode"] == mode) & (at_split["dataset"] != COMBINED)]
            best_rows.append(_table_rows(pick, lambda r: r.dataset, lambda r, p=prefix: _column(r.ecut, r.mode, p)))
            order.append(_column(ecut, mode, prefix))
            chosen.append(f"{prefix}e_cut {ecut}, {mode}")
        stem = _stem(outdir, BEST_TABLE, split)
        rows = pd.concat(best_rows, ignore_index=True) if best_rows else pd.DataFrame()
        caption = f"Best configuration of each family per alloy, split {split} ({'; '.join(chosen) or 'none finished'}; chosen by validation energy MAE); thesis {THESIS['best']}."
        written += _write(rows, order, stem, caption)
        index.append(f"- [{stem.name}.md]({stem.name}.md): best configuration of each family ({'; '.join(chosen) or 'none yet'}); thesis {THESIS['best']}")
        index.append("")
    index += ["## Parity plots of the alloy models", ""]
    for model_dir in sorted(full["model_dir"].unique()) if len(full) else []:
        for relax_set in ("val", "test"):
            parity = Path(model_dir) / "relax" / relax_set / "parity.png"
            if parity.exists():
                index.append(f"- {model_dir} ({relax_set}): {parity}")
    (outdir / "index.md").write_text("\n".join(index) + "\n", encoding="utf-8")
    written.append(outdir / "index.md")
    return written


def write_alloy_report(
    model_dirs: Sequence[str | Path],
    sets: Sequence[str],
    splits: Sequence[str],
    tables_dir: str | Path,
    figures_dir: str | Path,
    families: Sequence[str] | None = None,
    tolerance: float = schema_default("alloys.learning_curve.tolerance"),
    curve_set: str = "test",
    baselines: str | Path | None = None,
) -> list[Path]:
    """Every alloy table and figure: tables (and index.md) in ``tables_dir``; the
    normal-against-transfer figures and the learning curves in ``figures_dir``. ``baselines``
    is the root of the alloy composition baselines (:func:`alloy_baseline_dir`)."""
    models = attach_baselines(collect_models(model_dirs, sets), baselines)
    if "frac" not in models:
        models["frac"] = None
    families = default_families(models) if families is None else list(families)
    written = write_alloy_tables(models, splits, tables_dir, families)
    figures_dir = Path(figures_dir)
    figures_dir.mkdir(parents=True, exist_ok=True)
    full = models[models["frac"].isna()]
    for family in families:
        for split in splits:
            if ((full["family"] == family) & (full["split"] == split)).any():
                relax_set = curve_set if curve_set in sets else sets[-1]
                written += plot_normal_vs_transfer(full, family, split, relax_set, figures_dir / f"normal_vs_transfer_{family}_{layout.SPLIT.format(split=split)}")
    index = Path(tables_dir) / "index.md"
    lines = ["## Figures", ""]
    lines += [f"- {p}" for p in written if p.suffix == ".png"]
    if models["frac"].notna().any():
        curves = write_learning_curves(models[models["set"] == curve_set], tables_dir, figures_dir, tolerance, curve_set)
        written += curves
        lines += ["", "## Learning curves (where transfer pays)", ""]
        lines += [f"- [learning_curve_crossover.md](learning_curve_crossover.md): smallest fraction at which normal training matches transfer"]
        lines += ["- learning_curve.csv: every learning-curve point"]
        lines += [f"- {p}" for p in curves if p.suffix == ".png"]
    index.write_text(index.read_text(encoding="utf-8") + "\n".join(lines) + "\n", encoding="utf-8")
    return written


def expected_outputs(splits: Sequence[str], families: Sequence[str] | None = None) -> list[str]:
    """File names (relative to the tables dir) that :func:`write_alloy_tables` always writes
    (``families`` None: :func:`default_families` of no models)."""
    families = default_families(pd.DataFrame()) if families is None else families
    out = ["alloy_summary.csv", "index.md"]
    tables = [COMBINED_TABLE, *(family_spec(f).alloy_table for f in families), BEST_TABLE]
    for split in splits:
        for table in tables:
            out += [f"{layout.ALLOY_TABLE.format(table=table, split=split)}{ext}" for ext in (".csv", ".md", ".tex", ".html")]
    return out

