"""Every results path of a campaign: each pattern next to its parser, and nowhere else.

The patterns are relative to the campaign's results directory (``results/<campaign>/``) and use
Snakemake's wildcard syntax (``{family}``, ``{ecut}``, ...): the rules use them as they are (with
the results directory in front), the package fills them with :func:`str.format` and reads a
model's directory back with :func:`model_parts`. A test fails on a path literal (``ecut~``,
``split~``, ...) anywhere else in the package or the rules.

* **Data** (``data/<dataset>/``): the step selection of a cutoff, the split of a split
  instance, the export of a training-file format, the relaxation sets, the training elements,
  the SOAP structure map and the nested subsets of a learning curve.
* **Models**: a universal sweep point ``uff/<family>/ecut~<e>/lr~<lr>/bs~<bs>`` (a repeat on
  another split instance: ``uff/<family>/split~<instance>/ecut~...``); an alloy model
  ``alloys/<family>/<dataset>/<mode>/ecut~<e>/split~<split>`` (a learning-curve model adds
  ``frac~<fraction>``).
* **Stages**: the alloy baselines, the formation study of an alloy and split.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

#: The universal dataset (data.sources) and the combined dataset of all alloys.
UNIVERSAL = "2d"
COMBINED = "alloys"
#: How an alloy model is trained: from scratch, or fine-tuned from a universal sweep point.
MODES = ("normal", "transfer")

# The labelled path segments (name~value), Snakemake Paramspace-style.
ECUT = "ecut~{ecut}"
SPLIT = "split~{split}"
FRAC = "frac~{frac}"
#: A sweep point's label: its directory below ``uff/<family>/``.
POINT_LABEL = "ecut~{ecut}/lr~{lr}/bs~{bs}"

# Data (data/<dataset>/...).
SELECTED_STEM = f"data/{{dataset}}/selected/{ECUT}"
SELECTED = f"{SELECTED_STEM}.parquet"
SPLIT_CSV = f"data/{{dataset}}/{SPLIT}.csv"
EXPORT = f"data/{{dataset}}/export/{{fmt}}/{ECUT}/{SPLIT}"
RELAX_SETS = f"data/{{dataset}}/relax/{SPLIT}"
TRAIN_ELEMENTS = f"data/{{dataset}}/train_elements/{SPLIT}.csv"
STRUCTURE_MAP = f"data/{{dataset}}/structure_map/{SPLIT}"
CURVE_DATA = f"data/{{dataset}}/subsets/{{family}}/{ECUT}/{SPLIT}/{FRAC}"

# Models.
SWEEP_POINT = f"uff/{{family}}/{POINT_LABEL}"
REPEAT_POINT = f"uff/{{family}}/{SPLIT}/{POINT_LABEL}"
ALLOY_MODEL = f"alloys/{{family}}/{{dataset}}/{{mode}}/{ECUT}/{SPLIT}"
CURVE_MODEL = f"{ALLOY_MODEL}/{FRAC}"

# Stages.
#: The composition baselines of the alloy datasets, one folder per dataset split below it.
ALLOY_BASELINES = "alloys/baseline"
BASELINE_SPLIT = f"{{dataset}}/{SPLIT}"
ALLOY_BASELINE = f"{ALLOY_BASELINES}/{BASELINE_SPLIT}"
FORMATION_ALLOY = "formation/{fe_alloy}/split~{fe_split}"
#: An alloy table's stem in alloys/tables/: the table's id and the split (table_4_3_split~90-5-5).
ALLOY_TABLE = f"{{table}}_{SPLIT}"

_VALUE = r"[^/]+"
_POINT_RE = re.compile(rf"(?:^|/)uff/(?P<family>{_VALUE})/(?:split~(?P<split>{_VALUE})/)?"
                       rf"ecut~(?P<ecut>{_VALUE})/lr~(?P<lr>{_VALUE})/bs~(?P<bs>{_VALUE})$")
_ALLOY_RE = re.compile(rf"(?:^|/)alloys/(?P<family>{_VALUE})/(?P<dataset>{_VALUE})/(?P<mode>normal|transfer)"
                       rf"/ecut~(?P<ecut>{_VALUE})/split~(?P<split>{_VALUE})(?:/frac~(?P<frac>{_VALUE}))?$")
_LABEL_RE = re.compile(rf"(?:^|/)ecut~(?P<ecut>{_VALUE})/lr~(?P<lr>{_VALUE})/bs~(?P<bs>{_VALUE})$")
_ALLOY_TABLE_RE = re.compile(r"^(?P<table>table_[^~/]+)_split~(?P<split>[^/]+)$")


def fmt_float(value: float) -> str:
    """A float as it appears in paths: 0.01 -> '0.01', 1000000.0 -> '1e6', 0.0001 -> '0.0001'."""
    text = f"{float(value):g}"
    if "e" in text:
        mantissa, exp = text.split("e")
        text = f"{mantissa}e{int(exp)}"
    return text


def sweep_labels(grid: Mapping[str, Sequence[Any]]) -> list[str]:
    """Every point label ``ecut~<e>/lr~<lr>/bs~<bs>`` of a family's sweep grid (e_cut, lr and
    batch_size lists), in the order e_cut × lr × batch size."""
    return [POINT_LABEL.format(ecut=fmt_float(e), lr=fmt_float(lr), bs=int(bs))
            for e in grid["e_cut"] for lr in grid["lr"] for bs in grid["batch_size"]]


def model_parts(path: str | Path) -> dict[str, str | None]:
    """The parts of a model directory (below ``results/<campaign>/`` or with it in front): a sweep
    point's family, split (None: the universal split), ecut, lr and bs; an alloy model's family,
    dataset, mode, ecut, split and frac (None: the full training set)."""
    text = str(path).rstrip("/")
    for pattern in (_POINT_RE, _ALLOY_RE):
        match = pattern.search(text)
        if match:
            return match.groupdict()
    raise ValueError(f"not a model directory: {path} (expected {SWEEP_POINT}, {REPEAT_POINT}, {ALLOY_MODEL} or {CURVE_MODEL})")


def is_sweep_point(path: str | Path) -> bool:
    """Whether ``path`` is a universal sweep point (or a repeat of one)."""
    return bool(_POINT_RE.search(str(path).rstrip("/")))


def point_label(point_dir: str | Path) -> str:
    """``ecut~X/lr~Y/bs~Z`` of a sweep point directory (its last three segments)."""
    return POINT_LABEL.format(**label_parts(point_dir))


def label_parts(label: str) -> dict[str, str]:
    """ecut, lr and bs of a sweep point label ``ecut~X/lr~Y/bs~Z`` (or a directory ending in one)."""
    match = _LABEL_RE.search(str(label).rstrip("/"))
    if not match:
        raise ValueError(f"not a sweep point label: {label!r} (expected {POINT_LABEL})")
    return match.groupdict()


def alloy_table_parts(stem: str) -> dict[str, str]:
    """table (``table_4_3``) and split of an alloy table's file stem ``table_4_3_split~S``."""
    match = _ALLOY_TABLE_RE.match(stem)
    if not match:
        raise ValueError(f"not an alloy table: {stem!r} (expected {ALLOY_TABLE})")
    return match.groupdict()


def model_source(model: str, universal_split: str) -> tuple[str, str, str]:
    """(family, dataset, split) of a model directory (relative to the results directory): a sweep
    point trains on the universal dataset and ``universal_split`` (a repeat: its split
    instance); an alloy model on its dataset and split."""
    parts = model_parts(model)
    if "lr" in parts:
        return str(parts["family"]), UNIVERSAL, parts["split"] or universal_split
    return str(parts["family"]), str(parts["dataset"]), str(parts["split"])
