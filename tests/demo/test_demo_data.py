"""The embedded demo dataset (resources/demo/): CHGNet relaxations standing in for DFT.

(a) the committed files ingest cleanly and match their manifest and coverage requirements;
(b) a tiny regeneration reproduces the committed materials (skipped without chgnet);
(c) the formation-energy table is consistent with its definition.
"""

from __future__ import annotations

import bz2
import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlff2d.demo.chgnet import FUNCTIONAL, to_alexandria_step
from mlff2d.demo.data import formation_energies
from mlff2d.demo.jobs import alloy_configurations
from mlff2d.demo.structures import ALLOY_METALS, ALLOYS, CHALCOGENS, FORMATION_ALLOYS
from mlff2d.data.ingest import Source, ingest
from mlff2d.data.outliers import OutlierLimits, remove_outliers
from mlff2d.io.units import stress_to_ase

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "resources" / "demo"
HAS_CHGNET = importlib.util.find_spec("chgnet") is not None


@pytest.fixture(scope="module")
def manifest() -> dict:
    return json.loads((DEMO / "manifest.json").read_text())


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, pd.DataFrame, Path]:
    """The committed demo files through the pipeline's ingest: (materials, frames, store dir)."""
    from mlff2d.io.store import read_frames

    out = tmp_path_factory.mktemp("demo_ingest")
    sources = [Source(str(DEMO / part), "alexandria", "kbar_vasp", functional=FUNCTIONAL) for part in ("2d", "alloys")]
    mats = ingest(sources, out / "frames.parquet", out / "materials.csv")
    frames = read_frames(out / "frames.parquet", columns=["material_id", "source", "step", "n_atoms", "numbers", "cell", "energy", "stress", "problem"])
    return mats, frames, out


def _elements(numbers: np.ndarray) -> set[str]:
    from ase.data import chemical_symbols

    return {chemical_symbols[int(z)] for z in numbers}


# ----------------------------------------------------------------------------- (a) committed files


def test_committed_files_ingest_without_problems(ingested: tuple[pd.DataFrame, pd.DataFrame, Path]) -> None:
    mats, frames, _ = ingested
    assert (mats["problem"].fillna("") == "").all()
    assert (mats["skipped_calcs"] == 0).all()
    assert (frames["problem"] == "").all(), frames.loc[frames["problem"] != "", "problem"].value_counts()
    assert frames.groupby("material_id")["n_atoms"].max().max() <= 20
    assert mats["material_id"].is_unique


def test_committed_files_pass_the_outlier_filter(ingested: tuple[pd.DataFrame, pd.DataFrame, Path], tmp_path: Path) -> None:
    """Nothing in the demo data is an outlier by the study's limits (they were dropped at
    generation), so the filter keeps every material."""
    mats, _, store = ingested
    out = tmp_path
    result = remove_outliers(
        store / "frames.parquet", store / "materials.csv", out / "clean.parquet", out / "lf.parquet",
        out / "lm.csv", out / "summary.csv", OutlierLimits(),
    )  # fmt: skip
    assert (result["reason"] == "kept").all(), result["reason"].value_counts()
    assert len(result) == len(mats)


def test_coverage(ingested: tuple[pd.DataFrame, pd.DataFrame, Path]) -> None:
    """Dense chemistry: every MX2 of the alloy metals, several starts per compound, and alloy
    sets large enough for 8 val and 8 test structures at 80:10:10."""
    _, frames, _ = ingested
    first = frames[frames["step"] == 0]
    two_d = first[first["material_id"].str.startswith("demo-2d-")]
    assert 200 <= len(two_d) <= 260
    compositions = [frozenset(_elements(n)) for n in two_d["numbers"]]
    for m in ALLOY_METALS:
        for x in CHALCOGENS:
            assert compositions.count(frozenset({m, x})) >= 6, f"fewer than 6 {m}{x}2 starts in the 2D set"
    for alloy, (a, b) in ALLOYS.items():
        rows = first[first["material_id"].str.startswith(f"{alloy}-")]
        assert len(rows) >= 80, alloy
        sets = [_elements(n) for n in rows["numbers"]]
        assert {a, "S"} in sets and {b, "S"} in sets, f"{alloy}: end members missing"
        assert all(s <= {a, b, "S"} for s in sets)
        assert rows["n_atoms"].max() <= 18


def test_every_val_test_element_is_in_ten_training_materials(ingested: tuple[pd.DataFrame, pd.DataFrame, Path]) -> None:
    """With the demo config's split (80:10:10, seed 42), each element of a val/test material
    occurs in at least 10 training materials: what lets a small model generalise."""
    import yaml

    from mlff2d.config import split_ratios
    from mlff2d.data.split import split_materials

    _, frames, _ = ingested
    config = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())
    first = frames[(frames["step"] == 0) & frames["material_id"].str.startswith("demo-2d-")].set_index("material_id")
    split = split_materials(list(first.index), split_ratios(config, "80-10-10"), config["seed"]).set_index("material_id")["split"]
    elements = {m: _elements(first.loc[m, "numbers"]) for m in first.index}
    in_train = pd.Series([e for m, es in elements.items() if split[m] == "train" for e in es]).value_counts()
    needed = {e for m, es in elements.items() if split[m] != "train" for e in es}
    assert all(in_train.get(e, 0) >= 10 for e in needed), in_train.to_dict()


def test_starts_are_far_from_equilibrium(manifest: dict) -> None:
    """CHGNet takes at least 10 FIRE steps from each start, from forces above 0.5 eV/Å for
    nearly all (a few 1×1 cells are strained but keep small atomic forces by symmetry)."""
    entries = [m for m in manifest["materials"].values() if "problem" not in m]
    assert all(m["n_frames"] >= 11 for m in entries)
    two_d = [m for m in entries if "family" in m]
    assert np.mean([m["fmax_start"] > 0.5 for m in two_d]) >= 0.9
    assert np.median([m["fmax_start"] for m in entries]) > 1.0


def test_stress_magnitude_and_sign(ingested: tuple[pd.DataFrame, pd.DataFrame, Path]) -> None:
    """Stress is far below the 500 kbar limit, nearly zero at the end of a relaxation, and in
    ASE's sign once ingested: a start stretched well beyond the relaxed area is under tension
    (σ_xx + σ_yy > 0), a compressed one under compression."""
    _, frames, _ = ingested
    stress = np.stack(frames["stress"].to_numpy())
    assert np.abs(stress).max() * 1602.1766208 < 500
    last = frames.groupby("material_id").tail(1).set_index("material_id")
    in_plane = np.abs(np.stack(last["stress"].to_numpy())[:, [0, 1, 5]]) * 1602.1766208
    assert np.median(in_plane) < 2.0  # kbar, over the whole cell with its vacuum

    def area(cell: np.ndarray) -> float:
        c = np.asarray(cell).reshape(3, 3)
        return float(np.linalg.norm(np.cross(c[0], c[1])))

    first = frames[(frames["step"] == 0) & frames["material_id"].str.startswith("demo-2d-")].set_index("material_id")
    ratio = np.array([area(first.loc[m, "cell"]) / area(last.loc[m, "cell"]) for m in first.index])
    trace = np.array([s[0] + s[1] for s in first["stress"]])
    strong = np.abs(ratio - 1) > 0.03
    assert strong.sum() >= 10
    agree = np.sign(trace[strong]) == np.sign(ratio[strong] - 1)
    assert agree.mean() >= 0.9, list(zip(first.index[strong], ratio[strong], trace[strong]))


def test_manifest_matches_files(manifest: dict, ingested: tuple[pd.DataFrame, pd.DataFrame, Path]) -> None:
    _, frames, _ = ingested
    per_material = frames.groupby("material_id").agg(
        n_frames=("step", "size"), n_atoms=("n_atoms", "first"), source=("source", "first")
    )
    first = frames[frames["step"] == 0].set_index("material_id")
    assert set(manifest["files"]) == {str(p.relative_to(DEMO)) for p in DEMO.rglob("*.json.bz2")}
    for rel, stats in manifest["files"].items():
        path = DEMO / rel
        assert stats["size_bytes"] == path.stat().st_size
        rows = per_material[per_material["source"] == str(path)]
        assert stats["n_materials"] == len(rows)
        assert stats["total_frames"] == rows["n_frames"].sum()
        fp = stats["frames_per_trajectory"]
        assert (fp["min"], fp["max"]) == (rows["n_frames"].min(), rows["n_frames"].max())
        assert fp["mean"] == pytest.approx(rows["n_frames"].mean(), abs=1e-3)
        elements = set().union(*(_elements(first.loc[m, "numbers"]) for m in rows.index))
        assert sorted(elements) == stats["elements"]
    kept = {k: v for k, v in manifest["materials"].items() if "problem" not in v}
    assert set(kept) == set(per_material.index)
    for mid, entry in kept.items():
        assert entry["n_frames"] == per_material.loc[mid, "n_frames"], mid
        assert entry["n_atoms"] == per_material.loc[mid, "n_atoms"], mid
        assert entry["elements"] == sorted(_elements(first.loc[mid, "numbers"])), mid
    totals = manifest["totals"]
    assert totals["n_materials"] == len(per_material)
    assert totals["total_frames"] == len(frames)
    assert totals["n_dropped"] == len(manifest["dropped"])
    assert totals["size_bytes"] < 12e6
    readme = (DEMO / "README.md").read_text()
    assert "CHGNet" in readme and "not DFT" in readme
    for d in manifest["dropped"]:
        assert d["material_id"] in readme


def test_committed_steps_round_trip_through_pymatgen() -> None:
    from pymatgen.core import Structure

    data = json.loads(bz2.open(DEMO / "alloys" / "MoWS2.json.bz2").read())
    step = data["MoWS2-0001"][0]["steps"][0]
    s = Structure.from_dict(step["structure"])
    assert s.composition.reduced_formula == "MoS2"
    assert np.allclose(s.lattice.matrix[:2, 2], 0.0) and s.lattice.c > 15


def test_stress_conversion_is_vasp_sign() -> None:
    """A frame under tension (ASE σ > 0) is written as negative kbar and read back exactly."""
    frame = {
        "numbers": np.array([42, 16, 16]),
        "positions": np.array([[0.0, 0.0, 9.0], [1.6, 0.9, 10.6], [1.6, 0.9, 7.4]]),
        "cell": np.array([[3.2, 0, 0], [-1.6, 2.77128, 0], [0, 0, 18.0]]),
        "energy": -22.5,
        "forces": np.zeros((3, 3)),
        "stress": np.array([0.01, 0.02, 0.0, 0.0, 0.0, -0.003]),
    }
    step = to_alexandria_step(frame)
    assert step["stress"][0][0] == pytest.approx(-16.0218, abs=1e-3)
    assert step["stress"][0][1] == step["stress"][1][0] == pytest.approx(4.8065, abs=1e-3)
    back = stress_to_ase(np.array(step["stress"])[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]], "kbar_vasp")
    assert np.allclose(back, frame["stress"], atol=1e-7)


def test_alloy_configurations_are_prefix_stable() -> None:
    pytest.importorskip("icet")
    full = alloy_configurations("MoWS2", None)
    assert len(full) == 53  # all 1H metal-sublattice configurations up to 6 sites
    short = alloy_configurations("MoWS2", 5)
    assert [a.get_chemical_symbols() for a in short] == [a.get_chemical_symbols() for a in full[:5]]
    assert short[0].get_chemical_formula() == "MoS2" and short[1].get_chemical_formula() == "S2W"
    assert all(len(a) <= 18 and list(a.pbc) == [True, True, False] for a in full)


# ----------------------------------------------------------------------------- (b) regeneration


@pytest.mark.slow
@pytest.mark.skipif(not HAS_CHGNET, reason="chgnet is not installed (pip install chgnet==0.4.2): cannot regenerate")
def test_tiny_regeneration_matches_committed(manifest: dict, tmp_path: Path) -> None:
    from mlff2d.demo.data import generate_demo

    small = generate_demo(tmp_path, n_2d=2, alloys=["MoWS2"], max_configs=2, seed=manifest["arguments"]["seed"], starts=1)
    committed = manifest["materials"]
    ids_2d = sorted(k for k in small["materials"] if k.startswith("demo-2d-"))
    assert ids_2d == sorted(k for k in committed if k.startswith("demo-2d-"))[:2]
    assert sorted(k for k in small["materials"] if k.startswith("MoWS2-")) == ["MoWS2-0001", "MoWS2-0002"]
    for mid, entry in small["materials"].items():
        ref = committed[mid]
        assert "problem" not in entry
        assert entry["elements"] == ref["elements"], mid
        assert entry["n_atoms"] == ref["n_atoms"], mid
        assert abs(entry["n_frames"] - ref["n_frames"]) <= 0.2 * ref["n_frames"], mid
    # the end members' formation energy is 0 in the tiny run too
    fe = pd.read_csv(tmp_path / "alloys" / "formation_energies.csv")
    assert (fe["formation_energy_per_site_eV"] == 0).all()
    # end to end: the stress read back by the pipeline is CHGNet's own (ASE sign, eV/Å³)
    from chgnet.model.dynamics import CHGNetCalculator
    from mlff2d.io.store import read_frames, row_to_atoms

    ingest([Source(str(tmp_path / "2d"), "alexandria", "kbar_vasp")], tmp_path / "f.parquet", tmp_path / "m.csv")
    row = read_frames(tmp_path / "f.parquet").iloc[0]
    atoms = row_to_atoms(row)
    atoms.calc = CHGNetCalculator(use_device="cpu")
    # coordinates are rounded to 1e-6 (fractional) in the files: agree to ~0.02 kbar
    assert np.allclose(atoms.get_stress(), np.asarray(row["stress"]), atol=1e-5)
    assert atoms.get_potential_energy() == pytest.approx(row["energy"], abs=1e-3)


# ----------------------------------------------------------------------------- (c) formation energies


def test_formation_energies() -> None:
    fe = pd.read_csv(DEMO / "alloys" / "formation_energies.csv")
    assert list(fe.columns) == [
        "alloy", "material_id", "n_metal_sites", "x", "energy_per_site_eV",
        "formation_energy_per_site_eV", "formation_energy_per_atom_eV",
    ]  # fmt: skip
    assert sorted(fe["alloy"].unique()) == sorted(FORMATION_ALLOYS)
    for alloy, g in fe.groupby("alloy"):
        ends = g[g["x"].isin([0.0, 1.0])]
        assert sorted(set(ends["x"])) == [0.0, 1.0], alloy
        # the reference is the lowest-energy start of each end member; the other start relaxed to
        # the same minimum within what fmax 0.05 eV/Å leaves (up to ~1 meV per site)
        assert (ends.groupby("x")["formation_energy_per_site_eV"].min() == 0).all()
        assert ends["formation_energy_per_site_eV"].between(0, 2e-3).all(), ends
        e_a = float(ends.loc[ends["x"] == 0, "energy_per_site_eV"].min())
        e_b = float(ends.loc[ends["x"] == 1, "energy_per_site_eV"].min())
        expected = g["energy_per_site_eV"] - (1 - g["x"]) * e_a - g["x"] * e_b
        assert np.allclose(g["formation_energy_per_site_eV"], expected, atol=5e-6)  # 6-decimal rounding
        # small mixing energies (a few meV/atom), as for these alloys in DFT
        assert g["formation_energy_per_atom_eV"].abs().max() < 0.05
    assert np.allclose(fe["formation_energy_per_atom_eV"], fe["formation_energy_per_site_eV"] / 3, atol=1e-6)
    assert (fe["n_metal_sites"].between(1, 6)).all()


def test_formation_energies_match_alloy_files() -> None:
    fe = pd.read_csv(DEMO / "alloys" / "formation_energies.csv").set_index("material_id")
    for alloy in FORMATION_ALLOYS:
        data = json.loads(bz2.open(DEMO / "alloys" / f"{alloy}.json.bz2").read())
        assert set(data) == set(fe.index[fe["alloy"] == alloy])
        for mid, calcs in data.items():
            last = calcs[-1]["steps"][-1]
            n = fe.loc[mid, "n_metal_sites"]
            assert len(last["structure"]["sites"]) == 3 * n
            assert last["energy"] / n == pytest.approx(fe.loc[mid, "energy_per_site_eV"], abs=1e-5)


def test_formation_energy_definition() -> None:
    """E_f = [E - (1-x) N e_A - x N e_B] / N per metal site, from final energies."""

    def res(mid: str, n: int, x: float, e: float) -> dict:
        return {"material_id": mid, "alloy": "MoWS2", "n_metal_sites": n, "x": x, "problem": "", "frames": [{"energy": e}]}

    rows = formation_energies([res("a", 1, 0.0, -10.0), res("b", 1, 1.0, -12.0), res("c", 4, 0.25, -4 * 10.5 - 0.04)])
    by_id = {r["material_id"]: r for r in rows}
    assert by_id["a"]["formation_energy_per_site_eV"] == 0 and by_id["b"]["formation_energy_per_site_eV"] == 0
    assert by_id["c"]["formation_energy_per_site_eV"] == pytest.approx(-0.01, abs=1e-6)
    assert by_id["c"]["formation_energy_per_atom_eV"] == pytest.approx(-0.01 / 3, abs=1e-6)


def test_prototype_list() -> None:
    """Names are unique (they key the pre-relaxation cache) and cells stay within 20 atoms."""
    from mlff2d.demo.structures import build_primitive, prototypes

    protos = prototypes()
    assert len({p.name for p in protos}) == len(protos)
    for p in protos:
        n = len(build_primitive(p)) * abs(round(np.linalg.det(np.asarray(p.supercell))))
        assert n <= 20, p.name
