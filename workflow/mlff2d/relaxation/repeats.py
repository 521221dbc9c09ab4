"""Spread over split repeats: mean ± std tables, and a "best" only where the gap beats the spread.

A repeated model is trained and relaxed once per split instance (repeat 0, 1, ..., K-1; see
:mod:`mlff2d.data.split`). Its relaxation MAEs over the K repeats give a mean and a sample standard
deviation (ddof = 1). Within a table row the columns (cutoffs, or normal/transfer) are compared by
their means: the lowest is "best" only when every other column's mean lies further above it than
the two standard deviations together (the mean ± std intervals do not overlap); otherwise every
column whose interval overlaps the lowest one's is listed as a tie.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from mlff2d.relaxation.table_format import TABLE_DECIMALS, TABLE_QUANTITIES
from mlff2d.io.table_files import tex_escape, write_table_files
from mlff2d.relaxation.tables import flat

UNITS = {"Energy": "meV/atom", "Area": "Å²/atom × 100"}


def mean_std(values: Sequence[float]) -> tuple[float, float, int]:
    """(mean, sample std with ddof = 1, K) of the finite values; std is NaN for K < 2."""
    finite = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if finite.size == 0:
        return math.nan, math.nan, 0
    std = float(finite.std(ddof=1)) if finite.size > 1 else math.nan
    return float(finite.mean()), std, int(finite.size)


def rank_with_spread(stats: Mapping[str, tuple[float, float]]) -> tuple[list[str], bool]:
    """(labels at the top, clear) of columns {label: (mean, std)} (lower is better): the lowest
    mean and every column tied with it (gap <= std_best + std_other); clear when it stands alone.
    Fewer than two finite means give ([], False): nothing to compare."""
    finite = {c: (m, 0.0 if not math.isfinite(s) else s) for c, (m, s) in stats.items() if math.isfinite(m)}
    if len(finite) < 2:
        return [], False
    best = min(finite, key=lambda c: finite[c][0])
    mean_b, std_b = finite[best]
    tied = [c for c, (m, s) in finite.items() if m - mean_b <= std_b + s]
    tied.sort(key=lambda c: finite[c][0])
    return tied, len(tied) == 1


def collect_repeats(models: Sequence[tuple[str, str, str | Path]], sets: Sequence[str]) -> pd.DataFrame:
    """One row per (row label, column label, model dir, set) with energy_mae and area_mae of the
    model's ``relax/<set>/summary.json`` (NaN when missing, failed or empty)."""
    records = []
    for row, column, model in models:
        for relax_set in sets:
            f = Path(model) / "relax" / relax_set / "summary.json"
            summary = flat(json.loads(f.read_text())) if f.exists() else {}  # energy: {mae: ...} -> energy_mae
            ok = summary.get("n_evaluated", 0) > 0
            records.append({"set": relax_set, "model": row, "column": column, "dir": str(model),
                            **{q: float(summary.get(q, math.nan)) if ok else math.nan for _, q, _ in TABLE_QUANTITIES}})
    return pd.DataFrame(records, columns=["set", "model", "column", "dir", *(q for _, q, _ in TABLE_QUANTITIES)])


def repeat_table(rows: pd.DataFrame) -> pd.DataFrame:
    """The mean ± std table of :func:`collect_repeats` rows: one row per set × model × quantity
    with ``K`` (repeats evaluated, the lowest over the columns), ``<column> mean`` and
    ``<column> std`` per column (table units), ``best`` (the labels at the top, space-separated)
    and ``tie`` (True when the gap to the next does not exceed the spread)."""
    columns = list(dict.fromkeys(rows["column"]))
    out = []
    for relax_set in dict.fromkeys(rows["set"]):
        for model in dict.fromkeys(rows["model"]):
            part = rows[(rows["set"] == relax_set) & (rows["model"] == model)]
            if part.empty:
                continue
            for quantity, key, factor in TABLE_QUANTITIES:
                stats = {c: mean_std(list(part.loc[part["column"] == c, key] * factor)) for c in columns}
                top, clear = rank_with_spread({c: (m, s) for c, (m, s, _) in stats.items()})
                rec: dict[str, object] = {"set": relax_set, "model": model, "quantity": quantity, "unit": UNITS[quantity],
                                          "K": min((k for _, _, k in stats.values() if k), default=0)}
                for c, (m, s, _) in stats.items():
                    rec[f"{c} mean"], rec[f"{c} std"] = m, s
                rec.update(best=" ".join(top), tie=bool(top) and not clear)
                out.append(rec)
    return pd.DataFrame(out)


def _cell(mean: float, std: float) -> str:
    if not math.isfinite(mean):
        return "–"
    return f"{mean:.{TABLE_DECIMALS}f}" + (f" ± {std:.{TABLE_DECIMALS}f}" if math.isfinite(std) else "")


def write_repeat_table(table: pd.DataFrame, columns: Sequence[str], stem: str | Path, caption: str, column_title: str) -> list[Path]:
    """``stem.csv``/``.md``/``.tex`` of a :func:`repeat_table`: "mean ± std" cells, a clear best
    in bold, ties named in the last column."""
    header = ["Set", "Model", "", "K", *[f"{column_title} {c}" for c in columns], "Best"]
    md_rows, tex_rows, breaks = [], [], set()
    for i, (_, r) in enumerate(table.iterrows()):
        if i and r["set"] != table.iloc[i - 1]["set"]:
            breaks.add(i)
        cells = [_cell(r[f"{c} mean"], r[f"{c} std"]) for c in columns]
        best = str(r["best"]).split()
        verdict = ("tie: " + ", ".join(best)) if r["tie"] else (best[0] if best else "")
        md = [f"**{x}**" if not r["tie"] and best and c == best[0] else x for c, x in zip(columns, cells)]
        tex = [rf"\textbf{{{tex_escape(x)}}}" if not r["tie"] and best and c == best[0] else tex_escape(x) for c, x in zip(columns, cells)]
        lead = [str(r["set"]), str(r["model"]), str(r["quantity"]), str(r["K"])]
        md_rows.append([*lead, *md, verdict])
        tex_rows.append([*(tex_escape(x) for x in lead), *tex, tex_escape(verdict)])
    align = "llll" + "r" * len(columns) + "l"
    return write_table_files(stem, table, header, md_rows, tex_rows, breaks, caption, align)


def parse_model_arg(text: str) -> tuple[str, str, str]:
    """(row, column, dir) of a command-line ``ROW::COLUMN=DIR`` argument."""
    label, sep, model = text.partition("=")
    row, sep2, column = label.partition("::")
    if not (sep and sep2):
        raise ValueError(f"expected ROW::COLUMN=DIR, got {text!r}")
    return row, column, model


def write_repeats(models: Sequence[tuple[str, str, str | Path]], sets: Sequence[str], stem: str | Path, caption: str, column_title: str) -> list[Path]:
    """Collect the repeated models' summaries and write their mean ± std table."""
    rows = collect_repeats(models, sets)
    columns = list(dict.fromkeys(rows["column"]))
    return write_repeat_table(repeat_table(rows), columns, stem, caption, column_title)
