"""Relaxation stage: area per atom, FIRE on the in-plane cell, failure outcomes, shards, and a
real tiny M3GNet model loaded once per shard.

Toy calculators (ASE's EMT and small Calculator subclasses) give exact expectations; the last
tests train a one-block M3GNet for two epochs on Lennard-Jones-labelled MoS2/WSe2 monolayers.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import ase.io
import numpy as np
import pandas as pd
import pytest
from ase import Atoms
from ase.build import fcc111
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.emt import EMT
from ase.filters import FrechetCellFilter
from ase.optimize import FIRE

import mlff2d.families
from mlff2d.relaxation import relax
from mlff2d.relaxation.relax import (
    RECORD_COLUMNS,
    area_per_atom,
    cell_filter,
    explosion,
    gather,
    n_shards,
    relax_shard,
    relax_structure,
)

#: 1H-MX2 in fractional coordinates; c = 18.1 Å leaves about 15 Å of vacuum.
MX2_FRAC = np.array([[0.0, 0.0, 0.5], [1 / 3, 2 / 3, 0.586], [1 / 3, 2 / 3, 0.414]])


def hexagonal(a: float, c: float = 18.1) -> np.ndarray:
    return np.array([[a, 0.0, 0.0], [-a / 2, a * math.sqrt(3) / 2, 0.0], [0.0, 0.0, c]])


def mx2(symbols: str = "MoS2", a: float = 3.19, material_id: str = "mx2") -> Atoms:
    atoms = Atoms(symbols, scaled_positions=MX2_FRAC, cell=hexagonal(a), pbc=True)
    atoms.info["material_id"] = material_id
    return atoms


def cu_bilayer(a: float = 3.8, material_id: str = "cu", rattle: int | None = None) -> Atoms:
    """Two fcc(111) Cu layers with 15 Å of vacuum, in-plane strained (EMT's a is ~3.6 Å)."""
    atoms = fcc111("Cu", size=(1, 1, 2), a=a, vacuum=7.5)
    atoms.info.clear()
    atoms.pbc = False  # relax_structure must make it periodic
    if rattle is not None:
        atoms.rattle(0.05, seed=rattle)
    atoms.info["material_id"] = material_id
    return atoms


class Toy(Calculator):
    """Energy, forces, stress of a named misbehaviour, or EMT for ``"good"``.

    ``nan``: NaN energy; ``raise``: RuntimeError; ``push``: a constant 1 eV/Å upward force on
    atom 0 (it leaves the layer); ``drift``: a constant 1 eV/Å force along x on every atom (a
    rigid translation that never converges). The kind is the calculator's own or, with
    ``kind=None``, the prefix of the structure's ``material_id``.
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, kind: str | None = None, sleep: float = 0.0) -> None:
        super().__init__()
        self.kind, self.sleep, self.emt, self.calls = kind, sleep, EMT(), 0

    def calculate(self, atoms: Atoms | None = None, properties: Any = None, system_changes: Any = all_changes) -> None:
        super().calculate(atoms, properties, system_changes)
        self.calls += 1
        time.sleep(self.sleep)
        atoms = self.atoms
        kind = self.kind or str(atoms.info["material_id"]).split("-")[0]
        n = len(atoms)
        forces, energy = np.zeros((n, 3)), 0.0
        if kind == "good":
            probe = atoms.copy()
            probe.calc = self.emt
            energy, forces = probe.get_potential_energy(), probe.get_forces()
            self.results = {"energy": energy, "free_energy": energy, "forces": forces, "stress": probe.get_stress()}
            return
        if kind == "nan":
            energy = math.nan
        elif kind == "raise":
            raise RuntimeError("boom: the model broke")
        elif kind == "push":
            forces[0, 2] = 1.0
            energy = -atoms.positions[0, 2]
        elif kind == "drift":
            forces[:, 0] = 1.0
            energy = -atoms.positions[:, 0].sum()
        self.results = {"energy": energy, "free_energy": energy, "forces": forces, "stress": np.zeros(6)}


# ------------------------------------------------------------------------------- single runs


def test_area_per_atom_on_hand_made_cells() -> None:
    assert area_per_atom(mx2(a=3.19)) == pytest.approx(math.sqrt(3) / 2 * 3.19**2 / 3, rel=1e-14)
    rect = Atoms("H2", positions=[[0, 0, 5], [1, 1, 5]], cell=[3.0, 4.0, 20.0])
    assert area_per_atom(rect) == pytest.approx(6.0, rel=1e-14)
    # c tilted out of the normal does not change the in-plane area
    rect.set_cell([[3.0, 0, 0], [0, 4.0, 0], [1.0, 2.0, 20.0]])
    assert area_per_atom(rect) == pytest.approx(6.0, rel=1e-14)


def test_fast_filter_matches_ase_frechet_cell_filter() -> None:
    """Same positions and forces at a sheared, strained state, and the same FIRE path."""
    ours, theirs = cu_bilayer(rattle=1), cu_bilayer(rattle=1)
    for atoms in (ours, theirs):
        atoms.pbc = True
        atoms.calc = EMT()
    f_ours, f_ase = cell_filter(ours), FrechetCellFilter(theirs, mask=[1, 1, 0, 0, 0, 1])
    x = f_ase.get_positions()
    x[-3:, :2] += np.random.default_rng(0).normal(0, 0.3, (3, 2))
    f_ours.set_positions(x)
    f_ase.set_positions(x)
    np.testing.assert_allclose(ours.cell.array, theirs.cell.array, rtol=0, atol=1e-13)
    np.testing.assert_allclose(ours.positions, theirs.positions, rtol=0, atol=1e-13)
    np.testing.assert_allclose(f_ours.get_positions(), f_ase.get_positions(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(f_ours.get_forces(), f_ase.get_forces(), rtol=0, atol=1e-12)
    assert np.abs(f_ase.get_forces()[-3:]).max() > 0.1  # the cell "forces" are not trivial
    runs = [FIRE(f, logfile=None) for f in (f_ours, f_ase)]
    for opt in runs:
        opt.run(fmax=0.01, steps=300)
    assert runs[0].nsteps == runs[1].nsteps > 10
    np.testing.assert_allclose(ours.cell.array, theirs.cell.array, rtol=0, atol=1e-9)


def test_emt_relaxes_the_in_plane_cell_with_c_fixed() -> None:
    start = cu_bilayer(a=3.8)
    final, rec = relax_structure(start, EMT(), fmax=0.01)
    assert rec["failure"] == "" and rec["converged"] is True and 0 < rec["steps"] < 1000
    assert (rec["material_id"], rec["formula"], rec["n_atoms"]) == ("cu", "Cu2", 2)
    assert final.pbc.all() and not start.pbc.any() and final.calc is None
    assert final.info == {"material_id": "cu", "converged": True}
    # c exactly unchanged; a and b stay in the plane
    assert (final.cell.array[2] == start.cell.array[2]).all()
    assert (final.cell.array[:2, 2] == 0.0).all()
    # the in-plane cell shrank towards EMT's lattice constant (~3.6 Å)
    assert rec["area_per_atom"] == pytest.approx(area_per_atom(final), rel=1e-14)
    assert rec["area_per_atom"] < 0.93 * area_per_atom(start)
    # converged: in-plane stress and forces are small, and the recorded energy is the final one
    final.calc = EMT()
    assert rec["energy_per_atom"] == pytest.approx(final.get_potential_energy() / 2, abs=1e-12)
    assert np.abs(final.get_forces()).max() < 0.01
    assert np.abs(final.get_stress()[[0, 1, 5]]).max() * final.get_volume() / 2 < 0.01
    assert 0 < rec["calc_time_s"] <= rec["wall_time_s"]


def test_step_limit_keeps_energy_and_area_and_times_the_calculator() -> None:
    calc = Toy("good", sleep=0.005)
    final, rec = relax_structure(cu_bilayer(a=3.8), calc, fmax=0.01, max_steps=3)
    assert (rec["failure"], rec["converged"], rec["steps"]) == ("step_limit", False, 3)
    assert math.isfinite(rec["energy_per_atom"]) and math.isfinite(rec["area_per_atom"])
    assert final.info["failure"] == "step_limit" and final.info["converged"] is False
    # 4 evaluations (start + 3 steps) of >= 5 ms each, all inside the calculator
    assert calc.calls == 4
    assert 4 * 0.005 <= rec["calc_time_s"] <= rec["wall_time_s"]


def test_non_finite_energy() -> None:
    final, rec = relax_structure(mx2(), Toy("nan"))
    assert (rec["failure"], rec["converged"], rec["steps"]) == ("non_finite_energy", False, 0)
    assert math.isnan(rec["energy_per_atom"]) and math.isnan(rec["area_per_atom"])


def test_exception_is_recorded_not_raised() -> None:
    start = mx2()
    final, rec = relax_structure(start, Toy("raise"))
    assert rec["failure"] == "exception: RuntimeError: boom: the model broke"
    assert math.isnan(rec["energy_per_atom"]) and rec["converged"] is False
    np.testing.assert_array_equal(final.positions, start.positions)  # the start structure


def test_atom_leaving_the_layer_explodes() -> None:
    final, rec = relax_structure(mx2(), Toy("push"), max_steps=1000)
    assert rec["failure"] == "exploded" and rec["converged"] is False
    assert 25 <= rec["steps"] <= 100 and rec["steps"] % 5 == 0  # checked every 5 steps
    assert math.isnan(rec["energy_per_atom"]) and math.isnan(rec["area_per_atom"])
    others = final.positions[1:, 2].max()
    assert final.positions[0, 2] - others > relax.BOND_CUTOFF - 0.2 * 5  # the structure written


def test_explosion_limits() -> None:
    atoms = mx2()
    area = area_per_atom(atoms)
    assert explosion(atoms, area, 1) == ""
    close = atoms.copy()
    close.positions[1] = close.positions[0] + [0.3, 0.0, 0.0]
    assert "0.3 Å apart" in explosion(close, area, 1)
    stretched = atoms.copy()
    stretched.set_cell(hexagonal(3.19 * 1.8), scale_atoms=True)  # area × 3.24
    assert explosion(stretched, area, 1).startswith("area per atom")
    assert explosion(stretched, area, 1, max_area_factor=4.0) == ""
    apart = atoms.copy()
    apart.positions[0, 2] += 7.0  # Mo 5.4 Å above the top S, 8.6 Å below the next layer's S
    assert explosion(apart, area, 1).startswith("2 pieces")
    assert explosion(apart, area, 2) == ""  # not more pieces than at the start


# ------------------------------------------------------------------------------------ shards


def write_point(directory: Path, status: dict[str, Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "status.json").write_text(json.dumps(status))
    return directory


@pytest.fixture
def toy_family(monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """``get_family(anything)`` returns a family whose calculator is a dispatching Toy; counts loads."""
    family = SimpleNamespace(loads=[])

    def calculator(model_path: Any, device: Any = None) -> Toy:
        family.loads.append((str(model_path), device))
        return Toy()

    family.calculator = calculator
    monkeypatch.setattr(mlff2d.families, "get_family", lambda name: family)
    return family


@pytest.mark.parametrize("engine", ["ase", "batched"])
def test_mixed_shard_records_every_outcome(tmp_path: Path, toy_family: SimpleNamespace, engine: str) -> None:
    structures = [cu_bilayer(material_id="good-0")]
    for kind in ("nan", "raise", "push", "drift"):
        structures.append(mx2(material_id=f"{kind}-0"))
    structures.append(cu_bilayer(a=3.7, material_id="good-1", rattle=3))
    start = tmp_path / "val_start.extxyz"
    ase.io.write(start, structures, format="extxyz")
    point = write_point(tmp_path / "point", {"status": "ok", "model": str(tmp_path / "point" / "model")})
    out = relax_shard("toy", point, start, 0, 10, tmp_path / "r.parquet", tmp_path / "s.extxyz", max_steps=200, device="cpu",
                      engine=engine, batch_atoms=8)
    assert toy_family.loads == [(str(tmp_path / "point" / "model"), "cpu")]
    expected = ["", "non_finite_energy", "exception: RuntimeError: boom: the model broke", "exploded", "step_limit", ""]
    assert out["failure"].tolist() == expected
    assert out["converged"].tolist() == [True, False, False, False, False, True]
    assert out["steps"].iloc[4] == 200
    finite = out["failure"].isin(["", "step_limit"])
    assert np.isfinite(out.loc[finite, ["energy_per_atom", "area_per_atom"]].to_numpy()).all()
    assert out.loc[~finite, ["energy_per_atom", "area_per_atom"]].isna().all().all()
    written = pd.read_parquet(tmp_path / "r.parquet")
    assert list(written.columns) == RECORD_COLUMNS
    pd.testing.assert_frame_equal(written, out)
    finals = ase.io.read(tmp_path / "s.extxyz", ":")
    assert [a.info["material_id"] for a in finals] == out["material_id"].tolist()
    assert [a.info.get("failure", "") for a in finals] == expected
    assert [a.info["converged"] for a in finals] == out["converged"].tolist()


def test_failed_training_or_model_marks_every_structure(tmp_path: Path, toy_family: SimpleNamespace) -> None:
    start = tmp_path / "start.extxyz"
    ase.io.write(start, [mx2(material_id="a"), mx2("WSe2", 3.3, "b")], format="extxyz")
    failed = write_point(tmp_path / "failed", {"status": "failed", "reason": "ValueError: lr\nis bad"})
    out = relax_shard("toy", failed, start, 0, 5, tmp_path / "r.parquet", tmp_path / "s.extxyz")
    assert out["failure"].tolist() == ["training_failed: ValueError: lr is bad"] * 2
    assert out["formula"].tolist() == ["MoS2", "Se2W"] and toy_family.loads == []
    assert [a.info["failure"] for a in ase.io.read(tmp_path / "s.extxyz", ":")] == out["failure"].tolist()

    def broken(model_path: Any, device: Any = None) -> Any:
        raise OSError("no model here")

    toy_family.calculator = broken
    ok = write_point(tmp_path / "ok", {"status": "ok", "model": "unloadable"})
    (ok / "unloadable").write_text("not a model")  # present, but the family cannot load it
    out = relax_shard("toy", ok, start, 0, 5, tmp_path / "r2.parquet", tmp_path / "s2.extxyz")
    assert out["failure"].tolist() == ["model_failed: OSError: no model here"] * 2
    with pytest.raises(FileNotFoundError):
        relax_shard("toy", tmp_path / "missing", start, 0, 5, tmp_path / "r3.parquet", tmp_path / "s3.extxyz")


def test_shards_gather_into_the_unsharded_run(tmp_path: Path, toy_family: SimpleNamespace) -> None:
    structures = [cu_bilayer(a=3.55 + 0.05 * i, material_id=f"good-{i}", rattle=i) for i in range(5)]
    structures.insert(2, mx2(material_id="nan-x"))
    start = tmp_path / "start.extxyz"
    ase.io.write(start, structures, format="extxyz")
    point = write_point(tmp_path / "point", {"status": "ok", "model": "m"})
    assert [n_shards(start, s) for s in (1, 2, 4, 6, 100)] == [6, 3, 2, 1, 1]
    whole = relax_shard("toy", point, start, 0, 6, tmp_path / "all.parquet", tmp_path / "all.extxyz", fmax=0.02)
    parts = [(tmp_path / f"r{i}.parquet", tmp_path / f"s{i}.extxyz") for i in range(n_shards(start, 4))]
    for i, (r, s) in enumerate(parts):
        relax_shard("toy", point, start, i, 4, r, s, fmax=0.02)
    assert len(pd.read_parquet(parts[1][0])) == 2
    gathered = gather([r for r, _ in parts], [s for _, s in parts], tmp_path / "g.parquet", tmp_path / "g.extxyz")
    timeless = [c for c in RECORD_COLUMNS if not c.endswith("time_s")]
    pd.testing.assert_frame_equal(gathered[timeless], whole[timeless])
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "g.parquet"), gathered)
    assert (tmp_path / "g.extxyz").read_text() == (tmp_path / "all.extxyz").read_text()
    assert whole["failure"].tolist() == ["", "", "non_finite_energy", "", "", ""]


def test_empty_set_gives_one_shard_of_empty_files(tmp_path: Path, toy_family: SimpleNamespace) -> None:
    start = tmp_path / "empty.extxyz"
    start.write_text("")
    assert n_shards(start, 10) == 1
    point = write_point(tmp_path / "point", {"status": "ok", "model": "m"})
    out = relax_shard("toy", point, start, 0, 10, tmp_path / "r.parquet", tmp_path / "s.extxyz")
    assert out.empty and list(pd.read_parquet(tmp_path / "r.parquet").columns) == RECORD_COLUMNS
    assert (tmp_path / "s.extxyz").read_text() == "" and toy_family.loads == []
    g = gather([tmp_path / "r.parquet"], [tmp_path / "s.extxyz"], tmp_path / "g.parquet", tmp_path / "g.extxyz")
    assert g.empty and (tmp_path / "g.extxyz").read_text() == ""


# ------------------------------------------------------------------- a real tiny M3GNet model

OFFSETS = {42: -10.0, 74: -12.0, 16: -4.0, 34: -3.5}  # eV per atom of Mo, W, S, Se
TINY = {"nblocks": 1, "units": 16, "dim_node_embedding": 16, "dim_edge_embedding": 16, "batch_size": 8, "epochs": 2}


def labelled_frames(n: int, seed: int) -> list[dict[str, Any]]:
    """Frames in the ``m3gnet`` export's columns, labelled by Lennard-Jones plus offsets."""
    from ase.calculators.lj import LennardJones

    from mlff2d.data.export import m3gnet_row

    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        atoms = mx2("MoS2" if i % 2 else "WSe2", 3.19 if i % 2 else 3.3)
        atoms.set_cell(atoms.cell.array @ np.diag([*rng.uniform(0.97, 1.03, 2), 1.0]), scale_atoms=True)
        atoms.positions += rng.normal(0.0, 0.05, atoms.positions.shape)
        atoms.calc = LennardJones(sigma=2.2, epsilon=0.2, rc=6.0, smooth=True)
        energy = atoms.get_potential_energy() + sum(OFFSETS[z] for z in atoms.numbers)
        rows.append(m3gnet_row(atoms, f"m-{seed}-{i}", 0, energy))
    return rows


@pytest.fixture(scope="module")
def m3gnet_point(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("matgl")
    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch

    from mlff2d.data.export import M3GNET_SCHEMA
    from mlff2d.training.sweep import train_point

    torch.set_num_threads(1)
    data = tmp_path_factory.mktemp("export")
    for split, rows in (("train", labelled_frames(24, 0)), ("val", labelled_frames(6, 1))):
        pq.write_table(pa.Table.from_pylist(rows, schema=M3GNET_SCHEMA), data / f"{split}.parquet")
    point = tmp_path_factory.mktemp("uff") / "ecut~0.01" / "lr~0.003" / "bs~8"
    status = train_point("m3gnet", data, point, {**TINY, "epochs": 8, "lr": 3e-3, "stress_weight": 1.0})
    assert status["status"] == "ok", status.get("reason")
    return point


@pytest.mark.slow
def test_real_m3gnet_shard_loads_the_model_once(tmp_path: Path, m3gnet_point: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    m3gnet = mlff2d.families.get_family("m3gnet")
    loads: list[Any] = []
    original = m3gnet.calculator

    def counting(model_path: Any, device: Any = None) -> Any:
        loads.append(model_path)
        return original(model_path, device)

    monkeypatch.setattr(m3gnet, "calculator", counting)
    rng = np.random.default_rng(7)
    starts = []
    for i, (symbols, a) in enumerate([("MoS2", 3.25), ("WSe2", 3.2), ("MoS2", 3.1), ("WSe2", 3.4)]):
        atoms = mx2(symbols, a, f"agm{i:03d}")
        atoms.positions += rng.normal(0.0, 0.05, atoms.positions.shape)
        starts.append(atoms)
    start = tmp_path / "test_start.extxyz"
    ase.io.write(start, starts, format="extxyz")
    out = relax_shard("m3gnet", m3gnet_point, start, 0, 3, tmp_path / "r.parquet", tmp_path / "s.extxyz", fmax=0.01, max_steps=40, device="cpu")
    assert len(loads) == 1
    assert out["material_id"].tolist() == ["agm000", "agm001", "agm002"]
    assert not out.isna().any().any()
    assert set(out["failure"]) <= {"", "step_limit"}
    assert ((out["steps"] > 0) & (out["steps"] <= 40)).all()
    assert np.isfinite(out[["energy_per_atom", "area_per_atom"]].to_numpy()).all()
    assert ((out["calc_time_s"] > 0) & (out["calc_time_s"] <= out["wall_time_s"])).all()
    # the recorded energy is the model's energy of the written structure
    finals = ase.io.read(tmp_path / "s.extxyz", ":")
    calc = original(Path(json.loads((m3gnet_point / "status.json").read_text())["model"]), "cpu")
    for atoms, energy in zip(finals, out["energy_per_atom"], strict=True):
        atoms.calc = calc
        assert atoms.get_potential_energy() / len(atoms) == pytest.approx(energy, abs=1e-5)
        assert (atoms.cell.array[2] == starts[0].cell.array[2]).all()


@pytest.mark.slow
def test_real_failed_training_point(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("matgl")
    from mlff2d.training.sweep import train_point

    m3gnet = mlff2d.families.get_family("m3gnet")
    monkeypatch.setattr(m3gnet, "calculator", lambda *a, **k: pytest.fail("a failed point must not load a model"))
    point = tmp_path / "point"
    assert train_point("m3gnet", tmp_path / "no_data", point, {**TINY, "epochs": 1})["status"] == "failed"
    start = tmp_path / "start.extxyz"
    ase.io.write(start, [mx2(material_id="a"), mx2(material_id="b")], format="extxyz")
    out = relax_shard("m3gnet", point, start, 0, 2, tmp_path / "r.parquet", tmp_path / "s.extxyz")
    assert len(out) == 2 and out["failure"].str.startswith("training_failed: ").all()
    assert not out["converged"].any() and out["energy_per_atom"].isna().all()


@pytest.mark.slow
def test_real_model_relaxes_strained_rattled_cells_over_many_steps(m3gnet_point: Path) -> None:
    """A trained tiny M3GNet relaxes strained and rattled cells: FIRE takes many steps, atoms and
    the in-plane cell move, and the energy (same calculator) falls."""
    calc = mlff2d.families.get_family("m3gnet").calculator(Path(json.loads((m3gnet_point / "status.json").read_text())["model"]), "cpu")
    rng = np.random.default_rng(11)
    for i, (symbols, a, strain) in enumerate([("MoS2", 3.19, 1.06), ("WSe2", 3.3, 0.95), ("WSe2", 3.3, 1.05)]):
        start = mx2(symbols, a, f"strained{i}")
        start.set_cell(start.cell.array @ np.diag([strain, strain * rng.uniform(0.98, 1.02), 1.0]), scale_atoms=True)
        start.positions += rng.normal(0.0, 0.08, start.positions.shape)
        probe = start.copy()
        probe.calc = calc
        e_start = probe.get_potential_energy() / len(probe)
        final, rec = relax_structure(start, calc, fmax=0.005, max_steps=300)
        assert rec["failure"] in ("", "step_limit") and rec["steps"] >= 15, rec
        assert rec["energy_per_atom"] < e_start - 1e-3, (rec["energy_per_atom"], e_start)
        assert np.abs(final.positions - start.positions).max() > 0.02
        assert not np.allclose(final.cell.array[:2, :2], start.cell.array[:2, :2], atol=1e-3)
        assert (final.cell.array[2] == start.cell.array[2]).all()  # c fixed: the in-plane cell only
