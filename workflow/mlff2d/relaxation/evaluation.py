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

The pieces live in their own modules, re-exported here where callers use ``mlff2d.relaxation.evaluation``:
statistics in :mod:`mlff2d.relaxation.statistics`, figures in :mod:`mlff2d.relaxation.figures`, the
composition baseline in :mod:`mlff2d.relaxation.baseline`, the relaxation tables in
:mod:`mlff2d.relaxation.table_format` and the table/HTML writers in :mod:`mlff2d.io.table_files`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ase.io
import numpy as np
import pandas as pd
from ase import Atoms
from ase.data import chemical_symbols

from mlff2d.relaxation.figures import (
    element_frequency_plot,
    element_maps,
    error_distribution_plot,
    parity_plot,
    spacegroup_plot,
)
from mlff2d.relaxation.statistics import per_element, spacegroup_errors, summarize
from mlff2d.relaxation.checks import area_per_atom  # one definition (thesis eq. 4.2) for ML and DFT structures

# Re-exported for callers that import them from here (cli, report, alloy_report).
from mlff2d.relaxation.baseline import baseline_errors  # noqa: E402,F401
from mlff2d.relaxation.figures import compare_element_maps  # noqa: E402,F401
from mlff2d.relaxation.table_format import relaxation_table, write_table  # noqa: E402,F401
from mlff2d.io.table_files import DASH, write_frame_html  # noqa: E402,F401

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
