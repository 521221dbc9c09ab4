"""Writers of the study's tables: CSV, Markdown, LaTeX and a small HTML page per table (the
report shows it inline), LaTeX escaping, and HTML pages for data frames."""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

#: Shown for a failed model or point in every table format (LaTeX gets ``--``).
DASH = "–"


_TEX_REPLACEMENTS = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    "Å": r"\AA{}", "²": r"$^2$", "³": r"$^3$", "×": r"$\times$", "–": "--", "⁻": "$^{-}$", "¹": "$^1$",
}


def tex_escape(text: str) -> str:
    """Plain text to LaTeX (special characters escaped, Å²× and the en dash as TeX)."""
    return "".join(_TEX_REPLACEMENTS.get(ch, ch) for ch in text)


_HTML_STYLE = """body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;font-size:14px}th,td{padding:4px 10px}th{border-bottom:2px solid #444;text-align:left}
td.r,th.r{text-align:right;font-variant-numeric:tabular-nums}tr.break td{border-top:1px solid #999}
caption{caption-side:bottom;text-align:left;max-width:60em;padding-top:.8em;color:#444;font-size:13px}"""


def _md_cell_html(text: str) -> str:
    """A Markdown table cell (``**best**``, ``<u>second</u>``) as HTML, everything else escaped."""
    import html

    bold = text.startswith("**") and text.endswith("**") and len(text) > 4
    under = text.startswith("<u>") and text.endswith("</u>")
    inner = text[2:-2] if bold else text[3:-4] if under else text
    inner = html.escape(inner)
    return f"<strong>{inner}</strong>" if bold else f"<u>{inner}</u>" if under else inner


def write_html_table(path: Path, header: Sequence[str], md_rows: Sequence[Sequence[str]], group_breaks: set[int],
                     caption: str, align: str) -> Path:
    """A table as a small HTML page (the report shows it as a table, not a download): the
    Markdown cells' marks as bold/underline, numbers right-aligned, a rule between groups and
    the caption below."""
    import html

    cls = ['r' if a == 'r' else 'l' for a in align]
    head = "".join(f'<th class="{c}">{html.escape(h)}</th>' for h, c in zip(header, cls))
    rows = []
    for i, row in enumerate(md_rows):
        cells = "".join(f'<td class="{c}">{_md_cell_html(str(v))}</td>' for v, c in zip(row, cls))
        opening = '<tr class="break">' if i in group_breaks else "<tr>"
        rows.append(f"{opening}{cells}</tr>")
    body = (f"<table><caption>{html.escape(caption)}</caption><thead><tr>{head}</tr></thead><tbody>"
            + "".join(rows) + "</tbody></table>")
    return write_html_page(path, Path(path).stem, body, _HTML_STYLE)


def write_html_page(path: Path, title: str, body: str, style: str) -> Path:
    """A self-contained HTML page (the report shows it inline): ``body`` as given, ``title`` escaped."""
    import html

    Path(path).write_text(f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
                          f"<style>{style}</style></head><body>{body}</body></html>\n", encoding="utf-8")
    return Path(path)


def write_frame_html(frame: pd.DataFrame, path: str | Path, caption: str, digits: int = 4) -> Path:
    """A data table (a summary CSV) as an HTML page for the report: numbers to ``digits``
    significant digits, empty cells for NaN, the caption below."""
    def text(value: Any) -> str:
        if isinstance(value, float):
            return "" if not math.isfinite(value) else f"{value:.{digits}g}"
        return str(value)

    header = [str(c) for c in frame.columns]
    rows = [[text(v) for v in row] for row in frame.itertuples(index=False)]
    align = "".join("r" if pd.api.types.is_numeric_dtype(frame[c]) else "l" for c in frame.columns)
    return write_html_table(Path(path), header, rows, set(), caption, align)


def write_table_files(
    stem: str | Path,
    csv: pd.DataFrame,
    header: Sequence[str],
    md_rows: Sequence[Sequence[str]],
    tex_rows: Sequence[Sequence[str]],
    group_breaks: set[int],
    caption: str,
    align: str,
) -> list[Path]:
    """Write a table as ``stem.csv`` (``csv`` as is), ``stem.md`` (pipe table, caption below),
    ``stem.tex`` (a ``table`` float; ``\\hline`` before each row index in ``group_breaks``) and
    ``stem.html`` (the Markdown table as a page of its own, for the report: see
    :func:`write_html_table`). ``md_rows``/``tex_rows`` are the formatted cells; ``align`` has
    one ``l`` or ``r`` per column."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    write_html_table(stem.with_name(stem.name + ".html"), header, md_rows, group_breaks, caption, align)
    paths = [stem.with_name(stem.name + ext) for ext in (".csv", ".md", ".tex")]
    csv.to_csv(paths[0], index=False, lineterminator="\n")
    md = ["| " + " | ".join(header) + " |", "|" + "|".join(":--" if c == "l" else "--:" for c in align) + "|"]
    md += ["| " + " | ".join(r) + " |" for r in md_rows]
    paths[1].write_text("\n".join(md) + f"\n\nTable: {caption}\n", encoding="utf-8")
    tex = [r"\begin{table}[htbp]", r"\centering", r"\begin{tabular}{" + align + "}", r"\hline",
           " & ".join(tex_escape(h) for h in header) + r" \\", r"\hline"]
    for i, r in enumerate(tex_rows):
        if i in group_breaks:
            tex.append(r"\hline")
        tex.append(" & ".join(r) + r" \\")
    tex += [r"\hline", r"\end{tabular}", r"\caption{" + tex_escape(caption) + "}", r"\end{table}"]
    paths[2].write_text("\n".join(tex) + "\n", encoding="utf-8")
    return paths
