"""Tests of the dataset figures stage and the periodic-table heat map."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.image as mpimg  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import pytest  # noqa: E402
from ase import Atoms  # noqa: E402
from ase.build import graphene, mx2  # noqa: E402

from mlff2d.data.figures import (  # noqa: E402
    element_counts,
    energies_per_atom,
    energy_overlay_figure,
    make_dataset_figures,
    material_elements,
    selection_stats,
    spacegroup_numbers,
    training_element_counts,
)
from mlff2d.io.ptable import element_position, plot_periodic_table, save_figure  # noqa: E402
from mlff2d.io.store import FrameBuffer, FrameWriter  # noqa: E402

# material id -> (relaxed structure, number of steps); all with ~15 Å of vacuum along z
MATERIALS = {
    "MoS2": (mx2("MoS2", "2H", a=3.18, thickness=3.19, vacuum=7.5), 4),
    "graphene": (graphene(a=2.46, vacuum=7.5), 3),
    "hBN": (graphene("BN", a=2.50, vacuum=7.5), 3),
    "WS2": (mx2("WS2", "2H", a=3.19, thickness=3.14, vacuum=7.5), 2),
}
SELECTED = {
    "0.01": {"MoS2": [0, 3], "graphene": [2], "hBN": [0, 1, 2]},
    "1e6": {"MoS2": [3], "graphene": [2], "hBN": [2], "WS2": [1]},
}


def _add_trajectory(buf: FrameBuffer, material_id: str, relaxed: Atoms, steps: range, n_steps: int) -> None:
    """Frames rattled less and less; the last step is the relaxed, symmetric structure."""
    rng = np.random.default_rng(len(material_id))
    n = len(relaxed)
    for step in steps:
        shake = 0.3 * (n_steps - 1 - step) / max(n_steps - 1, 1)
        positions = relaxed.positions + shake * rng.standard_normal((n, 3))
        buf.add(
            material_id, "test", step, relaxed.numbers, positions, relaxed.cell.array,
            energy=-5.0 * n - step, forces=rng.standard_normal((n, 3)), stress=1e-3 * rng.standard_normal(6),
        )


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    """A clean store (MoS2 split over two row groups) and two selections."""
    root = tmp_path_factory.mktemp("store")
    clean = root / "clean.parquet"
    buf = FrameBuffer()
    with FrameWriter(clean) as writer:
        for material_id, (atoms, n_steps) in MATERIALS.items():
            if material_id == "MoS2":  # first two steps in their own row group
                _add_trajectory(buf, material_id, atoms, range(2), n_steps)
                writer.write(buf.to_table())
                buf.clear()
                _add_trajectory(buf, material_id, atoms, range(2, n_steps), n_steps)
            else:
                _add_trajectory(buf, material_id, atoms, range(n_steps), n_steps)
        writer.write(buf.to_table())
    selected = {}
    for label, chosen in SELECTED.items():
        rows = [(m, s) for m, steps in chosen.items() for s in steps]
        table = pa.table({"material_id": [m for m, _ in rows], "step": pa.array([s for _, s in rows], pa.int32())})
        selected[label] = root / f"selected_{label}.parquet"
        pq.write_table(table, selected[label])
    return clean, selected


def test_store_has_two_row_groups(store: tuple[Path, dict[str, Path]]) -> None:
    assert pq.ParquetFile(store[0]).num_row_groups == 2


def test_element_counts_exact(store: tuple[Path, dict[str, Path]]) -> None:
    counts = element_counts(store[0])
    assert counts.to_dict() == {"S": 2, "B": 1, "C": 1, "N": 1, "Mo": 1, "W": 1}
    assert list(counts.index[:1]) == ["S"]  # most common first
    assert material_elements(store[0])["MoS2"] == ("S", "Mo")


def test_spacegroups_of_last_frames(store: tuple[Path, dict[str, Path]]) -> None:
    numbers = spacegroup_numbers(store[0])
    assert sorted(numbers.index) == sorted(MATERIALS)
    assert numbers["MoS2"] == 187  # P-6m2, 2H monolayer (its rattled first frame is P1)
    assert numbers["WS2"] == 187
    assert numbers["hBN"] == 187
    assert numbers["graphene"] == 191  # P6/mmm


def test_selection_stats(store: tuple[Path, dict[str, Path]]) -> None:
    summary, per_element = selection_stats(material_elements(store[0]), store[1])
    assert list(per_element.columns) == ["0.01", "1e6"]
    assert list(per_element.index) == ["B", "C", "N", "S", "Mo", "W"]  # by atomic number
    assert per_element.loc["S", "0.01"] == 2.0  # MoS2 only; WS2 has no selected frame
    assert per_element.loc["S", "1e6"] == 1.0
    assert per_element.loc["B", "0.01"] == 3.0
    assert np.isnan(per_element.loc["W", "0.01"])


def test_selection_with_unknown_material_raises(store: tuple[Path, dict[str, Path]], tmp_path: Path) -> None:
    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"material_id": ["nope"], "step": pa.array([0], pa.int32())}), bad)
    with pytest.raises(ValueError, match="nope"):
        selection_stats(material_elements(store[0]), {"0.1": bad})


def test_make_dataset_figures(store: tuple[Path, dict[str, Path]], tmp_path: Path) -> None:
    clean, selected = store
    outdir = tmp_path / "figures"
    paths = make_dataset_figures(clean, selected, outdir)

    stems = ["elements", "elements_ptable", "spacegroups", "distributions", "selected_steps_per_element"]
    expected = [outdir / f"{s}.{ext}" for s in stems for ext in ("png", "pdf")]
    assert paths == [*expected, outdir / "dataset_summary.csv"]
    for path in paths:
        assert path.is_file() and path.stat().st_size > 0
    for path in expected:
        if path.suffix == ".png":
            height, width, channels = mpimg.imread(path).shape
            assert height > 200 and width > 200 and channels in (3, 4)
        else:
            assert path.read_bytes()[:5] == b"%PDF-"

    summary = pd.read_csv(outdir / "dataset_summary.csv", dtype={"e_cut": str})
    assert summary["e_cut"].tolist() == ["0.01", "1e6"]
    assert summary["n_materials"].tolist() == [3, 4]
    assert summary["n_selected_frames"].tolist() == [6, 4]
    assert summary["mean_steps_per_material"].tolist() == pytest.approx([2.0, 1.0])


def test_ptable_unknown_symbol_raises() -> None:
    with pytest.raises(ValueError, match="Xx"):
        plot_periodic_table({"Mo": 1.0, "Xx": 2.0}, label="count")


def test_ptable_layout_and_shared_axes(tmp_path: Path) -> None:
    positions = {element_position(z) for z in range(1, 119)}
    assert len(positions) == 118  # no two elements share a cell
    assert element_position(57) == (3, 8.5) and element_position(103) == (17, 9.5)
    assert element_position(72) == (4, 6) and element_position(118) == (18, 7)

    from matplotlib.figure import Figure

    fig = Figure(figsize=(20, 6))
    left, right = fig.subplots(1, 2)
    assert plot_periodic_table({"Mo": 1.0}, left, label="a (eV)", vmin=0, vmax=2) is fig
    assert plot_periodic_table({"S": 3.0}, right, label="b (eV)", vmin=0, vmax=2, log=False) is fig
    paths = save_figure(fig, tmp_path / "pair")
    assert [p.name for p in paths] == ["pair.png", "pair.pdf"]
    with pytest.raises(ValueError, match="positive"):
        plot_periodic_table({"Mo": 0.0}, label="x", log=True)


def test_training_element_counts_count_training_materials_only(store: tuple[Path, dict[str, Path]], tmp_path: Path) -> None:
    split = pd.DataFrame({"material_id": ["MoS2", "graphene", "hBN", "WS2"], "split": ["train", "train", "val", "test"]})
    split.to_csv(tmp_path / "split.csv", index=False)
    counts = training_element_counts(store[0], tmp_path / "split.csv")
    assert list(counts.columns) == ["element", "n_train_materials"]
    assert dict(zip(counts["element"], counts["n_train_materials"])) == {"S": 1, "C": 1, "Mo": 1}  # not B, N, W


def test_energy_overlay_draws_every_frame_of_each_alloy(store: tuple[Path, dict[str, Path]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import mlff2d.data.figures as df_module

    drawn = {}
    real = df_module.save_figure

    def capture(fig, stem):  # type: ignore[no-untyped-def]
        drawn["fig"] = fig
        return real(fig, stem)

    monkeypatch.setattr(df_module, "save_figure", capture)
    paths = energy_overlay_figure({"A": store[0], "B": store[0]}, tmp_path / "overlay")
    assert [p.name for p in paths] == ["overlay.png", "overlay.pdf"] and all(p.stat().st_size > 1000 for p in paths)
    n_frames = sum(n for _, n in MATERIALS.values())  # 12 frames, E/N = -5 - step/N
    assert energies_per_atom(store[0]).size == n_frames
    ax_a, ax_b = drawn["fig"].axes
    assert [t.get_text() for t in ax_a.get_legend().get_texts()] == [f"A ({n_frames} frames)", f"B ({n_frames} frames)"]
    assert sum(p.get_height() for p in ax_b.patches) == 2 * n_frames  # combined: both alloys
    assert ax_a.get_xlabel() == "energy per atom (eV/atom)"


def test_wide_range_decides_the_log_axis() -> None:
    from mlff2d.data.figures import wide_range

    assert not wide_range([18, 20, 27]) and wide_range([1, 50, 2000]) and not wide_range([])
