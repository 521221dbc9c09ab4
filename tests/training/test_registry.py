"""The family registry: a family added as one plug-in module reaches the schema, the CLI
choices, the wildcard constraints, the sweep targets, the table ids and the alloy (transfer)
models with no other edit; the built-in families declare consistent specs."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from mlff2d import families
from mlff2d.data.export import FORMATS
from mlff2d.families import FamilySpec, discover, family_spec

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

TOY = '''
"""A toy family: only what the campaign reads before any training."""
from mlff2d.families import FamilySpec

SPEC = FamilySpec(name="toy", label="Toy", export_format="nequip", transfer={transfer},
                  sweep_default={{"grid": {{"e_cut": [1000000.0], "lr": [0.01], "batch_size": [4]}}}},
                  alloy_default={{"enabled": True, "e_cuts": [1000000.0], "splits": None,
                                 "normal": {{"lr": 0.01, "batch_size": 4}}, "transfer": {{"lr": 0.001, "batch_size": 4}}}})
DEFAULTS = {{"epochs": 1}}


def train(data_dir, outdir, params, init_model=None, device=None):
    raise NotImplementedError


def calculator(model_path, device=None):
    raise NotImplementedError
'''


def test_builtin_specs_are_consistent() -> None:
    specs = discover()
    assert list(specs)[:2] == ["m3gnet", "mace"]  # the thesis's order first
    assert {"m3gnet", "mace", "nequip", "gap"} <= set(specs)
    for name, spec in specs.items():
        assert spec.name == name and spec.module == f"mlff2d.families.{name}"
        assert spec.export_format in FORMATS
        assert spec.env in {"main", "nequip"}
        assert spec.table.startswith("table_") and spec.alloy_table.startswith("table_")
    assert (specs["m3gnet"].table, specs["mace"].table) == ("table_4_1", "table_4_2")
    assert (specs["m3gnet"].alloy_table, specs["mace"].alloy_table) == ("table_4_4", "table_4_5")
    assert specs["nequip"].env == "nequip" and not specs["gap"].transfer and not specs["gap"].epochs
    assert len({s.table for s in specs.values()}) == len(specs)


def test_unknown_family_is_named() -> None:
    with pytest.raises(ValueError, match="unknown model family 'nope'"):
        family_spec("nope")


def _toy_module(tmp_path: Path, transfer: bool = True) -> Path:
    (tmp_path / "toyfamily.py").write_text(textwrap.dedent(TOY.format(transfer=transfer)))
    return tmp_path


def test_a_registered_family_reaches_schema_and_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(_toy_module(tmp_path)))
    monkeypatch.setenv(families.PLUGINS_VARIABLE, "toyfamily")
    try:
        assert family_spec("toy").module == "toyfamily"
        from mlff2d.cli import build_parser
        from mlff2d.config import load_schema

        schema = load_schema()["properties"]
        assert schema["uff"]["properties"]["families"]["properties"]["toy"]["default"]["grid"]["batch_size"] == [4]
        alloy = schema["alloys"]["properties"]["families"]["properties"]["toy"]["properties"]
        assert alloy["enabled"]["default"] is True and alloy["normal"]["properties"]["lr"]["default"] == 0.01
        assert "toy" in schema["repeats"]["properties"]["alloys"]["items"]["enum"]
        parser = build_parser()
        sub = next(a for a in parser._actions if a.dest == "command")
        train = next(a for a in sub.choices["train"]._actions if a.dest == "family")
        assert "toy" in train.choices
    finally:
        families.unregister("toy")
        families._discovered.discard("toyfamily")


def _campaign(tmp_path: Path) -> Path:
    """The demo config with only the toy family swept and trained on the alloys."""
    config = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())
    for key in ("data",):
        for source in config[key]["sources"]:
            source["path"] = str(ROOT / source["path"])
    for dataset in config["alloys"]["datasets"]:
        for source in dataset["sources"]:
            source["path"] = str(ROOT / source["path"])
    config["uff"]["families"] = {"m3gnet": {"enabled": False}, "mace": {"enabled": False}}  # toy: its sweep_default
    config["alloys"]["families"] = {"m3gnet": {"enabled": False}, "mace": {"enabled": False}}
    for key in ("repeats", "formation"):
        config.pop(key, None)
    config["formation"] = {"enabled": False}
    config["alloys"]["learning_curve"] = {"enabled": False}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize("transfer", [True, False])
def test_a_registered_family_reaches_the_rules(tmp_path: Path, transfer: bool) -> None:
    """Wildcard constraints, the sweep_<family> target, its table and its alloy models (in both
    modes when it can be fine-tuned, normal only when not) come from the spec alone."""
    plugin = _toy_module(tmp_path, transfer)
    env = {**os.environ, families.PLUGINS_VARIABLE: "toyfamily",
           "PYTHONPATH": os.pathsep.join([str(plugin), str(ROOT / "workflow"), os.environ.get("PYTHONPATH", "")])}
    cmd = [str(BIN / "snakemake"), "-s", str(ROOT / "Snakefile"), "--directory", str(tmp_path),
           "--configfile", str(_campaign(tmp_path)), "-n", "-c1"]
    sweep = subprocess.run([*cmd, "sweep_toy"], capture_output=True, text=True, env=env, timeout=600)
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    assert "uff/toy/ecut~1e6/lr~0.01/bs~4/status.json" in sweep.stdout
    assert "export/nequip/ecut~1e6/split~80-10-10" in sweep.stdout  # the spec's export format
    full = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert full.returncode == 0, full.stderr[-3000:]
    text = full.stdout
    assert "results/demo/tables/table_toy.csv" in text and "table_4_1.csv" not in text
    assert "alloys/tables/table_alloys_toy_split~80-10-10.csv" in text
    assert "alloys/toy/MoWS2/normal/ecut~1e6/split~80-10-10/status.json" in text
    assert ("alloys/toy/MoWS2/transfer/ecut~1e6/split~80-10-10/status.json" in text) is transfer


def test_register_needs_a_module() -> None:
    with pytest.raises(ValueError, match="names no module"):
        families.register(FamilySpec(name="x", label="X", export_format="mace"))
