"""The e_cut rule on hand-made trajectories."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from conftest import calc, trajectory, write_alexandria

from mlff2d.data.ingest import Source, ingest
from mlff2d.data.outliers import remove_outliers
from mlff2d.data.select_steps import select_dataset, select_steps


def test_rule_by_hand() -> None:
    # per-atom energies; differences: 0.5, 0.05, 0.005, 0.0005
    e = [-5.0, -5.5, -5.55, -5.555, -5.5555]
    assert select_steps(e, 0.01).tolist() == [0, 1]
    assert select_steps(e, 0.001).tolist() == [0, 1, 2]
    assert select_steps(e, 0.0001).tolist() == [0, 1, 2, 3]  # the last step is not kept by the rule
    assert select_steps(e, 0.0001, keep_last=True).tolist() == [0, 1, 2, 3, 4]


def test_strictly_greater() -> None:
    # differences of exactly e_cut do not qualify: the fallback applies
    assert select_steps([-1.0, -1.5, -1.5, -1.5], 0.5).tolist() == [0, 1, 3]
    assert select_steps([-1.0, -1.5, -1.5, -1.5], 0.49).tolist() == [0]
    assert select_steps([-1.0, -1.0, -2.0], 0.999999).tolist() == [1]


def test_fallback_first_middle_last() -> None:
    e = [-5.0] * 11
    assert select_steps(e, 1e6).tolist() == [0, 5, 10]
    assert select_steps([-5.0] * 10, 1e6).tolist() == [0, 4, 9]  # floor(9 / 2)
    assert select_steps([-5.0, -5.1], 1e6).tolist() == [0, 1]
    assert select_steps([-5.0], 1e6).tolist() == [0]
    assert select_steps([], 0.01).tolist() == []
    # the earlier work's [0, N/3, N]
    assert select_steps([-5.0] * 10, 1e6, fallback=[0.0, 1 / 3, 1.0]).tolist() == [0, 3, 9]


def test_dataset_uses_energy_per_atom(tmp_path: Path) -> None:
    # 3 atoms: total energies -30, -30.09, -30.12 -> per atom differences 0.03 and 0.01
    write_alexandria(tmp_path / "in.json", {"m": [calc(trajectory([-30.0, -30.09, -30.12]))],
                                           "flat": [calc(trajectory([-30.0] * 7))]})
    d = tmp_path / "d"
    ingest([Source(str(tmp_path / "in.json"), "alexandria")], d / "f.parquet", d / "m.csv")
    remove_outliers(d / "f.parquet", d / "m.csv", d / "c.parquet", d / "lf.parquet", d / "lm.csv", d / "s.csv")
    sel = select_dataset(d / "c.parquet", d / "sel.parquet", 0.02)
    assert sel.groupby("material_id")["step"].apply(list).to_dict() == {"m": [0], "flat": [0, 3, 6]}
    assert pd.read_parquet(d / "sel.parquet").equals(sel)


def test_selection_summary_counts_by_hand(tmp_path: Path) -> None:
    """Three materials of 5 frames (1 atom each): A relaxes with big steps (the rule keeps steps
    0-2, not its last), B is flat (falls back to 0, 2, 4: its last survives), C has one big first
    step (keeps step 0 only). A, B train; C test."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mlff2d.data.select_steps import SUMMARY_COLUMNS, selection_summary

    energies = {"A": [-1.0, -1.5, -1.8, -1.9, -1.9], "B": [-2.0] * 5, "C": [-3.0, -3.5, -3.5, -3.5, -3.5]}
    rows = [{"material_id": m, "step": i, "n_atoms": 1, "energy": e} for m, es in energies.items() for i, e in enumerate(es)]
    clean = tmp_path / "clean.parquet"
    pq.write_table(pa.Table.from_pylist(rows), clean)
    selected = {}
    for label, e_cut, keep_last in (("0.01", 0.01, False), ("1e6", 1e6, False), ("0.01+last", 0.01, True)):
        selected[label] = tmp_path / f"{label}.parquet"
        select_dataset(clean, selected[label], e_cut, keep_last=keep_last)
    split = tmp_path / "split.csv"
    pd.DataFrame({"material_id": ["A", "B", "C"], "split": ["train", "train", "test"]}).to_csv(split, index=False)
    summary = selection_summary(clean, selected, {"s": split})
    assert list(summary.columns) == SUMMARY_COLUMNS
    got = summary.set_index(["e_cut", "split", "set"])[["n_materials", "n_frames", "n_last_frames", "n_materials_fallback"]]
    # e_cut 0.01: A keeps 0,1,2 (3 frames), B falls back 0,2,4 (3), C keeps 0 (1); only B keeps its last
    assert got.loc[("0.01", "all", "all")].tolist() == [3, 7, 1, 1]
    assert got.loc[("0.01", "s", "train")].tolist() == [2, 6, 1, 1]
    assert got.loc[("0.01", "s", "val")].tolist() == [0, 0, 0, 0]
    assert got.loc[("0.01", "s", "test")].tolist() == [1, 1, 0, 0]
    # e_cut 1e6 always falls back: every last frame survives
    assert got.loc[("1e6", "all", "all")].tolist() == [3, 9, 3, 3]
    # keep_last adds the last frame where the rule kept steps
    assert got.loc[("0.01+last", "all", "all")].tolist() == [3, 9, 3, 1]
