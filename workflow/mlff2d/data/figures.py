"""Dataset figures: what the cleaned frame store and the step selections contain.

Every figure is written as PNG and PDF by :func:`mlff2d.io.ptable.save_figure`:

* ``elements`` and ``elements_ptable``: number of materials containing each element;
* ``spacegroups``: the most common space groups of the last frame of each material;
* ``distributions``: energy per atom, force components and in-plane stress (GPa);
* ``selected_steps_per_element``: mean selected steps per material, per element and e_cut;
* :func:`energy_overlay_figure` (alloys, thesis fig. 6.13): energy per atom of each alloy
  dataset on shared bins, and all combined.

:func:`training_element_counts` counts the training materials containing each element (the
class balance, beside the per-element relaxation errors of :mod:`mlff2d.relaxation.evaluation`).

``dataset_summary.csv`` gives, per e_cut label, the number of materials with a selected frame,
the number of selected frames and their mean per material. The store is streamed one row
group at a time, reading only the columns each quantity needs.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import spglib
from ase import Atoms
from ase.data import atomic_numbers, chemical_symbols
from matplotlib.figure import Figure

from mlff2d.io.ptable import plot_periodic_table, save_figure
from mlff2d.io.store import iter_tables
from mlff2d.io.units import EV_PER_A3_IN_GPA

#: symprec (Å) for the space-group analysis, as in pymatgen's SpacegroupAnalyzer(symprec=0.1).
SYMPREC = 0.1
#: Number of space groups shown in the bar chart.
TOP_SPACEGROUPS = 30


def _frame_rows(path: Path, columns: list[str], last: bool) -> Iterator[dict[str, Any]]:
    """Yield the first (or last) frame of each material in each row group, as a dict."""
    for table in iter_tables(path, columns=["material_id", *columns]):
        ids = table.column("material_id").to_numpy(zero_copy_only=False)
        if not len(ids):
            continue
        change = ids[1:] != ids[:-1]
        rows = np.flatnonzero(np.r_[change, True] if last else np.r_[True, change])
        yield from table.take(pa.array(rows)).to_pylist()


def material_elements(clean: Path) -> pd.Series:
    """Element symbols (sorted by atomic number) of each material, indexed by material_id."""
    elements: dict[str, tuple[str, ...]] = {}
    for row in _frame_rows(clean, ["numbers"], last=False):
        if row["material_id"] not in elements:
            elements[row["material_id"]] = tuple(chemical_symbols[z] for z in sorted(set(row["numbers"])))
    return pd.Series(elements, name="elements", dtype=object).rename_axis("material_id")


def _count_elements(elements: pd.Series) -> pd.Series:
    counts = Counter(symbol for symbols in elements for symbol in symbols)
    order = sorted(counts, key=lambda s: (-counts[s], atomic_numbers[s]))
    return pd.Series([counts[s] for s in order], index=pd.Index(order, name="element"), name="n_materials")


def element_counts(clean: Path) -> pd.Series:
    """Number of materials containing each element, indexed by symbol, most common first."""
    return _count_elements(material_elements(clean))


def _spacegroup(cell: np.ndarray, frac: np.ndarray, numbers: list[int], symprec: float) -> tuple[Any, Any]:
    """(number, international symbol) from spglib, or (<NA>, None) when it fails."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # spglib 2.5+ error-handling notice
        try:
            data = spglib.get_symmetry_dataset((cell, frac, numbers), symprec=symprec)
        except spglib.SpglibError:  # raised instead of returning None in spglib's new mode
            data = None
    return (data.number, data.international) if data is not None else (pd.NA, None)


def atoms_spacegroup(atoms: Atoms, symprec: float = SYMPREC) -> tuple[Any, Any]:
    """(number, international symbol) of a structure, or (<NA>, None) when spglib fails."""
    return _spacegroup(atoms.cell.array, atoms.get_scaled_positions(wrap=False), list(atoms.numbers), symprec)


def training_element_counts(clean: Path, split_csv: Path) -> pd.DataFrame:
    """Per element, the training materials containing it (``n_train_materials``, split column
    ``split == "train"``), most common first: the class balance the models learn from."""
    split = pd.read_csv(split_csv, dtype={"material_id": str})
    train = set(split.loc[split["split"] == "train", "material_id"])
    elements = material_elements(clean)
    counts = _count_elements(elements[elements.index.isin(train)])
    return counts.rename("n_train_materials").reset_index()


def spacegroups(clean: Path, symprec: float = SYMPREC) -> pd.DataFrame:
    """Space group (``number``, ``symbol``) of the last frame of each material.

    Uses spglib with ``symprec`` in Å; a structure spglib cannot analyse gets ``<NA>``.
    """
    last: dict[str, dict[str, Any]] = {}
    for row in _frame_rows(clean, ["n_atoms", "numbers", "positions", "cell"], last=True):
        last[row["material_id"]] = row  # a material split over row groups: the later one wins
    records = []
    for material_id, row in last.items():
        cell = np.reshape(row["cell"], (3, 3))
        frac = np.linalg.solve(cell.T, np.reshape(row["positions"], (-1, 3)).T).T
        number, symbol = _spacegroup(cell, frac, row["numbers"], symprec)
        records.append({"material_id": material_id, "number": number, "symbol": symbol})
    df = pd.DataFrame(records, columns=["material_id", "number", "symbol"]).set_index("material_id")
    return df.astype({"number": "Int64"})


def spacegroup_numbers(clean: Path) -> pd.Series:
    """Space-group number of the last frame of each material, indexed by material_id."""
    return spacegroups(clean)["number"]


def _force_histogram(clean: Path, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Histogram of all force components, in two streaming passes (range, then counts)."""
    lo, hi = np.inf, -np.inf
    for table in iter_tables(clean, columns=["forces"]):
        f = table.column("forces").combine_chunks().flatten().to_numpy()
        f = f[np.isfinite(f)]
        if f.size:
            lo, hi = min(lo, f.min()), max(hi, f.max())
    if not lo <= hi:
        lo, hi = -1.0, 1.0
    edges = np.linspace(lo, hi if hi > lo else lo + 1.0, bins + 1)
    counts = np.zeros(bins, dtype=np.int64)
    for table in iter_tables(clean, columns=["forces"]):
        f = table.column("forces").combine_chunks().flatten().to_numpy()
        counts += np.histogram(f[np.isfinite(f)], edges)[0]
    return counts, edges


def _distributions_figure(clean: Path) -> Figure:
    table = pq.read_table(clean, columns=["n_atoms", "energy", "stress"])
    energy = table.column("energy").to_numpy() / table.column("n_atoms").to_numpy()
    stress = table.column("stress").combine_chunks().flatten().to_numpy().reshape(-1, 6) * EV_PER_A3_IN_GPA
    fig = Figure(figsize=(15, 4.2), layout="constrained")
    ax_e, ax_f, ax_s = fig.subplots(1, 3)

    ax_e.hist(energy[np.isfinite(energy)], bins=100, color="C0")
    ax_e.set(xlabel="energy per atom (eV/atom)", ylabel="frames", title=f"energy ({len(energy)} frames)")

    counts, edges = _force_histogram(clean, bins=200)
    ax_f.stairs(counts, edges, fill=True, color="C1")
    ax_f.set(xlabel="force component (eV/Å)", ylabel="components", yscale="log", title="forces")

    in_plane = stress[:, [0, 1, 5]]
    finite = in_plane[np.isfinite(in_plane)]
    edges = np.histogram_bin_edges(finite, bins=100) if finite.size else np.linspace(-1, 1, 101)
    for i, name in enumerate(("xx", "yy", "xy")):
        values = in_plane[:, i]
        ax_s.hist(values[np.isfinite(values)], bins=edges, histtype="step", lw=1.5, label=name)
    ax_s.set(xlabel="stress (GPa, tension > 0)", ylabel="frames", yscale="log", title="in-plane stress")
    ax_s.legend()
    return fig


def _bar_figure(
    labels: list[str], values: list[float], ylabel: str, title: str, rotation: int = 0, log: bool = False
) -> Figure:
    fig = Figure(figsize=(max(8.0, 0.2 * len(labels) + 1.5), 4.5), layout="constrained")
    ax = fig.subplots()
    ax.bar(range(len(labels)), values, color="C0")
    ax.set_xticks(range(len(labels)), labels, rotation=rotation, fontsize=8)
    ax.set_xlim(-0.7, len(labels) - 0.3)
    ax.set(ylabel=ylabel, title=title, yscale="log" if log else "linear")
    return fig


def selection_stats(
    elements: pd.Series, selected: Mapping[str, Path]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Summarise the step selections.

    Args:
        elements: element symbols per material, from :func:`material_elements`.
        selected: e_cut label -> Parquet file of selected frames (material_id, step).

    Returns:
        One summary row per label (``e_cut``, ``n_materials`` with a selected frame,
        ``n_selected_frames``, ``mean_steps_per_material`` over those materials), and a table
        of the mean selected steps per material (materials with a selected frame), indexed by
        element in order of atomic number, one column per label.

    Raises:
        ValueError: when a selection names a material that is not in ``elements``.
    """
    per_material = elements.explode().rename("element").reset_index()
    summary, per_element = [], {}
    for label, path in selected.items():
        steps = pq.read_table(path, columns=["material_id"]).column("material_id").to_pandas()
        n_steps = steps.value_counts().rename("n_steps")
        unknown = n_steps.index.difference(elements.index)
        if len(unknown):
            raise ValueError(
                f"selection {label!r} ({path}) names materials not in the store: {list(unknown[:5])}"
            )
        summary.append(
            {
                "e_cut": label,
                "n_materials": len(n_steps),
                "n_selected_frames": int(n_steps.sum()),
                "mean_steps_per_material": n_steps.mean() if len(n_steps) else np.nan,
            }
        )
        joined = per_material.join(n_steps, on="material_id", how="inner")
        per_element[label] = joined.groupby("element")["n_steps"].mean()
    table = pd.DataFrame(per_element, columns=list(selected))
    table = table.loc[sorted(table.index, key=atomic_numbers.__getitem__)]
    columns = ["e_cut", "n_materials", "n_selected_frames", "mean_steps_per_material"]
    return pd.DataFrame(summary, columns=columns), table


def _selected_figure(per_element: pd.DataFrame) -> Figure:
    n_el, n_lab = per_element.shape
    fig = Figure(figsize=(max(8.0, 0.22 * n_el + 1.5), 4.5), layout="constrained")
    ax = fig.subplots()
    width = 0.8 / max(n_lab, 1)
    x = np.arange(n_el)
    for i, label in enumerate(per_element.columns):
        ax.bar(x - 0.4 + (i + 0.5) * width, per_element[label].fillna(0), width, label=f"e_cut = {label}")
    ax.set_xticks(x, per_element.index, fontsize=8)
    ax.set_xlim(-0.7, n_el - 0.3)
    ax.set(ylabel="mean selected steps per material", title="selected steps per material, by element")
    if n_lab:  # above the axes, never over the bars
        fig.legend(*ax.get_legend_handles_labels(), loc="outside upper right", ncols=n_lab, fontsize=9)
    return fig


def wide_range(values: Sequence[float], decades: float = 1.3) -> bool:
    """Whether positive ``values`` span more than ``decades`` powers of ten: a log axis then
    shows them all; over a narrower range it would carry one or two tick labels, so use linear."""
    positive = [v for v in values if v > 0]
    return bool(positive) and max(positive) / min(positive) > 10**decades


def energies_per_atom(clean: Path) -> np.ndarray:
    """Energy per atom (eV/atom) of every finite frame of a clean store."""
    table = pq.read_table(clean, columns=["n_atoms", "energy"])
    energy = table.column("energy").to_numpy() / table.column("n_atoms").to_numpy()
    return energy[np.isfinite(energy)]


def energy_overlay_figure(cleans: Mapping[str, Path], stem: Path) -> list[Path]:
    """Thesis fig. 6.13: (a) energy per atom of every frame, one step histogram per alloy on
    shared bins; (b) all alloys combined. Writes ``stem.{png,pdf}``."""
    energies = {name: energies_per_atom(Path(path)) for name, path in cleans.items()}
    values = [e for e in energies.values() if e.size]
    edges = np.histogram_bin_edges(np.concatenate(values), bins=60) if values else np.linspace(-1, 0, 61)
    fig = Figure(figsize=(13, 4.5), layout="constrained")
    ax_a, ax_b = fig.subplots(1, 2)
    for name, e in energies.items():
        ax_a.hist(e, bins=edges, histtype="step", lw=1.5, label=f"{name} ({e.size} frames)")
    ax_a.set(xlabel="energy per atom (eV/atom)", ylabel="frames", title="(a) per alloy")
    if energies:
        ax_a.legend(fontsize=8)
    ax_b.hist(np.concatenate(values) if values else [], bins=edges, color="C0")
    ax_b.set(xlabel="energy per atom (eV/atom)", ylabel="frames", title=f"(b) all alloys ({sum(v.size for v in values)} frames)")
    return save_figure(fig, Path(stem))


def make_dataset_figures(clean: Path, selected: Mapping[str, Path], outdir: Path) -> list[Path]:
    """Write the dataset figures (PNG + PDF) and ``dataset_summary.csv`` into ``outdir``.

    Args:
        clean: cleaned frame store (Parquet, :data:`mlff2d.io.store.FRAME_SCHEMA`).
        selected: e_cut label -> Parquet file of selected frames (material_id, step).
        outdir: output directory (created if needed).

    Returns:
        The paths written, figures first, the summary CSV last.

    Raises:
        ValueError: when a selection names a material that is not in ``clean``.
    """
    clean, outdir = Path(clean), Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    elements = material_elements(clean)
    counts = _count_elements(elements)
    paths: list[Path] = []

    title = f"materials containing each element ({len(elements)} materials)"
    fig = _bar_figure(list(counts.index), list(counts), "materials", title, log=wide_range(list(counts)))
    paths += save_figure(fig, outdir / "elements")
    label = "materials containing the element"
    fig = plot_periodic_table(counts.to_dict(), label=label, fmt="{:.0f}", log=True)
    paths += save_figure(fig, outdir / "elements_ptable")

    groups = spacegroups(clean).dropna(subset=["number"])
    top = groups.groupby("number")["symbol"].agg(["size", "first"])
    top = top.sort_values("size", ascending=False, kind="stable").head(TOP_SPACEGROUPS)
    labels = [f"{symbol} ({number})" for number, symbol in top["first"].items()]
    title = f"space groups of the last frame (symprec {SYMPREC} Å, {len(groups)} materials)"
    fig = _bar_figure(labels, list(top["size"]), "materials", title, rotation=90)
    paths += save_figure(fig, outdir / "spacegroups")

    paths += save_figure(_distributions_figure(clean), outdir / "distributions")

    summary, per_element = selection_stats(elements, selected)
    paths += save_figure(_selected_figure(per_element), outdir / "selected_steps_per_element")
    summary.to_csv(outdir / "dataset_summary.csv", index=False)
    paths.append(outdir / "dataset_summary.csv")
    return paths
