"""Alloy tables 4.3-4.7, learning curves and figures, from fabricated model directories (no
training): failed and unfinished models show as "–", the best value per row is marked, the
best configuration per family is chosen on the validation set, and the crossover is found."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from mlff2d.alloys.report import (
    best_configuration,
    collect_models,
    crossover,
    expected_outputs,
    parse_model_dir,
    write_alloy_report,
)

SPLIT = "80-10-10"


def model_dir(root: Path, family: str, dataset: str, mode: str, ecut: str, frac: str | None = None) -> Path:
    d = root / "alloys" / family / dataset / mode / f"ecut~{ecut}" / f"split~{SPLIT}"
    return d / f"frac~{frac}" if frac else d


def fake_model(path: Path, energy: dict[str, float] | None, area: float = 0.01, n_train: int = 10, failed: bool = False) -> Path:
    """A model directory: status.json and, unless failed, summaries of val and test."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "status.json").write_text(json.dumps({"status": "failed" if failed else "ok", "reason": "x"}))
    (path / "training_data.json").write_text(json.dumps({"n_train_materials": n_train, "n_train_frames": 3 * n_train}))
    for relax_set in ("val", "test"):
        d = path / "relax" / relax_set
        d.mkdir(parents=True, exist_ok=True)
        if failed or energy is None:
            summary = {"n": 3, "n_evaluated": 0, "energy": {"mae": float("nan")}, "area": {"mae": float("nan")}}
        else:
            summary = {"n": 3, "n_evaluated": 3, "energy": {"mae": energy[relax_set]}, "area": {"mae": area}}
        (d / "summary.json").write_text(json.dumps(summary))
    return path


@pytest.fixture
def campaign(tmp_path: Path) -> dict[str, list[Path]]:
    models = []
    for dataset, normal, transfer in (("MoWS2", 2.0, 1.0), ("NbMoS2", 3.0, 4.0), ("alloys", 5.0, 6.0)):
        for family in ("m3gnet", "mace"):
            models.append(fake_model(model_dir(tmp_path, family, dataset, "normal", "0.01"), {"val": normal, "test": normal + 0.5}))
            models.append(fake_model(model_dir(tmp_path, family, dataset, "transfer", "0.01"), {"val": transfer, "test": transfer + 0.5}))
    # a broken alloy dataset: both of its trainings failed
    for family in ("m3gnet", "mace"):
        for mode in ("normal", "transfer"):
            models.append(fake_model(model_dir(tmp_path, family, "Broken", mode, "0.01"), None, failed=True))
    # one model never finished (no status.json at all)
    models.append(model_dir(tmp_path, "mace", "MoWS2", "normal", "1e6"))
    # learning curve: transfer better at small fractions, normal catches up from 0.5 on
    curve = []
    for frac, n, normal, transfer in (("0.25", 4, 10.0, 3.0), ("0.5", 8, 4.0, 3.8), ("1", 16, 2.0, 2.1)):
        curve.append(fake_model(model_dir(tmp_path, "m3gnet", "MoWS2", "normal", "1e6", frac), {"val": normal, "test": normal}, n_train=n))
        curve.append(fake_model(model_dir(tmp_path, "m3gnet", "MoWS2", "transfer", "1e6", frac), {"val": transfer, "test": transfer}, n_train=n))
    return {"models": models, "curve": curve}


def test_parse_model_dir() -> None:
    assert parse_model_dir("results/x/alloys/mace/MoWS2/transfer/ecut~1e6/split~90-5-5") == {
        "family": "mace", "dataset": "MoWS2", "mode": "transfer", "ecut": "1e6", "split": "90-5-5", "frac": None}
    assert parse_model_dir("results/x/alloys/m3gnet/alloys/normal/ecut~0.01/split~80-10-10/frac~0.25/")["frac"] == "0.25"
    with pytest.raises(ValueError, match="not an alloy model"):
        parse_model_dir("results/x/uff/mace/ecut~1e6/lr~0.01/bs~8")


def test_tables_mark_failures_and_best(campaign: dict[str, list[Path]], tmp_path: Path) -> None:
    tables, figures = tmp_path / "tables", tmp_path / "figures"
    write_alloy_report(campaign["models"] + campaign["curve"], ["val", "test"], [SPLIT], tables, figures)
    for name in expected_outputs([SPLIT]):
        assert (tables / name).is_file(), name
    t44 = pd.read_csv(tables / f"table_4_4_split~{SPLIT}.csv", dtype=str, keep_default_na=False)
    assert list(t44.columns[5:7]) == ["e_cut=0.01,transfer", "e_cut=0.01,normal"]
    assert list(t44.columns[:3]) == ["set", "model", "n"] and list(t44.columns[-3:]) == ["baseline", "best", "second"]
    broken = t44[(t44["model"] == "Broken")]
    assert set(broken["e_cut=0.01,normal"]) == {"–"} and set(broken["e_cut=0.01,transfer"]) == {"–"}
    mows2 = t44[(t44["model"] == "MoWS2") & (t44["set"] == "test") & (t44["quantity"] == "Energy")].iloc[0]
    assert float(mows2["e_cut=0.01,transfer"]) == pytest.approx(1.5) and mows2["best"] == "e_cut=0.01,transfer"
    md = (tables / f"table_4_4_split~{SPLIT}.md").read_text()
    assert "| Test | MoWS2 | 3 | Energy (meV/atom) | **1.50** | 2.50 | – |" in md and "Cutoff = " not in md
    assert "e_cut 0.01 · transfer" in md.splitlines()[0]
    assert "| Broken |  | Energy (meV/atom) | – | – | – |" in md
    tex = (tables / f"table_4_5_split~{SPLIT}.tex").read_text()
    assert r"\textbf{" in tex and "--" in tex
    # MACE: the unfinished 1e6 normal model shows as "–", the 0.01 ones as numbers
    t45 = pd.read_csv(tables / f"table_4_5_split~{SPLIT}.csv", dtype=str, keep_default_na=False)
    row = t45[(t45["model"] == "MoWS2") & (t45["set"] == "val") & (t45["quantity"] == "Energy")].iloc[0]
    assert row["e_cut=1e6,normal"] == "–" and float(row["e_cut=0.01,normal"]) == pytest.approx(2.0)
    # combined: one row pair per family
    t43 = pd.read_csv(tables / f"table_4_3_split~{SPLIT}.csv", dtype=str, keep_default_na=False)
    assert set(t43["model"]) == {"M3GNet", "MACE"} and set(t43["set"]) == {"val", "test"}
    # best configurations: the family's columns side by side
    t47 = pd.read_csv(tables / f"table_4_7_split~{SPLIT}.csv", dtype=str, keep_default_na=False)
    assert [c for c in t47.columns if c.startswith(("M3GNet", "MACE"))] == ["M3GNet:e_cut=0.01,normal", "MACE:e_cut=0.01,normal"]
    index = (tables / "index.md").read_text()
    assert "Table 4.4" in index and "learning_curve_crossover.md" in index
    assert (figures / f"normal_vs_transfer_mace_split~{SPLIT}.png").is_file()
    assert (figures / "learning_curve_MoWS2.png").is_file()


def test_best_configuration_prefers_fewer_failures_then_validation_energy(campaign: dict[str, list[Path]]) -> None:
    models = collect_models(campaign["models"], ["val", "test"])
    # normal: MoWS2 2, NbMoS2 3 (mean 2.5); transfer: 1, 4 (2.5) -> tie broken by mode name; make it clear:
    assert best_configuration(models, "m3gnet", SPLIT) in {("0.01", "normal"), ("0.01", "transfer")}
    models.loc[(models["mode"] == "transfer") & (models["dataset"] == "NbMoS2"), "status"] = "failed"
    assert best_configuration(models, "m3gnet", SPLIT) == ("0.01", "normal")
    assert best_configuration(models, "nequip", SPLIT) is None


def test_crossover_is_the_smallest_fraction_from_which_normal_keeps_up(campaign: dict[str, list[Path]], tmp_path: Path) -> None:
    write_alloy_report(campaign["curve"], ["val", "test"], [SPLIT], tmp_path / "t", tmp_path / "f", tolerance=0.1)
    table = pd.read_csv(tmp_path / "t" / "learning_curve_crossover.csv")
    energy = table[table["quantity"].str.startswith("energy")].iloc[0]
    assert float(energy["crossover_fraction"]) == 0.5  # 4.0 <= 1.1 * 3.8 and 2.0 <= 1.1 * 2.1
    assert energy["crossover_n_train_materials"] == 8
    curve = pd.read_csv(tmp_path / "t" / "learning_curve.csv")
    assert len(curve) == 6 and sorted(curve["n_train_materials"].unique()) == [4, 8, 16]
    strict = crossover(curve.assign(energy_mae=curve["energy_mae"]), tolerance=0.0)
    assert float(strict.iloc[0]["crossover_fraction"]) == 1.0
    never = crossover(curve.assign(energy_mae=curve["energy_mae"].where(curve["mode"] == "normal", 0.1)), 0.0)
    assert never.iloc[0]["crossover_fraction"] == "never"


def test_full_models_are_fraction_one_of_the_learning_curve() -> None:
    """A curve without its own fraction-1 models takes the full alloy models (the same training)."""
    from mlff2d.alloys.report import learning_curve_table

    rows = []
    for mode, energies in (("normal", {0.25: 9.0, None: 3.0}), ("transfer", {0.25: 4.0, None: 2.9})):
        for frac, e in energies.items():
            rows.append({"family": "mace", "dataset": "IrRuS2", "mode": mode, "ecut": "1e6", "split": SPLIT,
                         "frac": None if frac is None else str(frac), "set": "test", "status": "ok",
                         "n_train_materials": 84 if frac is None else 21, "n_train_frames": 0,
                         "energy_mae": e, "area_mae": 0.01})  # fmt: skip
    curve = learning_curve_table(pd.DataFrame(rows))
    assert curve[["mode", "frac", "energy_mae"]].values.tolist() == [
        ["normal", 0.25, 9.0], ["normal", 1.0, 3.0], ["transfer", 0.25, 4.0], ["transfer", 1.0, 2.9]]
    table = crossover(curve, tolerance=0.1)
    assert table.iloc[0]["verdict"] == "normal matches transfer from fraction 1"
