"""What every stage's command-line module shares: the sub-command maker, the help of common
options, options whose default is the config schema's, and small argument parsers."""

from __future__ import annotations

import argparse
import logging
from typing import Any

log = logging.getLogger("mlff2d")

#: Help of the options many stages share (paths of the campaign's files); an option without its
#: own help gets this one, and every option has one (tested).
COMMON_HELP = {
    "--frames": "frame store (.parquet)", "--materials": "materials table (.csv)",
    "--clean": "clean frame store (.parquet, the outlier filter's output)",
    "--ledger-frames": "output: ledger of removed frames (.parquet)",
    "--ledger-materials": "materials ledger with the reason each was kept or removed (.csv)",
    "--summary": "output: counts per removal reason (.csv)", "--max-sites": "most atoms per cell",
    "--scope": "remove whole materials or single frames",
    "--fallback": "steps kept when none passes the cutoff, as fractions of the last index",
    "--keep-last": "also keep the last (relaxed) step", "--out": "output file",
    "--ratios": "train, val and test fractions (sum 1)", "--seed": "random seed",
    "--family": "model family", "--selected": "selected steps (.parquet)", "--split": "split (.csv: material_id, split)",
    "--outdir": "output directory", "--sets": "sets: train, val, test", "--set": "set: val or test",
    "--shard": "shard index (0-based)", "--shard-size": "structures per shard",
    "--max-steps": "FIRE steps before a relaxation counts as step_limit", "--device": "cpu or cuda (default: CUDA when available)",
    "--records": "relaxation records (.parquet)", "--structures": "relaxed structures (.extxyz)",
    "--records-out": "output: gathered records (.parquet)", "--structures-out": "output: gathered structures (.extxyz)",
    "--title": "figure title", "--start": "start structures (extxyz)", "--reference": "DFT-relaxed structures (extxyz)",
    "--families": "model families", "--formation": "formation_energies.csv",
}


def stage(sub: Any, name: str, help: str) -> argparse.ArgumentParser:
    """A stage's sub-command; its help is also the description ``mlff2d <stage> --help`` shows."""
    return sub.add_parser(name, help=help, description=help)


def schema_option(parser: argparse.ArgumentParser, flag: str, key: str, **kwargs: Any) -> argparse.Action:
    """``parser.add_argument(flag, ...)`` whose default is the config schema's default of ``key``
    (a setting has one default: the schema). The key is kept on the action as ``schema_key``
    (a test checks every such default against the schema) and named in the help."""
    from mlff2d.config import schema_default

    text = kwargs.pop("help", None) or COMMON_HELP.get(flag, "")
    help = f"{text} (default: %(default)s, config {key})".lstrip()
    action = parser.add_argument(flag, default=schema_default(key), help=help, **kwargs)
    action.schema_key = key  # type: ignore[attr-defined]
    return action


def schema_options(parser: argparse.ArgumentParser) -> dict[str, str]:
    """{flag: config key} of the options of ``parser`` made by :func:`schema_option`."""
    return {a.option_strings[-1]: a.schema_key for a in parser._actions if hasattr(a, "schema_key")}


def document(parser: argparse.ArgumentParser) -> None:
    """Give every option without a help text its :data:`COMMON_HELP` entry."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                document(sub)
        elif not action.help and action.option_strings:
            action.help = COMMON_HELP.get(action.option_strings[-1])


def families() -> list[str]:
    """The trainable model families (the CLI's choices), from the family registry."""
    from mlff2d.families import family_names

    return family_names()


def label_path(text: str) -> tuple[str, str]:
    """``LABEL=PATH`` -> (label, path); anything else is an error."""
    label, sep, path = text.partition("=")
    if not sep:
        raise SystemExit(f"expected LABEL=PATH, got {text!r}")
    return label, path


def points(items: list[str]) -> list[tuple[str, str]]:
    """``LABEL=PATH`` items split at the first ``=``."""
    return [tuple(item.split("=", 1)) for item in items]  # type: ignore[misc]
