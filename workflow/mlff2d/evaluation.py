"""Relaxation errors of a force field against the DFT-relaxed structures (thesis 4.1-4.2).

Quantities and units:

* energy: final energy per atom, eV/atom; errors in meV/atom, signed as ML − DFT;
* area: ``|a × b| / N`` of the final cell (thesis eq. 4.2; ``a`` and ``b`` are the first two
  cell vectors, the periodic ones, ``c`` is the vacuum direction), Å²/atom; errors signed as
  ML − DFT. Tables and element maps show areas × 100 (10⁻² Å²/atom) as in the thesis.

Which structures enter the errors (one rule, used by every function here): a relaxation is
*evaluated* when it ended with a usable structure, that is it converged or stopped at the step
limit (``failure`` is ``""`` or ``"step_limit"``), and its final energy and area are finite.
Every other relaxation (exploded, non-finite energy, exception, model or training failure, or
a material missing from the records) is counted in ``n`` and in the failures but has NaN
errors. The convergence rate (converged / all reference materials) is reported separately.

Statistics over the evaluated structures: MAE, median of the absolute errors, RMSE, and R²,
the coefficient of determination of the ML values against the DFT values about the y = x line,
``1 − Σ(ml − dft)² / Σ(dft − mean dft)²`` (what a parity plot shows; not the R² of a fitted
regression line).

Per-element errors: a structure counts once towards **each distinct element** it contains,
whatever its stoichiometry (MoWS4 counts once for Mo, once for W and once for S), so an
element's MAE is the mean absolute error of the evaluated structures containing it.

Failure reasons are grouped by the text before the first ``:`` (``"exception: ..."`` counts as
``exception``).

The composition baseline (:func:`baseline_errors`) predicts the energy per atom as
``Σ_el x_el μ_el`` (``x_el`` the atomic fraction) with per-element energies ``μ_el`` fitted by
least squares to the DFT-relaxed energies per atom of the training materials, and leaves the
structure as it started (area of the first DFT frame).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import ase.io
import numpy as np
import pandas as pd
from ase import Atoms
from ase.data import atomic_numbers, chemical_symbols
from matplotlib.figure import Figure

from mlff2d.ptable import plot_periodic_table, save_figure
from mlff2d.relax import area_per_atom  # one definition (thesis eq. 4.2) for ML and DFT structures
from mlff2d.store import iter_tables

#: Columns of an errors table, in order.
ERROR_COLUMNS = (
    "material_id",
    "elements",
    "n_atoms",
    "converged",
    "failure",
    "steps",
    "evaluated",
    "e_ml",
    "e_dft",
    "energy_error_meV",
    "area_ml",
    "area_dft",
    "area_error",
)
#: Failure codes whose final structure still enters the errors.
EVALUATED_FAILURES = ("", "step_limit")
#: Failure of a reference material without a record.
MISSING = "missing"
#: Shown for a failed model or point in every table format (LaTeX gets ``--``).
DASH = "–"
#: Quantities of the relaxation tables: (name, column of ``rows``, factor to table units).
TABLE_QUANTITIES = (("Energy", "energy_mae", 1.0), ("Area", "area_mae", 100.0))
#: Decimals shown in the relaxation tables.
TABLE_DECIMALS = 2

ENERGY_LABEL = "Energy MAE (meV/atom)"
AREA_LABEL = "Area MAE (10$^{-2}$ Å$^2$/atom)"


# --------------------------------------------------------------------------------------------
# Structures
# --------------------------------------------------------------------------------------------


def element_string(numbers: Sequence[int]) -> str:
    """Distinct element symbols, sorted by atomic number, space-separated (``"S Mo W"``)."""
    return " ".join(chemical_symbols[z] for z in sorted({int(z) for z in numbers}))


def structure_energy(atoms: Atoms) -> float:
    """Total energy (eV) of a labelled structure (calculator, or info ``energy``/``REF_energy``)."""
    if atoms.calc is not None:
        return float(atoms.get_potential_energy())
    for key in ("energy", "REF_energy"):
        if key in atoms.info:
            return float(atoms.info[key])
    raise ValueError(f"structure {atoms.info.get('material_id')!r} has no energy")


def read_structures(path: str | Path, energy: bool = True) -> pd.DataFrame:
    """One row per structure of an extxyz relaxation set: material_id, elements, n_atoms,
    energy_per_atom (eV/atom; only with ``energy``), area_per_atom (Å²/atom)."""
    images = ase.io.read(path, index=":")
    rows = []
    for atoms in images:
        row: dict[str, Any] = {
            "material_id": str(atoms.info["material_id"]),
            "elements": element_string(atoms.numbers),
            "n_atoms": len(atoms),
            "area_per_atom": area_per_atom(atoms),
        }
        if energy:
            row["energy_per_atom"] = structure_energy(atoms) / len(atoms)
        rows.append(row)
    cols = ["material_id", "elements", "n_atoms", "area_per_atom"] + (["energy_per_atom"] if energy else [])
    frame = pd.DataFrame(rows, columns=cols)
    dup = frame["material_id"][frame["material_id"].duplicated()]
    if len(dup):
        raise ValueError(f"{path}: duplicate material ids {sorted(set(dup))[:10]}")
    return frame


# --------------------------------------------------------------------------------------------
# Errors and statistics
# --------------------------------------------------------------------------------------------


def relaxation_errors(records: pd.DataFrame | str | Path, reference_file: str | Path) -> pd.DataFrame:
    """Signed errors of relaxed structures against the DFT-relaxed reference, per material.

    Args:
        records: relaxation records (DataFrame or Parquet path) with material_id, n_atoms,
            converged, energy_per_atom (eV/atom), area_per_atom (Å²/atom) and failure.
        reference_file: extxyz of the DFT-relaxed structures (energy, ``material_id`` in info).

    Returns:
        One row per reference material, in reference order, with :data:`ERROR_COLUMNS`. A
        material without a record is not converged with failure ``"missing"``. Errors are
        NaN unless ``evaluated`` (see the module docstring).

    Raises:
        ValueError: records with ids not in the reference, duplicate ids, or an atom count
            that differs from the reference.
    """
    rec = pd.read_parquet(records) if isinstance(records, (str, Path)) else records.copy()
    rec["material_id"] = rec["material_id"].astype(str)
    ref = read_structures(reference_file)
    unknown = sorted(set(rec["material_id"]) - set(ref["material_id"]))
    if unknown:
        raise ValueError(f"records contain {len(unknown)} material ids not in {reference_file}: {unknown[:20]}")
    dup = rec["material_id"][rec["material_id"].duplicated()]
    if len(dup):
        raise ValueError(f"records contain duplicate material ids: {sorted(set(dup))[:20]}")

    rec = rec.set_index("material_id")
    out = ref[["material_id", "elements", "n_atoms"]].copy()
    ids = out["material_id"]
    present = ids.isin(rec.index).to_numpy()
    if "n_atoms" in rec:
        rec_n = ids.map(rec["n_atoms"]).to_numpy(dtype=float)
        bad = present & (rec_n != out["n_atoms"].to_numpy())
        if bad.any():
            raise ValueError(f"atom counts differ from the reference for {ids[bad].tolist()[:20]}")
    conv_map = {k: bool(v) for k, v in rec["converged"].items()}
    converged = np.array([conv_map.get(m, False) for m in ids], dtype=bool)
    failure = ids.map(rec["failure"]).astype(object).to_numpy()
    failure = np.where(present, failure, MISSING)
    failure = np.array(["" if f is None or (isinstance(f, float) and math.isnan(f)) else str(f) for f in failure], dtype=object)
    failure[~converged & (failure == "")] = "not_converged"  # a record that failed without saying why
    steps = ids.map(rec["steps"]).to_numpy(dtype=float) if "steps" in rec else np.full(len(ids), np.nan)
    e_ml = ids.map(rec["energy_per_atom"]).to_numpy(dtype=float)
    area_ml = ids.map(rec["area_per_atom"]).to_numpy(dtype=float)
    e_dft = ref["energy_per_atom"].to_numpy(dtype=float)
    area_dft = ref["area_per_atom"].to_numpy(dtype=float)
    evaluated = np.isin(failure, EVALUATED_FAILURES) & np.isfinite(e_ml) & np.isfinite(area_ml)

    out["converged"] = converged
    out["failure"] = pd.array(failure, dtype=str)
    out["steps"] = steps
    out["evaluated"] = evaluated
    out["e_ml"] = e_ml
    out["e_dft"] = e_dft
    out["energy_error_meV"] = np.where(evaluated, (e_ml - e_dft) * 1000.0, np.nan)
    out["area_ml"] = area_ml
    out["area_dft"] = area_dft
    out["area_error"] = np.where(evaluated, area_ml - area_dft, np.nan)
    return out.reset_index(drop=True)[list(ERROR_COLUMNS)]


#: The fewest points a parity plot shows an R² for: below, R² says nothing (N = 2 gave -165.6).
MIN_N_FOR_R2 = 5


def r2_text(predicted: np.ndarray, reference: np.ndarray, digits: int = 4) -> str:
    """``$R^2$ = ...`` for a parity-plot legend, or why it is not shown (fewer than
    :data:`MIN_N_FOR_R2` points)."""
    n = int(np.asarray(predicted).size)
    if n < MIN_N_FOR_R2:
        return f"$R^2$ not shown (N < {MIN_N_FOR_R2})"
    return f"$R^2$ = {r2_score(predicted, reference):.{digits}f}"


def r2_score(predicted: np.ndarray, reference: np.ndarray) -> float:
    """R² of ``predicted`` against ``reference`` about y = x; NaN for fewer than two values
    or a constant reference."""
    predicted, reference = np.asarray(predicted, float), np.asarray(reference, float)
    if predicted.size < 2:
        return float("nan")
    ss_tot = float(np.sum((reference - reference.mean()) ** 2))
    if ss_tot == 0.0:
        return float("nan")
    return 1.0 - float(np.sum((predicted - reference) ** 2)) / ss_tot


def _stats(error: np.ndarray, predicted: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    nan = float("nan")
    a = np.abs(error)
    return {
        "mae": float(a.mean()) if a.size else nan,
        "median": float(np.median(a)) if a.size else nan,
        "rmse": float(np.sqrt(np.mean(error**2))) if a.size else nan,
        "r2": r2_score(predicted, reference),
    }


def failure_reason(failure: str) -> str:
    """The reason code of a failure string: the text before the first ``:``."""
    return failure.split(":", 1)[0].strip()


#: Failures with no relaxation behind them: they do not enter the FIRE step statistics.
NOT_RELAXED = ("missing", "training_failed", "model_failed", "model_missing", "unseen_element")


def step_statistics(errors: pd.DataFrame) -> dict[str, float]:
    """FIRE steps of the relaxations that ran (every record but :data:`NOT_RELAXED`): ``n``,
    ``median``, ``p90`` (90th percentile) and ``share_step0``, the share that stopped at
    step 0 (the model's forces on the start structure were already below fmax: the structure
    did not move, so its area error is the unrelaxed one). NaN where no relaxation ran."""
    ran = ~errors["failure"].astype(str).map(failure_reason).isin(NOT_RELAXED)
    steps = errors.loc[ran, "steps"].to_numpy(float) if "steps" in errors else np.array([])
    steps = steps[np.isfinite(steps)]
    nan = float("nan")
    if not steps.size:
        return {"n": 0, "median": nan, "p90": nan, "share_step0": nan}
    return {
        "n": int(steps.size),
        "median": float(np.median(steps)),
        "p90": float(np.percentile(steps, 90)),
        "share_step0": float(np.mean(steps == 0)),
    }


def summarize(errors: pd.DataFrame) -> dict[str, Any]:
    """Counts and error statistics of one relaxation run.

    Returns:
        ``n`` (reference materials), ``n_evaluated``, ``n_converged``, ``convergence_rate``
        (= ``converged_share``, converged / n), ``failures`` (reason -> count over the
        not-converged materials, step_limit included), ``steps`` (:func:`step_statistics`),
        and ``energy`` (meV/atom) and ``area`` (Å²/atom), each a dict of ``mae``, ``median``
        (of the absolute errors), ``rmse`` and ``r2`` over the evaluated structures (NaN when
        there are none).
    """
    n = len(errors)
    ev = errors[errors["evaluated"].astype(bool)]
    n_conv = int(errors["converged"].astype(bool).sum())
    reasons = [failure_reason(f) for f, c in zip(errors["failure"], errors["converged"]) if not c]
    failures = {r: reasons.count(r) for r in sorted(set(reasons))}
    out: dict[str, Any] = {
        "n": n,
        "n_evaluated": len(ev),
        "n_converged": n_conv,
        "convergence_rate": n_conv / n if n else float("nan"),
        "converged_share": n_conv / n if n else float("nan"),
        "failures": failures,
        "steps": step_statistics(errors),
    }
    out["energy"] = _stats(ev["energy_error_meV"].to_numpy(float), ev["e_ml"].to_numpy(float), ev["e_dft"].to_numpy(float))
    out["area"] = _stats(ev["area_error"].to_numpy(float), ev["area_ml"].to_numpy(float), ev["area_dft"].to_numpy(float))
    return out


def per_element(errors: pd.DataFrame, train_counts: pd.DataFrame | None = None) -> pd.DataFrame:
    """Energy and area MAE per element (a structure counts once for each distinct element).

    Args:
        train_counts: element, n_train_materials (the training materials containing each
            element, :func:`mlff2d.dataset_figures.training_element_counts`); adds the column
            ``n_train_materials`` (0 for an element no training material has).

    Returns:
        element, n (evaluated structures containing it), n_failed (not evaluated),
        energy_mae_meV (meV/atom), area_mae (Å²/atom), sorted by atomic number, and
        n_train_materials when ``train_counts`` is given. Elements seen only in failed
        structures have n = 0 and NaN MAEs.
    """
    frame = pd.DataFrame(
        {
            "element": errors["elements"].astype(str).str.split(),
            "evaluated": errors["evaluated"].astype(bool),
            "energy_abs": errors["energy_error_meV"].abs(),
            "area_abs": errors["area_error"].abs(),
        }
    ).explode("element")
    frame = frame[frame["element"].notna() & (frame["element"] != "")]
    ev = frame[frame["evaluated"]]
    grouped = ev.groupby("element")
    result = pd.DataFrame({"element": sorted(set(frame["element"]), key=lambda s: atomic_numbers[s])})
    result["n"] = result["element"].map(grouped.size()).fillna(0).astype(int)
    result["n_failed"] = result["element"].map(frame[~frame["evaluated"]].groupby("element").size()).fillna(0).astype(int)
    result["energy_mae_meV"] = result["element"].map(grouped["energy_abs"].mean()).astype(float)
    result["area_mae"] = result["element"].map(grouped["area_abs"].mean()).astype(float)
    if train_counts is not None:
        counts = train_counts.set_index("element")["n_train_materials"]
        result["n_train_materials"] = result["element"].map(counts).fillna(0).astype(int)
    return result


def spacegroup_errors(errors: pd.DataFrame, reference_file: str | Path) -> pd.DataFrame:
    """Energy and area MAE per space group of the DFT-relaxed reference (thesis fig. 6.6).

    Returns:
        spacegroup (number, <NA> when spglib fails), symbol, n (evaluated structures),
        n_failed, energy_mae_meV (meV/atom), area_mae (Å²/atom); largest energy MAE first.
    """
    from mlff2d.dataset_figures import atoms_spacegroup

    groups = {str(a.info["material_id"]): atoms_spacegroup(a) for a in ase.io.read(reference_file, index=":")}
    frame = errors[["material_id", "evaluated", "energy_error_meV", "area_error"]].copy()
    frame["spacegroup"] = pd.array([groups[m][0] for m in frame["material_id"]], dtype="Int64")
    frame["symbol"] = [groups[m][1] or "unknown" for m in frame["material_id"]]
    ev = frame[frame["evaluated"].astype(bool)]
    keys = ["spacegroup", "symbol"]
    out = frame.groupby(keys, dropna=False).size().rename("n_all").reset_index()
    stats = ev.groupby(keys, dropna=False).agg(n=("evaluated", "size"), energy_mae_meV=("energy_error_meV", lambda e: e.abs().mean()),
                                               area_mae=("area_error", lambda e: e.abs().mean())).reset_index()
    out = out.merge(stats, on=keys, how="left")
    out["n"] = out["n"].fillna(0).astype(int)
    out["n_failed"] = out["n_all"] - out["n"]
    out = out.drop(columns="n_all").sort_values(["energy_mae_meV", "spacegroup"], ascending=[False, True], na_position="last")
    return out[["spacegroup", "symbol", "n", "n_failed", "energy_mae_meV", "area_mae"]].reset_index(drop=True)


def write_evaluation(
    errors: pd.DataFrame,
    outdir: str | Path,
    title: str,
    reference_file: str | Path | None = None,
    train_counts: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """Write one relaxation run's evaluation into ``outdir``; returns the summary.

    Always: ``errors.csv``, ``per_element.csv``, ``summary.json``, ``parity`` and ``elements``
    (PNG + PDF). With ``reference_file`` (a model's run, not the baseline) also
    ``error_distributions`` (figs. 6.15-6.24), ``spacegroups.csv`` and ``spacegroup_mae``
    (fig. 6.6); with ``train_counts`` per_element.csv gets ``n_train_materials`` and
    ``element_frequency`` is drawn (thesis 4.2, class imbalance).
    """
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    errors.to_csv(outdir / "errors.csv", index=False, lineterminator="\n")
    summary = summarize(errors)
    (outdir / "summary.json").write_text(json.dumps(summary, indent=2, default=float) + "\n")
    elements = per_element(errors, train_counts)
    elements.to_csv(outdir / "per_element.csv", index=False, lineterminator="\n")
    parity_plot(errors, outdir / "parity", title)
    element_maps(elements, outdir / "elements", title)
    if reference_file is not None:
        error_distribution_plot(errors, outdir / "error_distributions", title)
        groups = spacegroup_errors(errors, reference_file)
        groups.to_csv(outdir / "spacegroups.csv", index=False, lineterminator="\n")
        spacegroup_plot(groups, outdir / "spacegroup_mae", title)
    if train_counts is not None:
        element_frequency_plot(elements, outdir / "element_frequency", title)
    return summary


# --------------------------------------------------------------------------------------------
# Composition baseline
# --------------------------------------------------------------------------------------------


def _last_frames(clean: str | Path, keep: set[str]) -> dict[str, tuple[int, np.ndarray, float]]:
    """(step, numbers, energy) of the last frame of each material in ``keep``."""
    last: dict[str, tuple[int, np.ndarray, float]] = {}
    for table in iter_tables(clean, columns=["material_id", "step", "numbers", "energy"]):
        frame = table.to_pandas()
        frame = frame[frame["material_id"].isin(keep)]
        for row in frame.itertuples(index=False):
            seen = last.get(row.material_id)
            if seen is None or row.step >= seen[0]:
                last[row.material_id] = (int(row.step), np.asarray(row.numbers, dtype=int), float(row.energy))
    return last


def _fractions(numbers: np.ndarray, elements: Sequence[str]) -> np.ndarray:
    index = {s: i for i, s in enumerate(elements)}
    x = np.zeros(len(elements))
    for z in numbers:
        x[index[chemical_symbols[int(z)]]] += 1.0
    return x / len(numbers)


def _read_split(split_csv: str | Path) -> pd.DataFrame:
    return pd.read_csv(split_csv, dtype={"material_id": str, "split": str}, keep_default_na=False)


def fit_element_energies(clean: str | Path, split_csv: str | Path) -> pd.Series:
    """Per-element energies (eV/atom, indexed by symbol in atomic-number order) fitted by least
    squares to the last-frame energies per atom of the ``train`` materials of the clean store.

    ``E/N = Σ_el x_el μ_el`` without intercept; a rank-deficient system gets NumPy's
    minimum-norm solution.
    """
    split = _read_split(split_csv)
    train = set(split.loc[split["split"] == "train", "material_id"])
    last = _last_frames(clean, train)
    if not last:
        raise ValueError(f"no training material of {split_csv} in {clean}")
    zs = sorted({int(z) for _, numbers, _ in last.values() for z in numbers})
    elements = [chemical_symbols[z] for z in zs]
    x = np.array([_fractions(numbers, elements) for _, numbers, _ in last.values()])
    y = np.array([energy / len(numbers) for _, numbers, energy in last.values()])
    mu, *_ = np.linalg.lstsq(x, y, rcond=None)
    return pd.Series(mu, index=pd.Index(elements, name="element"), name="energy_per_atom")


def baseline_errors(
    clean: str | Path, split_csv: str | Path, set_name: str, start_file: str | Path, reference_file: str | Path
) -> pd.DataFrame:
    """Errors of the composition baseline on one relaxation set, as :func:`relaxation_errors`.

    The baseline predicts ``Σ_el x_el μ_el`` (see :func:`fit_element_energies`) and does not
    move the atoms: its area is the area of the start structure. A material with an element
    absent from the training set is a failure ``"unseen_element: X"``.

    Raises:
        ValueError: a material of ``start_file`` whose split is not ``set_name``.
    """
    split = _read_split(split_csv)
    which = dict(zip(split["material_id"], split["split"]))
    mu = fit_element_energies(clean, split_csv)
    start = ase.io.read(start_file, index=":")
    wrong = [str(a.info["material_id"]) for a in start if which.get(str(a.info["material_id"])) != set_name]
    if wrong:
        raise ValueError(f"{start_file}: materials not in split {set_name!r}: {wrong[:20]}")
    rows = []
    for atoms in start:
        symbols = atoms.get_chemical_symbols()
        unseen = sorted(set(symbols) - set(mu.index), key=lambda s: atomic_numbers[s])
        ok = not unseen
        rows.append(
            {
                "material_id": str(atoms.info["material_id"]),
                "formula": atoms.get_chemical_formula(),
                "n_atoms": len(atoms),
                "converged": ok,
                "steps": 0,
                "energy_per_atom": float(np.mean(mu[symbols].to_numpy())) if ok else float("nan"),
                "area_per_atom": area_per_atom(atoms) if ok else float("nan"),
                "failure": "" if ok else "unseen_element: " + " ".join(unseen),
            }
        )
    return relaxation_errors(pd.DataFrame(rows), reference_file)


# --------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Tables (thesis Tables 4.1 and 4.2)
# --------------------------------------------------------------------------------------------


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
                values: dict[str, float] = {}
                for c in cutoffs:
                    r = lookup.get((s, m, c))
                    if r is None:
                        rec[c] = float("nan")
                        continue
                    v = float(getattr(r, column)) * factor
                    if r.status == "failed" or not math.isfinite(v):
                        rec[c] = DASH
                    else:
                        rec[c] = v
                        values[c] = round(v, TABLE_DECIMALS)
                best_set, second_set = rank_marks(values)
                best = [c for c in cutoffs if c in best_set]
                second = [c for c in cutoffs if c in second_set]
                if has_base:
                    rec["baseline"] = extra.get(f"baseline_{column}", float("nan")) * factor
                rec["best"], rec["second"] = " ".join(best), " ".join(second)
                records.append(rec)
    head = ["set", "model", *(["n"] if "n" in extras else []), "quantity", "unit"]
    tail = ["baseline"] if has_base else []
    columns = [*head, *cutoffs, *tail, "best", "second"]
    table = pd.DataFrame(records, columns=columns)
    for c in cutoffs:
        table[c] = table[c].astype(object)
    return table


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


_TEX_REPLACEMENTS = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    "Å": r"\AA{}", "²": r"$^2$", "³": r"$^3$", "×": r"$\times$", "–": "--", "⁻": "$^{-}$", "¹": "$^1$",
}


def tex_escape(text: str) -> str:
    """Plain text to LaTeX (special characters escaped, Å²× and the en dash as TeX)."""
    return "".join(_TEX_REPLACEMENTS.get(ch, ch) for ch in text)


def _display_set(name: str) -> str:
    return {"val": "Val", "test": "Test"}.get(name, name)


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


#: Cutoffs at or above this (eV/atom) select every step: the study's "no cutoff" (1e6).
NO_CUTOFF = 1e5


def cutoff_header(column: str) -> str:
    """The header of a cutoff column: ``e_cut 0.01`` (eV/atom), ``e_cut 1e6 (none)`` for the
    study's no-cutoff value; an alloy table's ``e_cut=<e>,<mode>`` reads ``e_cut <e> · <mode>``."""
    from mlff2d.labels import SEP, number

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
