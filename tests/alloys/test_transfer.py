"""Transfer learning to alloys (mlff2d.alloys.transfer): the transfer source, nested learning-curve
subsets, and real fine-tuning of both families from a tiny universal model on a tiny MoWS2
alloy set: the fine-tuned model starts from the universal weights and works as a calculator
(it relaxes an alloy cell); a broken alloy export is recorded as failed, never raised.
About a minute on one core."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import ase.io
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from ase import Atoms
from ase.build import mx2
from ase.calculators.lj import LennardJones

from mlff2d.data.export import M3GNET_SCHEMA, m3gnet_row
from mlff2d.families import METRIC_COLUMNS, get_family
from mlff2d.alloys.transfer import (
    nested_subsets,
    resolve_transfer_source,
    train_alloy,
    training_set_size,
    write_subset_export,
)

os.environ.setdefault("OMP_NUM_THREADS", "1")
torch = pytest.importorskip("torch")

pytestmark = [
    pytest.mark.slow,  # real trainings
    pytest.mark.usefixtures("one_torch_thread"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:Environment variable TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"),
]

OFFSETS = {"Mo": -10.0, "W": -12.0, "Nb": -9.0, "S": -4.0}
TINY = {
    "m3gnet": {"nblocks": 1, "units": 16, "dim_node_embedding": 16, "dim_edge_embedding": 16, "epochs": 2},
    "mace": {"epochs": 2, "r_max": 4.0, "max_L": 0, "num_channels": 8, "correlation": 2, "swa": False, "seed": 7,
             "valid_batch_size": 6, "stress_weight": 10.0},
}


def structures(n: int, seed: int, alloy: bool) -> list[Atoms]:
    """MX2 monolayers (15 Å vacuum), strained and rattled, LJ + per-element offset labels; the
    universal set has MoS2, WS2 and NbS2 cells, the alloy set Mo(x)W(1-x)S2 2x1 and 3x1 cells."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        if alloy:
            atoms = mx2("MoS2", a=3.19, thickness=3.13, vacuum=7.5).repeat((2 + i % 2, 1, 1))
            metals = [k for k, z in enumerate(atoms.numbers) if z == 42]
            atoms.numbers[metals[0]] = 74
        else:
            atoms = mx2(f"{('Mo', 'W', 'Nb')[i % 3]}S2", a=3.19, thickness=3.13, vacuum=7.5)
            if i % 2:
                atoms = atoms.repeat((2, 1, 1))
        strain = np.eye(3)
        strain[:2, :2] += rng.normal(0, 0.02, (2, 2))
        atoms.set_cell(atoms.cell[:] @ strain, scale_atoms=True)
        atoms.rattle(0.05, seed=int(rng.integers(1 << 30)))
        atoms.pbc = True
        atoms.calc = LennardJones(sigma=2.1, epsilon=0.05, rc=4.0, smooth=True)
        energy = atoms.get_potential_energy() + sum(OFFSETS[s] for s in atoms.get_chemical_symbols())
        forces, stress = atoms.get_forces(), atoms.get_stress()
        atoms.calc = None
        atoms.info.update(material_id=f"{'alloy' if alloy else 'uni'}-{seed}-{i // 2}", step=i % 2, energy=energy)
        atoms.arrays["forces_label"] = forces
        atoms.info["stress_label"] = stress
        out.append(atoms)
    return out


def write_export(directory: Path, family: str, splits: dict[str, list[Atoms]]) -> Path:
    """The export of one family (mlff2d.data.export formats)."""
    from ase.calculators.singlepoint import SinglePointCalculator

    directory.mkdir(parents=True, exist_ok=True)
    for split, images in splits.items():
        if family == "m3gnet":
            rows = []
            for a in images:
                b = a.copy()
                b.calc = SinglePointCalculator(b, energy=a.info["energy"], forces=a.arrays["forces_label"], stress=a.info["stress_label"])
                rows.append(m3gnet_row(b, a.info["material_id"], a.info["step"]))
            pq.write_table(pa.Table.from_pylist(rows, schema=M3GNET_SCHEMA), directory / f"{split}.parquet")
        else:
            out = []
            for a in images:
                b = Atoms(a.numbers, a.positions, cell=a.cell, pbc=True)
                b.info.update(material_id=a.info["material_id"], step=a.info["step"], REF_energy=a.info["energy"], REF_stress=a.info["stress_label"])
                b.arrays["REF_forces"] = a.arrays["forces_label"]
                out.append(b)
            ase.io.write(directory / f"{split}.extxyz", out, format="extxyz")
    return directory


def fake_point(directory: Path, status: str, energy_mae: float | None = None, relax_mae: float | None = None) -> Path:
    """A sweep point's status.json and metrics.csv (final direct val energy MAE ``energy_mae``)
    and, with ``relax_mae``, its validation relaxation summary."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "status.json").write_text(json.dumps({"status": status, "model": str(directory / "model"), "reason": "boom"}))
    rows = [] if energy_mae is None else [[1, 99.0, 1.0, 1.0, "GPa", 1.0], [2, energy_mae, 1.0, 1.0, "GPa", 1.0]]
    pd.DataFrame(rows, columns=METRIC_COLUMNS).to_csv(directory / "metrics.csv", index=False)
    if relax_mae is not None:
        (directory / "relax" / "val").mkdir(parents=True, exist_ok=True)
        summary = {"n": 4, "energy": {"mae": relax_mae, "median": relax_mae}, "area": {"mae": 0.1}}
        (directory / "relax" / "val" / "summary.json").write_text(json.dumps(summary, allow_nan=True))
    return directory


# ---------------------------------------------------------------------------------------------
# transfer source, subsets (no training)
# ---------------------------------------------------------------------------------------------


def test_transfer_source_best_or_named(tmp_path: Path) -> None:
    uff = tmp_path / "uff" / "mace"
    good = fake_point(uff / "ecut~1e6" / "lr~0.01" / "bs~8", "ok", 5.0, relax_mae=7.0)
    better = fake_point(uff / "ecut~1e6" / "lr~0.003" / "bs~8", "ok", 3.0, relax_mae=6.0)
    failed = fake_point(uff / "ecut~1e6" / "lr~0.1" / "bs~8", "failed")
    points = [good, better, failed]
    best = resolve_transfer_source(points, "best")
    assert best["label"] == "ecut~1e6/lr~0.003/bs~8" and best["model"] == str(better / "model")
    assert best["scores"] == {"ecut~1e6/lr~0.01/bs~8": 7.0, "ecut~1e6/lr~0.003/bs~8": 6.0, "ecut~1e6/lr~0.1/bs~8": None}
    assert resolve_transfer_source(points, "ecut~1e6/lr~0.01/bs~8")["point"] == str(good)
    assert resolve_transfer_source(points, "ecut~1e6/lr~0.01/bs~8")["criterion"] == "named"
    with pytest.raises(ValueError, match="failed"):
        resolve_transfer_source(points, "ecut~1e6/lr~0.1/bs~8")
    with pytest.raises(ValueError, match="not a sweep point"):
        resolve_transfer_source(points, "ecut~1e6/lr~9/bs~8")
    for criterion in ("best", "best_direct"):
        with pytest.raises(ValueError, match="no sweep point finished"):
            resolve_transfer_source([failed], criterion)


def test_best_is_the_relaxation_criterion_where_the_two_disagree(tmp_path: Path) -> None:
    """The thesis's situation: the lowest direct val energy MAE (e_cut 0.01, lr 1e-3) is not
    the lowest val relaxation energy MAE (e_cut 1e6, lr 1e-4). "best" takes the relaxation
    one, "best_direct" the direct one; a NaN or infinite score is never chosen, whichever is
    lowest otherwise."""
    uff = tmp_path / "uff" / "m3gnet"
    direct_winner = fake_point(uff / "ecut~0.01" / "lr~0.001" / "bs~128", "ok", 38.47, relax_mae=21.0)
    relax_winner = fake_point(uff / "ecut~1e6" / "lr~0.0001" / "bs~128", "ok", 39.14, relax_mae=17.5)
    nan_relax = fake_point(uff / "ecut~1e6" / "lr~0.001" / "bs~128", "ok", 50.0, relax_mae=float("nan"))
    inf_relax = fake_point(uff / "ecut~0.02" / "lr~0.001" / "bs~128", "ok", float("nan"), relax_mae=float("inf"))
    no_summary = fake_point(uff / "ecut~0.02" / "lr~0.0001" / "bs~128", "ok", 1.0)  # never relaxed
    points = [direct_winner, relax_winner, nan_relax, inf_relax, no_summary]

    best = resolve_transfer_source(points, "best")
    assert best["label"] == "ecut~1e6/lr~0.0001/bs~128" and best["criterion"] == "best"
    assert best["score_name"] == "val_relaxation_energy_mae_meV_per_atom"
    assert best["scores"] == {
        "ecut~0.01/lr~0.001/bs~128": 21.0,
        "ecut~1e6/lr~0.0001/bs~128": 17.5,
        "ecut~1e6/lr~0.001/bs~128": None,
        "ecut~0.02/lr~0.001/bs~128": None,
        "ecut~0.02/lr~0.0001/bs~128": None,
    }
    direct = resolve_transfer_source(points[:4], "best_direct")
    assert direct["label"] == "ecut~0.01/lr~0.001/bs~128" and direct["criterion"] == "best_direct"
    assert direct["scores"]["ecut~0.02/lr~0.001/bs~128"] is None  # NaN direct MAE: not chosen
    assert "relaxation" in best["criterion_description"] and "direct" in direct["criterion_description"]
    # only non-finite scores left: an error, never a NaN pick
    with pytest.raises(ValueError, match="finite"):
        resolve_transfer_source([nan_relax, inf_relax, no_summary], "best")


def test_transfer_source_json_names_criterion_and_scores(tmp_path: Path) -> None:
    """train_alloy writes the choice to transfer_source.json (valid JSON: null, never NaN), and a
    transfer with no finite candidate is recorded as failed."""
    uff = tmp_path / "uff" / "mace"
    a = fake_point(uff / "ecut~1e6" / "lr~0.01" / "bs~8", "ok", 1.0, relax_mae=float("nan"))
    b = fake_point(uff / "ecut~1e6" / "lr~0.003" / "bs~8", "ok", 2.0, relax_mae=4.0)
    out = tmp_path / "alloy"
    status = train_alloy("mace", tmp_path / "no-export", out, {}, "transfer", points=[a, b], transfer_from="best", device="cpu")
    assert status["status"] == "failed"  # no export to train on, but the source was chosen first
    source = json.loads((out / "transfer_source.json").read_text(), parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
    assert source["label"] == "ecut~1e6/lr~0.003/bs~8" and source["criterion"] == "best"
    assert source["scores"] == {"ecut~1e6/lr~0.01/bs~8": None, "ecut~1e6/lr~0.003/bs~8": 4.0}
    none = train_alloy("mace", tmp_path / "no-export", tmp_path / "none", {}, "transfer", points=[a], device="cpu")
    assert none["status"] == "failed" and "finite" in none["reason"]


def test_nested_subsets_are_nested_and_seeded() -> None:
    ids = [f"m{i:02d}" for i in range(20)]
    subsets = nested_subsets(ids, [0.05, 0.1, 0.25, 0.5, 1.0], seed=3)
    sizes = [len(subsets[f]) for f in (0.05, 0.1, 0.25, 0.5, 1.0)]
    assert sizes == [1, 2, 5, 10, 20]
    ordered = [set(subsets[f]) for f in (0.05, 0.1, 0.25, 0.5, 1.0)]
    assert all(a <= b for a, b in zip(ordered, ordered[1:]))
    assert nested_subsets(list(reversed(ids)), [0.25], seed=3)[0.25] == subsets[0.25]  # order-independent
    assert nested_subsets(ids, [0.25], seed=4)[0.25] != subsets[0.25]
    with pytest.raises(ValueError, match="fractions"):
        nested_subsets(ids, [1.5], seed=3)


@pytest.mark.parametrize("family", ["m3gnet", "mace"])
def test_subset_export_keeps_whole_materials(family: str, tmp_path: Path) -> None:
    export = write_export(tmp_path / "export", family, {"train": structures(12, 1, True), "val": structures(4, 2, True), "test": structures(4, 3, True)})
    full = training_set_size(export, family)
    assert full == {"n_train_frames": 12, "n_train_materials": 6}
    info = write_subset_export(export, family, 0.5, 42, tmp_path / "half")
    assert info["n_train_materials"] == 3 and info["n_train_frames"] == 6  # two frames per material
    assert training_set_size(tmp_path / "half", family) == {"n_train_frames": 6, "n_train_materials": 3}
    suffix = ".parquet" if family == "m3gnet" else ".extxyz"
    for split in ("val", "test"):
        assert (tmp_path / "half" / f"{split}{suffix}").read_bytes() == (export / f"{split}{suffix}").read_bytes()
    quarter = write_subset_export(export, family, 0.25, 42, tmp_path / "quarter")
    assert set(quarter["materials"]) <= set(info["materials"])
    assert write_subset_export(export, family, 1.0, 42, tmp_path / "all")["n_train_frames"] == 12


# ---------------------------------------------------------------------------------------------
# real fine-tuning of both families
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def universal(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    """Per family: a trained universal sweep point (the best) and a failed one."""
    from mlff2d.training.sweep import resolve_params, train_point

    root = tmp_path_factory.mktemp("uff")
    splits = {"train": structures(24, 10, False), "val": structures(6, 11, False)}
    out = {}
    for family in ("m3gnet", "mace"):
        data = write_export(root / "data" / family, family, splits)
        point = root / "uff" / family / "ecut~1e6" / "lr~0.01" / "bs~4"
        status = train_point(family, data, point, resolve_params(family, TINY[family], 0.01, 4), device="cpu")
        assert status["status"] == "ok", status
        (point / "relax" / "val").mkdir(parents=True)  # what "best" ranks by (relaxation rules write it)
        (point / "relax" / "val" / "summary.json").write_text(json.dumps({"energy": {"mae": 12.0}}))
        out[family] = [point, fake_point(root / "uff" / family / "ecut~1e6" / "lr~0.1" / "bs~4", "failed")]
    return out


@pytest.fixture(scope="module")
def alloy_data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("alloy")
    splits = {"train": structures(12, 20, True), "val": structures(4, 21, True), "test": structures(2, 22, True)}
    return {family: write_export(root / family, family, splits) for family in ("m3gnet", "mace")}


def val_energy_mae(family: str, model: Path, data: Path) -> float:
    """Validation energy MAE (meV/atom) of a model through its ASE calculator."""
    calc = get_family(family).calculator(model, device="cpu")
    if family == "m3gnet":
        frame = pd.read_parquet(data / "val.parquet")
        images = [Atoms(r.numbers, np.reshape(r.positions, (-1, 3)), cell=np.reshape(r.cell, (3, 3)), pbc=True) for r in frame.itertuples()]
        refs = frame["energy"].tolist()
    else:
        images = ase.io.read(data / "val.extxyz", index=":")
        refs = [a.info["REF_energy"] for a in images]
    errors = []
    for atoms, ref in zip(images, refs):
        atoms = atoms.copy()
        atoms.calc = calc
        errors.append(abs(atoms.get_potential_energy() - ref) / len(atoms))
    return 1000 * float(np.mean(errors))


@pytest.mark.parametrize("family", ["m3gnet", "mace"])
def test_fine_tuning_starts_from_the_universal_weights(family: str, universal: dict[str, list[Path]], alloy_data: dict[str, Path], tmp_path: Path) -> None:
    from mlff2d.relaxation.relax import relax_structure
    from mlff2d.training.sweep import resolve_params

    data = alloy_data[family]
    source_mae = val_energy_mae(family, universal[family][0] / "model" / ("mace.model" if family == "mace" else ""), data)
    # lr so small the weights cannot move, and the universal element energies kept (a refit
    # changes the offsets, see test_refit_element_energies): the first validation is the
    # universal model's
    params = resolve_params(family, {**TINY[family], "epochs": 1, "refit_element_energies": False}, 1e-12, 4)
    outdir = tmp_path / "transfer"
    status = train_alloy(family, data, outdir, params, "transfer", points=universal[family], transfer_from="best", device="cpu")
    assert status["status"] == "ok", status
    source = json.loads((outdir / "transfer_source.json").read_text())
    assert source["label"] == "ecut~1e6/lr~0.01/bs~4" and status["transfer_from"] == source["label"]
    assert json.loads((outdir / "training_data.json").read_text())["n_train_materials"] == 6
    first = pd.read_csv(outdir / "metrics.csv")["energy_mae_meV_per_atom"].iloc[0]
    assert first == pytest.approx(source_mae, rel=1e-3)
    tuned = Path(status["model"])
    assert val_energy_mae(family, tuned, data) == pytest.approx(source_mae, rel=1e-3)

    # a from-scratch model of the same size does not start there
    scratch = train_alloy(family, data, tmp_path / "normal", params, "normal", device="cpu")
    assert scratch["status"] == "ok" and not (tmp_path / "normal" / "transfer_source.json").exists()
    assert pd.read_csv(tmp_path / "normal" / "metrics.csv")["energy_mae_meV_per_atom"].iloc[0] != pytest.approx(source_mae, rel=0.05)

    # and the fine-tuned model works as a calculator: it relaxes an alloy cell
    atoms = structures(1, 99, True)[0]
    final, record = relax_structure(atoms, get_family(family).calculator(tuned, device="cpu"), fmax=0.1, max_steps=30)
    assert record["failure"] in ("", "step_limit") and np.isfinite(record["energy_per_atom"])


def test_mace_freezes_the_first_blocks(universal: dict[str, list[Path]], alloy_data: dict[str, Path], tmp_path: Path) -> None:
    """The weights as loaded from the universal model (element-dependent ones restricted to
    the alloy's elements) come from a run with lr 1e-12; with freeze_blocks 1 and a real lr
    the node embedding and the first interaction block keep them, the second block moves."""
    from mlff2d.training.sweep import resolve_params

    runs = {}
    for label, lr, freeze in (("loaded", 1e-12, 0), ("frozen", 0.05, 1)):
        params = resolve_params("mace", {**TINY["mace"], "epochs": 1, "freeze_blocks": freeze}, lr, 4)
        status = train_alloy("mace", alloy_data["mace"], tmp_path / label, params, "transfer", points=universal["mace"], device="cpu")
        assert status["status"] == "ok", status
        runs[label] = torch.load(status["model"], weights_only=False).state_dict()
    loaded, tuned = runs["loaded"], runs["frozen"]
    frozen = [k for k in tuned if k.startswith(("node_embedding.", "interactions.0.", "products.0.")) and tuned[k].is_floating_point()]
    assert frozen and all(torch.allclose(loaded[k], tuned[k], rtol=0, atol=1e-9) for k in frozen)
    moved = [k for k in tuned if k.startswith(("interactions.1.", "readouts.")) and tuned[k].is_floating_point()]
    assert any(not torch.allclose(loaded[k], tuned[k], rtol=0, atol=1e-6) for k in moved)


@pytest.mark.parametrize("family", ["m3gnet", "mace"])
def test_broken_alloy_export_is_recorded_not_raised(family: str, universal: dict[str, list[Path]], tmp_path: Path) -> None:
    from mlff2d.training.sweep import resolve_params

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / ("train.parquet" if family == "m3gnet" else "train.extxyz")).write_text("not a training file\n")
    params = resolve_params(family, TINY[family], 0.01, 4)
    for mode in ("normal", "transfer"):
        status = train_alloy(family, broken, tmp_path / mode, params, mode, points=universal[family], device="cpu")
        assert status["status"] == "failed" and status["reason"]
        assert json.loads((tmp_path / mode / "status.json").read_text())["status"] == "failed"
        assert (tmp_path / mode / "metrics.csv").is_file()
    # no usable universal model: the transfer run is recorded as failed too
    status = train_alloy(family, broken, tmp_path / "nosource", params, "transfer", points=universal[family][1:], device="cpu")
    assert status["status"] == "failed" and "no transfer source" in status["reason"]


def element_energies(family: str, model: Path) -> dict[int, float]:
    """The per-element energy offsets (eV) a saved model adds: M3GNet's element refs, MACE's E0s."""
    if family == "m3gnet":
        import matgl
        from ase.data import atomic_numbers

        from mlff2d.families.m3gnet import MATGL_DEFAULT_ELEMENTS

        refs = matgl.load_model(Path(model).absolute()).element_refs.property_offset.detach().cpu().numpy()
        return {atomic_numbers[s]: float(r) for s, r in zip(MATGL_DEFAULT_ELEMENTS, refs)}
    loaded = torch.load(model, weights_only=False, map_location="cpu")
    energies = loaded.atomic_energies_fn.atomic_energies.detach().cpu().numpy().reshape(-1)
    return {int(z): float(e) for z, e in zip(loaded.atomic_numbers.tolist(), energies)}


def least_squares_offsets(family: str, data: Path) -> dict[int, float]:
    """The documented refit: least squares of the training energies on the element counts
    (minimum norm), over the elements of the training set."""
    if family == "m3gnet":
        frame = pd.read_parquet(data / "train.parquet")
        numbers, energies = [np.asarray(n) for n in frame["numbers"]], frame["energy"].to_numpy(float)
    else:
        images = ase.io.read(data / "train.extxyz", index=":")
        numbers, energies = [a.numbers for a in images], np.array([a.info["REF_energy"] for a in images])
    zs = sorted({int(z) for n in numbers for z in n})
    counts = np.array([[np.count_nonzero(n == z) for z in zs] for n in numbers], dtype=float)
    solution = np.linalg.lstsq(counts, energies, rcond=None)[0]
    return dict(zip(zs, solution.tolist()))


@pytest.mark.slow
@pytest.mark.parametrize("family", ["m3gnet", "mace"])
@pytest.mark.parametrize("refit", [True, False])
def test_refit_element_energies(family: str, refit: bool, universal: dict[str, list[Path]], alloy_data: dict[str, Path], tmp_path: Path) -> None:
    """refit_element_energies true: the transfer model's offsets are the least-squares fit on the
    alloy training set (what normal training fits); false: the universal model's. The setting is
    recorded in transfer_source.json and params.yaml beside the model."""
    import yaml

    from mlff2d.training.sweep import resolve_params

    data = alloy_data[family]
    params = resolve_params(family, {**TINY[family], "epochs": 1, "refit_element_energies": refit}, 1e-12, 4)
    status = train_alloy(family, data, tmp_path, params, "transfer", points=universal[family], device="cpu")
    assert status["status"] == "ok", status
    got = element_energies(family, Path(status["model"]))
    source_model = universal[family][0] / "model" / ("mace.model" if family == "mace" else "")
    universal_offsets = element_energies(family, source_model)
    fitted = least_squares_offsets(family, data)
    expected = fitted if refit else {z: universal_offsets[z] for z in fitted}
    assert {z: got[z] for z in fitted} == pytest.approx(expected, rel=1e-6, abs=1e-6)
    # the two settings really differ here (the universal set had NbS2 too, other offsets)
    assert {z: universal_offsets[z] for z in fitted} != pytest.approx(fitted, rel=1e-3)
    assert json.loads((tmp_path / "transfer_source.json").read_text())["refit_element_energies"] is refit
    assert yaml.safe_load((tmp_path / "params.yaml").read_text())["refit_element_energies"] is refit
