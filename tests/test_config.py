"""The config schema: every field described with a default; wrong keys and types are named."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from mlff2d.config import ConfigError, fmt_float, load_config, load_schema, validate_config


def walk(schema: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any], bool]]:
    """(dotted name, sub-schema, required by its parent) of every field, $defs included."""
    out = []
    for name, sub in schema.get("$defs", {}).items():
        out += walk(sub, f"$defs.{name}.")
    required = set(schema.get("required", []))
    for name, sub in schema.get("properties", {}).items():
        out.append((f"{path}{name}", sub, name in required))
        out += walk(sub, f"{path}{name}.")
        if "items" in sub:
            out += walk(sub["items"], f"{path}{name}[].")
    return out


def test_every_field_has_description_and_default() -> None:
    from mlff2d.families import discover

    fields = walk(load_schema())
    assert len(fields) > 25
    # a family without a sweep_default is swept only where a config names it (no default block)
    unswept = {f"uff.families.{name}" for name, spec in discover().items() if spec.sweep_default is None}
    assert unswept >= {"uff.families.nequip", "uff.families.gap"}
    for name, sub, required in fields:
        assert sub.get("description"), f"{name} has no description"
        assert required or "default" in sub or name in unswept, f"{name} has no default"
    assert {name for name, _, required in fields if required} >= {"$defs.source.path", "$defs.source.format"}


def test_defaults_are_the_study() -> None:
    config = validate_config({})
    assert config["outliers"]["max_sites"] == 20
    assert config["outliers"]["stress_max_kbar"] == 500.0
    assert config["selection"]["e_cuts"] == [0.001, 0.01, 0.02, 1000000.0]
    assert config["selection"]["fallback"] == [0.0, 0.5, 1.0]
    assert config["splits"] == {"90-5-5": [0.90, 0.05, 0.05], "80-10-10": [0.80, 0.10, 0.10]}


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"outliers": {"max_site": 3}}, r"unknown config key 'outliers\.max_site'"),
        ({"selection": {"e_cuts": ["1e-3"]}}, r"'selection\.e_cuts\.0': '1e-3' is not of type 'number'"),
        ({"data": {"sources": [{"path": "x", "format": "cif"}]}}, r"'data\.sources\.0\.format'"),
        ({"data": {"sources": [{"path": "x"}]}}, r"'format' is a required property"),
        ({"outliers": {"scope": "all"}}, r"'outliers\.scope'"),
        ({"campaign": "a b"}, r"'campaign'"),
    ],
)
def test_errors_name_the_key(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        validate_config(config)


def test_shipped_configs_validate(root: Path) -> None:
    full = load_config(root / "config" / "config.yaml")
    assert full["campaign"] == "thesis"
    demo = load_config(root / "config" / "demo.yaml")
    assert demo["campaign"] == "demo"


def test_yaml_reads_1e_minus_3_as_string(tmp_path: Path) -> None:
    # why the schema asks for a decimal point
    (tmp_path / "c.yaml").write_text("selection:\n  e_cuts: [1e-3]\n")
    assert yaml.safe_load((tmp_path / "c.yaml").read_text())["selection"]["e_cuts"] == ["1e-3"]
    with pytest.raises(ConfigError, match=r"c\.yaml: config key 'selection\.e_cuts\.0'"):
        load_config(tmp_path / "c.yaml")


def test_fmt_float() -> None:
    assert [fmt_float(x) for x in (0.001, 0.01, 0.02, 1000000.0, 1e-4)] == ["0.001", "0.01", "0.02", "1e6", "0.0001"]


ONE_ALLOY = [{"name": "MoWS2", "sources": [{"path": "x.json.bz2", "format": "alexandria"}]}]


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"splits": {"bad": [0.9, 0.2, 0.1]}}, r"'splits\.bad': the ratios must sum to 1, got \[0\.9, 0\.2, 0\.1\] \(sum 1\.2\)"),
        ({"splits": {"90-5-5": [1.0, 0.0, 0.0]}}, r"'splits\.90-5-5': every ratio must lie in \(0, 1\)"),
        ({"uff": {"families": {"m3gnet": {"grid": {"e_cut": [0.5]}}}}}, r"'uff\.families\.m3gnet\.grid\.e_cut': \[0\.5\] not in selection\.e_cuts"),
        ({"alloys": {"datasets": ONE_ALLOY, "families": {"mace": {"e_cuts": [0.5]}}}}, r"'alloys\.families\.mace\.e_cuts': \[0\.5\] not in alloys\.e_cuts"),
        ({"alloys": {"datasets": ONE_ALLOY, "families": {"m3gnet": {"splits": ["70-15-15"]}}}}, r"'alloys\.families\.m3gnet\.splits'"),
        ({"alloys": {"datasets": ONE_ALLOY, "learning_curve": {"e_cut": 0.5}}}, r"'alloys\.learning_curve\.e_cut'"),
        ({"alloys": {"datasets": ONE_ALLOY, "learning_curve": {"alloys": ["NbMoS2"]}}}, r"'alloys\.learning_curve\.alloys': \['NbMoS2'\] not in alloys\.datasets"),
        ({"alloys": {"datasets": ONE_ALLOY}, "formation": {"alloys": ["TiTaS2"]}}, r"'formation\.alloys': \['TiTaS2'\] not in alloys\.datasets"),
        ({"alloys": {"datasets": ONE_ALLOY, "families": {"mace": {"enabled": False}}, "learning_curve": {"families": ["m3gnet"]}},
          "formation": {"alloys": ["MoWS2"]}}, r"'formation\.ml_family'.*ml1/ml2 are relaxed by its alloy models"),
        ({"alloys": {"datasets": ONE_ALLOY, "families": {"m3gnet": {"transfer_from": "ecut~9/lr~1/bs~1"}}}},
         r"'alloys\.families\.m3gnet\.transfer_from': 'ecut~9/lr~1/bs~1' is not a point of uff\.families\.m3gnet\.grid"),
    ],
)
def test_cross_key_errors_name_the_key(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        validate_config(config)


def test_a_named_transfer_source_in_the_grid_passes() -> None:
    config = {"alloys": {"datasets": ONE_ALLOY, "families": {"m3gnet": {"transfer_from": "ecut~1e6/lr~0.001/bs~128"}}}}
    assert validate_config(config)["alloys"]["families"]["m3gnet"]["transfer_from"] == "ecut~1e6/lr~0.001/bs~128"


def test_check_config_rejects_the_bad_ratio(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = tmp_path / "bad.yaml"
    path.write_text("splits: {bad: [0.9, 0.2, 0.1]}\n")
    out = subprocess.run([sys.executable, "-m", "mlff2d", "check-config", str(path)], capture_output=True, text=True)
    assert out.returncode != 0 and "'splits.bad'" in out.stderr and "sum to 1" in out.stderr


def _check_config(*args: str, cwd: Path | None = None) -> Any:
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "mlff2d", "check-config", *args], capture_output=True, text=True, cwd=cwd)


def test_check_config_names_a_missing_source_path(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  sources: [{path: nowhere/*.json.bz2, format: alexandria}]\nalloys: {datasets: []}\n")
    out = _check_config(str(path), cwd=tmp_path)
    assert out.returncode != 0
    assert "config key 'data.sources.0.path': 'nowhere/*.json.bz2' matches no file" in out.stderr
    (tmp_path / "nowhere").mkdir()
    (tmp_path / "nowhere" / "a.json.bz2").write_bytes(b"")
    out = _check_config(str(path), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert yaml.safe_load(out.stdout.rsplit("\nOK: ", 1)[0])["splits"]["90-5-5"] == [0.90, 0.05, 0.05]  # YAML, defaults filled
    assert out.stdout.splitlines()[-1].startswith(f"OK: {path} is valid")


def test_check_config_of_the_demo_passes(root: Path) -> None:
    out = _check_config("--quiet", "config/demo.yaml", cwd=root)
    assert out.returncode == 0 and out.stdout.startswith("OK: config/demo.yaml is valid"), out.stderr


def test_a_float_without_a_dot_gets_the_hint(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text("uff: {families: {m3gnet: {grid: {lr: [1e-3]}}}}\n")
    with pytest.raises(ConfigError, match=r"'1e-3' is not of type 'number' \(YAML reads .* write 1\.0e-3\)"):
        load_config(tmp_path / "c.yaml")


def test_every_cli_option_has_help_and_every_stage_a_description() -> None:
    import argparse

    from mlff2d import __version__
    from mlff2d.cli import build_parser
    from mlff2d.families import family_names

    parser = build_parser()
    stages = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert len(stages) > 25
    for name, stage in stages.items():
        assert stage.description, name
        for action in stage._actions:
            assert action.help, f"mlff2d {name} {action.option_strings or action.dest} has no help"
    family = next(a for a in stages["train"]._actions if "--family" in a.option_strings)
    assert sorted(family.choices) == sorted(family_names())
    with pytest.raises(SystemExit):
        parser.parse_args(["--version"])
    assert __version__
