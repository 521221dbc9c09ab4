"""The project's integration test: the embedded demo campaign, end to end, as the README's
main job runs it (config/demo.yaml on the committed demo data)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT / "bench"))


#: The outputs the README's table "Thesis figures and tables → outputs" lists, as globs below
#: results/demo/ (tables by any of their files; the report shows the HTML one).
README_OUTPUTS = [
    "data/2d/figures/elements.png", "data/2d/figures/elements_ptable.png", "data/2d/figures/selected_steps_per_element.png",
    "data/2d/figures/distributions.png", "uff/*/validation_curves.png", "tables/table_4_1.csv", "tables/table_4_2.csv",
    "uff/*/ecut~*/lr~*/bs~*/relax/*/parity.png", "uff/*/ecut~*/lr~*/bs~*/relax/*/elements.png", "ptables/compare_*.png",
    "uff/*/ecut~*/lr~*/bs~*/relax/*/spacegroup_mae.png", "uff/*/ecut~*/lr~*/bs~*/relax/*/error_distributions.png",
    "uff/*/ecut~*/lr~*/bs~*/relax/*/element_frequency.png", "alloys/*/*/*/ecut~*/split~*/relax/*/parity.png",
    "data/MoWS2/figures/distributions.png", "data/alloy_figures/energy_per_atom.png",
    "alloys/tables/table_4_[457]_split~*.csv", "alloys/figures/normal_vs_transfer_*.png", "alloys/figures/learning_curve_*.png",
    "alloys/figures/learning_curve_crossover.html", "formation/report/table_4_8.csv", "formation/report/table_4_9.csv",
    "formation/report/table_6_2.csv", "formation/report/nequip_validation_curves.png", "formation/report/formation_distribution.png",
    "formation/report/parity_*.png", "baseline/*/elements.png", "diagnostics.html", "tables/relaxation_summary.csv",
]


def report_items(report_html: str) -> dict[str, str]:
    """Every item of a Snakemake HTML report: its results path and the MIME type it is shown as."""
    import re

    items = {}
    for match in re.finditer(r'"(results/[^"]+)": \{"name": .*?"data_uri": "data:([^;]+);', report_html):
        items[match.group(1)] = match.group(2)
    return items


@pytest.mark.slow
@pytest.mark.skipif(not (ROOT / "resources" / "demo" / "2d").is_dir(), reason="demo data not generated")
def test_demo_campaign(tmp_path: Path) -> None:
    (tmp_path / "config").mkdir()
    shutil.copy(ROOT / "config" / "demo.yaml", tmp_path / "config" / "demo.yaml")
    (tmp_path / "resources").symlink_to(ROOT / "resources")
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    cmd = [str(BIN / "snakemake"), "-s", str(ROOT / "Snakefile"), "--directory", str(tmp_path),
           "--configfile", "config/demo.yaml", "--cores", "2"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=2400)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    assert "mlff2d: campaign 'demo' is complete" in out.stdout + out.stderr

    demo = tmp_path / "results" / "demo"
    config = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())
    ledger = pd.read_csv(demo / "data" / "2d" / "ledger_materials.csv")
    assert (ledger["reason"] == "kept").mean() > 0.9
    for family, spec in config["uff"]["families"].items():
        points = sorted((demo / "uff" / family).glob("ecut~*/lr~*/bs~*/status.json"))
        assert len(points) >= 2, family
        for status in points:
            assert json.loads(status.read_text())["status"] == "ok", status
            metrics = pd.read_csv(status.parent / "metrics.csv")
            assert len(metrics) == spec["params"]["epochs"]
            assert metrics[["energy_mae_meV_per_atom", "forces_mae_meV_per_A", "stress_mae"]].notna().all().all()
            forces = metrics["forces_mae_meV_per_A"]  # the models learn forces that generalise
            assert forces.iloc[-1] <= 0.6 * forces.iloc[0], (status, forces.tolist())
        assert (demo / "uff" / family / "validation_curves.png").stat().st_size > 1000
    assert (demo / "data" / "2d" / "figures" / "elements_ptable.png").stat().st_size > 1000
    # the alloy dataset figures (thesis 6.10-6.13): per alloy (the demo has no combined set) and the overlay
    alloy_sets = ["alloys"] if config["alloys"]["combined"] else [d["name"] for d in config["alloys"]["datasets"]]
    for dataset in alloy_sets:
        for stem in ("elements", "spacegroups", "distributions"):
            assert (demo / "data" / dataset / "figures" / f"{stem}.png").stat().st_size > 1000, (dataset, stem)
    assert (demo / "data" / "alloy_figures" / "energy_per_atom.png").stat().st_size > 1000
    assert (demo / "data" / "alloy_figures" / "energy_per_atom.pdf").read_bytes()[:5] == b"%PDF-"
    train_elements = pd.read_csv(demo / "data" / "2d" / "train_elements" / "split~80-10-10.csv")
    assert train_elements["n_train_materials"].gt(0).all() and {"S", "Mo"} <= set(train_elements["element"])

    # relaxation test of every point and set, baselines, tables and maps
    n_val = int((pd.read_csv(demo / "data" / "2d" / "split~80-10-10.csv")["split"] == "val").sum())
    for family in config["uff"]["families"]:
        for summary_file in (demo / "uff" / family).glob("ecut~*/lr~*/bs~*/relax/*/summary.json"):
            summary = json.loads(summary_file.read_text())
            assert summary["n"] > 0 and summary["n_evaluated"] > 0, summary_file
            assert summary["energy"]["mae"] > 0 and summary["area"]["mae"] >= 0
            assert (summary_file.parent / "parity.png").stat().st_size > 1000
            assert (summary_file.parent / "elements.png").stat().st_size > 1000
            # thesis figs. 6.6 (space groups), 6.15-6.24 (error distributions), 4.2 (class imbalance)
            for stem in ("error_distributions", "spacegroup_mae", "element_frequency"):
                assert (summary_file.parent / f"{stem}.png").stat().st_size > 1000, (summary_file, stem)
                assert (summary_file.parent / f"{stem}.pdf").read_bytes()[:5] == b"%PDF-", (summary_file, stem)
            groups = pd.read_csv(summary_file.parent / "spacegroups.csv")
            assert groups["n"].sum() == summary["n_evaluated"] and groups["energy_mae_meV"].notna().any()
            elements = pd.read_csv(summary_file.parent / "per_element.csv")
            assert (elements["n_train_materials"] > 0).any() and (elements["n_train_materials"] >= 0).all(), summary_file
        val = json.loads(next((demo / "uff" / family).glob("ecut~*/lr~*/bs~*/relax/val/summary.json")).read_text())
        assert val["n"] == n_val
    assert json.loads((demo / "baseline" / "val" / "summary.json").read_text())["n"] == n_val
    # a real small study: per family, the best point (by validation relaxation energy) beats the
    # composition baseline by 2x on test energies, the unrelaxed one on areas, and its relaxations move
    base = json.loads((demo / "baseline" / "test" / "summary.json").read_text())
    for family in config["uff"]["families"]:
        points = sorted((demo / "uff" / family).glob("ecut~*/lr~*/bs~*"))
        best = min(points, key=lambda p: json.loads((p / "relax" / "val" / "summary.json").read_text())["energy"]["mae"])
        test = json.loads((best / "relax" / "test" / "summary.json").read_text())
        assert test["energy"]["mae"] <= 0.5 * base["energy"]["mae"], (family, best, test["energy"], base["energy"])
        assert test["area"]["mae"] < base["area"]["mae"], (family, best, test["area"], base["area"])
        assert test["steps"]["median"] >= 5 and test["steps"]["share_step0"] <= 0.1, (family, best, test["steps"])
    for stem in ("table_4_1", "table_4_2"):
        table = (demo / "tables" / f"{stem}.md").read_text()
        assert "Energy (meV/atom)" in table and "Area (Å²/atom × 100)" in table and "e_cut 1e6 (none)" in table
        assert (demo / "tables" / f"{stem}.tex").exists() and (demo / "tables" / f"{stem}.csv").exists()
    summary = pd.read_csv(demo / "tables" / "relaxation_summary.csv")
    assert set(summary["status"]) == {"ok"} and len(summary) == 4 * 2 + 2
    assert {"steps_median", "steps_p90", "steps_share_step0", "converged_share"} <= set(summary.columns)
    table_4_1 = pd.read_csv(demo / "tables" / "table_4_1.csv")
    assert table_4_1["baseline"].notna().all() and (table_4_1["n"] == n_val).any()
    assert "compare_val" in (demo / "ptables" / "index.md").read_text()

    # transfer learning to the alloys (thesis 4.3): normal and transfer, two alloys (and the combined set)
    alloys = config["alloys"]
    names = [d["name"] for d in alloys["datasets"]]
    datasets = names + (["alloys"] if alloys["combined"] else [])
    for family in alloys["families"]:
        for dataset in datasets:
            for mode in ("normal", "transfer"):
                models = sorted((demo / "alloys" / family / dataset / mode).glob("ecut~*/split~*/status.json"))
                assert models, (family, dataset, mode)
                for status in models:
                    assert json.loads(status.read_text())["status"] == "ok", status
                    assert json.loads((status.parent / "relax" / "test" / "summary.json").read_text())["n"] > 0
    # >= 8 val and 8 test structures per alloy; the normal models relax areas better than the
    # unrelaxed starts do; their energies beat the composition baseline (whose error is the mixing
    # energy, ~1 meV/atom for MoWS2) where the mixing energies are larger than the models' error,
    # and every model that does not beat it is named in the diagnostics
    flagged = set(pd.read_csv(demo / "diagnostics.csv").query("check == 'not_better_than_baseline'")[["model", "set"]].itertuples(index=False))
    base_test = {}
    for dataset in names:
        split = pd.read_csv(demo / "data" / dataset / "split~80-10-10.csv")["split"].value_counts()
        assert split["val"] >= 8 and split["test"] >= 8, (dataset, split.to_dict())
        for relax_set in ("val", "test"):
            ref = json.loads((demo / "alloys" / "baseline" / dataset / "split~80-10-10" / relax_set / "summary.json").read_text())
            base_test[dataset] = ref["energy"]["mae"]
            for model in (demo / "alloys").glob(f"*/{dataset}/normal/ecut~*/split~80-10-10"):
                got = json.loads((model / "relax" / relax_set / "summary.json").read_text())
                assert got["area"]["mae"] < ref["area"]["mae"], (model, relax_set)
                worse = got["energy"]["mae"] >= ref["energy"]["mae"]
                assert worse == ((str(model.relative_to(demo)), relax_set) in flagged), (model, relax_set)
    widest = max(base_test, key=base_test.get)
    best_normal = min(json.loads((m / "relax" / "test" / "summary.json").read_text())["energy"]["mae"]
                      for m in (demo / "alloys").glob(f"*/{widest}/normal/ecut~*/split~80-10-10"))
    assert best_normal < base_test[widest], (widest, best_normal, base_test[widest])
    sources = list((demo / "alloys").glob("*/*/transfer/ecut~*/split~*/transfer_source.json"))
    assert sources and all(json.loads(s.read_text())["point"] for s in sources)
    tables = demo / "alloys" / "tables"
    for stem in ("table_4_3", "table_4_4", "table_4_5")[0 if alloys["combined"] else 1 :]:
        text = (tables / f"{stem}_split~80-10-10.md").read_text()
        cells = "\n".join(line for line in text.splitlines() if line.startswith("|"))  # not the caption, which explains "–"
        assert "Energy" in cells and "transfer" in cells and "normal" in cells and "–" not in cells, stem
    for stem in ("table_4_4", "table_4_5"):  # every row beside its alloy's composition baseline
        assert pd.read_csv(tables / f"{stem}_split~80-10-10.csv")["baseline"].notna().all(), stem
    best = (tables / "table_4_7_split~80-10-10.md").read_text()  # best configuration of each family
    best_cells = "\n".join(line for line in best.splitlines() if line.startswith("|"))
    assert "M3GNet:" in best and "MACE:" in best and all(n in best for n in names) and "–" not in best_cells
    curve = pd.read_csv(tables / "learning_curve.csv")
    assert len(curve) >= 2 * len(alloys["learning_curve"]["fractions"])
    crossover_text = (tables / "learning_curve_crossover.md").read_text()
    assert any(v in crossover_text for v in ("transfer never pays", "transfer pays at every fraction", "normal matches transfer from"))
    for alloy in alloys["learning_curve"]["alloys"]:
        assert (demo / "alloys" / "figures" / f"learning_curve_{alloy}.png").stat().st_size > 1000
    assert any(f.stat().st_size > 1000 for f in (demo / "alloys" / "figures").glob("normal_vs_transfer_*.png"))

    # formation energies (thesis 4.4): tables 4.8 and 4.9 and figures 4.10 and 4.11
    report = demo / "formation" / "report"
    table_4_8 = pd.read_csv(report / "table_4_8.csv")
    assert set(config["formation"]["alloys"]) <= set(table_4_8.columns)
    table_4_9 = (report / "table_4_9.md").read_text()
    assert all(a in table_4_9 for a in config["formation"]["alloys"])
    for stem in ("formation_distribution", "parity_ce"):
        assert (report / f"{stem}.png").stat().st_size > 1000
    formation = pd.read_csv(report / "formation_summary.csv")
    assert {"ce", "nequip_dft"} <= set(formation["model"]) and (formation["status"] == "ok").all()
    ce = formation[formation["model"] == "ce"]  # the demo alloys are 1H and every structure maps
    assert (ce["lattice"] == "1H").all() and (ce["n_unmapped"] == 0).all()
    t49 = pd.read_csv(report / "table_4_9.csv")
    assert (t49["lattice"] == "1H").all() and (t49["Unmapped"].astype(int) == 0).all()
    # table 6.2: validation MAE per cell of the NequIP models on DFT-, ML1- and ML2-relaxed inputs
    t62 = pd.read_csv(report / "table_6_2.csv")
    assert list(t62["key"]) == ["nequip_dft", "nequip_ml1", "nequip_ml2"] and set(t62["set"]) == {"val"}
    for alloy in config["formation"]["alloys"]:
        assert (t62[alloy].astype(float) > 0).all(), alloy
    assert "Val" in (report / "table_6_2.md").read_text() and (report / "table_6_2.tex").exists()

    # the diagnostics: written, and every warning repeated at the end of the run
    diagnostics = (demo / "diagnostics.md").read_text()
    assert diagnostics.startswith("# Diagnostics")
    warnings = [line[2:] for line in diagnostics.splitlines() if line.startswith("- WARNING")]
    if warnings:
        assert f"mlff2d: {len(warnings)} diagnostics warnings" in out.stdout + out.stderr
    assert all(w in out.stdout + out.stderr for w in warnings[:20])
    # no universal model is flagged on the test set: each learned, moved and beat the baselines there
    assert not any(w.startswith("WARNING uff/") and ": test " in w for w in warnings), warnings

    # split repeats (issue 18): two different material-level splits, repeat tables with mean ± std
    repeat0 = pd.read_csv(demo / "data" / "2d" / "split~80-10-10.csv")
    repeat1 = pd.read_csv(demo / "data" / "2d" / "split~80-10-10.r1.csv")
    assert sorted(repeat0["material_id"]) == sorted(repeat1["material_id"]) and not repeat0.equals(repeat1)
    for table in ("table_4_1", "alloys"):
        repeats = pd.read_csv(demo / "tables" / "repeats" / f"{table}.csv")
        assert (repeats["K"] == 2).all(), table
        assert " ± " in (demo / "tables" / "repeats" / f"{table}.md").read_text()
    # SOAP structure maps of every dataset, error against novelty of every model and set
    for dataset in ("2d", "MoWS2", "IrRuS2"):
        for name in ("map.png", "map.pdf", "structures.csv"):
            assert (demo / "data" / dataset / "structure_map" / "split~80-10-10" / name).stat().st_size > 500, (dataset, name)
    novelty = pd.read_csv(demo / "tables" / "novelty.csv")
    assert len(novelty) == 24 and (novelty["n"] > 0).all()
    for model_set in novelty["model"]:
        model, relax_set = model_set.rsplit(":", 1)
        for name in ("novelty.png", "novelty.pdf", "error_map.png", "error_map.pdf"):
            assert (demo / model / "relax" / relax_set / name).stat().st_size > 500, (model, name)

    # one HTML report with every table and figure, captioned
    rep = subprocess.run([*cmd, "--report", str(tmp_path / "report.html")], capture_output=True, text=True, env=env, timeout=900)
    assert rep.returncode == 0, rep.stdout[-3000:] + rep.stderr[-3000:]
    items = report_items((tmp_path / "report.html").read_text(encoding="utf-8"))
    for pattern in README_OUTPUTS:  # every table and figure the README lists is in the report
        found = sorted(demo.glob(pattern))
        assert found, f"the demo wrote nothing for {pattern}"
        for path in found:
            shown = path if path.suffix in (".png", ".html") else path.with_suffix(".html")
            key = f"results/demo/{shown.relative_to(demo)}"
            assert key in items, f"{key} is not in the report"
    tables = {k: m for k, m in items.items() if "/tables/" in k or "/table_" in k or k.endswith("diagnostics.html")}
    assert len(tables) >= 12 and all(m == "text/html" for m in tables.values()), tables  # rendered, not downloads
    assert not any(m == "text/csv" for m in items.values())
    landing = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "spec/thesis.md" not in landing and "results/&lt;campaign&gt;" not in landing and "results/demo/" in landing

    # a finished campaign moved or copied to another folder reruns nothing
    moved = tmp_path.parent / f"{tmp_path.name}_moved"
    subprocess.run(["cp", "-a", str(tmp_path), str(moved)], check=True)
    dry = subprocess.run([*cmd[:4], str(moved), *cmd[5:], "-n"], capture_output=True, text=True, env=env, timeout=600)
    assert dry.returncode == 0 and "Nothing to be done" in dry.stdout + dry.stderr, (dry.stdout + dry.stderr)[-3000:]

    from demo_times import stage_times

    times = stage_times(demo)
    assert {"ingest", "filter_outliers", "export", "uff", "relax", "alloys", "formation"} <= set(times["stage"])
