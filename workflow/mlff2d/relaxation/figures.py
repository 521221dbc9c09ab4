"""Figures of one relaxation run's errors: parity plots, error distributions, space groups,
per-element MAE against training frequency and periodic-table element maps (thesis 4.1-4.2,
figs. 4.4, 6.6, 6.15-6.24)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from mlff2d.relaxation.statistics import r2_text
from mlff2d.io.ptable import plot_periodic_table, save_figure

ENERGY_LABEL = "Energy MAE (meV/atom)"
AREA_LABEL = "Area MAE (10$^{-2}$ Å$^2$/atom)"


def parity_plot(errors: pd.DataFrame, stem: str | Path, title: str) -> list[Path]:
    """ML against DFT energy (eV/atom) and area (Å²/atom), with y = x, R², MAE and N per panel
    (thesis fig. 4.4); writes ``stem.png`` and ``stem.pdf``."""
    ev = errors[errors["evaluated"].astype(bool)]
    fig = Figure(figsize=(11, 5.2), layout="constrained")
    axes = fig.subplots(1, 2)
    panels = (
        ("e_ml", "e_dft", "energy_error_meV", "energy", "eV/atom", 1000.0, "meV/atom"),
        ("area_ml", "area_dft", "area_error", "area", "Å$^2$/atom", 1.0, "Å$^2$/atom"),
    )
    for ax, (ml, dft, err, name, unit, _, err_unit) in zip(axes, panels):
        x, y = ev[dft].to_numpy(float), ev[ml].to_numpy(float)
        ax.set_xlabel(f"DFT {name} ({unit})")
        ax.set_ylabel(f"ML {name} ({unit})")
        ax.set_title(name.capitalize())
        if not x.size:
            ax.text(0.5, 0.5, "no evaluated relaxation", ha="center", va="center", transform=ax.transAxes)
            continue
        lo, hi = float(min(x.min(), y.min())), float(max(x.max(), y.max()))
        pad = 0.04 * (hi - lo) if hi > lo else 1.0
        lo, hi = lo - pad, hi + pad
        alpha = 0.8 if x.size < 500 else 0.35
        ax.scatter(x, y, s=9 if x.size < 500 else 4, alpha=alpha, edgecolors="none", color="tab:blue", rasterized=x.size > 2000)
        ax.plot([lo, hi], [lo, hi], color="black", lw=1, ls="--", label="y = x")
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_aspect("equal")
        a = np.abs(ev[err].to_numpy(float))
        text = f"{r2_text(y, x)}\nMAE = {a.mean():.3g} {err_unit}\nN = {x.size}"
        ax.text(0.04, 0.96, text, transform=ax.transAxes, ha="left", va="top", fontsize=10,
                bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.85, "edgecolor": "#b0b0b0"})
        ax.legend(loc="lower right", fontsize=9)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{title}: {len(ev)} of {len(errors)} relaxations evaluated")
    return save_figure(fig, Path(stem))


#: The two error quantities of the distribution figures: (column, label, factor to plot units).
ERROR_QUANTITIES = (("energy_error_meV", "energy error (meV/atom)", 1.0),
                    ("area_error", "area error (10$^{-2}$ Å$^2$/atom)", 100.0))


def cumulative_share(abs_errors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted absolute errors, share of structures with an error at most that large)."""
    x = np.sort(np.asarray(abs_errors, dtype=float))
    return x, np.arange(1, x.size + 1) / max(x.size, 1)


def error_distribution_plot(errors: pd.DataFrame, stem: str | Path, title: str) -> list[Path]:
    """Histograms of the signed energy and area errors (ML − DFT) and their cumulative curves
    (share of structures with |error| ≤ x, MAE and median marked), thesis figs. 6.15-6.24."""
    ev = errors[errors["evaluated"].astype(bool)]
    fig = Figure(figsize=(11, 8), layout="constrained")
    axes = fig.subplots(2, 2)
    for col, (column, label, factor) in enumerate(ERROR_QUANTITIES):
        err = ev[column].to_numpy(float) * factor
        hist, cum = axes[0, col], axes[1, col]
        hist.set(xlabel=f"{label}, ML − DFT", ylabel="structures")
        cum.set(xlabel=f"|{label}|", ylabel="share of structures", ylim=(0, 1.02))
        if not err.size:
            hist.text(0.5, 0.5, "no evaluated relaxation", ha="center", va="center", transform=hist.transAxes)
            continue
        hist.hist(err, bins=min(50, max(5, err.size // 3)), color="tab:blue", alpha=0.85)
        hist.axvline(0.0, color="black", lw=1, ls="--")
        x, share = cumulative_share(np.abs(err))
        cum.step(x, share, where="post", color="tab:blue")
        for value, name, style in ((float(np.mean(x)), "MAE", "--"), (float(np.median(x)), "median", ":")):
            cum.axvline(value, color="black", lw=1, ls=style, label=f"{name} = {value:.3g}")
        cum.legend(loc="lower right", fontsize=9)
        for ax in (hist, cum):
            ax.grid(alpha=0.3)
    fig.suptitle(f"{title}: error distributions, {len(ev)} of {len(errors)} relaxations evaluated")
    return save_figure(fig, Path(stem))


def spacegroup_plot(groups: pd.DataFrame, stem: str | Path, title: str, top: int = 30) -> list[Path]:
    """Energy MAE (meV/atom) per space group, largest first, the number of structures above
    each bar (thesis fig. 6.6); at most ``top`` groups."""
    shown = groups[groups["n"] > 0].head(top)
    fig = Figure(figsize=(max(7.0, 0.35 * len(shown) + 2.0), 4.8), layout="constrained")
    ax = fig.subplots()
    labels = [f"{sym} ({'?' if pd.isna(num) else int(num)})" for num, sym in zip(shown["spacegroup"], shown["symbol"])]
    bars = ax.bar(range(len(shown)), shown["energy_mae_meV"].to_numpy(float), color="tab:blue")
    ax.bar_label(bars, labels=[f"N={n}" for n in shown["n"]], fontsize=7)
    ax.set_xticks(range(len(shown)), labels, rotation=90, fontsize=8)
    ax.set(ylabel=ENERGY_LABEL, title=f"{title}: energy MAE per space group")
    if shown.empty:
        ax.text(0.5, 0.5, "no evaluated relaxation", ha="center", va="center", transform=ax.transAxes)
    return save_figure(fig, Path(stem))


def element_frequency_plot(per_element_df: pd.DataFrame, stem: str | Path, title: str) -> list[Path]:
    """Per-element energy and area MAE against the number of training materials containing
    the element (log scale), one labelled point per element (thesis 4.2, class imbalance)."""
    df = per_element_df[per_element_df["n"] > 0]
    fig = Figure(figsize=(12, 5), layout="constrained")
    panels = (("energy_mae_meV", ENERGY_LABEL, 1.0), ("area_mae", AREA_LABEL, 100.0))
    for ax, (column, label, factor) in zip(fig.subplots(1, 2), panels):
        x = np.maximum(df["n_train_materials"].to_numpy(float), 0.8)  # 0: drawn at the left edge
        y = df[column].to_numpy(float) * factor
        ax.scatter(x, y, s=18, color="tab:blue")
        for xi, yi, el in zip(x, y, df["element"]):
            ax.annotate(el, (xi, yi), xytext=(3, 2), textcoords="offset points", fontsize=7)
        ax.set(xscale="log", xlabel="training materials containing the element", ylabel=label)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{title}: per-element MAE against training frequency")
    return save_figure(fig, Path(stem))


def _map_values(per_element_df: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Values shown on the maps, in map units: energy meV/atom, area Å²/atom × 100."""
    elements = per_element_df["element"].astype(str)
    return {
        "energy": dict(zip(elements, per_element_df["energy_mae_meV"].astype(float))),
        "area": dict(zip(elements, per_element_df["area_mae"].astype(float) * 100.0)),
    }


Limit = float | Mapping[str, float] | None


def _limit(value: Limit, quantity: str) -> float | None:
    """The limit of ``quantity`` (``energy`` or ``area``) from a float, a mapping or None."""
    if value is None or isinstance(value, (int, float)):
        return value
    return value.get(quantity)


def shared_limits(*per_element_dfs: pd.DataFrame) -> tuple[dict[str, float], dict[str, float]]:
    """(vmin, vmax) per quantity spanning every table, in map units (see :func:`element_maps`)."""
    vmin: dict[str, float] = {}
    vmax: dict[str, float] = {}
    for quantity in ("energy", "area"):
        values = np.array([v for df in per_element_dfs for v in _map_values(df)[quantity].values()], dtype=float)
        values = values[np.isfinite(values)]
        if values.size:
            vmin[quantity], vmax[quantity] = float(values.min()), float(values.max())
    return vmin, vmax


def _draw_maps(ax_energy: Any, ax_area: Any, per_element_df: pd.DataFrame, vmin: Limit, vmax: Limit, log: bool) -> None:
    values = _map_values(per_element_df)
    counts = dict(zip(per_element_df["element"].astype(str), per_element_df["n"].astype(int))) if "n" in per_element_df else None
    for ax, quantity, label in ((ax_energy, "energy", ENERGY_LABEL), (ax_area, "area", AREA_LABEL)):
        plot_periodic_table(
            values[quantity], ax, label=label, cmap="viridis",
            vmin=_limit(vmin, quantity), vmax=_limit(vmax, quantity), fmt="{:.3g}", log=log, counts=counts,
        )


def element_maps(
    per_element_df: pd.DataFrame, stem: str | Path, title: str, vmin: Limit = None, vmax: Limit = None, log: bool = False
) -> list[Path]:
    """Periodic-table maps of (a) energy MAE (meV/atom) and (b) area MAE (Å²/atom × 100).

    ``vmin``/``vmax`` are in map units (meV/atom; 10⁻² Å²/atom): a number applies to both
    maps, a mapping ``{"energy": ..., "area": ...}`` to each; None is the data range. Elements
    without an evaluated structure are grey. Writes ``stem.png`` and ``stem.pdf``.
    """
    fig = Figure(figsize=(13, 15.6), layout="constrained")
    ax_e, ax_a = fig.subplots(2, 1)
    _draw_maps(ax_e, ax_a, per_element_df, vmin, vmax, log)
    ax_e.set_title("(a) energy", fontsize=13, loc="left")
    ax_a.set_title("(b) area", fontsize=13, loc="left")
    fig.suptitle(title, fontsize=15)
    return save_figure(fig, Path(stem))


def compare_element_maps(
    per_element_a: pd.DataFrame,
    per_element_b: pd.DataFrame,
    labels: Sequence[str],
    stem: str | Path,
    title: str | None = None,
    log: bool = False,
) -> list[Path]:
    """Element maps of two models side by side (columns), energy on top and area below, each
    quantity on one colour scale spanning both models (:func:`shared_limits`)."""
    if len(labels) != 2:
        raise ValueError(f"compare_element_maps needs two labels, got {list(labels)}")
    vmin, vmax = shared_limits(per_element_a, per_element_b)
    fig = Figure(figsize=(26, 15.6), layout="constrained")
    axes = fig.subplots(2, 2)
    for col, (df, label) in enumerate(zip((per_element_a, per_element_b), labels)):
        _draw_maps(axes[0, col], axes[1, col], df, vmin, vmax, log)
        axes[0, col].set_title(f"{label}: energy", fontsize=15, loc="left")
        axes[1, col].set_title(f"{label}: area", fontsize=15, loc="left")
    if title:
        fig.suptitle(title, fontsize=17)
    return save_figure(fig, Path(stem))
