"""Campaign configuration: validation against the JSON schema, defaults, and path formatting."""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    """A configuration that does not match the schema; the message names the key."""


def load_schema() -> dict[str, Any]:
    """The campaign's JSON schema (``workflow/schemas/config.schema.yaml``)."""
    with open(SCHEMA_PATH) as fh:
        return yaml.safe_load(fh)


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
    return f"config key {where or '<top level>'!r}: {error.message}"


def validate_config(config: dict[str, Any]) -> dict[str, Any]:
    """Validate ``config`` in place, filling defaults; raise ConfigError naming the key."""
    schema = load_schema()
    validator = _with_defaults(jsonschema.Draft202012Validator)(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        raise ConfigError("; ".join(_describe(e) for e in errors))
    _check_names(config)
    return config


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


def fmt_float(value: float) -> str:
    """A float as it appears in paths: 0.01 -> '0.01', 1000000.0 -> '1e6', 0.0001 -> '0.0001'."""
    text = f"{float(value):g}"
    if "e" in text:
        mantissa, exp = text.split("e")
        text = f"{mantissa}e{int(exp)}"
    return text
