"""GAP family: real (tiny) gap_fit fits on CPU, one thread, and the quippy calculator.

The frames are built as in the MACE family test (MoS2 / WS2 monolayers, rattled and strained
in-plane, labelled by a Lennard-Jones potential, written with the mace export keys). One module-scoped fit through :func:`mlff2d.training.sweep.train_point`
is reused by most tests; the virial, e0 and failure tests fit their own (about a second each).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import ase.io
import numpy as np
import pandas as pd
import pytest
from ase import Atoms
from lj_monolayers import ref_labelled

os.environ.setdefault("OMP_NUM_THREADS", "1")
pytest.importorskip("quippy")

from mlff2d.families import METRIC_COLUMNS, family_spec, get_family  # noqa: E402
from mlff2d.training.sweep import resolve_params, train_point  # noqa: E402

pytestmark = pytest.mark.slow

gap = get_family("gap")

#: A tiny GAP: small SOAP basis and few sparse points (about a second to fit 24 frames).
TINY = {"cutoff_2b": 4.0, "n_sparse_2b": 10, "delta_2b": 0.5, "theta_2b": 1.0, "soap_cutoff": 4.0,
        "soap_n_max": 4, "soap_l_max": 3, "soap_n_sparse": 40, "soap_delta": 0.1, "seed": 7}  # fmt: skip


def frames(n: int, seed: int) -> list[Atoms]:
    """MoS2 / WS2 monolayers (1x1 and 2x1, 15 Å vacuum) with LJ labels as REF_* keys."""
    return ref_labelled(n, seed)


def write_data(d: Path) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    for split, n, seed in (("train", 32, 1), ("val", 8, 2)):
        ase.io.write(d / f"{split}.extxyz", frames(n, seed), format="extxyz")
    return d


def val_energies(model: Path, frames: list[Any]) -> np.ndarray:
    calc = gap.calculator(model)
    out = []
    for atoms in frames:
        a = atoms.copy()
        a.calc = calc
        out.append(a.get_potential_energy())
    return np.array(out)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_data(tmp_path_factory.mktemp("gap_data"))


@pytest.fixture(scope="module")
def fitted(data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    point = tmp_path_factory.mktemp("gap_point")
    params = resolve_params("gap", TINY, lr=0.001, batch_size=64)  # what the sweep passes
    status = train_point("gap", data, point, params)
    val = ase.io.read(data / "val.extxyz", index=":")
    return {"point": point, "status": status, "model": Path(status.get("model", "")), "val": val,
            "energies": val_energies(Path(status["model"]), val) if status["status"] == "ok" else None}


def test_spec_and_defaults() -> None:
    spec = family_spec("gap")
    assert (spec.label, spec.export_format, spec.env, spec.transfer, spec.epochs) == ("GAP", "mace", "main", False, False)
    assert spec.sweep_default is None and spec.alloy_default["enabled"] is False
    assert {"lr", "batch_size", "divergence_factor", "soap_cutoff", "soap_n_sparse", "n_sparse_2b", "e0"} <= set(gap.DEFAULTS)
    assert gap.gap_fit_executable().parent == Path(os.sys.executable).parent  # the venv's own gap_fit


def test_train_point_ok_one_metrics_row(fitted: dict[str, Any]) -> None:
    status, point = fitted["status"], fitted["point"]
    assert status["status"] == "ok", status
    assert fitted["model"] == point / "model" / "gap.xml" and fitted["model"].is_file()
    assert list((point / "model").glob("gap.xml.sparseX.*"))
    assert not (point / "model.tmp").exists()
    metrics = pd.read_csv(point / "metrics.csv")
    assert list(metrics.columns) == METRIC_COLUMNS and len(metrics) == 1
    row = metrics.iloc[0]
    assert row["epoch"] == 1 and row["stress_unit"] == "GPa"
    values = row[["energy_mae_meV_per_atom", "forces_mae_meV_per_A", "stress_mae", "time_s"]].to_numpy(dtype=float)
    assert np.isfinite(values).all() and (values > 0).all()
    log = (point / "gap" / "gap_fit.log").read_text()
    assert "epoch 1/1: val MAE energy" in log and "gap_fit" in log.splitlines()[0]
    # lr and batch_size are accepted, ignored by the fit and recorded as the sweep gave them
    params = (point / "params.yaml").read_text()
    assert "lr: 0.001" in params and "batch_size: 64" in params
    print(f"\nGAP fit {row['time_s']:.2f} s; val MAE energy {row['energy_mae_meV_per_atom']:.3f} meV/atom, "
          f"force {row['forces_mae_meV_per_A']:.2f} meV/Å, in-plane stress {row['stress_mae']:.4f} GPa")


def test_below_composition_baseline(fitted: dict[str, Any], data: Path) -> None:
    """Validation errors below the composition baseline (per-element energies fitted by least
    squares on the training E/N, as mlff2d.relaxation.evaluation.fit_element_energies) and below zero forces."""
    train = ase.io.read(data / "train.extxyz", index=":")
    mu = gap.element_energies(train, [a.info["REF_energy"] for a in train])
    val = fitted["val"]
    base = np.mean([abs(sum(mu[s] for s in a.get_chemical_symbols()) - a.info["REF_energy"]) / len(a) for a in val])
    zero_force = np.mean(np.concatenate([np.abs(a.arrays["REF_forces"]).ravel() for a in val]))
    row = pd.read_csv(fitted["point"] / "metrics.csv").iloc[0]
    print(f"\nbaseline energy MAE {1000 * base:.3f} meV/atom, zero-force MAE {1000 * zero_force:.2f} meV/Å")
    assert row["energy_mae_meV_per_atom"] < 1000 * base
    assert row["forces_mae_meV_per_A"] < 1000 * zero_force


def test_metrics_match_calculator(fitted: dict[str, Any]) -> None:
    calc = gap.calculator(fitted["model"])
    de, ds = [], []
    for atoms in fitted["val"]:
        a = atoms.copy()
        a.calc = calc
        de.append(abs(a.get_potential_energy() - atoms.info["REF_energy"]) / len(a))
        s, ref = a.get_stress(), atoms.info["REF_stress"]
        ds += [abs(s[i] - ref[i]) for i in (0, 1, 5)]  # xx, yy, xy
    row = pd.read_csv(fitted["point"] / "metrics.csv").iloc[0]
    assert row["energy_mae_meV_per_atom"] == pytest.approx(1000 * np.mean(de), rel=1e-9)
    assert row["stress_mae"] == pytest.approx(160.21766208 * np.mean(ds), rel=1e-9)


def test_reload_predicts_same_energy(fitted: dict[str, Any]) -> None:
    again = val_energies(fitted["model"], fitted["val"])
    assert again == pytest.approx(fitted["energies"], abs=1e-10)


def test_stress_is_ase_convention(fitted: dict[str, Any]) -> None:
    """quippy's stress is (1/V) ∂E/∂ε in eV/Å³ (ASE: tension positive): central differences."""
    atoms = fitted["val"][0].copy()
    atoms.calc = gap.calculator(fitted["model"])
    stress, volume, cell, eps = atoms.get_stress(), atoms.get_volume(), atoms.cell.array.copy(), 1e-5
    for voigt, (i, j) in ((0, (0, 0)), (1, (1, 1)), (5, (0, 1))):
        energies = []
        for sign in (1, -1):
            strain = np.eye(3)
            strain[i, j] += sign * eps / (1 if i == j else 2)
            strain[j, i] = strain[i, j]
            b = atoms.copy()
            b.calc = atoms.calc
            b.set_cell(cell @ strain, scale_atoms=True)
            energies.append(b.get_potential_energy())
        assert stress[voigt] == pytest.approx((energies[0] - energies[1]) / (2 * eps) / volume, rel=1e-4, abs=1e-9)
    # the same sign as the labels (ASE's, from the export): predicted and reference in-plane
    # stresses of the validation frames correlate (a flipped sign would anti-correlate)
    pred, ref = [], []
    for frame in fitted["val"]:
        a = frame.copy()
        a.calc = atoms.calc
        pred += list(a.get_stress()[[0, 1, 5]])
        ref += list(np.asarray(frame.info["REF_stress"])[[0, 1, 5]])
    assert np.corrcoef(pred, ref)[0, 1] > 0.5


def test_stress_labels_do_not_change_the_fit(data: Path, tmp_path: Path, fitted: dict[str, Any]) -> None:
    """Virials are not fitted: huge out-of-plane stress labels (and any stress label) leave the
    fitted model unchanged; the training copy has no stress."""
    garbage = tmp_path / "data"
    garbage.mkdir()
    frames = ase.io.read(data / "train.extxyz", index=":")
    for atoms in frames:
        atoms.info["REF_stress"] = np.array(atoms.info["REF_stress"]) + np.array([0, 0, 1e3, -1e3, 5e2, 0])
    ase.io.write(garbage / "train.extxyz", frames, format="extxyz")
    (garbage / "val.extxyz").write_text((data / "val.extxyz").read_text())
    model = gap.train(garbage, tmp_path / "run", resolve_params("gap", TINY, 0.001, 64))
    assert "stress" not in (tmp_path / "run" / "gap" / "train.xyz").read_text().lower()
    assert val_energies(model, fitted["val"]) == pytest.approx(fitted["energies"], abs=1e-9)


def test_e0_average(data: Path, tmp_path: Path) -> None:
    gap.train(data, tmp_path, {**TINY, "e0": "average"})
    assert "e0_method=average" in (tmp_path / "gap" / "gap_fit.cfg").read_text().splitlines()
    row = pd.read_csv(tmp_path / "metrics.csv").iloc[0]
    assert np.isfinite(row[["energy_mae_meV_per_atom", "forces_mae_meV_per_A"]].to_numpy(dtype=float)).all()
    with pytest.raises(ValueError, match="e0"):
        gap.train(data, tmp_path / "bad", {**TINY, "e0": "isolated"})


def test_compressed_soap_fits(data: Path, tmp_path: Path) -> None:
    """soap_mix_channels K > 0 is gap_fit's compressed SOAP (R_mix, Z_mix, K), read from the
    arguments file; the fit is a usable model."""
    gap.train(data, tmp_path, {**TINY, "soap_mix_channels": 3})
    args = (tmp_path / "gap" / "gap_fit.cfg").read_text()
    assert "R_mix=T Z_mix=T K=3" in args and (tmp_path / "gap" / "gap_fit.log").read_text().startswith(str(gap.gap_fit_executable()))
    row = pd.read_csv(tmp_path / "metrics.csv").iloc[0]
    assert np.isfinite(row[["energy_mae_meV_per_atom", "forces_mae_meV_per_A"]].to_numpy(dtype=float)).all()


def test_no_fine_tuning(data: Path, tmp_path: Path, fitted: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="GAP has no fine-tuning"):
        gap.train(data, tmp_path, TINY, init_model=fitted["model"])


def test_failed_gap_fit_is_recorded(data: Path, tmp_path: Path) -> None:
    """A gap_fit that aborts raises with its output's tail; train_point records it as failed."""
    params = resolve_params("gap", {**TINY, "extra_args": {"sparse_jitter": "not_a_number"}}, 0.0, 1)
    status = train_point("gap", data, tmp_path, params)
    assert status["status"] == "failed"
    assert "gap_fit failed" in status["reason"]
    assert json.loads((tmp_path / "status.json").read_text())["status"] == "failed"
    assert list(pd.read_csv(tmp_path / "metrics.csv").columns) == METRIC_COLUMNS
    assert not (tmp_path / "model").exists()


@pytest.mark.parametrize("engine", ["ase", "batched"])
def test_relaxes_through_relax_shard(fitted: dict[str, Any], tmp_path: Path, engine: str) -> None:
    """The relaxation stage relaxes strained cells with the fitted GAP (positions and in-plane cell)."""
    from mlff2d.relaxation.relax import relax_shard

    start = []
    for k, atoms in enumerate(fitted["val"][:3]):
        a = atoms.copy()
        a.info = {"material_id": f"m{k}"}
        a.arrays.pop("REF_forces", None)
        a.set_cell(a.cell.array @ np.diag([1.03, 1.03, 1.0]), scale_atoms=True)
        start.append(a)
    ase.io.write(tmp_path / "start.extxyz", start, format="extxyz")
    t0 = time.perf_counter()
    records = relax_shard("gap", fitted["point"], tmp_path / "start.extxyz", 0, 10, tmp_path / "r.parquet",
                          tmp_path / "s.extxyz", fmax=0.1, max_steps=300, engine=engine)
    wall = time.perf_counter() - t0
    assert len(records) == 3 and records["failure"].eq("").all(), records
    assert records["converged"].all() and (records["steps"] > 0).all()
    finals = ase.io.read(tmp_path / "s.extxyz", index=":")
    areas = [np.linalg.norm(np.cross(f.cell[0], f.cell[1])) for f in finals]
    assert areas != pytest.approx([np.linalg.norm(np.cross(s.cell[0], s.cell[1])) for s in start], rel=1e-4)
    print(f"\n{engine}: {wall / 3:.2f} s per structure, steps {records['steps'].tolist()}")
