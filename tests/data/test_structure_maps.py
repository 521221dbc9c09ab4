"""SOAP structure maps: PCA fitted on training only, nearest-training distances, novelty."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from ase.build import mx2

from mlff2d.data.structure_maps import fit_pca, nearest_distances, novelty, project, soap_descriptor, spearman, unit_rows


def _vectors(seed: int, n: int = 40, dim: int = 6) -> np.ndarray:
    return unit_rows(np.random.default_rng(seed).normal(size=(n, dim)))


def test_pca_is_fitted_on_training_only() -> None:
    x = _vectors(0)
    train = np.arange(30)
    changed = x.copy()
    changed[30:] = _vectors(1, 10)  # new val/test structures
    a = project(x, fit_pca(x, train, chunk=7), chunk=7)
    b = project(changed, fit_pca(changed, train, chunk=7), chunk=7)
    assert np.allclose(a[:30], b[:30], atol=1e-12)
    assert not np.allclose(a[30:], b[30:])
    # the streamed fit is the ordinary PCA of the training rows
    centred = x[train] - x[train].mean(0)
    ref = np.linalg.svd(centred, full_matrices=False)[2][:2]
    assert np.allclose(np.abs(fit_pca(x, train, chunk=7)["components"]), np.abs(ref), atol=1e-8)


def test_nearest_training_distance_of_a_training_structure_is_zero() -> None:
    x = _vectors(2)
    train = np.arange(0, 40, 2)
    dist, arg = nearest_distances(x, np.arange(40), train, chunk=3)
    assert np.all(dist[train] == 0.0) and np.array_equal(arg[train], train)
    brute = np.linalg.norm(x[1::2, None, :] - x[None, train, :], axis=2)
    assert np.allclose(dist[1::2], brute.min(axis=1)) and np.array_equal(arg[1::2], train[brute.argmin(axis=1)])


def test_soap_vectors_are_unit_length_and_tell_structures_apart() -> None:
    mos2, ws2 = mx2("MoS2", vacuum=7.5), mx2("WS2", vacuum=7.5)
    strained = mos2.copy()
    strained.set_cell(mos2.cell * [1.1, 1.1, 1.0], scale_atoms=True)
    soap = soap_descriptor([16, 42, 74])
    v = unit_rows(np.atleast_2d(soap.create([mos2, mos2.repeat((2, 2, 1)), strained, ws2])))
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert np.linalg.norm(v[0] - v[1]) < 1e-4  # a supercell is the same material
    d_strain, d_other = np.linalg.norm(v[0] - v[2]), np.linalg.norm(v[0] - v[3])
    assert 1e-3 < d_strain < d_other  # strained MoS2 is closer to MoS2 than WS2 is


def test_novelty_spearman_and_files(tmp_path: Path) -> None:
    structures = pd.DataFrame({"material_id": [f"m{i}" for i in range(8)], "set": ["train"] * 3 + ["test"] * 5,
                               "pc1": np.arange(8.0), "pc2": np.zeros(8), "nearest_train_distance": [0, 0, 0, 0.1, 0.2, 0.3, 0.4, 0.5]})
    errors = pd.DataFrame({"material_id": [f"m{i}" for i in range(3, 8)], "energy_error_meV": [1.0, -2.0, 3.0, -5.0, 4.0]})
    structures.to_csv(tmp_path / "s.csv", index=False)
    errors.to_csv(tmp_path / "e.csv", index=False)
    summary = novelty(tmp_path / "s.csv", tmp_path / "e.csv", "test", tmp_path, "m")
    assert summary["n"] == 5 and summary["spearman_rho"] == pytest.approx(0.9)  # ranks 1 2 3 5 4
    assert json.loads((tmp_path / "novelty.json").read_text())["spearman_rho"] == pytest.approx(0.9)
    for name in ("novelty.png", "novelty.pdf", "error_map.png", "error_map.pdf", "novelty.csv"):
        assert (tmp_path / name).stat().st_size > 0
    assert spearman([1, 2], [2, 1])[2] == 2


def test_structure_map_of_a_split(tmp_path: Path) -> None:
    from conftest import calc, step, write_alexandria

    from mlff2d.data.ingest import Source, ingest
    from mlff2d.data.outliers import remove_outliers
    from mlff2d.data.split import split_dataset
    from mlff2d.data.structure_maps import structure_map

    data = {f"m{i}": [calc([step(energy=-21.0 - 0.1 * k) for k in range(3)])] for i in range(12)}
    write_alexandria(tmp_path / "in.json", data)
    d = tmp_path / "d"
    ingest([Source(str(tmp_path / "in.json"), "alexandria")], d / "f.parquet", d / "m.csv")
    remove_outliers(d / "f.parquet", d / "m.csv", d / "c.parquet", d / "lf.parquet", d / "lm.csv", d / "s.csv")
    split_dataset(d / "lm.csv", d / "split.csv", [0.5, 0.25, 0.25], 0)
    frame = structure_map(d / "c.parquet", d / "split.csv", tmp_path / "map", chunk=5)
    assert len(frame) == 12 and set(frame["set"]) == {"train", "val", "test"}
    train = frame[frame["set"] == "train"]
    assert (train["nearest_train_distance"] == 0).all()  # every material of this fixture has the same structure
    assert set(frame["nearest_train_id"]) <= set(train["material_id"])
    assert np.load(tmp_path / "map" / "soap.npy").shape[0] == 12
    for name in ("map.png", "map.pdf", "structures.csv", "pca.npz"):
        assert (tmp_path / "map" / name).stat().st_size > 0
