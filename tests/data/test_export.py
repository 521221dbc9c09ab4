"""Exports per model family: keys, units and signs, the stress mask, and the relaxation sets."""

from __future__ import annotations

from pathlib import Path

import ase.io
import numpy as np
import pandas as pd
import pytest
from conftest import calc, step, write_alexandria

from mlff2d.data.export import export_family, export_relax_sets
from mlff2d.data.ingest import Source, ingest
from mlff2d.data.outliers import remove_outliers
from mlff2d.data.select_steps import select_dataset
from mlff2d.data.split import split_dataset

# VASP stress (kbar, compression positive): xx=10, yy=20, xy=5, and out-of-plane garbage
STRESS_KBAR = [[10.0, 5.0, 7.0], [5.0, 20.0, 8.0], [7.0, 8.0, 9.0]]
KBAR_TO_EV_A3 = -0.1 / 160.21766208


@pytest.fixture
def prepared(tmp_path: Path) -> dict[str, Path]:
    data = {f"m{i}": [calc([step(energy=-21.0 - 0.1 * k, stress=STRESS_KBAR) for k in range(4)])] for i in range(10)}
    write_alexandria(tmp_path / "in.json", data)
    d = tmp_path / "d"
    ingest([Source(str(tmp_path / "in.json"), "alexandria")], d / "f.parquet", d / "m.csv")
    remove_outliers(d / "f.parquet", d / "m.csv", d / "c.parquet", d / "lf.parquet", d / "lm.csv", d / "s.csv")
    select_dataset(d / "c.parquet", d / "sel.parquet", 0.01)  # every step but the last: 3 per material
    split_dataset(d / "lm.csv", d / "split.csv", [0.8, 0.1, 0.1], 0)
    return {"clean": d / "c.parquet", "selected": d / "sel.parquet", "split": d / "split.csv", "dir": d}


def test_mace_extxyz(prepared: dict[str, Path]) -> None:
    counts = export_family(prepared["clean"], prepared["selected"], prepared["split"], "mace", prepared["dir"] / "mace")
    assert counts == {"train": 24, "val": 3, "test": 3}
    frames = ase.io.read(prepared["dir"] / "mace" / "train.extxyz", index=":")
    assert len(frames) == 24
    atoms = frames[0]
    assert atoms.calc is None  # labels only under REF_ keys, never as ASE calculator results
    assert atoms.info["REF_energy"] == pytest.approx(-21.0)
    assert atoms.arrays["REF_forces"][1] == pytest.approx([0.01, -0.02, 0.0])
    voigt = np.array([10.0, 20.0, 9.0, 8.0, 7.0, 5.0]) * KBAR_TO_EV_A3
    assert atoms.info["REF_stress"] == pytest.approx(voigt)
    assert {"material_id", "step"} <= set(atoms.info)


def test_m3gnet_labels_gpa_with_out_of_plane_nan(prepared: dict[str, Path]) -> None:
    export_family(prepared["clean"], prepared["selected"], prepared["split"], "m3gnet", prepared["dir"] / "m3g")
    table = pd.read_parquet(prepared["dir"] / "m3g" / "train.parquet")
    assert len(table) == 24
    s = np.asarray(table.iloc[0]["stress_gpa"]).reshape(3, 3)
    # GPa, tension positive: 10 kbar compression -> -1 GPa
    assert s[0, 0] == pytest.approx(-1.0) and s[1, 1] == pytest.approx(-2.0)
    assert s[0, 1] == pytest.approx(-0.5) and s[1, 0] == pytest.approx(-0.5)
    assert np.isnan(s[2]).all() and np.isnan(s[:, 2]).all()


def test_nequip_extxyz_uses_ase_keys(prepared: dict[str, Path]) -> None:
    export_family(prepared["clean"], prepared["selected"], prepared["split"], "nequip", prepared["dir"] / "neq")
    atoms = ase.io.read(prepared["dir"] / "neq" / "val.extxyz", index=0)
    assert atoms.get_potential_energy() == pytest.approx(-21.0)
    assert atoms.get_stress()[0] == pytest.approx(10.0 * KBAR_TO_EV_A3)


def test_splits_partition_materials(prepared: dict[str, Path]) -> None:
    export_family(prepared["clean"], prepared["selected"], prepared["split"], "mace", prepared["dir"] / "mace")
    ids = {s: {a.info["material_id"] for a in ase.io.read(prepared["dir"] / "mace" / f"{s}.extxyz", index=":")} for s in ("train", "val", "test")}
    assert not (ids["train"] & ids["val"]) and not (ids["train"] & ids["test"]) and not (ids["val"] & ids["test"])
    split = pd.read_csv(prepared["split"]).set_index("material_id")["split"]
    assert all(split[m] == s for s, ms in ids.items() for m in ms)


def test_relax_sets_first_and_last_frame(prepared: dict[str, Path]) -> None:
    counts = export_relax_sets(prepared["clean"], prepared["split"], prepared["dir"] / "relax")
    assert counts == {"val": 1, "test": 1}
    start = ase.io.read(prepared["dir"] / "relax" / "test_start.extxyz", index=":")
    ref = ase.io.read(prepared["dir"] / "relax" / "test_reference.extxyz", index=":")
    assert start[0].info["step"] == 0 and ref[0].info["step"] == 3
    assert ref[0].get_potential_energy() == pytest.approx(-21.3)
    assert start[0].info["material_id"] == ref[0].info["material_id"]


def test_relax_sets_with_train(prepared: dict[str, Path]) -> None:
    counts = export_relax_sets(prepared["clean"], prepared["split"], prepared["dir"] / "all", sets=("train", "val", "test"))
    assert counts == {"train": 8, "val": 1, "test": 1}
    train = ase.io.read(prepared["dir"] / "all" / "train_reference.extxyz", index=":")
    split = pd.read_csv(prepared["split"])
    assert sorted(a.info["material_id"] for a in train) == sorted(split.loc[split["split"] == "train", "material_id"])


def test_unknown_family(prepared: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="unknown model family 'schnet'"):
        export_family(prepared["clean"], prepared["selected"], prepared["split"], "schnet", prepared["dir"] / "x")
