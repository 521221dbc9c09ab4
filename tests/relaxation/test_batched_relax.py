"""Batched relaxation (:mod:`mlff2d.relaxation.batched`) against the ASE path (:func:`relax_structure`).

Toy calculators give exact expectations (the same FIRE on the same numbers must give the same
records); a tiny model of each family, trained on the demo MoWS2 alloy, checks the families'
batched evaluations against their ASE calculators and whole shards of both engines against
each other on the demo start structures.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ase.io
import numpy as np
import pandas as pd
import pytest
from ase import Atoms
from relax_helpers import model_path, start_structures, train_tiny
from test_relax import Toy, cu_bilayer, mx2

from mlff2d.relaxation.batched import (
    AtomBudget,
    Evaluation,
    Limits,
    ServedCalculator,
    calculator_evaluator,
    evaluate_isolated,
    relax_batched,
)
from mlff2d.families import get_family
from mlff2d.relaxation.relax import RECORD_COLUMNS, relax_shard, relax_structure

TIMELESS = [c for c in RECORD_COLUMNS if not c.endswith("time_s")]
pytestmark = [
    pytest.mark.usefixtures("one_torch_thread"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),  # torch.jit, from MACE's model compilation
    pytest.mark.filterwarnings("ignore:Environment variable TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"),  # set by mace itself
]


def toy_structures() -> list[Atoms]:
    """Good EMT bilayers around every misbehaviour of :class:`test_relax.Toy`."""
    out = [cu_bilayer(a=3.55 + 0.05 * i, material_id=f"good-{i}", rattle=i) for i in range(4)]
    for k, kind in enumerate(("nan", "raise", "push", "drift")):
        out.insert(2 * k + 1, mx2(material_id=f"{kind}-0"))
    return out


class Recording:
    """A batched evaluation of Toy that notes each call's atom count and, like a real batched
    model, fails as a whole when any of its structures raises."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.single = calculator_evaluator(Toy())

    def __call__(self, structures: Sequence[Atoms]) -> list[Evaluation]:
        self.sizes.append(sum(len(a) for a in structures))
        return self.single(structures)


def test_served_calculator_serves_one_geometry_only() -> None:
    atoms = mx2()
    atoms.calc = ServedCalculator()
    atoms.calc.serve(atoms, (-1.5, np.ones((3, 3)), np.arange(6.0)))
    assert atoms.get_potential_energy() == -1.5 and atoms.get_potential_energy(force_consistent=True) == -1.5
    np.testing.assert_array_equal(atoms.get_stress(), np.arange(6.0))
    atoms.positions[0, 0] += 1e-9
    with pytest.raises(RuntimeError, match="no served results"):
        atoms.get_forces()


def test_batched_equals_one_by_one_on_toys() -> None:
    """Every outcome (converged, non-finite, exception, exploded, step limit) inside batches of
    at most 7 atoms: the same records as relax_structure, bit for bit (times aside)."""
    structures = toy_structures()
    reference = pd.DataFrame([relax_structure(a, Toy(), fmax=0.02, max_steps=200)[1] for a in structures])
    evaluate = Recording()
    results = relax_batched(structures, evaluate, Limits(fmax=0.02, max_steps=200), AtomBudget(7))
    batched = pd.DataFrame([rec for _, rec in results])
    pd.testing.assert_frame_equal(batched[TIMELESS], reference[TIMELESS])
    assert batched["failure"].tolist() == ["", "non_finite_energy", "", "exception: RuntimeError: boom: the model broke",
                                           "", "exploded", "", "step_limit"]  # fmt: skip
    # in flight: within the budget, several structures per call, fewer calls than evaluations
    assert max(evaluate.sizes) == 7
    assert len(evaluate.sizes) < batched["steps"].sum() + len(structures) - 80
    assert ((batched["calc_time_s"] > 0) & (batched["calc_time_s"] <= batched["wall_time_s"])).all()
    finals = [final for final, _ in results]
    assert [a.info.get("failure", "") for a in finals] == batched["failure"].tolist()
    np.testing.assert_array_equal(finals[3].positions, structures[3].positions)  # exception: the start


def test_one_failing_structure_does_not_fail_the_batch() -> None:
    calls: list[int] = []
    single = calculator_evaluator(Toy())

    def whole(structures: Sequence[Atoms]) -> list[Evaluation]:
        calls.append(len(structures))
        return single(structures)

    structures = toy_structures()
    out = evaluate_isolated(whole, structures)
    kinds = [s.info["material_id"].split("-")[0] for s in structures]
    assert [isinstance(x, RuntimeError) for x in out] == [k == "raise" for k in kinds]
    # the NaN one is isolated too (a NaN can spread through a batched backward pass)
    assert [isinstance(x, tuple) and math.isnan(x[0]) for x in out] == [k == "nan" for k in kinds]
    assert calls[0] == len(structures) and len(calls) < 2 * len(structures) - 1
    halved: list[int] = []

    def oom(structures: Sequence[Atoms]) -> list[Evaluation]:
        if len(structures) > 2:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return single(structures)

    budget = AtomBudget(64)
    out = evaluate_isolated(oom, [cu_bilayer(material_id=f"good-{i}") for i in range(6)], lambda: halved.append(1) or budget.halve())
    assert all(isinstance(x, tuple) for x in out) and budget.atoms < 64 and halved


def test_automatic_budget_on_cpu_and_from_cuda_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    assert AtomBudget(0, "cpu").atoms == 256 and AtomBudget(40, "cpu").atoms == 40
    assert AtomBudget(40, "cuda").atoms == 40
    torch = pytest.importorskip("torch")
    # a first call of 2048 atoms that peaks 2048 * 1 MB above the base; 20 GB free: 0.5 * 20e9 / 1e6
    fake = {"reset_peak_memory_stats": lambda d=None: None, "memory_allocated": lambda d=None: 5_000_000,
            "max_memory_allocated": lambda d=None: 5_000_000 + 2048 * 1_000_000,
            "mem_get_info": lambda d=None: (20_000_000_000, 80_000_000_000), "empty_cache": lambda: None}  # fmt: skip
    for name, value in fake.items():
        monkeypatch.setattr(torch.cuda, name, value)
    budget = AtomBudget(0, "cuda")
    assert budget.atoms == 2048
    budget.before_call()
    budget.after_call(2048)
    assert budget.atoms == 10_000
    budget.after_call(10)  # measured once only
    assert budget.atoms == 10_000
    budget.halve()
    assert budget.atoms == 5000


# ------------------------------------------------------------------------- tiny real models


@pytest.fixture(scope="module", params=[pytest.param("m3gnet", marks=pytest.mark.slow), pytest.param("mace", marks=pytest.mark.slow)])
def tiny_point(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    pytest.importorskip(request.param if request.param != "m3gnet" else "matgl")
    return request.param, train_tiny(request.param, tmp_path_factory.mktemp(f"tiny_{request.param}"))


def test_batched_evaluation_equals_the_calculator(tiny_point: tuple[str, Path]) -> None:
    """Energy, forces and stress (eV/Å³, ASE sign) of one batched call = the ASE calculator's,
    also for a cell given with pbc (T, T, F): both treat it as periodic with its vacuum."""
    family, point = tiny_point
    module = get_family(family)
    calc = module.calculator(model_path(point), "cpu")
    structures = start_structures(6)
    structures[1].pbc = [True, True, False]
    for atoms, (energy, forces, stress) in zip(structures, module.batch_evaluator(model_path(point), "cpu")(structures), strict=True):
        probe = atoms.copy()
        probe.pbc = True
        probe.calc = calc
        assert energy == pytest.approx(probe.get_potential_energy(), rel=1e-6, abs=1e-5)
        np.testing.assert_allclose(forces, probe.get_forces(), rtol=0, atol=1e-6)
        np.testing.assert_allclose(stress, probe.get_stress(), rtol=0, atol=1e-7)
        assert stress.shape == (6,) and np.abs(stress).max() > 0


def demo_start_file(path: Path, n: int = 8) -> Path:
    """``n`` demo start structures (3-18 atoms) strained in-plane by up to 4 % and rattled by
    0.1 Å (a tiny model's forces are small near the demo's own starts), and two that fail inside
    the batch: atoms 0.2 Å apart (exploded) and two atoms at one place (non-finite, or exploded)."""
    rng = np.random.default_rng(5)
    structures = start_structures(n)
    for atoms in structures:
        atoms.set_cell(atoms.cell.array @ np.diag([*rng.uniform(0.96, 1.04, 2), 1.0]), scale_atoms=True)
        atoms.positions += rng.normal(0.0, 0.1, atoms.positions.shape)
    close = structures[0].copy()
    close.positions[1] = close.positions[0] + [0.2, 0.0, 0.0]
    close.info["material_id"] = "close"
    broken = structures[2].copy()
    broken.positions[1] = broken.positions[0]  # a zero-length bond: NaN from the model, or exploded
    broken.info["material_id"] = "overlap"
    ase.io.write(path, [*structures[:3], close, *structures[3:6], broken, *structures[6:]], format="extxyz")
    return path


def test_shard_batched_agrees_with_ase(tiny_point: tuple[str, Path], tmp_path: Path) -> None:
    """Same outcome for every structure, energy per atom within 1e-4 eV/atom, area within
    1e-3 Å²/atom, steps within 10 %; the broken structures fail alone."""
    family, point = tiny_point
    start = demo_start_file(tmp_path / "start.extxyz")
    runs = {}
    for engine in ("ase", "batched"):
        runs[engine] = relax_shard(family, point, start, 0, 20, tmp_path / f"{engine}.parquet", tmp_path / f"{engine}.extxyz",
                                   fmax=0.02, max_steps=150, device="cpu", engine=engine, batch_atoms=40)  # fmt: skip
    ase_run, batched = runs["ase"], runs["batched"]
    assert batched["material_id"].tolist() == ase_run["material_id"].tolist()
    assert batched["failure"].tolist() == ase_run["failure"].tolist()
    assert batched.set_index("material_id").loc["close", "failure"] == "exploded"
    assert batched.set_index("material_id").loc["overlap", "failure"] in ("non_finite_energy", "exploded")
    good = ase_run["failure"].isin(["", "step_limit"])  # the tiny M3GNet also explodes some itself
    assert good.sum() >= 4 and (ase_run.loc[good, "steps"] >= 20).all(), ase_run[["material_id", "failure", "steps"]]
    np.testing.assert_allclose(batched.loc[good, "energy_per_atom"], ase_run.loc[good, "energy_per_atom"], rtol=0, atol=1e-4)
    np.testing.assert_allclose(batched.loc[good, "area_per_atom"], ase_run.loc[good, "area_per_atom"], rtol=0, atol=1e-3)
    assert (abs(batched["steps"] - ase_run["steps"]) <= np.maximum(1, 0.1 * ase_run["steps"])).all()
    finals = ase.io.read(tmp_path / "batched.extxyz", ":")
    assert [a.info["material_id"] for a in finals] == batched["material_id"].tolist()


def test_family_without_batched_evaluation_falls_back_to_its_calculator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    import mlff2d.families

    family = SimpleNamespace(calculator=lambda model_path, device=None: Toy())
    monkeypatch.setattr(mlff2d.families, "get_family", lambda name: family)
    (tmp_path / "status.json").write_text('{"status": "ok", "model": "m"}')
    start = tmp_path / "start.extxyz"
    ase.io.write(start, [cu_bilayer(material_id="good-0"), mx2(material_id="nan-0")], format="extxyz")
    out = relax_shard("toy", tmp_path, start, 0, 5, tmp_path / "r.parquet", tmp_path / "s.extxyz", engine="batched")
    assert out["failure"].tolist() == ["", "non_finite_energy"]


def test_engine_and_batch_size_come_from_the_schema_to_the_rule() -> None:
    from mlff2d.cli import build_parser
    from mlff2d.config import load_schema

    relax_schema = load_schema()["properties"]["relax"]["properties"]
    args = build_parser().parse_args(["relax", "--family", "mace", "--point", "p", "--start", "s", "--shard", "0",
                                      "--shard-size", "1", "--records", "r", "--structures", "x"])  # fmt: skip
    assert (args.engine, args.batch_atoms) == (relax_schema["engine"]["default"], relax_schema["batch_atoms"]["default"]) == ("batched", 0)
    rule = (Path(__file__).resolve().parents[2] / "workflow" / "rules" / "relax.smk").read_text()
    assert "--engine {params.r[engine]} --batch-atoms {params.r[batch_atoms]}" in rule and "gpu=relax_gpus" in rule
