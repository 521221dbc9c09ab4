"""One home per setting: the command line and the stage modules take a setting's default from
the config schema, and relaxation takes the model family from the model's own status.json."""

from __future__ import annotations

import argparse
import ast
import inspect
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from mlff2d.cli import build_parser, main
from mlff2d.cli._common import schema_options
from mlff2d.config import load_schema, schema_default, schema_defaults

CLI_DIR = Path(__file__).resolve().parents[1] / "workflow" / "mlff2d" / "cli"

#: Numeric option defaults written in cli/ that are not campaign settings (no schema key).
NOT_SETTINGS = {
    ("__init__.py", "--threads"), ("data.py", "--workers"), ("data.py", "--repeat"),
    ("training.py", "--gpus"), ("alloys.py", "--gpus"),
    ("demo.py", "--seed"), ("demo.py", "--workers"), ("demo.py", "--materials"), ("demo.py", "--steps"),
    ("demo.py", "--per-file"),
}


def stages() -> dict[str, argparse.ArgumentParser]:
    return next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices


def test_schema_default_walks_properties_and_names_a_wrong_key() -> None:
    assert schema_default("outliers.force_max") == 20.0 and schema_default("seed") == 42
    assert schema_defaults("formation.ce")["fit_method"] == "ardr"
    schema_default("selection.fallback").append(2.0)  # a copy: the next reader sees the schema's
    assert schema_default("selection.fallback") == [0.0, 0.5, 1.0]
    with pytest.raises(KeyError, match="outliers.max_force"):
        schema_default("outliers.max_force")


def test_every_schema_option_defaults_to_the_schema() -> None:
    found = {(name, flag): key for name, stage in stages().items() for flag, key in schema_options(stage).items()}
    for (name, flag), key in found.items():
        action = next(a for a in stages()[name]._actions if flag in a.option_strings)
        assert action.default == schema_default(key), f"mlff2d {name} {flag} vs {key}"
        if action.type is not None and action.default is not None:  # the parsed type of a given value
            values = action.default if isinstance(action.default, list) else [action.default]
            assert all(isinstance(v, action.type) for v in values), f"mlff2d {name} {flag}"
        assert key in action.help % {"default": action.default}
    expected = {("filter", "--force-max"): "outliers.force_max", ("filter", "--scope"): "outliers.scope",
                ("ingest", "--min-vacuum"): "data.min_vacuum", ("select", "--fallback"): "selection.fallback",
                ("split", "--seed"): "seed", ("relax", "--fmax"): "relax.fmax", ("relax", "--max-steps"): "relax.max_steps",
                ("relax", "--engine"): "relax.engine", ("alloy-report", "--tolerance"): "alloys.learning_curve.tolerance",
                ("formation-baseline", "--order"): "formation.baseline_order", ("subset-export", "--seed"): "seed"}
    assert expected.items() <= found.items()


def _schema_keys(node: dict[str, Any], out: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """{property name: [its defaults]} over the whole schema (every level, every $defs block)."""
    for name, sub in {**node.get("properties", {}), **node.get("$defs", {})}.items():
        if isinstance(sub, dict):
            if "default" in sub:
                out.setdefault(name, []).append(sub["default"])
            _schema_keys(sub, out)
    return out


def _numeric_defaults() -> list[tuple[str, str, Any]]:
    """(file, flag, value) of every ``add_argument(flag, ..., default=<number or numbers>)`` in cli/."""
    found = []
    for path in sorted(CLI_DIR.glob("*.py")):
        for call in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(call, ast.Call) and call.args and isinstance(call.args[0], ast.Constant)):
                continue
            for kw in call.keywords:
                if kw.arg == "default":
                    try:
                        value = ast.literal_eval(kw.value)
                    except ValueError:
                        continue  # computed: not a literal
                    values = value if isinstance(value, list | tuple) else [value]
                    if values and all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
                        found.append((path.name, str(call.args[0].value), value))
    return found


def test_no_numeric_default_in_the_cli_repeats_the_schema() -> None:
    literals = _numeric_defaults()
    assert ("data.py", "--repeat", 0) in literals  # the scan sees the literals there are
    by_name = _schema_keys(load_schema(), {})
    for file, flag, value in literals:
        name = flag.lstrip("-").replace("-", "_")
        assert value not in by_name.get(name, []), f"cli/{file} {flag} default={value!r} is the schema's {name}: use schema_option"
        assert (file, flag) in NOT_SETTINGS, f"cli/{file} {flag} default={value!r}: a setting's default belongs in the schema"


def test_stage_module_defaults_are_the_schema_s() -> None:
    from mlff2d.relaxation import batched as batched_relax
    from mlff2d.formation import cluster_expansion
    from mlff2d.formation import energies as formation
    from mlff2d.data import ingest
    from mlff2d.formation import nequip_model
    from mlff2d.relaxation import relax
    from mlff2d.data import select_steps
    from mlff2d.data import structure_maps
    from mlff2d.data.outliers import OutlierLimits

    assert vars(OutlierLimits()) == {k: v for k, v in schema_defaults("outliers").items()}
    relax_schema = schema_defaults("relax")
    for func in (relax.relax_shard, relax.relax_structure):
        params = inspect.signature(func).parameters
        assert {k: params[k].default for k in ("fmax", "max_steps")} == {k: relax_schema[k] for k in ("fmax", "max_steps")}
    shard = inspect.signature(relax.relax_shard).parameters
    assert (shard["engine"].default, shard["batch_atoms"].default) == (relax_schema["engine"], relax_schema["batch_atoms"])
    assert (batched_relax.Limits().fmax, batched_relax.Limits().max_steps) == (relax_schema["fmax"], relax_schema["max_steps"])
    assert list(select_steps.DEFAULT_FALLBACK) == schema_default("selection.fallback")
    assert ingest.DEFAULT_MIN_VACUUM == schema_default("data.min_vacuum")
    soap = inspect.signature(structure_maps.soap_descriptor).parameters
    maps = schema_defaults("structure_maps")
    assert {k: soap[k].default for k in ("r_cut", "n_max", "l_max", "sigma")} == {k: maps[k] for k in ("r_cut", "n_max", "l_max", "sigma")}
    assert inspect.signature(structure_maps.structure_map).parameters["chunk"].default == maps["chunk"]
    assert inspect.signature(formation.composition_baseline).parameters["order"].default == schema_default("formation.baseline_order")
    assert cluster_expansion.DEFAULTS == schema_defaults("formation.ce")
    nequip = schema_defaults("formation.nequip")
    assert {k: nequip_model.DEFAULTS[k] for k in nequip if k != "resources"} == {k: v for k, v in nequip.items() if k != "resources"}


def test_alloy_report_tolerance_is_the_schema_s() -> None:
    from mlff2d.alloys.report import write_alloy_report

    default = inspect.signature(write_alloy_report).parameters["tolerance"].default
    assert default == schema_default("alloys.learning_curve.tolerance")


@pytest.mark.parametrize("mode", ["transfer", "normal"])
def test_train_alloy_takes_its_family_s_transfer_defaults(mode: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import mlff2d.alloys.transfer

    seen: dict[str, Any] = {}

    def fake(family: str, data: Any, outdir: Any, params: dict[str, Any], mode: str, **kw: Any) -> dict[str, Any]:
        seen.update(params=params, **kw)
        return {"status": "ok"}

    monkeypatch.setattr(mlff2d.alloys.transfer, "train_alloy", fake)
    assert main(["train-alloy", "--family", "mace", "--data", "d", "--outdir", str(tmp_path), "--mode", mode,
                 "--lr", "0.01", "--batch-size", "2", "--device", "cpu"]) == 0  # fmt: skip
    assert seen["transfer_from"] == schema_default("alloys.families.mace.transfer_from")
    if mode == "transfer":
        assert seen["params"]["freeze_blocks"] == schema_default("alloys.families.mace.transfer.freeze_blocks")


# ------------------------------------------------------------------- the family of a model


def test_train_point_records_its_family(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import mlff2d.training.sweep
    from mlff2d.families import METRIC_COLUMNS

    class Fake:
        @staticmethod
        def train(data: Path, outdir: Path, params: dict[str, Any], **kw: Any) -> Path:
            pd.DataFrame(columns=METRIC_COLUMNS).to_csv(outdir / "metrics.csv", index=False)
            return outdir / "model"

    monkeypatch.setattr(mlff2d.training.sweep, "get_family", lambda name: Fake)
    status = mlff2d.training.sweep.train_point("mace", tmp_path / "data", tmp_path / "point", {})
    assert status["status"] == "ok"
    assert json.loads((tmp_path / "point" / "status.json").read_text())["family"] == "mace"
    assert mlff2d.training.sweep.point_family(tmp_path / "point") == "mace"


def _relax_args(point: Path, tmp_path: Path, *extra: str) -> list[str]:
    return ["relax", "--point", str(point), "--start", "s.extxyz", "--shard", "0", "--shard-size", "1",
            "--records", str(tmp_path / "r.parquet"), "--structures", str(tmp_path / "s.extxyz"), *extra]


@pytest.fixture
def relax_calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    import mlff2d.relaxation.relax

    calls: list[dict[str, Any]] = []

    def fake(family: str, point: Path, *args: Any, **kw: Any) -> pd.DataFrame:
        calls.append({"family": family, **kw})
        return pd.DataFrame({"failure": []})

    monkeypatch.setattr(mlff2d.relaxation.relax, "relax_shard", fake)
    return calls


def test_relax_reads_the_family_from_status_json(tmp_path: Path, relax_calls: list[dict[str, Any]]) -> None:
    point = tmp_path / "point"
    point.mkdir()
    (point / "status.json").write_text(json.dumps({"status": "ok", "model": "model", "family": "m3gnet"}))
    assert main(_relax_args(point, tmp_path)) == 0
    assert main(_relax_args(point, tmp_path, "--family", "m3gnet")) == 0  # old callers
    assert [c["family"] for c in relax_calls] == ["m3gnet", "m3gnet"]
    assert relax_calls[0]["fmax"] == schema_default("relax.fmax")
    with pytest.raises(SystemExit, match="records family 'm3gnet', but 'mace' was given"):
        main(_relax_args(point, tmp_path, "--family", "mace"))


def test_relax_without_a_recorded_family_names_the_file(tmp_path: Path, relax_calls: list[dict[str, Any]]) -> None:
    point = tmp_path / "old"
    with pytest.raises(SystemExit, match=f"{point / 'status.json'} is missing"):
        main(_relax_args(point, tmp_path))
    point.mkdir()
    (point / "status.json").write_text(json.dumps({"status": "ok", "model": "model"}))  # before status had a family
    with pytest.raises(SystemExit, match=f"{point / 'status.json'} records no family"):
        main(_relax_args(point, tmp_path))
    assert main(_relax_args(point, tmp_path, "--family", "mace")) == 0 and relax_calls[-1]["family"] == "mace"
