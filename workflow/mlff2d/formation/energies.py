"""Formation energies of binary substitutional alloys (thesis 4.4).

An alloy A(1-x)B(x)X2 has ``N = n_A + n_B`` substitutional (metal) sites; its formation energy
relative to the pristine end members AX2 and BX2 of the same dataset is

    E_f = E - n_A e_A - n_B e_B                       (eV per cell)
    E_f / N                                           (eV per substitutional site)
    E_f / n_atoms                                     (eV per atom; = per site / 3 for MX2)

with ``e_A``, ``e_B`` the total energies per metal site of the end members (the end member of
a metal is the dataset structure containing no other metal; with several, the lowest energy
per site is taken, and its material id is recorded). Energies are the DFT energies of the
DFT-relaxed structures (``{set}_reference.extxyz`` of the dataset's relaxation sets).
``x = n_B / N`` is the fraction of the second metal of the alloy name (``MoWS2``: A = Mo,
B = W); for a name that does not spell two metals the metals are taken in atomic-number order.

Alternatively the formation energies come from a user table (:func:`read_formation_table`):
a material id column, a formation-energy column (eV per site, eV per atom or meV per atom)
and optionally an external cluster-expansion prediction (e.g. a CASM export) in the same unit,
shown as its own row in table 4.8.

The metal sites are every site whose element is not an anion of :data:`ANIONS`.

Output (:func:`write_formation_energies`): ``formation_energies.csv`` with one row per
material (:data:`COLUMNS`) and ``end_members.json`` (which structures the energies refer to).
This module needs only NumPy, pandas and ASE, so both environments can import it.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import ase.io
import numpy as np
import pandas as pd
from ase import Atoms
from ase.data import atomic_numbers

from mlff2d.config import schema_default
from mlff2d.relaxation.evaluation import structure_energy

log = logging.getLogger(__name__)

#: Elements that never sit on the substitutional (metal) sublattice.
ANIONS = ("O", "S", "Se", "Te")
#: The sets of an alloy dataset's relaxation sets, in order.
SETS = ("train", "val", "test")
#: Columns of formation_energies.csv.
COLUMNS = (
    "alloy",
    "material_id",
    "set",
    "formula",
    "n_atoms",
    "n_sites",
    "x",
    "energy_eV",
    "formation_energy_per_site_eV",
    "formation_energy_per_atom_eV",
    "external_ce_per_site_eV",
    "source",
)
#: Units a user table may give its energies in, and the factor to eV per atom / per site.
TABLE_UNITS = ("eV/site", "eV/atom", "meV/atom")


def metal_sites(atoms: Atoms) -> list[str]:
    """Chemical symbols of the substitutional sites of a structure."""
    return [s for s in atoms.get_chemical_symbols() if s not in ANIONS]


def alloy_metals(alloy: str, present: Sequence[str] = ()) -> tuple[str, str]:
    """The two metals (A, B) of an alloy: in the order of its name (``MoWS2`` -> Mo, W) when
    the name spells them, else the two metals ``present`` in atomic-number order."""
    symbols = [s for s in re.findall(r"[A-Z][a-z]?", alloy) if s in atomic_numbers and s not in ANIONS]
    present_set = set(present)
    if len(symbols) == 2 and (not present_set or present_set <= set(symbols)):
        return symbols[0], symbols[1]
    metals = sorted(present_set, key=lambda s: atomic_numbers[s])
    if len(metals) != 2:
        raise ValueError(f"alloy {alloy!r}: need exactly two metals, found {metals}")
    return metals[0], metals[1]


def read_sets(files: Mapping[str, str | Path]) -> list[tuple[str, Atoms]]:
    """(set, structure) for every structure of the given set files, in set then file order."""
    out = []
    for set_name, path in files.items():
        for atoms in ase.io.read(path, index=":"):
            out.append((set_name, atoms))
    return out


def end_members(structures: Sequence[Atoms], metals: tuple[str, str]) -> dict[str, dict[str, Any]]:
    """The pristine end member of each metal: material id and energy per metal site (eV).

    Raises:
        ValueError: a metal without a structure containing it alone.
    """
    found: dict[str, dict[str, Any]] = {}
    for atoms in structures:
        sites = metal_sites(atoms)
        kinds = set(sites)
        if len(kinds) != 1 or next(iter(kinds)) not in metals:
            continue
        metal = next(iter(kinds))
        e = structure_energy(atoms) / len(sites)
        if metal not in found or e < found[metal]["energy_per_site_eV"]:
            found[metal] = {"material_id": str(atoms.info["material_id"]), "energy_per_site_eV": e,
                            "formula": atoms.get_chemical_formula()}
    missing = [m for m in metals if m not in found]
    if missing:
        raise ValueError(f"no pristine end member of {missing} (a structure whose only metal it is) in the dataset")
    return {m: found[m] for m in metals}


def formation_energy(atoms: Atoms, refs: Mapping[str, float]) -> tuple[float, float, float]:
    """(E_f per cell, per site, per atom) in eV from per-site end-member energies ``refs``."""
    sites = metal_sites(atoms)
    if not sites:
        raise ValueError(f"structure {atoms.info.get('material_id')!r} has no metal site")
    unknown = sorted(set(sites) - set(refs))
    if unknown:
        raise ValueError(f"structure {atoms.info.get('material_id')!r} has metals {unknown} without an end member")
    cell = structure_energy(atoms) - sum(refs[s] for s in sites)
    return cell, cell / len(sites), cell / len(atoms)


def formation_frame(alloy: str, structures: Sequence[tuple[str, Atoms]]) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Formation energies of an alloy dataset's DFT-relaxed structures and the end members used."""
    atoms_list = [a for _, a in structures]
    present = sorted({s for a in atoms_list for s in metal_sites(a)})
    metals = alloy_metals(alloy, present)
    members = end_members(atoms_list, metals)
    refs = {m: v["energy_per_site_eV"] for m, v in members.items()}
    rows = []
    for set_name, atoms in structures:
        sites = metal_sites(atoms)
        _, per_site, per_atom = formation_energy(atoms, refs)
        rows.append({
            "alloy": alloy, "material_id": str(atoms.info["material_id"]), "set": set_name,
            "formula": atoms.get_chemical_formula(), "n_atoms": len(atoms), "n_sites": len(sites),
            "x": sites.count(metals[1]) / len(sites), "energy_eV": structure_energy(atoms),
            "formation_energy_per_site_eV": per_site, "formation_energy_per_atom_eV": per_atom,
            "external_ce_per_site_eV": float("nan"), "source": "dataset",
        })
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    _check_unique(frame)
    ids = set(frame["material_id"])
    info = {
        "alloy": alloy,
        "metals": list(metals),
        "source": "dataset: DFT-relaxed structures (relaxation sets), end members of the same dataset",
        "end_members": {m: {**v, "set": frame.loc[frame["material_id"] == v["material_id"], "set"].iloc[0]
                            if v["material_id"] in ids else ""} for m, v in members.items()},
    }
    return frame, info


def _check_unique(frame: pd.DataFrame) -> None:
    dup = frame["material_id"][frame["material_id"].duplicated()]
    if len(dup):
        raise ValueError(f"duplicate material ids: {sorted(set(dup))[:10]}")


def _per_site(values: pd.Series, unit: str, n_sites: pd.Series, n_atoms: pd.Series) -> pd.Series:
    values = values.astype(float)
    if unit == "eV/site":
        return values
    if unit == "eV/atom":
        return values * n_atoms / n_sites
    if unit == "meV/atom":
        return values / 1000.0 * n_atoms / n_sites
    raise ValueError(f"unknown unit {unit!r}; one of {TABLE_UNITS}")


def read_formation_table(
    alloy: str,
    table: str | Path,
    structures: Sequence[tuple[str, Atoms]],
    id_column: str = "material_id",
    energy_column: str = "formation_energy_per_site_eV",
    unit: str = "eV/site",
    external_ce_column: str | None = None,
    alloy_column: str | None = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Formation energies of an alloy's structures from a user table (CSV).

    Rows are matched to the dataset's structures by material id (``alloy_column``, when
    given, first keeps the rows of this alloy). Dataset materials without a row are left out
    (logged); table rows without a structure are ignored (logged).
    """
    raw = pd.read_csv(table, dtype={id_column: str}, keep_default_na=False, na_values=[""])
    for col in [id_column, energy_column, *( [external_ce_column] if external_ce_column else []),
                *([alloy_column] if alloy_column else [])]:
        if col not in raw.columns:
            raise ValueError(f"{table}: no column {col!r} (columns: {list(raw.columns)})")
    if alloy_column:
        raw = raw[raw[alloy_column].astype(str) == alloy]
    raw = raw.drop_duplicates(id_column, keep="last").set_index(id_column)
    atoms_list = [a for _, a in structures]
    present = sorted({s for a in atoms_list for s in metal_sites(a)})
    metals = alloy_metals(alloy, present)
    rows = []
    for set_name, atoms in structures:
        mid = str(atoms.info["material_id"])
        if mid not in raw.index:
            continue
        sites = metal_sites(atoms)
        rows.append({"alloy": alloy, "material_id": mid, "set": set_name, "formula": atoms.get_chemical_formula(),
                     "n_atoms": len(atoms), "n_sites": len(sites), "x": sites.count(metals[1]) / len(sites),
                     "energy_eV": float("nan")})
    frame = pd.DataFrame(rows)
    missing = sorted({str(a.info["material_id"]) for a in atoms_list} - set(frame.get("material_id", [])))
    extra = sorted(set(raw.index) - set(frame.get("material_id", [])))
    if missing:
        log.warning("%s: %d dataset materials have no formation energy in %s: %s", alloy, len(missing), table, missing[:10])
    if extra:
        log.warning("%s: %d rows of %s match no structure of the dataset: %s", alloy, len(extra), table, extra[:10])
    if frame.empty:
        raise ValueError(f"{table}: no row matches a material of alloy {alloy!r}")
    per_site = _per_site(frame["material_id"].map(raw[energy_column]), unit, frame["n_sites"], frame["n_atoms"])
    frame["formation_energy_per_site_eV"] = per_site
    frame["formation_energy_per_atom_eV"] = per_site * frame["n_sites"] / frame["n_atoms"]
    if external_ce_column:
        frame["external_ce_per_site_eV"] = _per_site(frame["material_id"].map(raw[external_ce_column]), unit,
                                                     frame["n_sites"], frame["n_atoms"])
    else:
        frame["external_ce_per_site_eV"] = float("nan")
    frame["source"] = f"table: {Path(table).name}"
    frame = frame[list(COLUMNS)]
    _check_unique(frame)
    info = {"alloy": alloy, "metals": list(metals), "source": f"table {table} (column {energy_column!r}, {unit})",
            "external_ce_column": external_ce_column, "end_members": {}}
    return frame, info


def write_formation_energies(
    alloy: str,
    relax_sets: str | Path,
    out_csv: str | Path,
    out_json: str | Path,
    table: Mapping[str, Any] | None = None,
    sets: Sequence[str] = SETS,
) -> pd.DataFrame:
    """``formation_energies.csv`` and ``end_members.json`` of one alloy.

    Args:
        relax_sets: the dataset's relaxation-set directory with ``{set}_reference.extxyz``.
        table: None for formation energies from the dataset; else keyword arguments of
            :func:`read_formation_table` (``table`` path, columns, unit).
    """
    files = {s: Path(relax_sets) / f"{s}_reference.extxyz" for s in sets}
    missing = [str(p) for p in files.values() if not p.exists()]
    if missing:
        raise FileNotFoundError(f"relaxation sets missing: {missing}")
    structures = read_sets(files)
    if table:
        frame, info = read_formation_table(alloy, structures=structures, **table)
    else:
        frame, info = formation_frame(alloy, structures)
    Path(out_csv).parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out_csv, index=False, lineterminator="\n")
    info["counts"] = {s: int((frame["set"] == s).sum()) for s in sets}
    Path(out_json).write_text(json.dumps(info, indent=2) + "\n")
    return frame


def read_formation_energies(path: str | Path) -> pd.DataFrame:
    """Read a formation_energies.csv (material ids as strings)."""
    return pd.read_csv(path, dtype={"material_id": str, "set": str, "alloy": str})


# -------------------------------------------------------------------------------------- baseline


def _rk_features(x: np.ndarray, order: int) -> np.ndarray:
    """Redlich-Kister terms x(1-x)(1-2x)^k, k = 0..order."""
    x = np.asarray(x, dtype=float)
    return np.stack([x * (1 - x) * (1 - 2 * x) ** k for k in range(order + 1)], axis=1)


def composition_baseline(frame: pd.DataFrame, order: int = schema_default("formation.baseline_order")) -> pd.DataFrame:
    """Formation energy per site from the alloy fraction alone: a Redlich-Kister polynomial
    ``x(1-x) Σ_k c_k (1-2x)^k`` (zero at both end members) fitted by least squares to the
    **training** rows only; predictions for every row (``predicted_per_site_eV``,
    ``predicted_per_atom_eV``)."""
    train = frame[frame["set"] == "train"]
    if train.empty:
        raise ValueError("no training rows for the composition baseline")
    coef, *_ = np.linalg.lstsq(_rk_features(train["x"].to_numpy(), order),
                               train["formation_energy_per_site_eV"].to_numpy(float), rcond=None)
    out = frame[["alloy", "material_id", "set", "n_atoms", "n_sites", "x",
                 "formation_energy_per_site_eV", "formation_energy_per_atom_eV"]].copy()
    out["predicted_per_site_eV"] = _rk_features(out["x"].to_numpy(), order) @ coef
    out["predicted_per_atom_eV"] = out["predicted_per_site_eV"] * out["n_sites"] / out["n_atoms"]
    return out


# -------------------------------------------------------------------------------------- metrics


def error_stats(predicted_per_atom_eV: Sequence[float], reference_per_atom_eV: Sequence[float]) -> dict[str, float]:
    """MAE and RMSE (meV/atom) and count over the finite pairs."""
    p = np.asarray(predicted_per_atom_eV, dtype=float)
    r = np.asarray(reference_per_atom_eV, dtype=float)
    ok = np.isfinite(p) & np.isfinite(r)
    err = (p[ok] - r[ok]) * 1000.0
    nan = float("nan")
    return {"n": int(ok.sum()), "mae": float(np.abs(err).mean()) if err.size else nan,
            "rmse": float(math.sqrt(np.mean(err**2))) if err.size else nan}
