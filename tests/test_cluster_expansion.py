"""The icet cluster expansion on the MX2 lattice: mapping relaxed slabs, cutoffs by CV on the
training split, and the proof that no validation or test structure reaches the fit."""

from __future__ import annotations

import json
from pathlib import Path

import ase.io
import numpy as np
import pandas as pd
import pytest
from formation_helpers import demo_formation

import mlff2d.cluster_expansion as ce_module
from mlff2d.cluster_expansion import layer_thickness, lattice_parameter, map_to_lattice, primitive_structure, run_cluster_expansion
from mlff2d.formation import metal_sites

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
    assert json.loads((tmp_path / "ce" / "summary.json").read_text())["mapping_failures"] == {}


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
