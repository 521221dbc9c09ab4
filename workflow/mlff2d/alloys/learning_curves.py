"""Learning curves of the alloy study (thesis 4.3, :mod:`mlff2d.alloys.report`): relaxed energy
and area MAE of the test set against the number of training materials, normal against
transfer, and ``learning_curve_crossover``: the smallest training fraction from which on
normal training matches transfer, that is its MAE is at most ``(1 + tolerance)`` times the
transfer MAE at that fraction and at every larger one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlff2d.alloys.figures import QUANTITIES, plot_learning_curve
from mlff2d.relaxation.evaluation import DASH, write_frame_html
from mlff2d.io.labels import FAMILY_NAMES


def learning_curve_table(models: pd.DataFrame, relax_set: str = "test") -> pd.DataFrame:
    """Long table of the learning-curve models: dataset, family, mode, frac, n_train_materials,
    n_train_frames, status, energy_mae (meV/atom), area_mae (Å²/atom × 100)."""
    rows = with_full_models(models)
    rows = rows[rows["frac"].notna() & (rows["set"] == relax_set)].copy()
    rows["frac"] = rows["frac"].astype(float)
    ok = rows["status"] == "ok"
    rows["energy_mae"] = rows["energy_mae"].astype(float).where(ok)
    rows["area_mae"] = (100.0 * rows["area_mae"].astype(float)).where(ok)
    cols = ["dataset", "family", "ecut", "split", "mode", "frac", "n_train_materials", "n_train_frames", "status", "energy_mae", "area_mae"]
    return rows[cols].sort_values(["dataset", "family", "mode", "frac"]).reset_index(drop=True)


def with_full_models(models: pd.DataFrame) -> pd.DataFrame:
    """``models`` with the full alloy models added as fraction 1 of every learning curve of the
    same dataset, family, e_cut and split that has no fraction-1 model of its own (the same
    training, so the workflow does not train it twice)."""
    curve = models[models["frac"].notna()]
    keys = ["dataset", "family", "ecut", "split", "mode"]
    have_one = {tuple(r) for r in curve.loc[curve["frac"].astype(float) == 1.0, keys].itertuples(index=False)}
    wanted = {tuple(r) for r in curve[keys].itertuples(index=False)} - have_one
    full = models[models["frac"].isna()]
    extra = full[[tuple(r) in wanted for r in full[keys].itertuples(index=False)]].assign(frac="1")
    return pd.concat([models, extra], ignore_index=True) if len(extra) else models


def crossover(curve: pd.DataFrame, tolerance: float) -> pd.DataFrame:
    """Per dataset × family × quantity: the smallest fraction from which on the normal model's
    MAE stays within ``(1 + tolerance)`` × the transfer model's (see the module docstring);
    ``never`` when it does not, ``–`` when a curve has no finished point."""
    out = []
    for (dataset, family), group in curve.groupby(["dataset", "family"], sort=True):
        fracs = sorted(group["frac"].unique())
        for column, label, _ in QUANTITIES:
            normal = group[group["mode"] == "normal"].set_index("frac")[column]
            transfer = group[group["mode"] == "transfer"].set_index("frac")[column]
            both = [f for f in fracs if f in normal.index and f in transfer.index and np.isfinite(normal[f]) and np.isfinite(transfer[f])]
            matched = [bool(normal[f] <= (1 + tolerance) * transfer[f]) for f in both]
            answer: Any = "never" if both else DASH
            for i in range(len(both)):
                if all(matched[i:]):
                    answer = both[i]
                    break
            n_train = group.loc[group["frac"] == answer, "n_train_materials"] if not isinstance(answer, str) else pd.Series(dtype=float)
            smallest = both[0] if both else None
            out.append(
                {
                    "dataset": dataset,
                    "family": family,
                    "quantity": label,
                    "fractions": " ".join(f"{f:g}" for f in fracs),
                    "verdict": crossover_verdict(answer, both),
                    "crossover_fraction": answer,
                    "crossover_n_train_materials": n_train.iloc[0] if len(n_train) else None,
                    "normal_at_smallest": normal.get(smallest) if smallest is not None else None,
                    "transfer_at_smallest": transfer.get(smallest) if smallest is not None else None,
                    "tolerance": tolerance,
                }
            )
    return pd.DataFrame(out)


def crossover_verdict(answer: Any, fractions: Sequence[float]) -> str:
    """The crossover in words: normal matching transfer from the smallest fraction on means
    transfer never pays; never matching means it pays at every fraction."""
    if isinstance(answer, str):
        return "transfer pays at every fraction" if answer == "never" else "no finished point"
    if fractions and answer == fractions[0]:
        return "transfer never pays"
    return f"normal matches transfer from fraction {answer:g}"


def write_learning_curves(models: pd.DataFrame, outdir: str | Path, figures_dir: str | Path, tolerance: float, relax_set: str = "test") -> list[Path]:
    """``learning_curve.csv`` (every point) and ``learning_curve_crossover.{csv,md}`` in
    ``outdir``, one ``learning_curve_<dataset>.{png,pdf}`` per dataset in ``figures_dir``."""
    outdir, figures_dir = Path(outdir), Path(figures_dir)
    outdir.mkdir(parents=True, exist_ok=True)
    figures_dir.mkdir(parents=True, exist_ok=True)
    curve = learning_curve_table(models, relax_set)
    curve.to_csv(outdir / "learning_curve.csv", index=False, lineterminator="\n")
    table = crossover(curve, tolerance)
    table.to_csv(outdir / "learning_curve_crossover.csv", index=False, lineterminator="\n")
    lines = [
        f"# Where transfer pays: smallest training fraction at which normal training matches transfer ({relax_set} set)",
        "",
        f"Normal matches transfer at a fraction when its MAE is at most (1 + {tolerance:g}) × the transfer MAE there and at every larger fraction; "
        "'never' = transfer stays better at every fraction; – = no finished point.",
        "",
        "| Alloy | Family | Quantity | Fractions | Verdict | Crossover fraction | Training materials there | Normal at smallest | Transfer at smallest |",
        "|:--|:--|:--|:--|:--|--:|--:|--:|--:|",
    ]

    def fmt(v: Any) -> str:
        if v is None or (isinstance(v, float) and not math.isfinite(v)):
            return DASH
        return f"{v:.2f}" if isinstance(v, float) else str(v)

    for r in table.itertuples(index=False):
        frac = r.crossover_fraction if isinstance(r.crossover_fraction, str) else f"{r.crossover_fraction:g}"
        n = r.crossover_n_train_materials
        lines.append(f"| {r.dataset} | {FAMILY_NAMES.get(r.family, r.family)} | {r.quantity} | {r.fractions} | {r.verdict} | {frac} | "
                     f"{'' if n is None or (isinstance(n, float) and not math.isfinite(n)) else int(n)} | {fmt(r.normal_at_smallest)} | {fmt(r.transfer_at_smallest)} |")
    (outdir / "learning_curve_crossover.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    write_frame_html(table, figures_dir / "learning_curve_crossover.html", "Where transfer pays: per alloy and family, the "
                     "smallest training fraction from which normal training matches transfer (test energy MAE, meV/atom).")
    written = [outdir / "learning_curve.csv", outdir / "learning_curve_crossover.csv", outdir / "learning_curve_crossover.md",
               figures_dir / "learning_curve_crossover.html"]
    for dataset in sorted(curve["dataset"].unique()):
        written += plot_learning_curve(curve, dataset, figures_dir / f"learning_curve_{dataset}")
    return written
