"""Cluster expansion of alloy formation energies with icet, with an honest holdout (thesis 4.4).

The lattice is the MX2 monolayer: the primitive 1H or 1T cell with one metal site, the two
metals of the alloy on it and the anion (S, Se, Te) fixed. Which prototype an alloy has is read
from its DFT-relaxed end members (:func:`coordination_prototype`: trigonal-prismatic anion
coordination of the metal is 1H, octahedral is 1T; e.g. MoS2 is 1H, TiS2 1T), or taken from the
per-alloy setting ``prototypes`` (``formation.ce.prototypes``). Every DFT-relaxed structure is
mapped onto its ideal supercell (``icet.tools.map_structure_to_reference`` with the anion as
inert species; the slab is mapped with pbc ``[True, True, False]``, then given full pbc for the
cluster space, whose cell has enough vacuum that no cluster reaches the next layer). A
structure *fails to map* when the mapping raises or when its atoms lie far from the lattice
sites (icet's :data:`FAILED_MAPPING_WARNINGS`, e.g. a 1T structure on a 1H lattice): it gets no
prediction, and is counted per set (``n_unmapped`` in ``summary.json``, tables 4.9 and the
formation summary), never silently dropped.

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

from mlff2d.config import schema_defaults
from mlff2d.formation.energies import ANIONS, alloy_metals, end_members, error_stats, metal_sites, read_formation_energies

log = logging.getLogger(__name__)

#: Defaults of the ``formation.ce`` config block (the config schema's).
DEFAULTS: dict[str, Any] = schema_defaults("formation.ce")


#: The MX2 prototypes: 1H = trigonal-prismatic, 1T = octahedral anion coordination of the metal.
PROTOTYPES = ("1H", "1T")
#: icet mapping warnings that mean a structure's atoms are far from the lattice sites.
FAILED_MAPPING_WARNINGS = ("large_maximum_relaxation_distance", "large_average_relaxation_distance")
#: Below this stagger ratio (see :func:`coordination_prototype`) the coordination is 1H.
STAGGER_1H_MAX = 0.5


class MappingError(ValueError):
    """A structure that does not sit on the cluster-expansion lattice."""


# ------------------------------------------------------------------------------------- lattice


def stagger_ratio(atoms: Atoms) -> float:
    """How far the upper anion triangle of each metal is rotated against the lower one.

    For each metal site, its six nearest anions (in-plane periodic images included) are split into the three above
    and the three below the metal; the in-plane distance from each upper anion to the nearest
    lower one is divided by the mean in-plane metal-anion distance. The mean over the metals is
    ~0 for a trigonal prism (1H: the anions are stacked) and ~1 for an octahedron (1T: rotated
    by 60°).

    Raises:
        ValueError: a metal without three anions above and three below it.
    """
    symbols = atoms.get_chemical_symbols()
    anions = [i for i, s in enumerate(symbols) if s in ANIONS]
    metals = [i for i, s in enumerate(symbols) if s not in ANIONS]
    if not metals or not anions:
        raise ValueError(f"{atoms.info.get('material_id')!r} is not an MX2 layer ({atoms.get_chemical_formula()})")
    ratios = []
    for m in metals:
        vectors = _six_nearest(atoms, m, anions)
        upper, lower = vectors[vectors[:, 2] > 0], vectors[vectors[:, 2] <= 0]
        if len(upper) != 3 or len(lower) != 3:
            raise ValueError(f"{atoms.info.get('material_id')!r}: metal {m} has not three anions above and three below it")
        gaps = np.linalg.norm(upper[:, None, :2] - lower[None, :, :2], axis=2).min(axis=1)
        ratios.append(float(gaps.mean() / np.linalg.norm(vectors[:, :2], axis=1).mean()))
    return float(np.mean(ratios))


def _six_nearest(atoms: Atoms, metal: int, anions: Sequence[int]) -> np.ndarray:
    """Vectors (Å) from a metal to its six nearest anion images, in-plane images included."""
    images = [(i, j) for i in (-1, 0, 1) for j in (-1, 0, 1)]
    shifts = np.array([i * atoms.cell[0] + j * atoms.cell[1] for i, j in images])
    vectors = (atoms.positions[anions][None, :, :] + shifts[:, None, :] - atoms.positions[metal]).reshape(-1, 3)
    vectors[:, 2] -= float(atoms.cell[2, 2] or 1.0) * np.round(vectors[:, 2] / float(atoms.cell[2, 2] or 1.0))
    return vectors[np.argsort(np.linalg.norm(vectors, axis=1))[:6]]


def coordination_prototype(atoms: Atoms) -> str:
    """``"1H"`` (trigonal-prismatic) or ``"1T"`` (octahedral) from :func:`stagger_ratio`."""
    return "1H" if stagger_ratio(atoms) < STAGGER_1H_MAX else "1T"


def _prototype_or_none(atoms: Atoms) -> str | None:
    try:
        return coordination_prototype(atoms)
    except ValueError:
        return None


def alloy_prototype(structures: Sequence[Atoms], metals: tuple[str, str], fallback: Sequence[Atoms] = ()) -> tuple[str, str]:
    """The prototype of an alloy's lattice and how it was found.

    From the alloy's DFT-relaxed end members (:func:`mlff2d.formation.energies.end_members`) when both
    exist and agree; otherwise the majority over ``fallback`` (the training structures), with
    the reason in the returned text.
    """
    by_member: dict[str, str] = {}
    try:
        for metal, member in end_members(structures, metals).items():
            atoms = next(a for a in structures if str(a.info["material_id"]) == member["material_id"])
            by_member[metal] = coordination_prototype(atoms)
    except ValueError as exc:
        reason = f"no end members ({exc})"
    else:
        found = set(by_member.values())
        if len(found) == 1:
            return found.pop(), "end members " + ", ".join(f"{m}: {p}" for m, p in by_member.items())
        reason = "end members disagree (" + ", ".join(f"{m}: {p}" for m, p in by_member.items()) + ")"
    votes = [_prototype_or_none(a) for a in fallback]
    votes = [v for v in votes if v is not None]
    if not votes:
        raise ValueError(f"cannot tell the MX2 prototype: {reason}, and no training structures; set formation.ce.prototypes")
    chosen = max(PROTOTYPES, key=votes.count)
    return chosen, f"{reason}: majority of {len(votes)} training structures ({votes.count(chosen)} {chosen})"


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
    """The ideal supercell of ``primitive`` occupied as ``atoms`` (full pbc).

    Raises:
        MappingError: the atoms lie far from the sites (:data:`FAILED_MAPPING_WARNINGS`).
        ValueError: icet finds no mapping at all.
    """
    anions = sorted({s for s in primitive.get_chemical_symbols() if s in ANIONS})
    slab = atoms.copy()
    slab.calc = None
    slab.pbc = [True, True, False]
    mapped, info = map_structure_to_reference(slab, primitive, inert_species=anions, suppress_warnings=True)
    far = [w for w in info.warnings if w in FAILED_MAPPING_WARNINGS]
    if far:
        raise MappingError(f"atoms far from the lattice sites (drmax {info.drmax:.2f} Å, dravg {info.dravg:.2f} Å): {', '.join(far)}")
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
    fit_method: str,
    cv_folds: int,
    seed: int,
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
    structures = _relaxed_structures(relax_sets, sets)
    table = table[table["material_id"].isin(structures)].reset_index(drop=True)
    metals, prim, prototype, prototype_source = _ideal_lattice(alloy, table, structures, s)
    mapped, failures = _mapped_structures(table["material_id"], structures, prim)
    train = table[(table["set"] == "train") & table["material_id"].isin(mapped)]
    if len(train) < 2:
        n = int((table["set"] == "train").sum())
        raise ValueError(f"{alloy}: {len(train)} of {n} training structures map onto the {prototype} lattice "
                         f"({prototype_source}); set formation.ce.prototypes if that is the wrong one")
    ce, cv = select_and_fit(prim, metals, [mapped[m] for m in train["material_id"]],
                            train["formation_energy_per_site_eV"].to_numpy(float), s["cutoff_candidates"],
                            s["fit_method"], s["cv_folds"], s["seed"])
    pred = _predictions(table, ce, mapped, failures)
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
        "prototype": prototype,
        "prototype_source": prototype_source,
        "lattice_parameter": float(prim.cell[0, 0]),
        "train_ids": train["material_id"].tolist(),
        "mapping_failures": failures,
        "n_unmapped": {k: int(((pred["set"] == k) & (pred["failure"] != "")).sum()) for k in sets},
        "sets": {},
    }
    for set_name in sets:
        rows = pred[pred["set"] == set_name]
        summary["sets"][set_name] = error_stats(rows["predicted_per_atom_eV"], rows["formation_energy_per_atom_eV"])
    (outdir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _relaxed_structures(relax_sets: str | Path, sets: Sequence[str]) -> dict[str, Atoms]:
    """The DFT-relaxed structures of every set (``{set}_reference.extxyz``) by material id."""
    structures: dict[str, Atoms] = {}
    for set_name in sets:
        for atoms in ase.io.read(Path(relax_sets) / f"{set_name}_reference.extxyz", index=":"):
            structures[str(atoms.info["material_id"])] = atoms
    return structures


def _ideal_lattice(
    alloy: str, table: pd.DataFrame, structures: Mapping[str, Atoms], s: Mapping[str, Any]
) -> tuple[tuple[str, str], Atoms, str, str]:
    """(metals, primitive structure, prototype, where the prototype came from) of the alloy's
    ideal lattice, from the training structures only: nothing of val/test shapes the expansion."""
    present = sorted({m for a in structures.values() for m in metal_sites(a)})
    metals = alloy_metals(alloy, present)
    anions = sorted({x for a in structures.values() for x in a.get_chemical_symbols() if x in ANIONS})
    if len(anions) != 1:
        raise ValueError(f"{alloy}: the MX2 lattice needs one anion species, found {anions}")
    used = [structures[m] for m in table.loc[table["set"] == "train", "material_id"]]
    if alloy in s["prototypes"]:
        prototype, prototype_source = s["prototypes"][alloy], "config formation.ce.prototypes"
    else:
        prototype, prototype_source = alloy_prototype(list(structures.values()), metals, used)
    log.info("%s: %s lattice (%s)", alloy, prototype, prototype_source)
    prim = primitive_structure(metals[0], anions[0], lattice_parameter(used), layer_thickness(used), prototype, s["vacuum"])
    return metals, prim, prototype, prototype_source


def _mapped_structures(
    material_ids: Sequence[str], structures: Mapping[str, Atoms], prim: Atoms
) -> tuple[dict[str, Atoms], dict[str, str]]:
    """Each structure mapped onto the ideal lattice, and the reason for each that does not map."""
    mapped: dict[str, Atoms] = {}
    failures: dict[str, str] = {}
    for mid in material_ids:
        try:
            mapped[mid] = map_to_lattice(structures[mid], prim)
        except Exception as exc:  # a structure that does not map is reported, not fatal
            failures[mid] = f"mapping_failed: {type(exc).__name__}: {exc}"[:300]
            log.warning("%s: %s", mid, failures[mid])
    return mapped, failures


def _predictions(table: pd.DataFrame, ce: Any, mapped: Mapping[str, Atoms], failures: Mapping[str, str]) -> pd.DataFrame:
    """``predictions.csv``: the formation energies with the expansion's prediction per site and
    per atom (NaN for a structure that does not map) and the mapping failure."""
    pred = table[["alloy", "material_id", "set", "x", "n_sites", "n_atoms", "formation_energy_per_site_eV",
                  "formation_energy_per_atom_eV"]].copy()
    pred["predicted_per_site_eV"] = [float(ce.predict(mapped[m])) if m in mapped else float("nan") for m in pred["material_id"]]
    pred["predicted_per_atom_eV"] = pred["predicted_per_site_eV"] * pred["n_sites"] / pred["n_atoms"]
    pred["failure"] = [failures.get(m, "") for m in pred["material_id"]]
    return pred
