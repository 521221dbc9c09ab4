"""Outlier removal: every thesis threshold, both scopes, and a ledger that accounts for all."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import calc, mos2_lattice, step, trajectory, write_alexandria

from mlff2d.data.ingest import Source, ingest
from mlff2d.data.outliers import OutlierLimits, has_isolated_atom, remove_outliers
from mlff2d.io.store import read_frames


def pipeline(tmp_path: Path, data: dict, limits: OutlierLimits = OutlierLimits()) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    write_alexandria(tmp_path / "in.json", data)
    d = tmp_path / "out"
    ingest([Source(str(tmp_path / "in.json"), "alexandria")], d / "frames.parquet", d / "materials.csv")
    mats = remove_outliers(d / "frames.parquet", d / "materials.csv", d / "clean.parquet", d / "lf.parquet", d / "lm.csv", d / "summary.csv", limits)
    return mats, pd.read_parquet(d / "lf.parquet"), read_frames(d / "clean.parquet"), pd.read_csv(d / "summary.csv")


def big_cell(n: int) -> dict:
    """n atoms of S on a square grid 2.5 Å apart in one plane, 15 Å of vacuum."""
    side = int(np.ceil(np.sqrt(n)))
    lat = np.diag([2.5 * side, 2.5 * side, 18.0])
    frac = np.array([[i / side, j / side, 0.5] for i in range(side) for j in range(side)][:n])
    return step(energy=-4.0 * n, symbols=("S",) * n, frac=frac, lattice=lat, forces=[[0.0, 0.0, 0.0]] * n)


DATA = {
    "ok": [calc(trajectory([-21.0, -21.2, -21.3]))],
    "sites21": [calc([big_cell(21)])],
    "sites20": [calc([big_cell(20)])],
    "e_positive": [calc(trajectory([-21.0, 0.3]))],  # E/N = +0.1 eV/atom in step 1
    "e_too_low": [calc(trajectory([-61.0]))],  # E/N = -20.33 eV/atom
    "e_at_min": [calc(trajectory([-60.0]))],  # E/N = -20 eV/atom exactly: kept
    "force": [calc([step(), step(forces=[[0.0, 0.0, -20.5], [0, 0, 0], [0, 0, 0]])])],
    "stress": [calc([step(stress=[[0, 0, 0], [0, 501.0, 0], [0, 0, 0]])])],
    "isolated": [calc([step(symbols=("Mo", "S", "S"), lattice=mos2_lattice(a=12.0))])],
    "null_f": [calc([step(forces=[[None, 0, 0], [0, 0, 0], [0, 0, 0]]), step()])],
    "empty": [calc([])],
}


def test_every_reason_and_full_accounting(tmp_path: Path) -> None:
    mats, ledger, clean, summary = pipeline(tmp_path, DATA)
    reasons = mats.set_index("material_id")["reason"].to_dict()
    assert reasons == {
        "ok": "kept",
        "sites21": "too_many_sites",
        "sites20": "kept",
        "e_positive": "energy_out_of_range",
        "e_too_low": "energy_out_of_range",
        "e_at_min": "kept",
        "force": "force_too_large",
        "stress": "stress_too_large",
        "isolated": "isolated_atom",
        "null_f": "null_forces",
        "empty": "empty_trajectory",
    }
    # every input frame appears once in the ledger; the other frames of a removed material say so
    assert len(ledger) == sum(len(c["steps"]) for v in DATA.values() for c in v)
    force = ledger[ledger["material_id"] == "force"]["reason"].tolist()
    assert force == ["material_removed", "force_too_large"]
    assert set(clean["material_id"]) == {"ok", "sites20", "e_at_min"}
    assert len(clean) == 5
    counts = summary.set_index(["level", "reason"])["count"]
    assert counts["material", "kept"] == 3
    assert counts["material", "energy_out_of_range"] == 2
    assert counts[counts.index.get_level_values(0) == "material"].sum() == len(DATA)


def test_frame_scope_keeps_sound_frames(tmp_path: Path) -> None:
    mats, ledger, clean, _ = pipeline(tmp_path, DATA, OutlierLimits(scope="frame"))
    reasons = mats.set_index("material_id")["reason"]
    assert reasons["force"] == "kept" and reasons["null_f"] == "kept"
    assert reasons["e_too_low"] == "no_frames_left"
    assert mats.set_index("material_id").loc["force", "n_kept"] == 1
    assert ledger[ledger["material_id"] == "force"]["reason"].tolist() == ["kept", "force_too_large"]
    assert clean[clean["material_id"] == "null_f"]["step"].tolist() == [1]


def test_thresholds_are_configurable(tmp_path: Path) -> None:
    mats, *_ = pipeline(tmp_path, DATA, OutlierLimits(max_sites=25, force_max=25.0, stress_max_kbar=600.0))
    reasons = mats.set_index("material_id")["reason"]
    assert reasons["sites21"] == "kept" and reasons["force"] == "kept" and reasons["stress"] == "kept"


def test_stress_threshold_is_in_kbar(tmp_path: Path) -> None:
    # 499 kbar passes, 501 kbar fails: the store's eV/Å³ is converted back to kbar
    data = {"s499": [calc([step(stress=[[499.0, 0, 0], [0, 0, 0], [0, 0, 0]])])],
            "s501": [calc([step(stress=[[-501.0, 0, 0], [0, 0, 0], [0, 0, 0]])])]}
    mats, *_ = pipeline(tmp_path, data)
    assert mats.set_index("material_id")["reason"].to_dict() == {"s499": "kept", "s501": "stress_too_large"}


def test_isolated_atom_geometry() -> None:
    cell = np.diag([10.0, 10.0, 20.0])
    pair = np.array([[0.0, 0.0, 10.0], [2.0, 0.0, 10.0]])
    assert not has_isolated_atom(pair, cell, 5.0)
    assert has_isolated_atom(np.array([[0.0, 0.0, 10.0], [0.0, 6.0, 10.0]]), np.diag([12.0, 12.0, 20.0]), 5.0)
    assert not has_isolated_atom(np.array([[0.0, 0.0, 10.0], [0.0, 6.0, 10.0]]), cell, 5.0)  # image at 4 Å
    # a lone atom in a small cell has its own periodic images as neighbours
    assert not has_isolated_atom(np.array([[0.0, 0.0, 10.0]]), np.diag([3.0, 3.0, 20.0]), 5.0)
    # neighbour only through the periodic boundary
    assert has_isolated_atom(np.array([[0.5, 0.0, 10.0], [9.0, 0.0, 10.0], [5.0, 5.0, 10.0]]), cell, 4.0)
    assert not has_isolated_atom(np.array([[0.5, 0.0, 10.0], [9.0, 0.0, 10.0]]), cell, 1.6)


def test_bad_scope() -> None:
    with pytest.raises(ValueError, match="scope"):
        OutlierLimits(scope="everything")
