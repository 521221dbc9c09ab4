"""Figures of the alloy study (thesis 4.3, :mod:`mlff2d.alloys.report`): normal training against
transfer per family and split, and the learning curves per alloy (PNG and PDF).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from mlff2d import layout
from mlff2d.relaxation.evaluation import DASH
from mlff2d.io.labels import FAMILY_NAMES

COMBINED = layout.COMBINED
QUANTITIES = (("energy_mae", "energy MAE (meV/atom)", 1.0), ("area_mae", "area MAE (Å²/atom × 100)", 100.0))


def ecut_key(ecut: str) -> float:
    """An e_cut label as a number for sorting (a label that is not one sorts last)."""
    try:
        return float(ecut)
    except ValueError:
        return math.inf


def plot_normal_vs_transfer(models: pd.DataFrame, family: str, split: str, relax_set: str, stem: str | Path) -> list[Path]:
    """Grouped bars per dataset (alloys, then the combined one): energy and area MAE of every
    e_cut × mode; a missing or failed model is marked with "–" at the bottom of its slot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mlff2d.io.ptable import save_figure

    rows = models[(models["family"] == family) & (models["split"] == split) & (models["set"] == relax_set)]
    if "frac" in rows:
        rows = rows[rows["frac"].isna()]
    datasets = sorted(set(rows["dataset"]) - {COMBINED}) + ([COMBINED] if (rows["dataset"] == COMBINED).any() else [])
    combos = sorted({(r.ecut, r.mode) for r in rows.itertuples(index=False)}, key=lambda c: (ecut_key(c[0]), c[1] != "transfer"))
    fig, axes = plt.subplots(1, 2, figsize=(max(6.0, 1.4 * len(datasets) + 3), 4.0))
    width = 0.8 / max(1, len(combos))
    x = np.arange(len(datasets))
    colours = plt.get_cmap("tab20").colors
    for (column, ylabel, factor), ax in zip(QUANTITIES, axes):
        for k, (ecut, mode) in enumerate(combos):
            values = []
            for d in datasets:
                r = rows[(rows["dataset"] == d) & (rows["ecut"] == ecut) & (rows["mode"] == mode)]
                ok = len(r) and r["status"].iloc[0] == "ok" and math.isfinite(float(r[column].iloc[0]))
                values.append(float(r[column].iloc[0]) * factor if ok else math.nan)
            pos = x - 0.4 + width * (k + 0.5)
            colour = colours[(2 * k) % len(colours)] if mode == "transfer" else colours[(2 * k + 1) % len(colours)]
            ax.bar(pos, np.nan_to_num(values), width, label=f"e_cut {ecut}, {mode}", color=colour,
                   hatch="" if mode == "transfer" else "//", edgecolor="black", linewidth=0.4)
            for p, v in zip(pos, values):
                if not math.isfinite(v):
                    ax.annotate(DASH, (p, 0), ha="center", va="bottom", fontsize=9)
        ax.set_xticks(x)
        ax.set_xticklabels(["all alloys" if d == COMBINED else d for d in datasets], rotation=30, ha="right")
        ax.set_ylabel(ylabel)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{FAMILY_NAMES.get(family, family)}: normal against transfer, split {split}, {relax_set} set")
    fig.tight_layout()
    return save_figure(fig, Path(stem))


def plot_learning_curve(curve: pd.DataFrame, dataset: str, stem: str | Path) -> list[Path]:
    """Energy and area MAE against the number of training materials (log x), normal (dashed)
    and transfer (solid), one colour per family."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mlff2d.io.ptable import save_figure

    rows = curve[curve["dataset"] == dataset]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    colours = dict(zip(sorted(rows["family"].unique()), plt.get_cmap("tab10").colors))
    for (column, ylabel, _), ax in zip(QUANTITIES, axes):
        for (family, mode), group in rows.groupby(["family", "mode"]):
            group = group.sort_values("frac")
            n = group["n_train_materials"].astype(float)
            ax.plot(n, group[column], marker="o", linestyle="-" if mode == "transfer" else "--",
                    color=colours[family], label=f"{FAMILY_NAMES.get(family, family)} {mode}")
            for xi, yi in zip(n, group[column]):
                if not np.isfinite(yi) and np.isfinite(xi):
                    ax.annotate(DASH, (xi, 0), xycoords=("data", "axes fraction"), ha="center", va="bottom")
        ax.set_xscale("log")
        ticks = sorted({int(v) for v in rows["n_train_materials"].dropna()})
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.minorticks_off()
        ax.set_xlabel("training materials")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{dataset}: learning curve, normal against transfer")
    fig.tight_layout()
    return save_figure(fig, Path(stem))
