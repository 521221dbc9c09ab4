"""Tables 4.8, 4.9 and 6.2 and figures 4.10 and 4.11 of the formation-energy study (thesis 4.4).

One directory per alloy (``results/<c>/formation/<alloy>/split~<s>/``) holds
``formation_energies.csv``, ``ce/`` (icet cluster expansion), ``baseline/`` (composition
only) and ``nequip/{dft,ml1,ml2}/`` (energy-only NequIP on DFT-, ML1- and ML2-relaxed
structures), each with ``predictions.csv`` (``material_id``, ``set``,
``formation_energy_per_atom_eV``, ``predicted_per_atom_eV``); a NequIP model also has
``status.json``. Whatever is missing or failed shows as "–".

* Table 4.8 (``table_4_8.{csv,md,tex}``): MAE of the formation energy (meV/atom) per set (Test,
  Val) and model (rows) and alloy (columns); best per set and alloy in bold, second
  underlined (compared at the printed precision, three decimals).
* Table 4.9 (``table_4_9.*``): MAE and RMSE (meV/atom) of the cluster expansion per alloy and
  set (train, val, test), the external cluster expansion beside it when one is given, the
  alloy's CE lattice (1H/1T) and the structures that failed to map onto it (no CE prediction,
  left out of the CE's MAE). Unlike the thesis's, our expansion is fitted on the training
  split only.
* Table 6.2 (``table_6_2.*``): MAE of the formation energy **per cell** (meV/cell) of the NequIP
  models (DFT-, ML1-, ML2-relaxed inputs) on the validation set, per alloy.
* ``formation_summary.csv``: every (alloy, model, set) with n, MAE, RMSE (meV/atom), the MAE
  per cell (meV/cell), status and, for the CE, its lattice and ``n_unmapped``.
* Figure 4.10 (``formation_distribution.{png,pdf}``): formation energies per atom, one panel per
  alloy and one for all combined, with E_f = 0 marked.
* Figure 4.11 (``parity_<model>.{png,pdf}``): DFT against predicted formation energy per atom,
  one panel per alloy and one combined, train/val/test coloured, R² and MAE of val+test.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlff2d.formation.energies import error_stats, read_formation_energies
from mlff2d.formation.figures import ALL_SETS, curves_figure, distribution_figure, parity_figure
from mlff2d.relaxation.table_format import rank_marks
from mlff2d.io.table_files import DASH, tex_escape, write_frame_html, write_table_files

#: (key, row label in table 4.8, subdirectory) of every model, in table order.
MODELS = (
    ("ce", "CE (icet, train split)", "ce"),
    ("external_ce", "CE (external)", None),
    ("nequip_dft", "ML (relaxed DFT)", "nequip/dft"),
    ("nequip_ml1", "ML 1 (normal)", "nequip/ml1"),
    ("nequip_ml2", "ML 2 (transfer)", "nequip/ml2"),
    ("baseline", "Composition only", "baseline"),
)
LABELS = {k: label for k, label, _ in MODELS}
TABLE_SETS = ("val", "test")  # val above test, as in every table
#: Table 6.2: the NequIP models on the validation set, MAE per cell.
TABLE_6_2_MODELS = ("nequip_dft", "nequip_ml1", "nequip_ml2")
TABLE_6_2_SETS = ("val",)
#: Column of table 4.9 with the structures that failed to map onto the CE lattice.
UNMAPPED = "Unmapped"
SUMMARY_COLUMNS = ["alloy", "model", "label", "set", "status", "n", "mae", "rmse", "mae_cell", "lattice", "n_unmapped"]
DECIMALS = 3


def _read_predictions(path: Path) -> pd.DataFrame | None:
    if not path.exists():
        return None
    frame = pd.read_csv(path, dtype={"material_id": str, "set": str})
    return frame if len(frame) else None


def model_predictions(alloy_dir: str | Path, key: str) -> tuple[str, pd.DataFrame | None]:
    """('ok', predictions) of one model of one alloy, or ('failed' | 'pending', None)."""
    alloy_dir = Path(alloy_dir)
    if key == "external_ce":
        f = alloy_dir / "formation_energies.csv"
        if not f.exists():
            return "pending", None
        table = read_formation_energies(f)
        if table["external_ce_per_site_eV"].isna().all():
            return "absent", None
        out = table[["material_id", "set", "formation_energy_per_atom_eV"]].copy()
        out["predicted_per_atom_eV"] = table["external_ce_per_site_eV"] * table["n_sites"] / table["n_atoms"]
        return "ok", out
    sub = dict((k, d) for k, _, d in MODELS)[key]
    model_dir = alloy_dir / sub
    status_file = model_dir / "status.json"
    if status_file.exists() and json.loads(status_file.read_text()).get("status") != "ok":
        return "failed", None
    preds = _read_predictions(model_dir / "predictions.csv")
    if preds is None:
        return ("failed" if status_file.exists() else "pending"), None
    return "ok", preds


def cell_mae_meV(preds: pd.DataFrame, n_atoms: pd.Series) -> float:
    """MAE of the formation energy per cell (meV/cell) over the finite predictions;
    ``n_atoms`` maps material_id to the cell's atom count."""
    atoms = preds["material_id"].map(n_atoms).to_numpy(float)
    err = (preds["predicted_per_atom_eV"].to_numpy(float) - preds["formation_energy_per_atom_eV"].to_numpy(float)) * atoms
    err = err[np.isfinite(err)] * 1000.0
    return float(np.abs(err).mean()) if err.size else float("nan")


def ce_lattice(alloy_dir: str | Path) -> str:
    """The CE lattice prototype (1H/1T) of an alloy from ``ce/summary.json``, DASH when absent."""
    f = Path(alloy_dir) / "ce" / "summary.json"
    return str(json.loads(f.read_text()).get("prototype", DASH)) if f.exists() else DASH


def _n_unmapped(rows: pd.DataFrame) -> int:
    """Rows whose structure failed to map onto the CE lattice (non-empty ``failure``)."""
    return int(rows["failure"].fillna("").astype(str).ne("").sum()) if "failure" in rows else 0


def collect(alloys: Sequence[tuple[str, str | Path]]) -> pd.DataFrame:
    """One row per (alloy, model, set): status, n, mae, rmse (meV/atom), mae_cell (meV/cell),
    and for the CE its lattice and n_unmapped (structures without a CE prediction)."""
    rows = []
    for alloy, d in alloys:
        f = Path(d) / "formation_energies.csv"
        n_atoms = read_formation_energies(f).set_index("material_id")["n_atoms"] if f.exists() else pd.Series(dtype=float)
        for key, label, _ in MODELS:
            status, preds = model_predictions(d, key)
            if status == "absent":
                continue
            ce = {"lattice": ce_lattice(d)} if key == "ce" else {"lattice": ""}
            for s in ALL_SETS:
                stats: dict[str, Any] = {"n": 0, "mae": float("nan"), "rmse": float("nan"), "mae_cell": float("nan")}
                unmapped: float = float("nan")
                if preds is not None:
                    rows_s = preds[preds["set"] == s]
                    stats = error_stats(rows_s["predicted_per_atom_eV"], rows_s["formation_energy_per_atom_eV"])
                    stats["mae_cell"] = cell_mae_meV(rows_s, n_atoms)
                    unmapped = _n_unmapped(rows_s) if key == "ce" else float("nan")
                ok = status == "ok" and stats["n"] > 0
                rows.append({"alloy": alloy, "model": key, "label": label, "set": s,
                             "status": "ok" if ok else ("failed" if status != "pending" else "pending"), **stats,
                             **ce, "n_unmapped": unmapped})
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def _ranks(values: dict[str, float]) -> tuple[set[str], set[str]]:
    """Best and second at the printed precision (:func:`mlff2d.relaxation.table_format.rank_marks`)."""
    return rank_marks({k: round(v, DECIMALS) for k, v in values.items() if math.isfinite(v)})


def table_4_8(
    summary: pd.DataFrame,
    alloys: Sequence[str],
    value: str = "mae",
    unit: str = "meV/atom",
    models: Sequence[str] | None = None,
    sets: Sequence[str] = TABLE_SETS,
) -> pd.DataFrame:
    """Rows set × model, columns alloys (``value`` of the summary, MAE meV/atom by default;
    DASH when failed or missing), and for each alloy ``best_<alloy>``/``second_<alloy>``
    naming the model key(s). ``models`` (default: every model in the summary) and ``sets``
    select the rows (table 6.2: the NequIP models, val, MAE per cell)."""
    present = set(summary["model"])
    models = [k for k, _, _ in MODELS if k in present and (models is None or k in models)]
    lookup = {(r.alloy, r.model, r.set): r for r in summary.itertuples(index=False)}
    records = []
    marks: dict[tuple[str, str], tuple[set[str], set[str]]] = {}
    for s in sets:
        for a in alloys:
            vals = {m: float(getattr(lookup[(a, m, s)], value)) for m in models
                    if (a, m, s) in lookup and lookup[(a, m, s)].status == "ok"}
            marks[(s, a)] = _ranks(vals)
    for s in sets:
        for m in models:
            rec: dict[str, Any] = {"set": s, "model": LABELS[m], "key": m, "unit": unit}
            for a in alloys:
                r = lookup.get((a, m, s))
                rec[a] = float(getattr(r, value)) if r is not None and r.status == "ok" else DASH
            for a in alloys:
                best, second = marks[(s, a)]
                rec[f"best_{a}"] = m in best
                rec[f"second_{a}"] = m in second
            records.append(rec)
    return pd.DataFrame(records)


def table_4_9(summary: pd.DataFrame, alloys: Sequence[str]) -> pd.DataFrame:
    """Rows alloy × set (train, val, test): the CE lattice, MAE and RMSE (meV/atom) of the icet
    CE and, when present, of the external CE, and the structures that failed to map onto the
    lattice (``Unmapped``; DASH when the CE did not run)."""
    lookup = {(r.alloy, r.model, r.set): r for r in summary.itertuples(index=False)}
    has_external = bool((summary["model"] == "external_ce").any())
    records = []
    for a in alloys:
        for s in ALL_SETS:
            ce = lookup.get((a, "ce", s))
            rec: dict[str, Any] = {"alloy": a, "set": s, "lattice": ce.lattice if ce is not None else DASH}
            for key, name in (("ce", "CE"),) + ((("external_ce", "external CE"),) if has_external else ()):
                r = lookup.get((a, key, s))
                ok = r is not None and r.status == "ok"
                rec[f"MAE {name} [meV/atom]"] = float(r.mae) if ok else DASH
                rec[f"RMSE {name} [meV/atom]"] = float(r.rmse) if ok else DASH
            unmapped = ce.n_unmapped if ce is not None else float("nan")
            rec[UNMAPPED] = int(unmapped) if pd.notna(unmapped) else DASH
            records.append(rec)
    return pd.DataFrame(records)


def _fmt(value: Any, bold: bool = False, under: bool = False, tex: bool = False) -> str:
    if isinstance(value, str):
        return "--" if tex else value
    if value is None or not math.isfinite(float(value)):
        return "--" if tex else DASH
    text = f"{float(value):.{DECIMALS}f}"
    if bold:
        return rf"\textbf{{{text}}}" if tex else f"**{text}**"
    if under:
        return rf"\underline{{{text}}}" if tex else f"<u>{text}</u>"
    return text


def write_table_4_8(table: pd.DataFrame, alloys: Sequence[str], stem: Path, caption: str) -> list[Path]:
    """CSV, Markdown and LaTeX of a :func:`table_4_8` frame (tables 4.8 and 6.2)."""
    header = ["Set", "Model", *alloys]
    md_rows, tex_rows, breaks = [], [], set()
    prev = None
    for i, row in table.reset_index(drop=True).iterrows():
        set_text = {"val": "Val", "test": "Test"}[row["set"]] if row["set"] != prev else ""
        if prev is not None and row["set"] != prev:
            breaks.add(i)
        prev = row["set"]
        md_rows.append([set_text, row["model"], *[_fmt(row[a], row[f"best_{a}"], row[f"second_{a}"]) for a in alloys]])
        tex_rows.append([tex_escape(set_text), tex_escape(row["model"]),
                         *[_fmt(row[a], row[f"best_{a}"], row[f"second_{a}"], tex=True) for a in alloys]])
    return write_table_files(stem, table, header, md_rows, tex_rows, breaks, caption, "ll" + "r" * len(alloys))


def write_table_4_9(table: pd.DataFrame, stem: Path, caption: str) -> list[Path]:
    value_cols = [c for c in table.columns if c not in ("alloy", "set", "lattice")]
    header = ["Alloy", "Lattice", "Dataset", *value_cols]
    md_rows, tex_rows, breaks = [], [], set()
    prev = None
    for i, row in table.reset_index(drop=True).iterrows():
        alloy_text = row["alloy"] if row["alloy"] != prev else ""
        if prev is not None and row["alloy"] != prev:
            breaks.add(i)
        prev = row["alloy"]
        lattice = str(row["lattice"]) if alloy_text else ""
        md_rows.append([alloy_text, lattice, row["set"], *[_fmt_cell(row[c], c) for c in value_cols]])
        tex_rows.append([tex_escape(alloy_text), tex_escape(lattice), row["set"], *[_fmt_cell(row[c], c, tex=True) for c in value_cols]])
    return write_table_files(stem, table, header, md_rows, tex_rows, breaks, caption, "lll" + "r" * len(value_cols))


def _fmt_cell(value: Any, column: str, tex: bool = False) -> str:
    """A table 4.9 cell: counts as integers, errors at :data:`DECIMALS`."""
    if column == UNMAPPED and not isinstance(value, str) and pd.notna(value):
        return str(int(value))
    return _fmt(value, tex=tex)


def write_report(alloys: Sequence[tuple[str, str | Path]], outdir: str | Path, split: str = "") -> list[Path]:
    """Tables 4.8, 4.9 and 6.2, ``formation_summary.csv`` and the figures into ``outdir``."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    names = [a for a, _ in alloys]
    summary = collect(alloys)
    summary.to_csv(outdir / "formation_summary.csv", index=False, lineterminator="\n")
    written = [outdir / "formation_summary.csv",
               write_frame_html(summary, outdir / "formation_summary.html", "Every formation-energy model, alloy and set: "
                                "status, N, MAE and RMSE (meV/atom), MAE per cell (meV/cell), the CE lattice and unmapped structures.")]
    split_text = f" ({split} split)" if split else ""
    cap8 = ("MAE of the formation energy [meV/atom] on the validation and test sets" + split_text + ": cluster "
            "expansion (icet, cutoffs chosen by cross-validation on the training split and fitted on it only), an "
            "external cluster expansion where given, energy-only NequIP models on DFT-relaxed structures (ML relaxed "
            "DFT), on structures relaxed by the normally trained MACE alloy model (ML 1) and by the transfer MACE "
            "model (ML 2), and a composition-only baseline. Best per set and alloy in bold, second underlined; "
            "– = failed or not run.")
    written += write_table_4_8(table_4_8(summary, names), names, outdir / "table_4_8", cap8)
    cap9 = ("MAE and RMSE [meV/atom] of the cluster expansion against the DFT formation energies on the train, val "
            "and test keys" + split_text + ". The expansion is fitted on the training split only, so val and test "
            "are a true holdout (the thesis fitted on all data). Lattice: the MX2 prototype of the expansion (1H "
            "trigonal-prismatic, 1T octahedral), read from the DFT-relaxed end members or set in "
            "formation.ce.prototypes. Unmapped: structures that do not map onto that lattice; they have no CE "
            "prediction and are not in its MAE.")
    written += write_table_4_9(table_4_9(summary, names), outdir / "table_4_9", cap9)
    cap62 = ("MAE of the formation energy per cell [meV/cell] on the validation set" + split_text + " of the "
             "energy-only NequIP models on DFT-relaxed structures (ML relaxed DFT), on structures relaxed by the "
             "normally trained MACE alloy model (ML 1) and by the transfer MACE model (ML 2). Best per alloy in bold, "
             "second underlined; – = failed or not run.")
    t62 = table_4_8(summary, names, value="mae_cell", unit="meV/cell", models=TABLE_6_2_MODELS, sets=TABLE_6_2_SETS)
    written += write_table_4_8(t62, names, outdir / "table_6_2", cap62)

    energies = {a: read_formation_energies(Path(d) / "formation_energies.csv") for a, d in alloys
                if (Path(d) / "formation_energies.csv").exists()}
    written += distribution_figure(energies, outdir / "formation_distribution")
    for key, label, _ in MODELS:
        preds = {}
        for a, d in alloys:
            status, p = model_predictions(d, key)
            if status == "ok" and p is not None:
                preds[a] = p
        if key == "external_ce" and not preds:
            continue
        written += parity_figure(preds, outdir / f"parity_{key}", f"DFT against {label}")
    written += curves_figure(alloys, outdir / "nequip_validation_curves", MODELS)
    return written
