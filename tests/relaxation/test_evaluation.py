"""Relaxation errors, statistics, per-element errors, the composition baseline, figures, tables."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import ase.io
import numpy as np
import pandas as pd
import pytest
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

import mlff2d.relaxation.evaluation as ev
import mlff2d.relaxation.figures as figures
import mlff2d.relaxation.statistics as stats
from mlff2d.relaxation.evaluation import relaxation_errors
from mlff2d.relaxation.baseline import baseline_errors, fit_element_energies
from mlff2d.relaxation.figures import compare_element_maps, element_maps, parity_plot
from mlff2d.relaxation.statistics import per_element, summarize
from mlff2d.relaxation.table_format import relaxation_table, write_table
from mlff2d.io.table_files import DASH
from mlff2d.io.store import FrameBuffer, FrameWriter

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def structure(material_id: str, symbols: str, a: float, b: float, energy_per_atom: float | None = None) -> Atoms:
    """A slab with a rectangular a × b in-plane cell (area a·b), atoms spread along x and z."""
    atoms = Atoms(symbols, cell=[[a, 0, 0], [0, b, 0], [0, 0, 20.0]], pbc=True)
    n = len(atoms)
    atoms.positions = np.column_stack([np.linspace(0, a, n, endpoint=False), np.zeros(n), 10.0 + np.arange(n) * 1.5])
    atoms.info["material_id"] = material_id
    if energy_per_atom is not None:
        atoms.calc = SinglePointCalculator(atoms, energy=energy_per_atom * n, forces=np.zeros((n, 3)))
    return atoms


# DFT reference: (id, symbols, a, b, E/N). Areas per atom: 2.0, 3.0, 2.0, 2.5, 2.0.
REFERENCE = [
    ("mos2", "MoS2", 2.0, 3.0, -7.0),
    ("ws2", "WS2", 3.0, 3.0, -8.0),
    ("mows4", "MoWS4", 4.0, 3.0, -7.5),
    ("mose2", "MoSe2", 3.0, 2.5, -6.0),
    ("nbs2", "NbS2", 2.0, 3.0, -7.2),
]


def record(mid: str, n: int, converged: bool, e: float, area: float, failure: str) -> dict[str, Any]:
    return {"material_id": mid, "formula": mid, "n_atoms": n, "converged": converged, "steps": 10,
            "energy_per_atom": e, "area_per_atom": area, "wall_time_s": 1.0, "calc_time_s": 0.5, "failure": failure}


# energy errors +10, -20, +60 meV/atom; area errors +0.1, -0.2, +0.3 Å²/atom; one exploded, one missing
RECORDS = pd.DataFrame([
    record("mos2", 3, True, -6.99, 2.1, ""),
    record("ws2", 3, True, -8.02, 2.8, ""),
    record("mows4", 6, False, -7.44, 2.3, "step_limit"),
    record("mose2", 3, False, float("nan"), float("nan"), "exploded"),
])


@pytest.fixture
def reference(tmp_path: Path) -> Path:
    path = tmp_path / "val_reference.extxyz"
    ase.io.write(path, [structure(m, s, a, b, e) for m, s, a, b, e in REFERENCE], format="extxyz")
    return path


@pytest.fixture
def errors(reference: Path) -> pd.DataFrame:
    return relaxation_errors(RECORDS, reference)


def test_relaxation_errors_per_material(errors: pd.DataFrame) -> None:
    assert list(errors.columns) == list(ev.ERROR_COLUMNS)
    assert errors["material_id"].tolist() == [r[0] for r in REFERENCE]
    e = errors.set_index("material_id")
    assert e.loc["mows4", "elements"] == "S Mo W"  # sorted by atomic number
    assert e.loc["mows4", "n_atoms"] == 6
    assert e["e_dft"].tolist() == pytest.approx([r[4] for r in REFERENCE])
    assert e["area_dft"].tolist() == pytest.approx([2.0, 3.0, 2.0, 2.5, 2.0])
    assert e.loc[["mos2", "ws2", "mows4"], "energy_error_meV"].tolist() == pytest.approx([10.0, -20.0, 60.0])
    assert e.loc[["mos2", "ws2", "mows4"], "area_error"].tolist() == pytest.approx([0.1, -0.2, 0.3])
    assert e["evaluated"].tolist() == [True, True, True, False, False]
    assert e.loc["nbs2", "failure"] == "missing" and not e.loc["nbs2", "converged"]
    assert math.isnan(e.loc["mose2", "energy_error_meV"]) and math.isnan(e.loc["nbs2", "area_error"])


def test_relaxation_errors_reads_parquet(tmp_path: Path, reference: Path, errors: pd.DataFrame) -> None:
    RECORDS.to_parquet(tmp_path / "records.parquet")
    pd.testing.assert_frame_equal(relaxation_errors(tmp_path / "records.parquet", reference), errors)


def test_unknown_ids_rejected(reference: Path) -> None:
    extra = pd.concat([RECORDS, pd.DataFrame([record("ghost", 3, True, -1.0, 1.0, "")])])
    with pytest.raises(ValueError, match="ghost"):
        relaxation_errors(extra, reference)


def test_summary_statistics(errors: pd.DataFrame) -> None:
    s = summarize(errors)
    assert (s["n"], s["n_evaluated"], s["n_converged"]) == (5, 3, 2)
    assert s["convergence_rate"] == pytest.approx(0.4)
    assert s["failures"] == {"exploded": 1, "missing": 1, "step_limit": 1}
    assert s["energy"]["mae"] == pytest.approx(30.0)
    assert s["energy"]["median"] == pytest.approx(20.0)
    assert s["energy"]["rmse"] == pytest.approx(math.sqrt((100 + 400 + 3600) / 3))
    # DFT -7, -8, -7.5: SS_tot = 0.5; residuals 0.01, 0.02, 0.06 eV: SS_res = 0.0041
    assert s["energy"]["r2"] == pytest.approx(1 - 0.0041 / 0.5)
    assert s["area"]["mae"] == pytest.approx(0.2)
    assert s["area"]["median"] == pytest.approx(0.2)
    assert s["area"]["rmse"] == pytest.approx(math.sqrt(0.14 / 3))
    # DFT 2, 3, 2: SS_tot = 2/3; SS_res = 0.14
    assert s["area"]["r2"] == pytest.approx(1 - 0.14 / (2 / 3))


def test_failure_reason_grouped_and_empty_run(reference: Path) -> None:
    failed = pd.DataFrame([record("mos2", 3, False, float("nan"), float("nan"), "exception: RuntimeError: boom"),
                           record("ws2", 3, False, float("nan"), float("nan"), "exception: ValueError")])
    s = summarize(relaxation_errors(failed, reference))
    assert s["failures"] == {"exception": 2, "missing": 3}
    assert s["n_evaluated"] == 0 and math.isnan(s["energy"]["mae"]) and math.isnan(s["area"]["r2"])


def test_per_element_counts_each_distinct_element_once(errors: pd.DataFrame) -> None:
    pe = per_element(errors).set_index("element")
    assert pe.index.tolist() == ["S", "Se", "Nb", "Mo", "W"]  # atomic-number order
    # evaluated: MoS2 (|dE| 10, |dA| .1), WS2 (20, .2), MoWS4 (60, .3)
    assert pe.loc["Mo", ["n", "energy_mae_meV", "area_mae"]].tolist() == pytest.approx([2, 35.0, 0.2])
    assert pe.loc["W", ["n", "energy_mae_meV", "area_mae"]].tolist() == pytest.approx([2, 40.0, 0.25])
    assert pe.loc["S", ["n", "energy_mae_meV", "area_mae"]].tolist() == pytest.approx([3, 30.0, 0.2])
    assert pe.loc["Se", "n"] == 0 and pe.loc["Se", "n_failed"] == 1 and math.isnan(pe.loc["Se", "energy_mae_meV"])
    assert pe.loc["Nb", "n_failed"] == 1 and math.isnan(pe.loc["Nb", "area_mae"])


# ----------------------------------------------------------------------------- baseline

MU = {"Mo": -10.0, "W": -12.0, "S": -5.0, "Se": -4.0}


def write_store(path: Path, materials: list[tuple[str, str, float | None]]) -> Path:
    """Two frames per material: step 0 at +1 eV/atom, step 1 (last) at ``E/N`` (default Σ x μ)."""
    buf = FrameBuffer()
    for mid, symbols, e_last in materials:
        atoms = structure(mid, symbols, 3.0, 3.0)
        n = len(atoms)
        e = e_last if e_last is not None else float(np.mean([MU[s] for s in atoms.get_chemical_symbols()]))
        for step, epa in ((0, e + 1.0), (1, e)):
            buf.add(mid, "test", step, atoms.numbers, atoms.positions, np.asarray(atoms.cell), epa * n, np.zeros((n, 3)), np.zeros(6))
    with FrameWriter(path) as w:
        w.write(buf.to_table())
    return path


@pytest.fixture
def baseline_inputs(tmp_path: Path) -> dict[str, Path]:
    train = [("t1", "MoS2", None), ("t2", "WS2", None), ("t3", "MoSe2", None), ("t4", "MoS", None), ("t5", "WSe2", None)]
    val = [("v1", "MoS2", -6.5), ("v2", "NbS2", -7.0)]
    clean = write_store(tmp_path / "clean.parquet", train + val)
    split = tmp_path / "split.csv"
    pd.DataFrame({"material_id": [m for m, *_ in train + val], "split": ["train"] * 5 + ["val"] * 2}).to_csv(split, index=False)
    start = tmp_path / "val_start.extxyz"
    ase.io.write(start, [structure("v1", "MoS2", 2.0, 3.3), structure("v2", "NbS2", 2.0, 3.0)], format="extxyz")
    ref = tmp_path / "val_reference.extxyz"
    ase.io.write(ref, [structure("v1", "MoS2", 2.0, 3.0, -6.5), structure("v2", "NbS2", 2.0, 3.0, -7.0)], format="extxyz")
    return {"clean": clean, "split": split, "start": start, "ref": ref}


def test_element_energies_recovered_exactly(baseline_inputs: dict[str, Path]) -> None:
    mu = fit_element_energies(baseline_inputs["clean"], baseline_inputs["split"])
    assert mu.index.tolist() == ["S", "Se", "Mo", "W"]
    assert mu.to_dict() == pytest.approx(MU, abs=1e-10)


def test_baseline_errors(baseline_inputs: dict[str, Path]) -> None:
    b = baseline_errors(baseline_inputs["clean"], baseline_inputs["split"], "val", baseline_inputs["start"], baseline_inputs["ref"])
    assert list(b.columns) == list(ev.ERROR_COLUMNS)
    b = b.set_index("material_id")
    assert b.loc["v1", "e_ml"] == pytest.approx(-20.0 / 3)
    assert b.loc["v1", "energy_error_meV"] == pytest.approx((-20.0 / 3 + 6.5) * 1000)
    assert b.loc["v1", "area_ml"] == pytest.approx(6.6 / 3)  # the unrelaxed start cell
    assert b.loc["v1", "area_error"] == pytest.approx(0.6 / 3)
    assert not b.loc["v2", "evaluated"] and b.loc["v2", "failure"] == "unseen_element: Nb"


def test_baseline_rejects_wrong_set(baseline_inputs: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="not in split 'test'"):
        baseline_errors(baseline_inputs["clean"], baseline_inputs["split"], "test", baseline_inputs["start"], baseline_inputs["ref"])


# ----------------------------------------------------------------------------- figures


def assert_figure(paths: list[Path]) -> None:
    png, pdf = paths
    assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 10_000
    assert pdf.read_bytes()[:5] == b"%PDF-"


def test_parity_and_element_maps(tmp_path: Path, errors: pd.DataFrame) -> None:
    assert_figure(parity_plot(errors, tmp_path / "parity", "model A, val"))
    assert_figure(element_maps(per_element(errors), tmp_path / "maps", "model A, val"))
    nothing = errors.assign(evaluated=False)
    assert_figure(parity_plot(nothing, tmp_path / "empty", "nothing evaluated"))


def test_compare_maps_share_colour_scale(tmp_path: Path, errors: pd.DataFrame, monkeypatch: pytest.MonkeyPatch) -> None:
    a = per_element(errors)
    b = a.assign(energy_mae_meV=a["energy_mae_meV"] * 3, area_mae=a["area_mae"] / 2)
    calls: list[dict[str, Any]] = []
    real = figures.plot_periodic_table

    def spy(values: dict[str, float], ax: Any, **kw: Any) -> Any:
        calls.append({"values": values, **kw})
        return real(values, ax, **kw)

    monkeypatch.setattr(figures, "plot_periodic_table", spy)
    assert_figure(compare_element_maps(a, b, ["A", "B"], tmp_path / "compare"))
    assert len(calls) == 4
    energy = [c for c in calls if "meV" in c["label"]]
    area = [c for c in calls if "meV" not in c["label"]]
    # energy MAEs: A 30..40, B 90..120 meV/atom; areas ×100: A 20..25, B 10..12.5
    assert all((c["vmin"], c["vmax"]) == pytest.approx((30.0, 120.0)) for c in energy)
    assert all((c["vmin"], c["vmax"]) == pytest.approx((10.0, 25.0)) for c in area)
    assert area[0]["values"]["W"] == pytest.approx(25.0)  # shown × 100


# ----------------------------------------------------------------------------- tables


def table_rows() -> pd.DataFrame:
    rows = []
    for ecut, e, a in (("0.01", 87.43, 0.9337), ("0.02", 88.33, 0.9495), ("1e6", 87.31, 0.9373)):
        rows.append({"set": "val", "model": "lr1e-3bs128", "ecut": ecut, "status": "ok", "energy_mae": e, "area_mae": a})
    for ecut, e, a in (("0.01", 82.31, 0.8017), ("1e6", 76.81, 0.7895)):
        rows.append({"set": "val", "model": "lr1e-4bs128", "ecut": ecut, "status": "ok", "energy_mae": e, "area_mae": a})
    rows.append({"set": "val", "model": "lr1e-4bs128", "ecut": "0.02", "status": "failed", "energy_mae": float("nan"), "area_mae": float("nan")})
    for ecut in ("1e6", "0.01", "0.02"):  # a model that failed at every cutoff, in the test set
        rows.append({"set": "test", "model": "lr1e-3bs128", "ecut": ecut, "status": "failed", "energy_mae": float("nan"), "area_mae": float("nan")})
    return pd.DataFrame(rows)


def test_relaxation_table_layout_and_marks() -> None:
    t = relaxation_table(table_rows())
    assert list(t.columns) == ["set", "model", "quantity", "unit", "0.01", "0.02", "1e6", "best", "second"]
    assert t[["set", "model", "quantity"]].values.tolist() == [
        ["val", "lr1e-3bs128", "Energy"], ["val", "lr1e-3bs128", "Area"],
        ["val", "lr1e-4bs128", "Energy"], ["val", "lr1e-4bs128", "Area"],
        ["test", "lr1e-3bs128", "Energy"], ["test", "lr1e-3bs128", "Area"],
    ]
    assert t.loc[1, "0.01"] == pytest.approx(93.37)  # area × 100
    assert t.loc[:1, ["best", "second"]].values.tolist() == [["1e6", "0.01"], ["0.01", "1e6"]]
    assert t.loc[2, ["best", "second"]].tolist() == ["1e6", ""]  # two values: no underline
    assert t.loc[2, "0.02"] == DASH and t.loc[4, "1e6"] == DASH and t.loc[4, "best"] == ""


def test_write_table_formats(tmp_path: Path) -> None:
    csv, md, tex = write_table(relaxation_table(table_rows()), tmp_path / "table41", "M3GNet relaxation MAE (Å²/atom × 100)")
    md_lines = md.read_text().splitlines()
    assert md_lines[2] == "| Val | lr1e-3bs128 | Energy (meV/atom) | <u>87.43</u> | 88.33 | **87.31** |"
    assert md_lines[3] == "|  |  | Area (Å²/atom × 100) | **93.37** | 94.95 | <u>93.73</u> |"
    assert md_lines[4] == "|  | lr1e-4bs128 | Energy (meV/atom) | 82.31 | – | **76.81** |"
    assert md_lines[6] == "| Test | lr1e-3bs128 | Energy (meV/atom) | – | – | – |"
    assert "Table: M3GNet relaxation MAE (Å²/atom × 100)" in md.read_text()
    tex_text = tex.read_text()
    assert r"Val & lr1e-3bs128 & Energy (meV/atom) & \underline{87.43} & 88.33 & \textbf{87.31} \\" in tex_text
    assert r" &  & Area (\AA{}$^2$/atom $\times$ 100) & \textbf{93.37} & 94.95 & \underline{93.73} \\" in tex_text
    assert r"Test & lr1e-3bs128 & Energy (meV/atom) & -- & -- & -- \\" in tex_text
    assert r"\caption{M3GNet relaxation MAE (\AA{}$^2$/atom $\times$ 100). Columns: the step-selection cutoff" in tex_text
    c = pd.read_csv(csv, dtype=str, keep_default_na=False)
    assert c.loc[0, ["0.01", "0.02", "1e6", "best", "second"]].tolist() == ["87.43", "88.33", "87.31", "1e6", "0.01"]
    assert c.loc[2, "0.02"] == "–" and c.loc[4].tolist()[4:7] == ["–", "–", "–"]


def test_single_cutoff_table_has_no_marks(tmp_path: Path) -> None:
    rows = pd.DataFrame([
        {"set": "test", "model": "lr0.003bs128", "ecut": "1e6", "status": "ok", "energy_mae": 121.65, "area_mae": 0.686},
        {"set": "test", "model": "lr0.01bs64", "ecut": "1e6", "status": "ok", "energy_mae": 149.33, "area_mae": 0.6959},
    ])
    _, md, _ = write_table(relaxation_table(rows), tmp_path / "table42", "MACE")
    lines = md.read_text().splitlines()
    assert lines[2] == "| Test | lr0.003bs128 | Energy (meV/atom) | 121.65 |"
    assert lines[3] == "|  |  | Area (Å²/atom × 100) | 68.60 |"


def test_table_rejects_bad_rows() -> None:
    rows = table_rows()
    with pytest.raises(ValueError, match="status"):
        relaxation_table(rows.assign(status="running"))
    with pytest.raises(ValueError, match="duplicate"):
        relaxation_table(pd.concat([rows, rows.iloc[:1]]))


# ------------------------------------------------- error distributions, space groups, frequency


@pytest.fixture
def drawn(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The last Figure handed to save_figure by mlff2d.relaxation.figures (it is still written)."""
    captured: dict[str, Any] = {}
    real = figures.save_figure

    def capture(fig, stem):  # type: ignore[no-untyped-def]
        captured["fig"] = fig
        return real(fig, stem)

    monkeypatch.setattr(figures, "save_figure", capture)
    return captured


def test_cumulative_share() -> None:
    x, share = figures.cumulative_share(np.array([3.0, 1.0, 2.0, 2.0]))
    assert x.tolist() == [1.0, 2.0, 2.0, 3.0] and share.tolist() == [0.25, 0.5, 0.75, 1.0]


def test_error_distributions_show_the_evaluated_errors(tmp_path: Path, errors: pd.DataFrame, drawn: dict[str, Any]) -> None:
    paths = figures.error_distribution_plot(errors, tmp_path / "dist", "m")
    assert paths[0].read_bytes()[:8] == PNG_MAGIC and paths[1].read_bytes()[:5] == b"%PDF-"
    (h_e, h_a), (c_e, c_a) = np.array(drawn["fig"].axes).reshape(2, 2)
    assert sum(p.get_height() for p in h_e.patches) == 3  # exploded and missing left out
    x, y = c_e.lines[0].get_data()
    assert list(x) == pytest.approx([10.0, 20.0, 60.0]) and list(y) == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert [t.get_text() for t in c_e.get_legend().get_texts()] == ["MAE = 30", "median = 20"]
    x, _ = c_a.lines[0].get_data()
    assert list(x) == pytest.approx([10.0, 20.0, 30.0])  # area in 10^-2 Å²/atom
    assert "3 of 5 relaxations evaluated" in drawn["fig"].get_suptitle()


def test_energy_mae_per_space_group(tmp_path: Path, drawn: dict[str, Any]) -> None:
    from ase.build import mx2

    def slab(formula: str, kind: str, mid: str, e: float) -> Atoms:
        atoms = mx2(formula, kind=kind, a=3.2, thickness=3.1, vacuum=7.5)
        atoms.info["material_id"] = mid
        atoms.calc = SinglePointCalculator(atoms, energy=e * len(atoms))
        return atoms

    ref = tmp_path / "ref.extxyz"
    ase.io.write(ref, [slab("MoS2", "2H", "h1", -7.0), slab("WS2", "2H", "h2", -8.0),
                       slab("TiS2", "1T", "t1", -6.0), slab("ZrS2", "1T", "t2", -6.5)])
    recs = pd.DataFrame([record("h1", 3, True, -6.99, 2.0, ""), record("h2", 3, True, -8.03, 2.0, ""),
                         record("t1", 3, True, -5.995, 2.0, ""), record("t2", 3, False, float("nan"), float("nan"), "exploded")])
    groups = stats.spacegroup_errors(relaxation_errors(recs, ref), ref)
    assert groups["spacegroup"].tolist() == [187, 164]  # P-6m2 (1H), P-3m1 (1T); largest MAE first
    assert groups["symbol"].tolist() == ["P-6m2", "P-3m1"]
    assert groups["n"].tolist() == [2, 1] and groups["n_failed"].tolist() == [0, 1]
    assert groups["energy_mae_meV"].tolist() == pytest.approx([20.0, 5.0])
    figures.spacegroup_plot(groups, tmp_path / "sg", "m")
    ax = drawn["fig"].axes[0]
    assert [p.get_height() for p in ax.patches] == pytest.approx([20.0, 5.0])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["P-6m2 (187)", "P-3m1 (164)"]


def test_per_element_error_against_training_frequency(tmp_path: Path, errors: pd.DataFrame, drawn: dict[str, Any]) -> None:
    counts = pd.DataFrame({"element": ["S", "Mo", "Se"], "n_train_materials": [40, 10, 3]})
    table = per_element(errors, counts).set_index("element")
    assert table["n_train_materials"].to_dict() == {"S": 40, "Se": 3, "Mo": 10, "Nb": 0, "W": 0}
    assert "n_train_materials" not in per_element(errors).columns
    figures.element_frequency_plot(table.reset_index(), tmp_path / "freq", "m")
    ax_e, ax_a = drawn["fig"].axes
    points = {t.get_text(): tuple(t.xy) for t in ax_e.texts}
    assert set(points) == {"S", "Mo", "W"}  # Se (failed) and Nb (missing) have no evaluated structure
    assert points["S"] == pytest.approx((40, 30.0)) and points["Mo"] == pytest.approx((10, 35.0))
    assert points["W"] == pytest.approx((0.8, 40.0))  # no training material: drawn at the left edge
    assert ax_e.get_xscale() == "log" and "training materials" in ax_e.get_xlabel()


def test_write_evaluation_writes_the_extra_figures_for_a_model_only(tmp_path: Path, reference: Path, errors: pd.DataFrame) -> None:
    counts = pd.DataFrame({"element": ["S"], "n_train_materials": [2]})
    ev.write_evaluation(errors, tmp_path / "model", "m", reference_file=reference, train_counts=counts)
    for stem in ("parity", "elements", "error_distributions", "spacegroup_mae", "element_frequency"):
        assert (tmp_path / "model" / f"{stem}.png").stat().st_size > 1000 and (tmp_path / "model" / f"{stem}.pdf").exists()
    assert pd.read_csv(tmp_path / "model" / "spacegroups.csv")["n"].sum() == 3
    assert pd.read_csv(tmp_path / "model" / "per_element.csv")["n_train_materials"].tolist() == [2, 0, 0, 0, 0]
    ev.write_evaluation(errors, tmp_path / "baseline", "b")
    assert (tmp_path / "baseline" / "parity.png").exists() and not (tmp_path / "baseline" / "spacegroup_mae.png").exists()


def test_evaluate_command_as_the_rule_calls_it(tmp_path: Path, reference: Path) -> None:
    from mlff2d.cli import main

    RECORDS.to_parquet(tmp_path / "records.parquet")
    pd.DataFrame({"element": ["Mo", "S"], "n_train_materials": [5, 9]}).to_csv(tmp_path / "train.csv", index=False)
    assert main(["evaluate", "--records", str(tmp_path / "records.parquet"), "--reference", str(reference),
                 "--train-elements", str(tmp_path / "train.csv"), "--outdir", str(tmp_path / "out"), "--title", "t"]) == 0
    table = pd.read_csv(tmp_path / "out" / "per_element.csv").set_index("element")
    assert table.loc["Mo", "n_train_materials"] == 5 and table.loc["W", "n_train_materials"] == 0
    for stem in ("error_distributions", "spacegroup_mae", "element_frequency"):
        assert (tmp_path / "out" / f"{stem}.png").stat().st_size > 1000


def test_r2_is_shown_only_from_five_points() -> None:
    from mlff2d.relaxation.statistics import r2_text

    assert r2_text(np.array([1.0, 2.0]), np.array([1.5, 1.0])) == "$R^2$ not shown (N < 5)"
    x = np.arange(5.0)
    assert r2_text(x, x) == "$R^2$ = 1.0000"


def test_element_map_cells_show_their_n(tmp_path: Path, errors: pd.DataFrame, monkeypatch: pytest.MonkeyPatch) -> None:
    drawn = []
    monkeypatch.setattr(figures, "save_figure", lambda fig, stem: drawn.append(fig) or [])
    table = per_element(errors)
    element_maps(table, tmp_path / "maps", "t")
    texts = {t.get_text() for ax in drawn[-1].axes for t in ax.texts}
    assert {f"N={n}" for n in table["n"] if n > 0} <= texts and table["n"].gt(0).sum() >= 2


def test_a_tie_for_best_is_marked_for_neither_place() -> None:
    from mlff2d.relaxation.table_format import rank_marks

    assert rank_marks({"a": 1.0, "b": 2.0, "c": 3.0}) == ({"a"}, {"b"})
    assert rank_marks({"a": 1.0, "b": 1.0, "c": 3.0}) == (set(), set())  # tied best: nothing bold
    assert rank_marks({"a": 1.0, "b": 2.0, "c": 2.0}) == ({"a"}, set())  # tied second
    assert rank_marks({"a": math.nan, "b": 2.0, "c": 3.0}) == ({"b"}, set())
    assert rank_marks({"a": 1.0}) == (set(), set())
