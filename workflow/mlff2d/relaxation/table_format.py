"""The relaxation-error tables of thesis Tables 4.1/4.2: one row per set × model × quantity, one
column per step-selection cutoff, best and second marked; written as CSV, Markdown, LaTeX and
HTML through :func:`mlff2d.io.table_files.write_table_files`."""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from mlff2d.io.table_files import DASH, tex_escape, write_table_files

#: Quantities of the relaxation tables: (name, column of ``rows``, factor to table units).
TABLE_QUANTITIES = (("Energy", "energy_mae", 1.0), ("Area", "area_mae", 100.0))
#: Decimals shown in the relaxation tables.
TABLE_DECIMALS = 2


def _cutoff_key(label: str) -> tuple[int, float, str]:
    try:
        return (0, float(label), label)
    except ValueError:
        return (1, 0.0, label)


def relaxation_table(rows: pd.DataFrame) -> pd.DataFrame:
    """The relaxation-error table of thesis Tables 4.1/4.2 as data.

    Args:
        rows: one row per (set, model, ecut) with status ("ok"/"failed"), energy_mae
            (meV/atom) and area_mae (Å²/atom).

    Returns:
        One row per set (val before test) × model (order of first appearance) × quantity
        (Energy, Area) with columns ``set``, ``model``, ``quantity``, ``unit``, one column per
        cutoff label (numerically sorted), then ``best`` and ``second``. A cutoff cell holds
        the value in table units (energy meV/atom, area Å²/atom × 100), :data:`DASH` for a
        failed point (status failed or a non-finite value), or NaN when that combination was
        not run. ``best``/``second`` name the cutoff label(s) (space-separated on ties) with
        the lowest and second-lowest value of the row, compared at the printed precision;
        ``best`` needs two values in the row and ``second`` three, otherwise they are empty.

        Optional columns of ``rows``: ``n`` (structures in the set) and ``baseline_energy_mae``
        (meV/atom) / ``baseline_area_mae`` (Å²/atom), the composition baseline of the row's set
        and dataset. When given, the table gains an ``n`` column after ``model`` and a
        ``baseline`` column (table units) before ``best``; the baseline is a reference, never
        ranked (the first finite value per set and model is used).
    """
    rows = _checked_rows(rows)
    cutoffs = sorted(dict.fromkeys(rows["ecut"]), key=_cutoff_key)
    set_order = {"val": 0, "test": 1}
    sets = sorted(dict.fromkeys(rows["set"]), key=lambda s: (set_order.get(s, 2), s))
    models = list(dict.fromkeys(rows["model"]))
    lookup = {(r.set, r.model, r.ecut): r for r in rows.itertuples(index=False)}
    extras = [c for c in ("n", "baseline_energy_mae", "baseline_area_mae") if c in rows.columns]
    has_base = any(c.startswith("baseline_") for c in extras)
    records = []
    for s in sets:
        for m in models:
            if not any((s, m, c) in lookup for c in cutoffs):
                continue
            extra = _first_finite(rows[(rows["set"] == s) & (rows["model"] == m)], extras)
            for quantity, column, factor in TABLE_QUANTITIES:
                rec: dict[str, Any] = {"set": s, "model": m}
                if "n" in extras:
                    rec["n"] = extra.get("n", "")
                rec.update(quantity=quantity, unit="meV/atom" if quantity == "Energy" else "Å²/atom × 100")
                rec.update(_cutoff_cells([lookup.get((s, m, c)) for c in cutoffs], cutoffs, column, factor))
                if has_base:
                    rec["baseline"] = extra.get(f"baseline_{column}", float("nan")) * factor
                records.append(rec)
    head = ["set", "model", *(["n"] if "n" in extras else []), "quantity", "unit"]
    tail = ["baseline"] if has_base else []
    columns = [*head, *cutoffs, *tail, "best", "second"]
    table = pd.DataFrame(records, columns=columns)
    for c in cutoffs:
        table[c] = table[c].astype(object)
    return table


def _checked_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """A copy of the rows of :func:`relaxation_table` with set, model, ecut and status as text,
    after checking the required columns, the status values and that no point appears twice."""
    required = {"set", "model", "ecut", "status", "energy_mae", "area_mae"}
    missing = required - set(rows.columns)
    if missing:
        raise ValueError(f"rows lack columns {sorted(missing)}")
    rows = rows.copy()
    for col in ("set", "model", "ecut", "status"):
        rows[col] = rows[col].astype(str)
    bad = sorted(set(rows["status"]) - {"ok", "failed"})
    if bad:
        raise ValueError(f"status must be 'ok' or 'failed', got {bad}")
    dup = rows.duplicated(["set", "model", "ecut"])
    if dup.any():
        raise ValueError(f"duplicate (set, model, ecut) rows: {rows.loc[dup, ['set', 'model', 'ecut']].values.tolist()}")
    return rows


def _cutoff_cells(points: Sequence[Any], cutoffs: Sequence[str], column: str, factor: float) -> dict[str, Any]:
    """The cutoff cells of one table row (value in table units, :data:`DASH` for a failed point,
    NaN when not run; ``points`` holds the row of each cutoff or None) and its ``best`` and
    ``second`` marks, ranked at the printed precision."""
    cells: dict[str, Any] = {}
    values: dict[str, float] = {}
    for c, r in zip(cutoffs, points):
        if r is None:
            cells[c] = float("nan")
            continue
        v = float(getattr(r, column)) * factor
        if r.status == "failed" or not math.isfinite(v):
            cells[c] = DASH
        else:
            cells[c] = v
            values[c] = round(v, TABLE_DECIMALS)
    best_set, second_set = rank_marks(values)
    cells["best"] = " ".join(c for c in cutoffs if c in best_set)
    cells["second"] = " ".join(c for c in cutoffs if c in second_set)
    return cells


def rank_marks(values: Mapping[str, float]) -> tuple[set[str], set[str]]:
    """The keys a table marks best (bold) and second (underlined), from values at the printed
    precision (lower is better; NaN/inf never ranked): the best needs two values and a unique
    lowest one, the second three values and a unique second-lowest one. A tie is marked for
    neither place, so a bold value is always the one best."""
    finite = {k: v for k, v in values.items() if math.isfinite(v)}
    ranked = sorted(finite.values())
    best = {k for k, v in finite.items() if len(finite) >= 2 and ranked and v == ranked[0] and ranked.count(v) == 1}
    second = {k for k, v in finite.items() if best and len(finite) >= 3 and v == ranked[1] and ranked.count(v) == 1}
    return best, second


def _first_finite(rows: pd.DataFrame, columns: Sequence[str]) -> dict[str, Any]:
    """The first finite value of each column (``n`` as an int); absent when there is none."""
    out: dict[str, Any] = {}
    for c in columns:
        values = pd.to_numeric(rows[c], errors="coerce").dropna()
        if len(values):
            out[c] = int(values.iloc[0]) if c == "n" else float(values.iloc[0])
    return out


#: Columns of a relaxation table that are not cutoff columns.
_FIXED_COLUMNS = ("set", "model", "n", "quantity", "unit", "baseline", "best", "second")


def _cutoff_columns(table: pd.DataFrame) -> list[str]:
    return [c for c in table.columns if c not in _FIXED_COLUMNS]


def _cell(table_row: pd.Series, cutoff: str, bold: tuple[str, str], under: tuple[str, str], dash: str) -> str:
    value = table_row[cutoff]
    if isinstance(value, str):
        return dash
    if value is None or not math.isfinite(float(value)):
        return ""
    text = f"{float(value):.{TABLE_DECIMALS}f}"
    if cutoff in str(table_row["best"]).split():
        return bold[0] + text + bold[1]
    if cutoff in str(table_row["second"]).split():
        return under[0] + text + under[1]
    return text


def _display_set(name: str) -> str:
    return {"val": "Val", "test": "Test"}.get(name, name)


#: Cutoffs at or above this (eV/atom) select every step: the study's "no cutoff" (1e6).
NO_CUTOFF = 1e5


def cutoff_header(column: str) -> str:
    """The header of a cutoff column: ``e_cut 0.01`` (eV/atom), ``e_cut 1e6 (none)`` for the
    study's no-cutoff value; an alloy table's ``e_cut=<e>,<mode>`` reads ``e_cut <e> · <mode>``."""
    from mlff2d.io.labels import SEP, number

    ecut, _, mode = column.removeprefix("e_cut=").partition(",")
    try:
        text = f"e_cut {number(ecut)}" + (" (none)" if float(ecut) >= NO_CUTOFF else "")
    except ValueError:
        return column
    return text + (f"{SEP}{mode}" if mode else "")


def write_table(table: pd.DataFrame, stem: str | Path, caption: str) -> list[Path]:
    """Write a :func:`relaxation_table` as ``stem.csv``, ``stem.md`` and ``stem.tex``.

    * CSV: the table as returned: plain numbers (full precision, table units), ``–`` for a
      failed point, empty when not run, and the ``best``/``second`` columns naming cutoffs.
    * Markdown: best value ``**x**``, second ``<u>x</u>``, ``–`` for failed, caption below.
    * LaTeX: a ``table`` float with a ``tabular``; best ``\\textbf{x}``, second
      ``\\underline{x}``, ``--`` (an en dash, –) for failed; the caption is escaped plain text.

    Set and model are printed only on the first row of their group, as in the thesis. A table
    with ``n`` and ``baseline`` columns shows them as "N" (structures in the set) and
    "Baseline" (the composition baseline: per-element energies fitted on the training split,
    start structure unrelaxed), and says so in the caption.
    """
    cutoffs = _cutoff_columns(table)
    has_n, has_base = "n" in table.columns, "baseline" in table.columns
    header = ["Set", "Model", *(["N"] if has_n else []), "", *[cutoff_header(c) for c in cutoffs], *(["Baseline"] if has_base else [])]
    md_rows, tex_rows, breaks = [], [], set()
    prev: tuple[Any, Any] = (None, None)
    for i, (_, row) in enumerate(table.iterrows()):
        first = (row["set"], row["model"]) != prev
        set_text = _display_set(str(row["set"])) if row["set"] != prev[0] else ""
        model_text = str(row["model"]) if first else ""
        n_text = [(_int_text(row["n"]) if first else "")] if has_n else []
        if row["set"] != prev[0] and prev[0] is not None:
            breaks.add(i)
        prev = (row["set"], row["model"])
        base = [_number_text(row["baseline"], DASH)] if has_base else []
        quantity = f"{row['quantity']} ({row['unit']})" if "unit" in row and str(row["unit"]) else str(row["quantity"])
        md_rows.append([set_text, model_text, *n_text, quantity,
                        *[_cell(row, c, ("**", "**"), ("<u>", "</u>"), DASH) for c in cutoffs], *base])
        tex_base = [_number_text(row["baseline"], "--")] if has_base else []
        tex_rows.append([tex_escape(set_text), tex_escape(model_text), *n_text, tex_escape(quantity),
                         *[_cell(row, c, (r"\textbf{", "}"), (r"\underline{", "}"), "--") for c in cutoffs], *tex_base])
    caption = caption.rstrip(".") + "." + (" Columns: the step-selection cutoff e_cut (eV/atom; 1e6: none, every step)."
               " Bold: the best of a row, underlined: the second (a tie marks neither); – : the training or"
               " relaxation failed (the reason is in diagnostics.md).")
    if has_n:
        caption += " N: structures in the set."
    if has_base:
        caption = caption.rstrip(".") + "." + (" Baseline: the composition baseline (energy per atom from per-element energies fitted on"
                    " the training split; area of the unrelaxed start structure); a value not below it adds nothing"
                    " to what the composition, or not relaxing at all, already gives.")
    align = "ll" + ("r" if has_n else "") + "l" + "r" * (len(cutoffs) + has_base)
    return write_table_files(stem, table, header, md_rows, tex_rows, breaks, caption, align)


def _int_text(value: Any) -> str:
    try:
        return str(int(value))
    except (TypeError, ValueError):
        return ""


def _number_text(value: Any, dash: str) -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return dash
    return f"{v:.{TABLE_DECIMALS}f}" if math.isfinite(v) else dash
