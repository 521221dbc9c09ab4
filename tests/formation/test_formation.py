"""Formation energies per substitutional site and per atom (hand-made cells with known answers,
the demo data, a user table), the composition baseline, and tables 4.8/4.9 and figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import ase.io
import numpy as np
import pandas as pd
import pytest
from ase import Atoms
from ase.build import make_supercell, mx2
from ase.calculators.singlepoint import SinglePointCalculator
from formation_helpers import DEMO_ALLOYS, ROOT, demo_relax_sets

from mlff2d.io.table_files import DASH
from mlff2d.formation.energies import (
    alloy_metals,
    composition_baseline,
    end_members,
    formation_frame,
    read_formation_energies,
    write_formation_energies,
)
from mlff2d.formation.report import table_4_8, collect, write_report

BIN = Path(sys.executable).parent


def cell(metals: list[str], energy: float, mid: str) -> Atoms:
    """A 1H MX2 supercell (len(metals) × 1) with the given metals on its metal sites."""
    prim = mx2("MoS2", kind="2H", a=3.19, thickness=3.13, vacuum=7.5)
    atoms = make_supercell(prim, np.diag([len(metals), 1, 1]))
    symbols = atoms.get_chemical_symbols()
    it = iter(metals)
    atoms.set_chemical_symbols([next(it) if s == "Mo" else s for s in symbols])
    atoms.info["material_id"] = mid
    atoms.calc = SinglePointCalculator(atoms, energy=energy)
    return atoms


def hand_made() -> list[tuple[str, Atoms]]:
    # end members: MoS2 -20.0 eV/site (a 2-site MoS2 cell at -20.1 eV/site wins), WS2 -24.0 eV/site
    return [
        ("train", cell(["Mo"], -20.0, "MoS2-1")),
        ("test", cell(["Mo", "Mo"], -40.2, "MoS2-2")),
        ("val", cell(["W"], -24.0, "WS2-1")),
        ("train", cell(["Mo", "W"], -44.1 - 0.3, "MoW")),  # E_f = -44.4 - (-20.1 - 24) = -0.3 eV/cell
        ("train", cell(["Mo", "Mo", "W"], -64.2 + 0.6, "Mo2W")),  # E_f = +0.6 eV/cell
    ]


def test_formation_energy_per_site_and_per_atom_on_hand_made_cells() -> None:
    frame, info = formation_frame("MoWS2", hand_made())
    f = frame.set_index("material_id")
    assert f.loc["MoW", "n_sites"] == 2 and f.loc["MoW", "n_atoms"] == 6
    assert f.loc["MoW", "formation_energy_per_site_eV"] == pytest.approx(-0.15)
    assert f.loc["MoW", "formation_energy_per_atom_eV"] == pytest.approx(-0.05)  # per site / 3
    assert f.loc["MoW", "x"] == pytest.approx(0.5)
    assert f.loc["Mo2W", "formation_energy_per_site_eV"] == pytest.approx(0.2)
    assert f.loc["Mo2W", "formation_energy_per_atom_eV"] == pytest.approx(0.6 / 9)
    assert f.loc["Mo2W", "x"] == pytest.approx(1 / 3)  # fraction of W, the second metal of the name
    assert f.loc["MoS2-2", "formation_energy_per_site_eV"] == pytest.approx(0.0)  # the chosen end member
    assert f.loc["MoS2-1", "formation_energy_per_site_eV"] == pytest.approx(0.1)
    assert f.loc["WS2-1", "formation_energy_per_atom_eV"] == pytest.approx(0.0)
    # the end members' source is recorded
    assert info["end_members"]["Mo"]["material_id"] == "MoS2-2" and info["end_members"]["Mo"]["set"] == "test"
    assert info["end_members"]["W"] == {"material_id": "WS2-1", "energy_per_site_eV": -24.0, "formula": "S2W", "set": "val"}
    assert list(info["metals"]) == ["Mo", "W"]


def test_missing_end_member_is_an_error() -> None:
    structures = [a for _, a in hand_made() if a.info["material_id"] != "WS2-1"]
    with pytest.raises(ValueError, match=r"no pristine end member of \['W'\]"):
        end_members(structures, ("Mo", "W"))


def test_alloy_metals_follow_the_name() -> None:
    assert alloy_metals("MoWS2") == ("Mo", "W")
    assert alloy_metals("NbMoS2") == ("Nb", "Mo")
    assert alloy_metals("my_alloy", ["W", "Mo"]) == ("Mo", "W")  # atomic-number order
    with pytest.raises(ValueError, match="two metals"):
        alloy_metals("x", ["Mo"])


def test_demo_formation_energies_match_the_demo_table(tmp_path: Path) -> None:
    relax = demo_relax_sets(tmp_path, "NbMoS2")
    frame = write_formation_energies("NbMoS2", relax, tmp_path / "fe.csv", tmp_path / "em.json")
    ref = pd.read_csv(DEMO_ALLOYS / "formation_energies.csv", dtype={"material_id": str})
    merged = frame.merge(ref, on="material_id", suffixes=("", "_demo"))
    n = len(ref[ref["alloy"] == "NbMoS2"])
    assert len(merged) == len(frame) == n == 106  # 53 configurations in two starts
    assert np.allclose(merged["formation_energy_per_site_eV"], merged["formation_energy_per_site_eV_demo"], atol=2e-6)
    assert np.allclose(merged["formation_energy_per_atom_eV"], merged["formation_energy_per_atom_eV_demo"], atol=2e-6)
    assert np.allclose(merged["x"], merged["x_demo"], atol=1e-6)
    info = json.loads((tmp_path / "em.json").read_text())
    ends = {v["material_id"] for v in info["end_members"].values()}  # the lower-energy start of each
    assert len(ends) == 2 and {m[-3:] for m in ends} == {"001", "002"}, ends
    assert sum(info["counts"].values()) == n and set(read_formation_energies(tmp_path / "fe.csv")["set"]) == {"train", "val", "test"}


def test_user_table_with_external_ce_and_units(tmp_path: Path) -> None:
    relax = demo_relax_sets(tmp_path, "MoWS2")
    ref = pd.read_csv(DEMO_ALLOYS / "formation_energies.csv", dtype={"material_id": str})
    table = ref.assign(fe_mev=ref["formation_energy_per_atom_eV"] * 1000.0, casm=ref["formation_energy_per_atom_eV"] * 1000.0 + 0.5)
    table = table[table["material_id"] != "MoWS2-0005"]  # a dataset material without a row is left out
    table.to_csv(tmp_path / "table.csv", index=False)
    frame = write_formation_energies("MoWS2", relax, tmp_path / "fe.csv", tmp_path / "em.json",
                                     table={"table": tmp_path / "table.csv", "energy_column": "fe_mev", "unit": "meV/atom",
                                            "external_ce_column": "casm", "alloy_column": "alloy"})
    assert len(frame) == 105 and "MoWS2-0005" not in set(frame["material_id"])
    merged = frame.merge(ref, on="material_id", suffixes=("", "_demo"))
    assert np.allclose(merged["formation_energy_per_site_eV"], merged["formation_energy_per_site_eV_demo"], atol=5e-6)  # demo CSV: 6 decimals per atom
    # external CE: +0.5 meV/atom = +1.5 meV/site for MX2
    assert np.allclose(merged["external_ce_per_site_eV"] - merged["formation_energy_per_site_eV"], 0.0015)
    assert frame["source"].str.startswith("table").all()


def test_composition_baseline_uses_the_training_split_only() -> None:
    frame, _ = formation_frame("MoWS2", hand_made())
    base = composition_baseline(frame)
    changed = frame.copy()
    changed.loc[changed["set"] != "train", "formation_energy_per_site_eV"] += 5.0
    again = composition_baseline(changed)
    assert np.allclose(base["predicted_per_site_eV"], again["predicted_per_site_eV"])
    # zero at both end members, per atom = per site × sites / atoms
    assert np.allclose(base.loc[base["x"].isin([0.0, 1.0]), "predicted_per_site_eV"], 0.0)
    assert np.allclose(base["predicted_per_atom_eV"], base["predicted_per_site_eV"] / 3)


def _predictions(path: Path, frame: pd.DataFrame, offset_eV: float) -> None:
    path.mkdir(parents=True, exist_ok=True)
    out = frame[["material_id", "set", "formation_energy_per_atom_eV"]].copy()
    out["predicted_per_atom_eV"] = out["formation_energy_per_atom_eV"] + offset_eV
    out.to_csv(path / "predictions.csv", index=False)


def test_tables_mark_best_and_show_failed_models_as_dash(tmp_path: Path) -> None:
    frame, _ = formation_frame("MoWS2", hand_made())
    alloys = []
    for name in ("MoWS2", "NbMoS2"):
        d = tmp_path / name
        d.mkdir()
        frame.assign(alloy=name).to_csv(d / "formation_energies.csv", index=False)
        _predictions(d / "ce", frame, 0.0002)  # 0.2 meV/atom
        _predictions(d / "baseline", frame, 0.001)
        _predictions(d / "nequip" / "dft", frame, 0.0001)
        (d / "nequip" / "dft" / "status.json").write_text('{"status": "ok"}')
        (d / "nequip" / "ml1").mkdir(parents=True)
        (d / "nequip" / "ml1" / "status.json").write_text('{"status": "failed", "reason": "x"}')
        alloys.append((name, d))
    summary = collect(alloys)
    t48 = table_4_8(summary, ["MoWS2", "NbMoS2"])
    row = t48[(t48["set"] == "test") & (t48["key"] == "nequip_dft")].iloc[0]
    assert row["MoWS2"] == pytest.approx(0.1) and row["best_MoWS2"]
    assert t48[(t48["set"] == "test") & (t48["key"] == "ce")].iloc[0]["second_MoWS2"]
    assert (t48.loc[t48["key"] == "nequip_ml1", "MoWS2"] == DASH).all()
    assert (t48.loc[t48["key"] == "nequip_ml2", "MoWS2"] == DASH).all()  # not run
    assert "external_ce" not in set(t48["key"])  # no external CE given: no row
    paths = write_report(alloys, tmp_path / "report", split="80-10-10")
    md = (tmp_path / "report" / "table_4_8.md").read_text()
    assert "| Test | CE (icet, train split) | <u>0.200</u> | <u>0.200</u> |" in md
    assert "| ML (relaxed DFT) | **0.100** |" in md and f"| ML 1 (normal) | {DASH} | {DASH} |" in md
    tex = (tmp_path / "report" / "table_4_8.tex").read_text()
    assert r"\textbf{0.100}" in tex and r"\underline{0.200}" in tex and "--" in tex
    t49 = pd.read_csv(tmp_path / "report" / "table_4_9.csv")
    assert list(t49["set"][:3]) == ["train", "val", "test"]
    assert np.allclose(t49["MAE CE [meV/atom]"].astype(float), 0.2)
    for stem in ("formation_distribution", "parity_ce", "parity_nequip_dft", "parity_baseline"):
        assert (tmp_path / "report" / f"{stem}.png").stat().st_size > 1000
    assert all(p.exists() for p in paths)


@pytest.mark.slow
def test_demo_dry_run_schedules_the_formation_study(tmp_path: Path) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "resources").symlink_to(ROOT / "resources")
    text = (ROOT / "config" / "demo.yaml").read_text().replace("campaign: demo", "campaign: dry")
    (tmp_path / "config" / "config.yaml").write_text(text)
    out = subprocess.run([str(BIN / "snakemake"), "-s", str(ROOT / "Snakefile"), "--directory", str(tmp_path), "-n",
                          "--cores", "1", "formation"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout + out.stderr
    for rule, n in (("formation_energies", 2), ("cluster_expansion", 2), ("formation_baseline", 2), ("formation_nequip", 6),
                    ("formation_report", 1)):
        assert text.count(f"rule {rule}:") == n, rule
    assert "alloys/mace/MoWS2/transfer/ecut~1e6/split~80-10-10/relax/train/final.extxyz" in text


def test_table_6_2_is_the_nequip_validation_mae_per_cell(tmp_path: Path) -> None:
    """Per cell = per atom × the cell's atoms: the hand-made val cells have 3 and 6 atoms."""
    frame, _ = formation_frame("MoWS2", hand_made())
    frame.loc[frame["material_id"] == "MoS2-2", "set"] = "val"  # val: WS2-1 (3 atoms), MoS2-2 (6 atoms)
    d = tmp_path / "MoWS2"
    d.mkdir()
    frame.to_csv(d / "formation_energies.csv", index=False)
    for sub, offset in (("dft", 0.0001), ("ml1", 0.0004), ("ml2", -0.0002)):  # eV/atom
        _predictions(d / "nequip" / sub, frame, offset)
        (d / "nequip" / sub / "status.json").write_text('{"status": "ok"}')
    _predictions(d / "ce", frame, 0.00001)  # not a row of table 6.2
    write_report([("MoWS2", d)], tmp_path / "report")
    t62 = pd.read_csv(tmp_path / "report" / "table_6_2.csv")
    assert list(t62["key"]) == ["nequip_dft", "nequip_ml1", "nequip_ml2"] and set(t62["set"]) == {"val"}
    assert (t62["unit"] == "meV/cell").all()
    got = dict(zip(t62["key"], t62["MoWS2"].astype(float)))
    assert got["nequip_dft"] == pytest.approx(0.1 * 4.5) and got["nequip_ml1"] == pytest.approx(0.4 * 4.5)
    assert got["nequip_ml2"] == pytest.approx(0.2 * 4.5)  # mean of 3 and 6 atoms: 4.5
    md = (tmp_path / "report" / "table_6_2.md").read_text()
    assert "| Val | ML (relaxed DFT) | **0.450** |" in md and "| ML 2 (transfer) | <u>0.900</u> |" in md
    summary = pd.read_csv(tmp_path / "report" / "formation_summary.csv")
    row = summary[(summary["model"] == "nequip_dft") & (summary["set"] == "val")].iloc[0]
    assert row["mae"] == pytest.approx(0.1) and row["mae_cell"] == pytest.approx(0.45)
