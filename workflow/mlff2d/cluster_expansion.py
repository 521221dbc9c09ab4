"""Cluster expansion of alloy formation energies with icet, with an honest holdout (thesis 4.4).

The lattice is the MX2 monolayer: the primitive 1H (or 1T) cell with one metal site, the two
metals of the alloy on it and the anion (S, Se, Te) fixed. Every DFT-relaxed structure is
mapped onto its ideal supercell (``icet.tools.map_structure_to_reference`` with the anion as
inert species; the slab is mapped with pbc ``[True, True, False]``, then given full pbc for the
cluster space, whose cell has enough vacuum that no cluster reaches the next layer).

The expansion is of the formation energy **per metal site** (icet's cluster vectors are per
primitive cell, one metal site). The cutoffs are chosen from ``cutoff_candidates`` by k-fold
cross-validation (trainstation) on the **training split only**; the expansion with the chosen
cutoffs is then fitted on the training split only and predicts every structure. The
validation and test structures never reach the cutoff choice or the fit:
:func:`select_and_fit` receives nothing but the training structures and their energies.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import ase.io
import numpy as np
import pandas as pd
from ase import Atoms
from ase.build import mx2

from mlff2d.formation import ANIONS, alloy_metals, error_stats, metal_sites, read_formation_energies

log = logging.getLogger(__name__)

#: Defaults of the ``formation.ce`` config block.
DEFAULTS: dict[str, Any] = {
    "cutoff_candidates": [[5.0], [7.0], [7.0, 5.0], [9.0, 6.5]],
    "fit_method": "ardr",
    "cv_folds": 5,
    "prototype": "1H",
    "vacuum": 20.0,
    "seed": 42,
}


# ------------------------------------------------------------------------------------- lattice


def lattice_parameter(structures: Sequence[Atoms]) -> float:
    """Mean triangular lattice constant of the metal sublattice, from the in-plane area per
    metal site (area = √3/2 a² per site)."""
    values = []
    for atoms in structures:
        n = len(metal_sites(atoms))
        area = float(np.linalg.norm(np.cross(atoms.cell[0], atoms.cell[1])))
        values.append(math.sqrt(2.0 * area / (math.sqrt(3.0) * n)))
    return float(np.mean(values))


def layer_thickness(structures: Sequence[Atoms]) -> float:
    """Median anion-anion height of the layers (Å), with periodic images along c folded."""
    values = []
    for atoms in structures:
        symbols = atoms.get_chemical_symbols()
        z = atoms.positions[:, 2]
        metal_z = [z[i] for i, s in enumerate(symbols) if s not in ANIONS]
        anion_z = np.array([z[i] for i, s in enumerate(symbols) if s in ANIONS])
        if not metal_z or not anion_z.size:
            continue
        c = float(atoms.cell[2, 2]) or 1.0
        dz = anion_z - metal_z[0]
        dz -= c * np.round(dz / c)
        values.append(float(dz.max() - dz.min()))
    return float(np.median(values)) if values else 3.1


def primitive_structure(metal: str, anion: str, a: float, thickness: float, prototype: str = "1H", vacuum: float = 20.0) -> Atoms:
    """The primitive MX2 cell (one metal site), pbc ``[True, True, False]``, ``vacuum`` Å of
    vacuum on each side."""
    kind = {"1H": "2H", "1T": "1T"}[prototype]
    prim = mx2(formula=f"{metal}{anion}2", kind=kind, a=a, thickness=thickness, vacuum=vacuum)
    prim.pbc = [True, True, False]
    return prim


def map_to_lattice(atoms: Atoms, primitive: Atoms) -> Atoms:
    """The ideal supercell of ``primitive`` occupied as ``atoms`` (full pbc)."""
    anions = sorted({s for s in primitive.get_chemical_symbols() if s in ANIONS})
    slab = atoms.copy()
    slab.calc = None
    slab.pbc = [True, True, False]
    mapped, _ = map_structure_to_reference(slab, primitive, inert_species=anions, suppress_warnings=True)
    ideal = Atoms(mapped.get_chemical_symbols(), positions=mapped.positions, cell=mapped.cell, pbc=True)
    return ideal


def map_structure_to_reference(*args: Any, **kwargs: Any) -> Any:
    from icet.tools import map_structure_to_reference as _map

    return _map(*args, **kwargs)


def cluster_space(primitive: Atoms, cutoffs: Sequence[float], metals: Sequence[str]) -> Any:
    """icet ClusterSpace on the primitive cell (full pbc) with ``metals`` on the metal site."""
    from icet import ClusterSpace

    prim = primitive.copy()
    prim.pbc = True
    species = [list(metals) if s not in ANIONS else [s] for s in prim.get_chemical_symbols()]
    return ClusterSpace(prim, list(cutoffs), species)


# --------------------------------------------------------------------------------------- fit


def _design(space: Any, structures: Sequence[Atoms]) -> np.ndarray:
    return np.array([space.get_cluster_vector(s) for s in structures])


def select_and_fit(
    primitive: Atoms,
    metals: Sequence[str],
    train_structures: Sequence[Atoms],
    train_energies: Sequence[float],
    cutoff_candidates: Sequence[Sequence[float]],
    fit_method: str = "ardr",
    cv_folds: int = 5,
    seed: int = 42,
) -> tuple[Any, pd.DataFrame]:
    """Choose the cutoffs by k-fold CV and fit the expansion, on training data only.

    Args:
        train_structures: ideal (mapped) training structures, full pbc.
        train_energies: their formation energies per metal site (eV).

    Returns:
        The fitted ``icet.ClusterExpansion`` (metadata: cutoffs, CV RMSE) and the CV table
        (one row per candidate: cutoffs, n_parameters, rmse_validation_meV_per_site,
        rmse_train_meV_per_site, chosen).
    """
    from icet import ClusterExpansion
    from trainstation import CrossValidationEstimator

    y = np.asarray(train_energies, dtype=float)
    if len(y) < 2:
        raise ValueError(f"need at least 2 training structures for a cluster expansion, got {len(y)}")
    folds = max(2, min(int(cv_folds), len(y)))
    rows = []
    for cutoffs in cutoff_candidates:
        space = cluster_space(primitive, cutoffs, metals)
        A = _design(space, train_structures)
        cve = CrossValidationEstimator((A, y), fit_method=fit_method, n_splits=folds, seed=seed, check_condition=False)
        cve.validate()
        rows.append({"cutoffs": " ".join(f"{c:g}" for c in cutoffs), "n_parameters": A.shape[1],
                     "rmse_validation_meV_per_site": float(cve.rmse_validation) * 1000.0,
                     "rmse_train_meV_per_site": float(cve.rmse_train) * 1000.0})
    cv = pd.DataFrame(rows)
    finite = cv["rmse_validation_meV_per_site"].where(np.isfinite(cv["rmse_validation_meV_per_site"]))
    if finite.isna().all():
        raise ValueError("cross-validation gave no finite error for any cutoff candidate")
    best = int(finite.idxmin())
    cv["chosen"] = cv.index == best
    cutoffs = list(cutoff_candidates[best])
    space = cluster_space(primitive, cutoffs, metals)
    A = _design(space, train_structures)
    cve = CrossValidationEstimator((A, y), fit_method=fit_method, n_splits=folds, seed=seed, check_condition=False)
    cve.train()
    ce = ClusterExpansion(space, cve.parameters, metadata={"cutoffs": cutoffs, "fit_method": fit_method,
                                                             "cv_rmse_meV_per_site": float(cv.loc[best, "rmse_validation_meV_per_site"]),
                                                             "n_train": int(len(y))})
    return ce, cv


# ------------------------------------------------------------------------------------- driver


def run_cluster_expansion(
    formation_csv: str | Path,
    relax_sets: str | Path,
    outdir: str | Path,
    settings: Mapping[str, Any] | None = None,
    sets: Sequence[str] = ("train", "val", "test"),
) -> dict[str, Any]:
    """Fit the cluster expansion of one alloy on its training split and predict every set.

    Reads the formation energies (``formation_energies.csv``) and the DFT-relaxed structures
    (``{relax_sets}/{set}_reference.extxyz``). Writes to ``outdir``: ``predictions.csv``
    (material_id, set, x, n_sites, n_atoms, reference and predicted formation energy per site
    and per atom in eV, mapping failure), ``cv.csv`` (the cutoff choice), ``eci.csv``, the
    expansion (``cluster_expansion.ce``) and ``summary.json`` (chosen cutoffs, MAE and RMSE in
    meV/atom per set). Returns the summary.
    """
    s = {**DEFAULTS, **(settings or {})}
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    table = read_formation_energies(formation_csv)
    alloy = str(table["alloy"].iloc[0])
    structures: dict[str, Atoms] = {}
    for set_name in sets:
        for atoms in ase.io.read(Path(relax_sets) / f"{set_name}_reference.extxyz", index=":"):
            structures[str(atoms.info["material_id"])] = atoms
    table = table[table["material_id"].isin(structures)].reset_index(drop=True)
    present = sorted({m for a in structures.values() for m in metal_sites(a)})
    metals = alloy_metals(alloy, present)
    anions = sorted({x for a in structures.values() for x in a.get_chemical_symbols() if x in ANIONS})
    if len(anions) != 1:
        raise ValueError(f"{alloy}: the MX2 lattice needs one anion species, found {anions}")
    # the ideal lattice from the training structures only: nothing of val/test shapes the expansion
    used = [structures[m] for m in table.loc[table["set"] == "train", "material_id"]]
    prim = primitive_structure(metals[0], anions[0], lattice_parameter(used), layer_thickness(used), s["prototype"], s["vacuum"])

    mapped: dict[str, Atoms] = {}
    failures: dict[str, str] = {}
    for mid in table["material_id"]:
        try:
            mapped[mid] = map_to_lattice(structures[mid], prim)
        except Exception as exc:  # a structure that does not map is reported, not fatal
            failures[mid] = f"mapping_failed: {type(exc).__name__}: {exc}"[:300]
            log.warning("%s: %s", mid, failures[mid])

    train = table[(table["set"] == "train") & table["material_id"].isin(mapped)]
    ce, cv = select_and_fit(prim, metals, [mapped[m] for m in train["material_id"]],
                            train["formation_energy_per_site_eV"].to_numpy(float), s["cutoff_candidates"],
                            s["fit_method"], s["cv_folds"], s["seed"])
    pred = table[["alloy", "material_id", "set", "x", "n_sites", "n_atoms", "formation_energy_per_site_eV",
                  "formation_energy_per_atom_eV"]].copy()
    pred["predicted_per_site_eV"] = [float(ce.predict(mapped[m])) if m in mapped else float("nan") for m in pred["material_id"]]
    pred["predicted_per_atom_eV"] = pred["predicted_per_site_eV"] * pred["n_sites"] / pred["n_atoms"]
    pred["failure"] = [failures.get(m, "") for m in pred["material_id"]]
    pred.to_csv(outdir / "predictions.csv", index=False, lineterminator="\n")
    cv.to_csv(outdir / "cv.csv", index=False, lineterminator="\n")
    ce.to_dataframe().to_csv(outdir / "eci.csv", index=False, lineterminator="\n")
    ce.write(str(outdir / "cluster_expansion.ce"))
    summary: dict[str, Any] = {
        "alloy": alloy,
        "metals": list(metals),
        "cutoffs": ce.metadata["cutoffs"],
        "fit_method": s["fit_method"],
        "cv_folds": s["cv_folds"],
        "cv_rmse_meV_per_site": ce.metadata["cv_rmse_meV_per_site"],
        "n_parameters": int(len(ce.parameters)),
        "lattice_parameter": float(prim.cell[0, 0]),
        "train_ids": train["material_id"].tolist(),
        "mapping_failures": failures,
        "sets": {},
    }
    for set_name in sets:
        rows = pred[pred["set"] == set_name]
        summary["sets"][set_name] = error_stats(rows["predicted_per_atom_eV"], rows["formation_energy_per_atom_eV"])
    (outdir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
