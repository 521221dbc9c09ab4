"""Campaign configuration: validation against the JSON schema, defaults, and path formatting."""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from mlff2d.layout import fmt_float, sweep_labels

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    """A configuration that does not match the schema; the message names the key."""


def load_schema() -> dict[str, Any]:
    """The campaign's JSON schema: ``workflow/schemas/config.schema.yaml`` with one block per
    registered model family (:func:`family_blocks`)."""
    with open(SCHEMA_PATH) as fh:
        schema = yaml.safe_load(fh)
    return family_blocks(schema)


def family_blocks(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with the family registry (:mod:`mlff2d.families`) filled in: per family its
    ``uff.families`` block ($defs/family, default: the spec's sweep_default) and its
    ``alloys.families`` block ($defs/alloy_family with the spec's alloy defaults), and the
    family and export-format enums of every key that names one."""
    from mlff2d.families import discover

    specs = discover()
    top = schema["properties"]
    sweeps = top["uff"]["properties"]["families"]["properties"]
    alloys = top["alloys"]["properties"]["families"]["properties"]
    for name, spec in specs.items():
        sweeps[name] = {"$ref": "#/$defs/family", "description": spec.description or f"{spec.label} sweep."}
        if spec.sweep_default is not None:
            sweeps[name]["default"] = copy.deepcopy(spec.sweep_default)
        alloys[name] = _alloy_block(schema["$defs"]["alloy_family"], spec)
    names = list(specs)
    top["repeats"]["properties"]["uff"]["propertyNames"]["enum"] = names
    top["repeats"]["properties"]["alloys"]["items"]["enum"] = names
    top["alloys"]["properties"]["learning_curve"]["properties"]["families"]["items"]["enum"] = names
    top["formation"]["properties"]["ml_family"]["enum"] = names
    top["export"]["properties"]["families"]["items"]["enum"] = sorted({s.export_format for s in specs.values()})
    return schema


def _alloy_block(template: Mapping[str, Any], spec: Any) -> dict[str, Any]:
    """$defs/alloy_family with the alloy defaults of one family's spec."""
    block = copy.deepcopy(dict(template))
    defaults = dict(spec.alloy_default)
    block["description"] = defaults.pop("description", f"{spec.label} alloy models.")
    props = block["properties"]
    for key, value in defaults.items():
        if key in ("normal", "transfer"):
            for sub, v in value.items():
                props[key]["properties"][sub]["default"] = v
        else:
            props[key]["default"] = value
    if not spec.transfer:
        props["transfer"]["description"] = f"{spec.label} has no fine-tuning: its alloy models train in normal mode only."
    return block


@functools.lru_cache(maxsize=1)
def _cached_schema() -> dict[str, Any]:
    return load_schema()


def _schema_node(key: str) -> dict[str, Any]:
    """The schema of config key ``key`` (dotted: ``outliers.force_max``), through ``properties``."""
    node = _cached_schema()
    for part in key.split("."):
        properties = node.get("properties", {})
        if part not in properties:
            raise KeyError(f"config key {key!r} is not in the schema ({part!r} not among {sorted(properties)})")
        node = properties[part]
    return node


def schema_default(key: str) -> Any:
    """The schema's default of config key ``key`` (``"outliers.force_max"`` -> 20.0): the one home
    of a setting's default, read by the CLI and the stage modules. A copy, safe to change."""
    node = _schema_node(key)
    if "default" not in node:
        raise KeyError(f"config key {key!r} has no default in the schema")
    return copy.deepcopy(node["default"])


def schema_defaults(key: str) -> dict[str, Any]:
    """The defaults of every property of the config block ``key`` that has one
    (``"formation.ce"`` -> {"cutoff_candidates": ..., "fit_method": "ardr", ...})."""
    properties = _schema_node(key).get("properties", {})
    return {name: copy.deepcopy(sub["default"]) for name, sub in properties.items() if "default" in sub}


def _with_defaults(validator_class: type) -> type:
    """A validator class that fills in ``default`` values of properties while validating."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator: Any, properties: Mapping[str, Any], instance: Any, schema: Any) -> Iterator[Any]:
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


def _describe(error: jsonschema.ValidationError) -> str:
    where = ".".join(str(p) for p in error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = set(error.schema.get("properties", {}))
        extra = sorted(k for k in error.instance if k not in known)
        keys = ", ".join(repr(f"{where}.{k}" if where else k) for k in extra)
        return f"unknown config key {keys}" + (f"; allowed here: {sorted(known)}" if known else "")
    hint = ""
    if error.validator == "type" and isinstance(error.instance, str) and _looks_like_float(error.instance):
        mantissa, _, exponent = error.instance.lower().partition("e")
        hint = f" (YAML reads a number without a decimal point as text: write {float(mantissa):.1f}e{int(exponent)})"
    return f"config key {where or '<top level>'!r}: {error.message}{hint}"


def _looks_like_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return "e" in text.lower()


def missing_sources(config: Mapping[str, Any], root: str | Path = ".") -> list[str]:
    """One message per input path (``data.sources`` and every alloy dataset's) that matches no
    file, naming the key; relative paths are read from ``root`` (Snakemake's working directory)."""
    import glob

    keyed = [(f"data.sources.{i}.path", src["path"]) for i, src in enumerate(config["data"]["sources"])]
    keyed += [(f"alloys.datasets.{j}.sources.{i}.path", src["path"])
              for j, d in enumerate(config["alloys"]["datasets"]) for i, src in enumerate(d["sources"])]
    messages = []
    for key, pattern in keyed:
        path = Path(pattern) if Path(pattern).is_absolute() else Path(root) / pattern
        if not glob.glob(str(path)):
            messages.append(f"config key {key!r}: {pattern!r} matches no file (looked in {Path(root).resolve()})")
    return messages


def validate_config(config: dict[str, Any]) -> dict[str, Any]:
    """Validate ``config`` in place, filling defaults; raise ConfigError naming the key."""
    schema = load_schema()
    validator = _with_defaults(jsonschema.Draft202012Validator)(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        raise ConfigError("; ".join(_describe(e) for e in errors))
    _check_split_ratios(config["splits"])
    _check_names(config)
    _check_cross_keys(config)
    return config


def split_ratios(config: Mapping[str, Any], name: str) -> list[float]:
    """The train:val:test ratios of split ``name`` (``splits.<name>`` is a list or {ratios, repeats})."""
    spec = config["splits"][name]
    return [float(r) for r in (spec["ratios"] if isinstance(spec, Mapping) else spec)]


def split_repeats(config: Mapping[str, Any], name: str) -> int:
    """K, the seeded repeats of split ``name``; the default (a ratio list) is the schema's."""
    spec = config["splits"][name]
    if isinstance(spec, Mapping) and "repeats" in spec:
        return int(spec["repeats"])
    branch = load_schema()["properties"]["splits"]["additionalProperties"]["oneOf"][1]
    return int(branch["properties"]["repeats"]["default"])


def _check_split_ratios(splits: Mapping[str, Any]) -> None:
    """Every split's train:val:test ratios lie in (0, 1) and sum to 1."""
    for name in splits:
        ratios = split_ratios({"splits": splits}, name)
        if not all(0 < float(r) < 1 for r in ratios):
            raise ConfigError(f"config key 'splits.{name}': every ratio must lie in (0, 1), got {list(ratios)}")
        if not math.isclose(sum(map(float, ratios)), 1.0, abs_tol=1e-6):
            raise ConfigError(f"config key 'splits.{name}': the ratios must sum to 1, got {list(ratios)} (sum {sum(map(float, ratios)):g})")


def _not_in(key: str, values: Sequence[Any], allowed: Sequence[Any], allowed_key: str) -> None:
    """ConfigError naming ``key`` unless every value is in ``allowed`` (floats compared as in paths)."""
    norm = [fmt_float(v) if isinstance(v, float | int) and not isinstance(v, bool) else v for v in allowed]
    unknown = [v for v in values if (fmt_float(v) if isinstance(v, float | int) and not isinstance(v, bool) else v) not in norm]
    if unknown:
        raise ConfigError(f"config key {key!r}: {unknown} not in {allowed_key} {list(allowed)}")


def _check_cross_keys(config: Mapping[str, Any]) -> None:
    """Keys that must name what other keys configure: the sweep and alloy cutoffs are selected
    cutoffs, alloy splits are configured splits, the learning curve, formation study and transfer
    sources refer to configured alloys, families and sweep points."""
    for family, spec in config["uff"]["families"].items():
        _not_in(f"uff.families.{family}.grid.e_cut", spec["grid"]["e_cut"], config["selection"]["e_cuts"], "selection.e_cuts")
    for family, labels in config["repeats"]["uff"].items():
        _check_repeat_points(config, family, labels)
    alloys = config["alloys"]
    names = [d["name"] for d in alloys["datasets"]]
    if not names:
        return
    enabled = [f for f, spec in alloys["families"].items() if spec["enabled"]]
    for family in enabled:
        spec = alloys["families"][family]
        _not_in(f"alloys.families.{family}.e_cuts", spec["e_cuts"] or [], alloys["e_cuts"], "alloys.e_cuts")
        _not_in(f"alloys.families.{family}.splits", spec["splits"] or [], alloys["splits"], "alloys.splits")
        _check_transfer_source(config, family, spec["transfer_from"])
    curve = alloys["learning_curve"]
    if curve["enabled"]:
        _not_in("alloys.learning_curve.alloys", curve["alloys"] or [], names, "alloys.datasets")
        _not_in("alloys.learning_curve.families", curve["families"], enabled, "the enabled alloys.families")
        _not_in("alloys.learning_curve.e_cut", [curve["e_cut"]], alloys["e_cuts"], "alloys.e_cuts")
        _not_in("alloys.learning_curve.split", [curve["split"]], alloys["splits"], "alloys.splits")
    formation = config["formation"]
    if formation["enabled"] and formation["alloys"]:
        _not_in("formation.alloys", formation["alloys"], names, "alloys.datasets")
        _not_in("formation.split", [formation["split"]], alloys["splits"], "alloys.splits")
        if {"ml1", "ml2"} & set(formation["inputs"]):
            ml = formation["ml_family"]
            _not_in("formation.ml_family", [ml], enabled, "the enabled alloys.families (ml1/ml2 are relaxed by its alloy models)")
            _not_in("formation.e_cut", [formation["e_cut"]], alloys["families"][ml]["e_cuts"] or alloys["e_cuts"], f"alloys.families.{ml}.e_cuts")


def _check_transfer_source(config: Mapping[str, Any], family: str, source: str) -> None:
    """The transfer source of ``family``'s alloy models is a criterion (``best``, ...) or a point of its sweep grid."""
    from mlff2d.alloys.transfer import CRITERIA as TRANSFER_CRITERIA

    key = f"alloys.families.{family}.transfer_from"
    uff = config["uff"]["families"].get(family)
    if uff is None:
        raise ConfigError(f"config key {key!r}: family {family!r} has no universal sweep (uff.families) to transfer from")
    if source in TRANSFER_CRITERIA:
        return
    labels = sweep_labels(uff["grid"])
    if source not in labels:
        raise ConfigError(f"config key {key!r}: {source!r} is not a point of uff.families.{family}.grid; one of {labels} or {' or '.join(TRANSFER_CRITERIA)}")


def _check_repeat_points(config: Mapping[str, Any], family: str, labels: Sequence[str]) -> None:
    """repeats.uff.<family> names points of that family's sweep grid."""
    key = f"repeats.uff.{family}"
    uff = config["uff"]["families"].get(family)
    if uff is None:
        raise ConfigError(f"config key {key!r}: family {family!r} has no universal sweep (uff.families)")
    _not_in(key, list(labels), sweep_labels(uff["grid"]), f"the points of uff.families.{family}.grid")


def _check_names(config: dict[str, Any]) -> None:
    """Cross-references the schema cannot express: split names exist, dataset names are unique."""
    splits = sorted(config["splits"])
    if config["uff"]["split"] not in config["splits"]:
        raise ConfigError(f"config key 'uff.split': {config['uff']['split']!r} is not one of the splits {splits}")
    for name in config["alloys"]["splits"] if config["alloys"]["datasets"] else []:
        if name not in config["splits"]:
            raise ConfigError(f"config key 'alloys.splits': {name!r} is not one of the splits {splits}")
    names = [d["name"] for d in config["alloys"]["datasets"]]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"config key 'alloys.datasets': duplicate name(s) {duplicates}")


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file and validate it (with defaults filled)."""
    with open(path) as fh:
        config = yaml.safe_load(fh) or {}
    try:
        return validate_config(config)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc


