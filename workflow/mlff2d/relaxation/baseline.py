"""The composition baseline of the relaxation errors (see :mod:`mlff2d.relaxation.evaluation`).

It predicts the energy per atom as ``Σ_el x_el μ_el`` (``x_el`` the atomic fraction) with
per-element energies ``μ_el`` fitted by least squares to the DFT-relaxed energies per atom of the
training materials, and leaves the structure as it started (area of the first DFT frame).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import ase.io
import numpy as np
import pandas as pd
from ase.data import atomic_numbers, chemical_symbols

from mlff2d.relaxation.checks import area_per_atom
from mlff2d.io.store import iter_tables

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
    """Errors of the composition baseline on one relaxation set, as :func:`mlff2d.relaxation.evaluation.relaxation_errors`.

    The baseline predicts ``Σ_el x_el μ_el`` (see :func:`fit_element_energies`) and does not
    move the atoms: its area is the area of the start structure. A material with an element
    absent from the training set is a failure ``"unseen_element: X"``.

    Raises:
        ValueError: a material of ``start_file`` whose split is not ``set_name``.
    """
    from mlff2d.relaxation.evaluation import relaxation_errors  # here: mlff2d.relaxation.evaluation re-exports this module

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
