"""Figures 4.10 and 4.11 of the formation-energy study and the NequIP validation curves
(:mod:`mlff2d.formation.report` writes them): formation-energy distributions, parity plots of
DFT against predicted formation energies, validation MAE per epoch."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from mlff2d.relaxation.statistics import r2_text
from mlff2d.io.ptable import save_figure

ALL_SETS = ("train", "val", "test")
SET_COLORS = {"train": "#9a9a9a", "val": "tab:blue", "test": "tab:orange"}


def _grid(n: int) -> tuple[Figure, list[Any]]:
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(4.2 * cols, 3.8 * rows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel().tolist()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def distribution_figure(energies: dict[str, pd.DataFrame], stem: Path) -> list[Path]:
    """Figure 4.10: histograms of the formation energy per atom (meV/atom) per alloy and all
    combined, E_f = 0 dashed."""
    names = list(energies) + (["all alloys"] if len(energies) > 1 else [])
    fig, axes = _grid(max(1, len(names)))
    for ax, name in zip(axes, names):
        if name == "all alloys":
            values = [f["formation_energy_per_atom_eV"].to_numpy(float) * 1000.0 for f in energies.values()]
            bins = np.histogram_bin_edges(np.concatenate(values), bins=25)
            ax.hist(values, bins=bins, stacked=True, label=list(energies))
            ax.legend(fontsize=8)
        else:
            ax.hist(energies[name]["formation_energy_per_atom_eV"] * 1000.0, bins=20, color="tab:blue", alpha=0.8)
        ax.axvline(0.0, color="black", ls="--", lw=1)
        ax.set_title(name)
        ax.set_xlabel("formation energy (meV/atom)")
        ax.set_ylabel("structures")
    fig.suptitle("Formation energy distribution")
    return save_figure(fig, stem)


def parity_figure(preds: dict[str, pd.DataFrame], stem: Path, title: str) -> list[Path]:
    """Figure 4.11: DFT against predicted formation energy per atom (meV/atom), per alloy and
    combined; R² and MAE of the held-out (val + test) structures."""
    names = list(preds) + (["all alloys"] if len(preds) > 1 else [])
    fig, axes = _grid(max(1, len(names)))
    for ax, name in zip(axes, names):
        frame = pd.concat(preds.values()) if name == "all alloys" else preds[name]
        x_all = frame["formation_energy_per_atom_eV"].to_numpy(float) * 1000.0
        y_all = frame["predicted_per_atom_eV"].to_numpy(float) * 1000.0
        ok = np.isfinite(x_all) & np.isfinite(y_all)
        ax.set_title(name)
        ax.set_xlabel("DFT formation energy (meV/atom)")
        ax.set_ylabel("predicted (meV/atom)")
        if not ok.any():
            ax.text(0.5, 0.5, "no predictions", ha="center", va="center", transform=ax.transAxes)
            continue
        for s in ALL_SETS:
            m = ok & (frame["set"].to_numpy() == s)
            if m.any():
                ax.scatter(x_all[m], y_all[m], s=12, color=SET_COLORS[s], label=s, alpha=0.8, edgecolors="none")
        lo, hi = float(min(x_all[ok].min(), y_all[ok].min())), float(max(x_all[ok].max(), y_all[ok].max()))
        pad = 0.05 * (hi - lo) if hi > lo else 1.0
        ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="black", lw=1, ls="--")
        ax.set_xlim(lo - pad, hi + pad)
        ax.set_ylim(lo - pad, hi + pad)
        held = ok & np.isin(frame["set"].to_numpy(), ["val", "test"])
        if held.any():
            mae = float(np.mean(np.abs(y_all[held] - x_all[held])))
            text = f"val+test: MAE = {mae:.3g} meV/atom\n{r2_text(y_all[held], x_all[held], 3)}, N = {int(held.sum())}"
            ax.text(0.04, 0.96, text, transform=ax.transAxes, ha="left", va="top", fontsize=8,
                    bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.85, "edgecolor": "#b0b0b0"})
        ax.legend(loc="lower right", fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    return save_figure(fig, stem)


def curves_figure(alloys: Sequence[tuple[str, str | Path]], stem: Path, models: Sequence[tuple[str, str, str | None]]) -> list[Path]:
    """Validation MAE per epoch of every NequIP model (thesis fig. 4.9); ``models`` as
    :data:`mlff2d.formation.report.MODELS` (key, label, subdirectory)."""
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.subplots()
    drawn = 0
    for alloy, d in alloys:
        for key, label, sub in models:
            if not key.startswith("nequip"):
                continue
            f = Path(d) / sub / "metrics.csv"
            if f.exists():
                m = pd.read_csv(f)
                if len(m) and "energy_mae_meV_per_atom" in m:
                    ax.plot(m["epoch"], m["energy_mae_meV_per_atom"], label=f"{alloy}: {label}")
                    drawn += 1
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation MAE (meV/atom)")
    if drawn:
        ax.set_yscale("log")
        ax.legend(fontsize=7)
    else:
        ax.text(0.5, 0.5, "no finished NequIP training", ha="center", va="center", transform=ax.transAxes)
    fig.suptitle("NequIP formation-energy training")
    return save_figure(fig, stem)
