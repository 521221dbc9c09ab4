"""The icet cluster expansion on the MX2 lattice: mapping relaxed slabs, cutoffs by CV on the
training split, and the proof that no validation or test structure reaches the fit."""

from __future__ import annotations

import json
from pathlib import Path

import ase.io
import numpy as np
import pandas as pd
import pytest
from ase import Atoms
from ase.build import make_supercell, mx2
from ase.calculators.singlepoint import SinglePointCalculator
from formation_helpers import demo_formation

import mlff2d.formation.cluster_expansion as ce_module
from mlff2d.formation.cluster_expansion import (
    coordination_prototype,
    lattice_parameter,
    layer_thickness,
    map_to_lattice,
    primitive_structure,
    run_cluster_expansion,
    stagger_ratio,
)
from mlff2d.formation.energies import metal_sites

SETTINGS = {"cutoff_candidates": [[5.0], [7.0, 5.0]], "fit_method": "ardr", "cv_folds": 4}


@pytest.fixture(scope="module")
def mows2(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return demo_formation(tmp_path_factory.mktemp("mows2"))


def test_relaxed_slabs_map_onto_the_ideal_lattice(mows2: tuple[Path, Path]) -> None:
    relax, _ = mows2
    structures = ase.io.read(relax / "train_reference.extxyz", index=":")
    a = lattice_parameter(structures)
    assert 3.1 < a < 3.3
    assert 2.9 < layer_thickness(structures) < 3.4
    prim = primitive_structure("Mo", "S", a, layer_thickness(structures))
    for atoms in structures:
        ideal = map_to_lattice(atoms, prim)
        assert ideal.pbc.all()
        assert sorted(metal_sites(ideal)) == sorted(metal_sites(atoms))
        assert len(ideal) == len(atoms)


def test_tiny_cluster_expansion_fits_and_predicts(tmp_path: Path, mows2: tuple[Path, Path]) -> None:
    relax, fe = mows2
    summary = run_cluster_expansion(fe, relax, tmp_path / "ce", SETTINGS)
    cv = pd.read_csv(tmp_path / "ce" / "cv.csv")
    assert len(cv) == 2 and cv["chosen"].sum() == 1
    chosen = cv.loc[cv["chosen"], "cutoffs"].iloc[0]
    assert chosen == " ".join(f"{c:g}" for c in summary["cutoffs"])
    assert cv.loc[cv["chosen"], "rmse_validation_meV_per_site"].iloc[0] == cv["rmse_validation_meV_per_site"].min()
    pred = pd.read_csv(tmp_path / "ce" / "predictions.csv")
    assert set(pred["set"]) == {"train", "val", "test"} and pred["predicted_per_atom_eV"].notna().all()
    assert np.allclose(pred["predicted_per_atom_eV"], pred["predicted_per_site_eV"] / 3)
    # formation energies span ~3 meV/atom; the expansion does much better than that
    for s in ("train", "val", "test"):
        assert summary["sets"][s]["n"] > 0 and summary["sets"][s]["mae"] < 0.5
    assert (tmp_path / "ce" / "cluster_expansion.ce").exists()
    written = json.loads((tmp_path / "ce" / "summary.json").read_text())
    assert written["mapping_failures"] == {} and written["n_unmapped"] == {"train": 0, "val": 0, "test": 0}
    assert written["prototype"] == "1H" and written["prototype_source"].startswith("end members")  # MoS2, WS2


def test_the_fit_never_sees_validation_or_test_structures(tmp_path: Path, mows2: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    relax, fe = mows2
    table = pd.read_csv(fe, dtype={"material_id": str})
    train_ids = set(table.loc[table["set"] == "train", "material_id"])
    held_out = table[table["set"] != "train"]
    assert len(held_out) >= 2

    # 1. the fit function receives the training structures and energies only
    seen: dict[str, object] = {}
    real = ce_module.select_and_fit

    def spy(primitive, metals, structures, energies, *args, **kwargs):  # type: ignore[no-untyped-def]
        seen["n"] = len(structures)
        seen["energies"] = np.asarray(energies, float)
        return real(primitive, metals, structures, energies, *args, **kwargs)

    monkeypatch.setattr(ce_module, "select_and_fit", spy)
    base = run_cluster_expansion(fe, relax, tmp_path / "a", SETTINGS)
    assert set(base["train_ids"]) == train_ids and seen["n"] == len(train_ids)
    train_energies = table.set_index("material_id").loc[base["train_ids"], "formation_energy_per_site_eV"].to_numpy(float)
    assert np.allclose(seen["energies"], train_energies)

    # 2. changing every val/test energy changes neither the cutoff choice nor the ECIs
    changed = table.copy()
    rng = np.random.default_rng(0)
    mask = changed["set"] != "train"
    changed.loc[mask, "formation_energy_per_site_eV"] += rng.normal(0.0, 0.05, mask.sum())
    changed.loc[mask, "formation_energy_per_atom_eV"] = changed.loc[mask, "formation_energy_per_site_eV"] / 3
    changed.to_csv(tmp_path / "changed.csv", index=False)
    other = run_cluster_expansion(tmp_path / "changed.csv", relax, tmp_path / "b", SETTINGS)
    assert other["cutoffs"] == base["cutoffs"] and other["cv_rmse_meV_per_site"] == base["cv_rmse_meV_per_site"]
    eci_a = pd.read_csv(tmp_path / "a" / "eci.csv")["eci"].to_numpy(float)
    eci_b = pd.read_csv(tmp_path / "b" / "eci.csv")["eci"].to_numpy(float)
    assert np.array_equal(eci_a, eci_b)
    pa = pd.read_csv(tmp_path / "a" / "predictions.csv")["predicted_per_site_eV"].to_numpy(float)
    pb = pd.read_csv(tmp_path / "b" / "predictions.csv")["predicted_per_site_eV"].to_numpy(float)
    assert np.array_equal(pa, pb)
    # ... while the held-out errors do change: they are measured against the held-out energies
    assert other["sets"]["test"]["mae"] != pytest.approx(base["sets"]["test"]["mae"])

    # 3. changing one training energy does change the fit
    changed = table.copy()
    first = changed.index[changed["set"] == "train"][3]
    changed.loc[first, "formation_energy_per_site_eV"] += 0.01
    changed.to_csv(tmp_path / "train_changed.csv", index=False)
    run_cluster_expansion(tmp_path / "train_changed.csv", relax, tmp_path / "c", SETTINGS)
    eci_c = pd.read_csv(tmp_path / "c" / "eci.csv")["eci"].to_numpy(float)
    assert not np.array_equal(eci_a, eci_c)


# --------------------------------------------------------- the lattice of each alloy (1H or 1T)

#: Energies per metal site of the end members (eV) and the nearest-neighbour unlike-pair energy.
E_SITE = {"Ti": -20.0, "Zr": -22.0, "Mo": -21.0, "W": -24.0}
J_UNLIKE_EV = 0.03


def nn_unlike_pairs(atoms: Atoms, a: float) -> int:
    """Nearest-neighbour metal pairs of unlike species (each pair once)."""
    from ase.neighborlist import neighbor_list

    metals = [i for i, s in enumerate(atoms.get_chemical_symbols()) if s not in ("S",)]
    sub = atoms[metals]
    sub.pbc = [True, True, False]
    i, j = neighbor_list("ij", sub, 1.1 * a)
    symbols = np.array(sub.get_chemical_symbols())
    return int((symbols[i] != symbols[j]).sum() // 2)


def enumerated_alloy(root: Path, metals: tuple[str, str], kind: str, extra: list[Atoms] = ()) -> tuple[Path, Path]:
    """An MX2 alloy enumerated by icet (1-6 metal sites) on a ``kind`` ("2H" = 1H, "1T")
    primitive cell, labelled with analytic energies (end members plus a nearest-neighbour pair
    term), cells scaled by Vegard's law and rattled like relaxed slabs; every fifth structure
    val, the next test. Writes the relaxation sets and formation energies: (relax dir, CSV)."""
    from icet.tools import enumerate_structures

    from mlff2d.formation.energies import write_formation_energies

    a0 = 3.4
    prim = mx2(f"{metals[0]}S2", kind=kind, a=a0, thickness=2.9, vacuum=10.0)
    prim.pbc = [True, True, False]
    sets: dict[str, list[Atoms]] = {"train": [], "val": [], "test": []}
    rng = np.random.default_rng(0)
    for k, atoms in enumerate(enumerate_structures(prim, range(1, 7), [list(metals), ["S"], ["S"]])):
        symbols = atoms.get_chemical_symbols()
        x = symbols.count(metals[1]) / (symbols.count(metals[0]) + symbols.count(metals[1]))
        energy = sum(E_SITE.get(s, 0.0) for s in symbols) + J_UNLIKE_EV * nn_unlike_pairs(atoms, a0)
        atoms.set_cell(atoms.cell.array @ np.diag([1 + 0.04 * x, 1 + 0.04 * x, 1.0]), scale_atoms=True)
        atoms.positions += rng.normal(0.0, 0.02, atoms.positions.shape)
        atoms.pbc = True
        atoms.info["material_id"] = f"{''.join(metals)}-{k:03d}"
        atoms.calc = SinglePointCalculator(atoms, energy=energy)
        pristine = x in (0.0, 1.0)
        sets["train" if pristine or k % 5 > 1 else ("val" if k % 5 == 0 else "test")].append(atoms)
    sets["train"] += list(extra)
    relax = root / "relax"
    relax.mkdir(parents=True)
    for name, images in sets.items():
        ase.io.write(relax / f"{name}_reference.extxyz", images)
    alloy = f"{metals[0]}{metals[1]}S2"
    write_formation_energies(alloy, relax, root / "formation_energies.csv", root / "end_members.json")
    return relax, root / "formation_energies.csv"


CE_1T = {"cutoff_candidates": [[4.0], [6.0]], "fit_method": "least-squares", "cv_folds": 3}


@pytest.mark.parametrize(("metals", "kind", "prototype"), [(("Ti", "Zr"), "1T", "1T"), (("Mo", "W"), "2H", "1H")])
def test_an_enumerated_alloy_maps_onto_its_own_lattice_and_fits(tmp_path: Path, metals: tuple[str, str], kind: str, prototype: str) -> None:
    relax, fe = enumerated_alloy(tmp_path, metals, kind)
    summary = run_cluster_expansion(fe, relax, tmp_path / "ce", CE_1T)
    assert summary["prototype"] == prototype and summary["prototype_source"].startswith("end members")
    assert summary["n_unmapped"] == {"train": 0, "val": 0, "test": 0} and summary["mapping_failures"] == {}
    # the energies are a nearest-neighbour pair model: the expansion reproduces them
    for s in ("train", "val", "test"):
        assert summary["sets"][s]["n"] > 0 and summary["sets"][s]["mae"] < 0.05, (s, summary["sets"][s])
    table = pd.read_csv(fe)
    assert table["formation_energy_per_atom_eV"].abs().max() > 0.004  # a real signal, > 4 meV/atom


def test_the_wrong_lattice_maps_nothing(tmp_path: Path) -> None:
    relax, fe = enumerated_alloy(tmp_path, ("Ti", "Zr"), "1T")
    with pytest.raises(ValueError, match=r"0 of \d+ training structures map onto the 1H lattice \(config"):
        run_cluster_expansion(fe, relax, tmp_path / "ce", {**CE_1T, "prototypes": {"TiZrS2": "1H"}})


def test_prototype_from_the_coordination() -> None:
    assert coordination_prototype(mx2("TiS2", kind="1T", a=3.4, thickness=2.9, vacuum=10.0)) == "1T"
    assert coordination_prototype(mx2("MoS2", kind="2H", a=3.19, thickness=3.1, vacuum=10.0)) == "1H"
    assert stagger_ratio(mx2("TiS2", kind="1T", a=3.4, thickness=2.9, vacuum=10.0)) == pytest.approx(1.0)


def test_a_structure_that_does_not_map_is_counted(tmp_path: Path) -> None:
    """A 1H cell among 1T training structures: no prediction, counted in the summary, the
    predictions and table 4.9 of the formation report."""
    from mlff2d.formation.report import write_report

    odd = make_supercell(mx2("TiS2", kind="2H", a=3.4, thickness=2.9, vacuum=10.0), np.diag([2, 1, 1]))
    odd.set_chemical_symbols(["Ti", "S", "S", "Zr", "S", "S"])
    odd.info["material_id"] = "TiZr-1H"
    odd.calc = SinglePointCalculator(odd, energy=-42.0 + 0.05)
    relax, fe = enumerated_alloy(tmp_path / "TiZrS2", ("Ti", "Zr"), "1T", extra=[odd])
    alloy_dir = tmp_path / "TiZrS2"
    summary = run_cluster_expansion(fe, relax, alloy_dir / "ce", CE_1T)
    assert summary["prototype"] == "1T"
    assert summary["n_unmapped"] == {"train": 1, "val": 0, "test": 0}
    assert list(summary["mapping_failures"]) == ["TiZr-1H"] and "far from the lattice" in summary["mapping_failures"]["TiZr-1H"]
    pred = pd.read_csv(alloy_dir / "ce" / "predictions.csv").set_index("material_id")
    assert np.isnan(pred.loc["TiZr-1H", "predicted_per_site_eV"]) and pred["predicted_per_site_eV"].notna().sum() == len(pred) - 1
    n_train = int((pred["set"] == "train").sum())
    assert summary["sets"]["train"]["n"] == n_train - 1  # left out of the MAE, and said so

    write_report([("TiZrS2", alloy_dir)], tmp_path / "report")
    t49 = pd.read_csv(tmp_path / "report" / "table_4_9.csv").set_index("set")
    assert t49.loc["train", "Unmapped"] == 1 and t49.loc["val", "Unmapped"] == 0 and (t49["lattice"] == "1T").all()
    md = (tmp_path / "report" / "table_4_9.md").read_text()
    assert "Unmapped" in md.splitlines()[0]
    assert "| TiZrS2 | 1T | train |" in md
    fs = pd.read_csv(tmp_path / "report" / "formation_summary.csv")
    ce = fs[fs["model"] == "ce"].set_index("set")
    assert ce.loc["train", "n_unmapped"] == 1 and ce.loc["train", "n"] == n_train - 1 and ce.loc["train", "lattice"] == "1T"
