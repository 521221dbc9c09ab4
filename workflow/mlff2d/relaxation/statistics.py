"""Statistics of one relaxation run's errors (thesis 4.1-4.2): MAE, median, RMSE and R² about
y = x, failure reasons, FIRE steps, per-element and per-space-group errors.

The errors table and which structures are *evaluated* are defined in :mod:`mlff2d.relaxation.evaluation`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import ase.io
import numpy as np
import pandas as pd
from ase.data import atomic_numbers

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
            element, :func:`mlff2d.data.figures.training_element_counts`); adds the column
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
    from mlff2d.data.figures import atoms_spacegroup

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
