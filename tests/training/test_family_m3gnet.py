"""M3GNet family: training, metrics, reload, transfer, the stress mask, resume, calculator.

Tiny models (one block, 16 units) trained from scratch on MX2 monolayers (15 Å of vacuum)
labelled by a Lennard-Jones potential plus per-element energy offsets, written in the
``m3gnet`` export format.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from ase import Atoms
from ase.calculators.lj import LennardJones

from mlff2d.data.export import M3GNET_SCHEMA, OUT_OF_PLANE_3X3, m3gnet_row
from mlff2d.families import METRIC_COLUMNS, get_family

pytest.importorskip("matgl")
m3gnet = get_family("m3gnet")

TINY = {"nblocks": 1, "units": 16, "dim_node_embedding": 16, "dim_edge_embedding": 16, "batch_size": 8, "epochs": 3}
#: 1H-MX2 in fractional coordinates; c = 18.1 Å leaves about 15 Å of vacuum.
MX2_FRAC = np.array([[0.0, 0.0, 0.5], [1 / 3, 2 / 3, 0.586], [1 / 3, 2 / 3, 0.414]])
OFFSETS = {42: -10.0, 74: -12.0, 16: -4.0, 34: -3.5}  # eV per atom of Mo, W, S, Se
METALS, CHALCOGENS = (42, 74), (16, 34)
MAE_COLUMNS = ["energy_mae_meV_per_atom", "forces_mae_meV_per_A", "stress_mae"]


pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]  # real trainings


def mx2(metal: int, chalcogen: int, a: float, rng: np.random.Generator | None = None) -> Atoms:
    cell = np.array([[a, 0.0, 0.0], [-a / 2, a * np.sqrt(3) / 2, 0.0], [0.0, 0.0, 18.1]])
    atoms = Atoms(numbers=[metal, chalcogen, chalcogen], scaled_positions=MX2_FRAC, cell=cell, pbc=True)
    if rng is not None:
        atoms.set_cell(cell @ np.diag([*rng.uniform(0.97, 1.03, 2), 1.0]), scale_atoms=True)
        if rng.random() < 0.5:
            atoms = atoms.repeat((2, 1, 1))
        atoms.positions += rng.normal(0.0, 0.05, atoms.positions.shape)
    return atoms


def labelled_rows(n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` frames in the export's columns: LJ labels, stress in GPa with out-of-plane NaN."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        chalcogen = CHALCOGENS[(i // 2) % 2]
        atoms = mx2(METALS[i % 2], chalcogen, 3.19 if chalcogen == 16 else 3.3, rng)
        atoms.calc = LennardJones(sigma=2.2, epsilon=0.2, rc=6.0, smooth=True)
        energy = atoms.get_potential_energy() + sum(OFFSETS[z] for z in atoms.numbers)
        rows.append(m3gnet_row(atoms, f"mat-{seed}-{i // 3}", i % 3, energy))
    return rows


def write_export(directory: Path, splits: dict[str, list[dict[str, Any]]]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for split, rows in splits.items():
        pq.write_table(pa.Table.from_pylist(rows, schema=M3GNET_SCHEMA), directory / f"{split}.parquet")
    return directory


@pytest.fixture(scope="module")
def splits() -> dict[str, list[dict[str, Any]]]:
    return {"train": labelled_rows(30, seed=0), "val": labelled_rows(8, seed=1)}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory, splits: dict[str, list[dict[str, Any]]]) -> Path:
    return write_export(tmp_path_factory.mktemp("export"), splits)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, data: Path) -> Path:
    """A 3-epoch run from scratch; returns its outdir."""
    outdir = tmp_path_factory.mktemp("scratch")
    assert m3gnet.train(data, outdir, TINY, device="cpu") == outdir / "model"
    return outdir


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory, data: Path) -> Path:
    """A longer run that has learnt a clearly non-zero stress (for finite differences)."""
    outdir = tmp_path_factory.mktemp("fitted")
    return m3gnet.train(data, outdir, {**TINY, "epochs": 20, "lr": 3e-3, "stress_weight": 1.0}, device="cpu")


def metrics(outdir: Path) -> pd.DataFrame:
    return pd.read_csv(outdir / "metrics.csv")


def lightning_log(outdir: Path, version: int) -> list[dict[str, str]]:
    with open(outdir / "logs" / f"version_{version}" / "metrics.csv") as f:
        return list(csv.DictReader(f))


def state(model_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(model_dir / "state.pt", weights_only=True)


def test_defaults_use_matgl_element_list_and_train_stress() -> None:
    from matgl.config import DEFAULT_ELEMENTS

    assert tuple(m3gnet.DEFAULTS["element_types"]) == DEFAULT_ELEMENTS
    assert m3gnet.DEFAULTS["stress_weight"] > 0
    assert (m3gnet.DEFAULTS["cutoff"], m3gnet.DEFAULTS["threebody_cutoff"]) == (5.0, 4.0)
    with pytest.raises(ValueError, match="unknown m3gnet training settings"):
        m3gnet.train("nowhere", "nowhere", {"stres_weight": 1.0})
    with pytest.raises(ValueError, match="stress_weight"):
        m3gnet.train("nowhere", "nowhere", {"stress_weight": 0.0})


def test_metrics_one_finite_row_per_epoch(trained: Path) -> None:
    m = metrics(trained)
    assert list(m.columns) == METRIC_COLUMNS
    assert m["epoch"].tolist() == [1, 2, 3]
    assert np.isfinite(m[[*MAE_COLUMNS, "time_s"]].to_numpy()).all()
    assert (m[MAE_COLUMNS] > 0).all().all() and (m["time_s"] > 0).all()
    assert set(m["stress_unit"]) == {"GPa"}
    # matgl's own epoch mean of the validation energy MAE (eV/atom) agrees
    logged = [r for r in lightning_log(trained, 0) if r.get("val_Energy_MAE")]
    assert [1000 * float(r["val_Energy_MAE"]) for r in logged] == pytest.approx(m[MAE_COLUMNS[0]], rel=1e-4)
    assert (trained / "checkpoints" / "last.ckpt").is_file()


def test_saved_model_reloads_with_the_trained_weights(trained: Path, splits: dict[str, list[dict[str, Any]]]) -> None:
    import matgl

    # the weights at the end of training (the last checkpoint) are the saved ones
    ckpt = torch.load(trained / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    saved = state(trained / "model")
    for key, value in saved.items():
        assert torch.equal(value, ckpt[f"model.{key}"]), key
    potential = matgl.load_model(str((trained / "model").absolute()))
    from_ckpt = matgl.load_model(str((trained / "model").absolute()))
    from_ckpt.load_state_dict({k.removeprefix("model."): v for k, v in ckpt.items() if k.startswith("model.")})
    atoms = mx2(42, 16, 3.19)
    atoms.calc = m3gnet.calculator(trained / "model", device="cpu")
    from matgl.ext.ase import PESCalculator

    reference = atoms.copy()
    reference.calc = PESCalculator(from_ckpt.eval(), stress_unit="eV/A3")
    assert atoms.get_potential_energy() == pytest.approx(reference.get_potential_energy(), abs=1e-5)
    assert potential.calc_stresses

    # and through the ASE calculator they reproduce the last validation energy MAE
    errors = []
    for row in splits["val"]:
        n = len(row["numbers"])
        frame = Atoms(
            row["numbers"],
            positions=np.reshape(row["positions"], (n, 3)),
            cell=np.reshape(row["cell"], (3, 3)),
            pbc=True,
        )
        frame.calc = atoms.calc
        errors.append(abs(frame.get_potential_energy() - row["energy"]) / n)
    assert 1000 * np.mean(errors) == pytest.approx(metrics(trained)[MAE_COLUMNS[0]].iloc[-1], abs=1e-3)


def test_fine_tuning_starts_from_the_trained_weights(trained: Path, data: Path, tmp_path: Path) -> None:
    # with lr = 0 the weights cannot move: the fine-tuned model is the source model
    model = m3gnet.train(
        data, tmp_path / "lr0", {**TINY, "epochs": 1, "lr": 0.0}, init_model=trained / "model", device="cpu"
    )
    source, tuned = state(trained / "model"), state(model)
    assert source.keys() == tuned.keys()
    assert all(torch.equal(source[k], tuned[k]) for k in source)
    first, last = metrics(tmp_path / "lr0").iloc[0], metrics(trained).iloc[-1]
    assert first[MAE_COLUMNS].to_numpy(dtype=float) == pytest.approx(last[MAE_COLUMNS].to_numpy(dtype=float), rel=1e-6)


def test_fine_tuning_freezes_the_first_blocks(trained: Path, data: Path, tmp_path: Path) -> None:
    params = {**TINY, "epochs": 1, "lr": 1e-2, "freeze_blocks": 1}
    model = m3gnet.train(data, tmp_path / "frozen", params, init_model=trained / "model", device="cpu")
    source, tuned = state(trained / "model"), state(model)
    frozen = [k for k in source if k.startswith(("model.three_body_interactions.0.", "model.graph_layers.0."))]
    assert frozen and all(torch.equal(source[k], tuned[k]) for k in frozen)
    assert not torch.equal(
        source["model.final_layer.gated.layers.0.weight"], tuned["model.final_layer.gated.layers.0.weight"]
    )


@pytest.fixture(scope="module")
def garbage_data(tmp_path_factory: pytest.TempPathFactory, splits: dict[str, list[dict[str, Any]]]) -> Path:
    """The same export with huge random numbers instead of NaN as out-of-plane stress labels."""
    rng = np.random.default_rng(7)
    garbage: dict[str, list[dict[str, Any]]] = {}
    for split, rows in splits.items():
        garbage[split] = []
        for row in rows:
            stress = np.array(row["stress_gpa"])
            stress[list(OUT_OF_PLANE_3X3)] = rng.uniform(-1e3, 1e3, len(OUT_OF_PLANE_3X3))
            garbage[split].append({**row, "stress_gpa": stress.tolist()})
    data = write_export(tmp_path_factory.mktemp("garbage"), garbage)
    assert np.isfinite(pd.read_parquet(data / "train.parquet")["stress_gpa"].iloc[0]).all()
    return data


def losses(outdir: Path) -> list[tuple[str, ...]]:
    """matgl's logged epoch losses and stress MAEs (train and val) from the Lightning log."""
    keys = ["epoch", "train_Total_Loss", "train_Stress_MAE", "val_Total_Loss", "val_Stress_MAE"]
    return [tuple(r[k] for k in keys) for r in lightning_log(outdir, 0)]


def test_out_of_plane_stress_labels_do_not_reach_the_loss(trained: Path, garbage_data: Path, tmp_path: Path) -> None:
    m3gnet.train(garbage_data, tmp_path / "out", TINY, device="cpu")
    clean, dirty = metrics(trained), metrics(tmp_path / "out")
    pd.testing.assert_frame_equal(clean.drop(columns="time_s"), dirty.drop(columns="time_s"), check_exact=True)
    assert losses(trained) == losses(tmp_path / "out")


def test_without_the_mask_the_garbage_would_change_the_loss(
    trained: Path, garbage_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Negative control: the test above can fail."""
    from mlff2d.families import _m3gnet_data

    monkeypatch.setattr(_m3gnet_data, "mask_out_of_plane", lambda s: np.asarray(s, dtype=float).reshape(3, 3))
    m3gnet.train(garbage_data, tmp_path / "out", {**TINY, "epochs": 1}, device="cpu")
    assert losses(trained)[:2] != losses(tmp_path / "out")


def test_resume_continues_from_the_last_checkpoint(trained: Path, data: Path, tmp_path: Path) -> None:
    outdir = tmp_path / "resumed"
    # a run of 3 epochs killed after its first checkpoint ...
    m3gnet.train(data, outdir, {**TINY, "epochs": 1, "decay_steps": 3}, device="cpu")
    first = metrics(outdir)
    assert first["epoch"].tolist() == [1]
    # ... and after writing the metrics of epoch 2 but before its checkpoint
    pd.concat([first, first.assign(epoch=2, energy_mae_meV_per_atom=-1.0)]).to_csv(outdir / "metrics.csv", index=False)
    # is started again
    m3gnet.train(data, outdir, {**TINY, "decay_steps": 3}, device="cpu")
    resumed = metrics(outdir)
    assert resumed["epoch"].tolist() == [1, 2, 3]
    pd.testing.assert_frame_equal(resumed.iloc[:1], first, check_exact=True)
    assert (resumed["energy_mae_meV_per_atom"] > 0).all()  # the stale row of epoch 2 is gone
    # Lightning's log of the second call shows that it trained epochs 2 and 3 only (0-based 1, 2)
    assert {r["epoch"] for r in lightning_log(outdir, 1)} == {"1", "2"}
    # and it ends where the uninterrupted run ends (same data order, optimizer and lr schedule)
    uninterrupted = metrics(trained)
    assert resumed[MAE_COLUMNS].to_numpy() == pytest.approx(uninterrupted[MAE_COLUMNS].to_numpy(), rel=1e-5)
    # a finished run started again trains nothing and keeps its metrics (time_s included)
    m3gnet.train(data, outdir, {**TINY, "decay_steps": 3}, device="cpu")
    pd.testing.assert_frame_equal(metrics(outdir), resumed, check_exact=True)


def strained_energy(atoms: Atoms, strain: np.ndarray) -> float:
    a = atoms.copy()
    a.calc = atoms.calc
    a.set_cell(atoms.cell.array @ (np.eye(3) + strain), scale_atoms=True)
    return a.get_potential_energy()


def test_calculator_stress_is_ase_units_and_sign(fitted: Path) -> None:
    atoms = mx2(42, 16, 3.0)  # compressed: a clearly non-zero stress
    atoms.positions[0] += [0.1, -0.05, 0.02]
    atoms.calc = m3gnet.calculator(fitted, device="cpu")
    stress = atoms.get_stress()  # eV/Å³, Voigt xx yy zz yz xz xy
    assert stress.shape == (6,)
    h, volume = 1e-2, atoms.get_volume()
    fd = []
    for i, j in [(0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1)]:
        e = np.zeros((3, 3))
        e[i, j] = e[j, i] = h if i == j else h / 2
        fd.append((strained_energy(atoms, e) - strained_energy(atoms, -e)) / (2 * h * volume))
    fd = np.array(fd)
    assert np.abs(stress[[0, 1, 5]]).max() > 1e-3  # not a trivially small stress
    assert stress == pytest.approx(fd, rel=0.03, abs=0.03 * np.abs(fd).max())
    # in GPa the same stress is 160.2 times larger: the calculator did convert
    from matgl.ext.ase import PESCalculator

    gpa = PESCalculator(atoms.calc.potential, stress_unit="GPa", use_voigt=True)
    assert gpa.get_stress(atoms.copy()) == pytest.approx(stress * 160.21766208, rel=1e-5)


def test_calculator_treats_2d_pbc_as_periodic(trained: Path) -> None:
    calc = m3gnet.calculator(trained / "model", device="cpu")
    periodic, slab = mx2(74, 34, 3.3), mx2(74, 34, 3.3)
    slab.pbc = [True, True, False]
    periodic.calc, slab.calc = calc, m3gnet.calculator(trained / "model", device="cpu")
    assert slab.get_potential_energy() == pytest.approx(periodic.get_potential_energy(), abs=1e-6)
    assert slab.get_stress() == pytest.approx(periodic.get_stress(), abs=1e-8)
    assert slab.get_forces() == pytest.approx(periodic.get_forces(), abs=1e-6)
