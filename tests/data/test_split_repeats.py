"""Split repeats: K seeded material-level splits, independent of e_cut, and their config form."""

from __future__ import annotations

from pathlib import Path

import ase.io
import pandas as pd
import pytest
from conftest import calc, step, write_alexandria

from mlff2d.config import ConfigError, split_ratios, split_repeats, validate_config
from mlff2d.data.export import export_family
from mlff2d.data.ingest import Source, ingest
from mlff2d.data.outliers import remove_outliers
from mlff2d.data.select_steps import select_dataset
from mlff2d.data.split import parse_split_instance, repeat_seed, split_dataset, split_instance, split_instances, union_splits


def test_instance_names_round_trip() -> None:
    assert split_instances("80-10-10", 3) == ["80-10-10", "80-10-10.r1", "80-10-10.r2"]
    for name in ("80-10-10", "90-5-5", "a_b"):
        for k in range(4):
            assert parse_split_instance(split_instance(name, k)) == (name, k)
    assert repeat_seed(42, 0) == 42  # repeat 0 is the plain split, byte-identical to K = 1
    assert len({repeat_seed(42, k) for k in range(5)}) == 5


def test_config_accepts_both_forms_with_one_default() -> None:
    config = validate_config({"splits": {"a": [0.8, 0.1, 0.1], "b": {"ratios": [0.9, 0.05, 0.05], "repeats": 2}, "c": {"ratios": [0.8, 0.1, 0.1]}},
                              "uff": {"split": "a"}, "alloys": {"splits": ["a"]}})
    assert [split_repeats(config, s) for s in "abc"] == [1, 2, 1]
    assert split_ratios(config, "b") == [0.9, 0.05, 0.05]
    with pytest.raises(ConfigError, match="'splits.b'"):
        validate_config({"splits": {"b": {"ratios": [0.9, 0.2, 0.1], "repeats": 2}}, "uff": {"split": "b"}, "alloys": {"splits": ["b"]}})
    with pytest.raises(ConfigError, match=r"repeats\.uff\.m3gnet"):
        validate_config({"splits": {"a": [0.8, 0.1, 0.1]}, "uff": {"split": "a"}, "alloys": {"splits": ["a"]},
                         "repeats": {"uff": {"m3gnet": ["ecut~9/lr~1/bs~1"]}}})


@pytest.fixture
def dataset(tmp_path: Path) -> dict[str, Path]:
    """Ten materials of five steps each, cleaned, with selections at two e_cuts."""
    data = {f"m{i}": [calc([step(energy=-21.0 - 0.05 * k * (k % 2 + i % 3)) for k in range(5)])] for i in range(10)}
    write_alexandria(tmp_path / "in.json", data)
    d = tmp_path / "d"
    ingest([Source(str(tmp_path / "in.json"), "alexandria")], d / "f.parquet", d / "m.csv")
    remove_outliers(d / "f.parquet", d / "m.csv", d / "c.parquet", d / "lf.parquet", d / "lm.csv", d / "s.csv")
    for e in (0.01, 1e6):
        select_dataset(d / "c.parquet", d / f"sel_{e:g}.parquet", e)
    return {"dir": d, "clean": d / "c.parquet", "ledger": d / "lm.csv"}


def test_two_repeats_differ_each_material_level_and_same_across_ecuts(dataset: dict[str, Path]) -> None:
    d = dataset["dir"]
    sets = {}
    for k in range(2):
        split_dataset(dataset["ledger"], d / f"split_{k}.csv", [0.6, 0.2, 0.2], repeat_seed(42, k))
        sets[k] = pd.read_csv(d / f"split_{k}.csv").set_index("material_id")["split"]
    assert not sets[0].equals(sets[1])  # the repeats are different splits of the same materials
    assert sorted(sets[0].index) == sorted(sets[1].index) == [f"m{i}" for i in range(10)]
    for k in range(2):
        members: dict[str, dict[str, set[str]]] = {}
        for e in (0.01, 1e6):
            out = d / f"mace_{k}_{e:g}"
            export_family(dataset["clean"], d / f"sel_{e:g}.parquet", d / f"split_{k}.csv", "mace", out)
            members[f"{e:g}"] = {s: {a.info["material_id"] for a in ase.io.read(out / f"{s}.extxyz", index=":")} for s in ("train", "val", "test")}
        assert members["0.01"] == members["1e+06"]  # the split of a repeat does not depend on e_cut
        for s, ids in members["0.01"].items():  # material-level: every frame of a material in its set
            assert ids == set(sets[k][sets[k] == s].index)


def test_combined_repeat_is_the_union_of_the_alloy_repeats(tmp_path: Path) -> None:
    paths = []
    for alloy in ("A", "B"):
        ledger = pd.DataFrame({"material_id": [f"{alloy}-{i}" for i in range(10)], "reason": "kept"})
        ledger.to_csv(tmp_path / f"{alloy}.csv", index=False)
        split_dataset(tmp_path / f"{alloy}.csv", tmp_path / f"{alloy}.r1.csv", [0.8, 0.1, 0.1], repeat_seed(42, 1))
        paths.append(tmp_path / f"{alloy}.r1.csv")
    union = union_splits(paths, tmp_path / "u.csv").set_index("material_id")["split"]
    for p in paths:
        part = pd.read_csv(p).set_index("material_id")["split"]
        assert union[part.index].equals(part)
