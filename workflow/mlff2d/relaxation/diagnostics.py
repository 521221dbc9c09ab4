"""Diagnostics the campaign writes about its own results: numbers that mean nothing are
flagged, not printed in a table as if they were results.

For every model (universal sweep point, alloy model, learning-curve model) and relaxed set:

* ``failed``: the training failed (its reason) or the relaxation of a set was not evaluated;
* ``not_better_than_baseline``: the relaxed energy MAE is not below the composition baseline's
  (per-element energies fitted on the training split), or the area MAE is not below the
  unrelaxed baseline's (the start structure's area): the model adds nothing a table lookup
  would not give;
* ``stopped_at_step_0``: more than half of the relaxations stopped at step 0 (the model's
  forces on the start structures are already below fmax): nothing moved, so the area errors are
  the unrelaxed ones and a convergence rate of 1 means nothing;
* ``validation_force_not_falling``: the validation force MAE of the last epoch is not below
  ``1 - FORCE_FALL`` times that of the first epoch: the model did not learn forces that
  generalise (it may still fit its training frames).

Units: energy MAE meV/atom, area MAE Å²/atom, force MAE meV/Å.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

#: Share of relaxations stopped at step 0 above which a set is flagged.
MAX_SHARE_STEP0 = 0.5
#: The validation force MAE must fall by at least this fraction over the training.
FORCE_FALL = 0.05
COLUMNS = ["model", "set", "check", "value", "reference", "message"]


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def training_check(model_dir: Path, status: dict[str, Any], label: str) -> list[dict[str, Any]]:
    """The failure of a training (``status``: its status.json), or its validation force MAE
    not falling."""
    if status.get("status") not in (None, "ok"):
        return [_row(label, "", "failed", None, None, f"training failed: {status.get('reason') or status.get('status')}")]
    metrics_file = model_dir / "metrics.csv"
    if not metrics_file.exists():
        return []
    forces = pd.read_csv(metrics_file).get("forces_mae_meV_per_A", pd.Series(dtype=float)).astype(float)
    if len(forces) < 2:
        return []
    first, last = float(forces.iloc[0]), float(forces.iloc[-1])
    if _finite(last) and last < (1 - FORCE_FALL) * first:
        return []
    message = (f"validation force MAE did not fall during training: {first:.1f} meV/Å after the first epoch,"
               f" {last:.1f} after the last ({len(forces)} epochs)")
    return [_row(label, "val", "validation_force_not_falling", last, first, message)]


def relaxation_checks(summary: dict[str, Any], baseline: dict[str, Any], label: str, relax_set: str) -> list[dict[str, Any]]:
    """The checks of one relaxed set against its composition baseline (see the module docstring)."""
    if not summary:
        return []
    if not summary.get("n_evaluated"):
        return [_row(label, relax_set, "failed", None, None, f"no relaxation of the {relax_set} set could be evaluated")]
    rows = []
    for quantity, unit, what in (("energy", "meV/atom", "composition"), ("area", "Å²/atom", "unrelaxed")):
        mae = summary.get(quantity, {}).get("mae")
        ref = baseline.get(quantity, {}).get("mae")
        if _finite(mae) and _finite(ref) and float(mae) >= float(ref):
            rows.append(_row(label, relax_set, "not_better_than_baseline", mae, ref,
                             f"{relax_set} {quantity} MAE {float(mae):.4g} {unit} is not below the {what} baseline's {float(ref):.4g}"))
    share = summary.get("steps", {}).get("share_step0")
    if _finite(share) and float(share) > MAX_SHARE_STEP0:
        rows.append(_row(label, relax_set, "stopped_at_step_0", share, MAX_SHARE_STEP0,
                         f"{100 * float(share):.0f} % of the {relax_set} relaxations stopped at step 0 (nothing moved)"))
    return rows


def _row(model: str, relax_set: str, check: str, value: Any, reference: Any, message: str) -> dict[str, Any]:
    return {"model": model, "set": relax_set, "check": check, "value": value, "reference": reference, "message": message}


def diagnose(models: Sequence[tuple[str | Path, str | Path]], sets: Sequence[str], root: str | Path | None = None) -> pd.DataFrame:
    """Every warning for (model directory, baseline directory) pairs; a baseline directory holds
    ``<set>/summary.json``. Models are labelled by their path below ``root``."""
    rows: list[dict[str, Any]] = []
    for model_dir, baseline_dir in models:
        model_dir, baseline_dir = Path(model_dir), Path(baseline_dir)
        label = str(model_dir.relative_to(root)) if root and model_dir.is_relative_to(root) else str(model_dir)
        status = _read_json(model_dir / "status.json")
        rows += training_check(model_dir, status, label)
        if status.get("status") != "ok":
            continue
        for relax_set in sets:
            summary = _read_json(model_dir / "relax" / relax_set / "summary.json")
            rows += relaxation_checks(summary, _read_json(baseline_dir / relax_set / "summary.json"), label, relax_set)
    return pd.DataFrame(rows, columns=COLUMNS)


def write_diagnostics(frame: pd.DataFrame, n_models: int, md_path: str | Path, csv_path: str | Path) -> list[Path]:
    """``diagnostics.csv`` (one row per warning) and ``diagnostics.md`` (grouped by check)."""
    md_path, csv_path = Path(md_path), Path(csv_path)
    md_path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(csv_path, index=False, lineterminator="\n")
    lines = ["# Diagnostics: results that do not mean what a table suggests", ""]
    if frame.empty:
        lines.append(f"No warnings for {n_models} models: every model beats the composition and unrelaxed baselines, "
                     "its relaxations move, and its validation force error fell during training.")
    else:
        lines.append(f"{len(frame)} warnings for {frame['model'].nunique()} of {n_models} models.")
        titles = {
            "failed": "Failed",
            "not_better_than_baseline": "Not better than the baseline",
            "stopped_at_step_0": "Relaxations that stopped at step 0",
            "validation_force_not_falling": "Validation force error not falling",
        }
        for check, title in titles.items():
            group = frame[frame["check"] == check]
            if len(group):
                lines += ["", f"## {title} ({len(group)})", ""]
                lines += [f"- WARNING {r.model}: {r.message}" for r in group.itertuples(index=False)]
    md_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    html_path = md_path.with_suffix(".html")
    _write_html(lines, html_path)
    return [md_path, csv_path, html_path]


def _write_html(lines: Sequence[str], path: Path) -> None:
    """The Markdown of :func:`write_diagnostics` (headings, paragraphs, lists) as an HTML page."""
    import html

    body, in_list = [], False
    for line in lines:
        if line.startswith("- ") != in_list:
            body.append("<ul>" if not in_list else "</ul>")
            in_list = not in_list
        if line.startswith("## "):
            body.append(f"<h2>{html.escape(line[3:])}</h2>")
        elif line.startswith("# "):
            body.append(f"<h1>{html.escape(line[2:])}</h1>")
        elif line.startswith("- "):
            body.append(f"<li>{html.escape(line[2:])}</li>")
        elif line:
            body.append(f"<p>{html.escape(line)}</p>")
    body.append("</ul>" if in_list else "")
    from mlff2d.io.table_files import write_html_page

    write_html_page(path, "diagnostics", "".join(body),
                    "body{font-family:system-ui,sans-serif;margin:1.5em;max-width:70em;color:#222}li{margin:.2em 0}")
