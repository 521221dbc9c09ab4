"""Material-level splits: ratios, determinism, and independence from e_cut."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from mlff2d.data.split import split_dataset, split_materials, union_splits

IDS = [f"agm{i:05d}" for i in range(1000)]


def test_ratios_and_disjoint() -> None:
    for ratios, expected in (([0.9, 0.05, 0.05], (900, 50, 50)), ([0.8, 0.1, 0.1], (800, 100, 100))):
        s = split_materials(IDS, ratios, seed=1)
        counts = s["split"].value_counts()
        assert (counts["train"], counts["val"], counts["test"]) == expected
        assert s["material_id"].is_unique and set(s["material_id"]) == set(IDS)


def test_seeded_and_order_independent() -> None:
    a = split_materials(IDS, [0.8, 0.1, 0.1], seed=7)
    b = split_materials(list(reversed(IDS)), [0.8, 0.1, 0.1], seed=7)
    c = split_materials(IDS, [0.8, 0.1, 0.1], seed=8)
    assert a.equals(b)
    assert not a.equals(c)


def test_tiny_sets_get_val_and_test() -> None:
    s = split_materials(["a", "b", "c", "d", "e"], [0.9, 0.05, 0.05], seed=0)
    assert sorted(s["split"].value_counts().to_dict().items()) == [("test", 1), ("train", 3), ("val", 1)]


def test_bad_ratios() -> None:
    with pytest.raises(ValueError, match="summing to 1"):
        split_materials(IDS, [0.8, 0.1, 0.2], seed=0)


def test_byte_identical_files(tmp_path: Path) -> None:
    ledger = pd.DataFrame({"material_id": IDS, "reason": ["kept"] * 990 + ["force_too_large"] * 10})
    ledger.to_csv(tmp_path / "lm.csv", index=False)
    split_dataset(tmp_path / "lm.csv", tmp_path / "a.csv", [0.9, 0.05, 0.05], 42)
    split_dataset(tmp_path / "lm.csv", tmp_path / "b.csv", [0.9, 0.05, 0.05], 42)
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    out = pd.read_csv(tmp_path / "a.csv")
    assert len(out) == 990  # removed materials are never split


def test_union_keeps_each_material_in_its_set(tmp_path: Path) -> None:
    a = split_materials([f"A-{i}" for i in range(10)], [0.8, 0.1, 0.1], 1)
    b = split_materials([f"B-{i}" for i in range(10)], [0.8, 0.1, 0.1], 1)
    a.to_csv(tmp_path / "a.csv", index=False)
    b.to_csv(tmp_path / "b.csv", index=False)
    union = union_splits([tmp_path / "a.csv", tmp_path / "b.csv"], tmp_path / "u.csv")
    assert len(union) == 20 and dict(zip(union["material_id"], union["split"])) == {
        **dict(zip(a["material_id"], a["split"])), **dict(zip(b["material_id"], b["split"]))}
    b.iloc[:1].to_csv(tmp_path / "c.csv", index=False)
    with pytest.raises(ValueError, match="'B-0' is in more than one split.*b.csv.*c.csv"):
        union_splits([tmp_path / "b.csv", tmp_path / "c.csv"], tmp_path / "x.csv")
