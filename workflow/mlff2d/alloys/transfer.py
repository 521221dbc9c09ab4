"""Transfer learning to alloys (thesis 4.3): which universal model to start from, the training
of one alloy model (normal or transfer), and nested training subsets for learning curves.

An alloy model directory is ``alloys/<family>/<dataset>/<mode>/ecut~<e_cut>/split~<split>``
(learning-curve models add ``frac~<fraction>``); besides what :func:`mlff2d.training.sweep.train_point`
writes (``status.json``, ``metrics.csv``, ``model/``, ``params.yaml``, ``provenance.json``) it
holds ``training_data.json`` (the export it trained on and its size) and, in transfer mode,
``transfer_source.json`` (the universal sweep point it started from and why).

* **Transfer source.** ``transfer_from`` is a criterion of :data:`CRITERIA` or a sweep point
  label such as ``ecut~1e6/lr~0.01/bs~8``. ``best`` is the successful universal sweep point
  with the lowest *validation relaxation energy MAE* (``relax/val/summary.json``): the same
  validation structures for every point, which is how the thesis chose its source.
  ``best_direct`` is the lowest *final direct validation energy MAE* (the last row of
  ``metrics.csv``); the two differ, because the validation frames differ between e_cuts.
  Points whose score is not finite (NaN, inf, missing) are never chosen. The criterion and
  every candidate's score go to ``transfer_source.json``, with ``refit_element_energies``
  (the family setting: the per-element energy offsets are fitted on the alloy training set,
  as normal training does, when true, the default; kept from the universal model when false).
  When no usable universal model
  exists the alloy training is recorded as failed (``status.json``), never raised.
* **Learning-curve subsets** (:func:`nested_subsets`): the training materials (never frames:
  a material keeps all its selected steps) sorted by id, permuted once with the seed; the
  subset of fraction ``f`` is the first ``max(1, ceil(f * n))`` of that order, so the subsets
  are nested (each contains every smaller one) and ``f = 1`` is the whole training split.
  Validation and test files are copied unchanged.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlff2d.data.export import TRAIN_FILES
from mlff2d.layout import point_label
from mlff2d.training.sweep import best_of, point_scores, read_point, train_point

MODES = ("normal", "transfer")
#: The rules ``transfer_from`` may name instead of a sweep point: what each ranks the
#: successful sweep points by (the lowest score wins).
CRITERIA = {
    "best": "lowest validation relaxation energy MAE (meV/atom, relax/val/summary.json): the same"
    " validation structures for every sweep point, the thesis's choice",
    "best_direct": "lowest final direct validation energy MAE (meV/atom, last row of metrics.csv);"
    " the validation frames differ between e_cuts",
}
#: The score name of each criterion in ``transfer_source.json``.
SCORE_NAMES = {"best": "val_relaxation_energy_mae_meV_per_atom", "best_direct": "val_direct_energy_mae_meV_per_atom"}
#: The validation relaxation summary of a sweep point (written by the relaxation rules).
VAL_RELAXATION_SUMMARY = Path("relax") / "val" / "summary.json"


def _format(family: str) -> str:
    """The export format family ``family`` trains on (a format name is accepted as itself)."""
    from mlff2d.data.export import FORMATS
    from mlff2d.families import family_spec

    return family if family in FORMATS else family_spec(family).export_format


def relaxation_scores(points: Mapping[str, str | Path]) -> dict[str, float]:
    """Validation relaxation energy MAE (meV/atom) of every successful point, by label; NaN
    where the point has no relaxation summary or its MAE is not a number."""
    scores = {}
    for label, path in points.items():
        status, _ = read_point(path)
        if status["status"] != "ok":
            continue
        summary = Path(path) / VAL_RELAXATION_SUMMARY
        try:
            scores[label] = float(json.loads(summary.read_text())["energy"]["mae"])
        except (OSError, KeyError, TypeError, ValueError):
            scores[label] = float("nan")
    return scores


def criterion_scores(points: Mapping[str, str | Path], criterion: str) -> dict[str, float]:
    """The score of every successful point under ``criterion`` (a key of :data:`CRITERIA`)."""
    if criterion == "best":
        return relaxation_scores(points)
    if criterion == "best_direct":
        return point_scores(points)
    raise ValueError(f"unknown transfer criterion {criterion!r}; one of {sorted(CRITERIA)}")


def _json_number(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def resolve_transfer_source(points: Sequence[str | Path], transfer_from: str) -> dict[str, Any]:
    """The universal sweep point a transfer model starts from.

    Args:
        points: The family's sweep point directories (``.../ecut~X/lr~Y/bs~Z``).
        transfer_from: a criterion of :data:`CRITERIA` (``best``, ``best_direct``) or a point
            label (``ecut~X/lr~Y/bs~Z``).

    Returns:
        ``label``, ``point`` (directory), ``model`` (the trained model's path), ``criterion``
        (the rule's name), ``criterion_description`` and, for a criterion, ``score_name`` and
        ``scores``: every point's score by label (``null`` for a failed point or a score that
        is not finite; those are never chosen).

    Raises:
        ValueError: no such point, or it (or every point, for a criterion) failed or has no
            finite score.
    """
    by_label = {point_label(p): Path(p) for p in points}
    scores: dict[str, float] | None = None
    if transfer_from in CRITERIA:
        criterion, description = transfer_from, CRITERIA[transfer_from]
        scores = criterion_scores(by_label, criterion)
        finite = {k: v for k, v in scores.items() if math.isfinite(v)}
        if not finite:
            raise ValueError(
                f"no sweep point finished successfully with a finite {SCORE_NAMES[criterion]}"
                f" (criterion {criterion}); scores: {scores}"
            )
        label = best_of(finite)
    else:
        label = transfer_from.strip("/")
        if label not in by_label:
            raise ValueError(f"transfer_from {transfer_from!r} is not a sweep point; known: {sorted(by_label)}")
        criterion, description = "named", "named in the config"
    status, _ = read_point(by_label[label])
    if status["status"] != "ok":
        raise ValueError(f"universal sweep point {label} failed: {status.get('reason', '')}")
    source = {
        "label": label,
        "point": str(by_label[label]),
        "model": status["model"],
        "criterion": criterion,
        "criterion_description": description,
    }
    if scores is not None:
        source["score_name"] = SCORE_NAMES[criterion]
        source["scores"] = {k: _json_number(scores.get(k, math.nan)) for k in by_label}
    return source


def training_set_size(data_dir: str | Path, family: str) -> dict[str, int]:
    """Frames and materials of an export's training file."""
    path = Path(data_dir) / TRAIN_FILES[_format(family)]
    ids = _material_ids(path, _format(family))
    return {"n_train_frames": len(ids), "n_train_materials": len(set(ids))}


def _material_ids(path: Path, fmt: str) -> list[str]:
    """The material id of every frame of a training file of export format ``fmt``."""
    if fmt == "m3gnet":
        return pd.read_parquet(path, columns=["material_id"])["material_id"].astype(str).tolist()
    import ase.io

    return [str(a.info["material_id"]) for a in ase.io.iread(path, index=":", format="extxyz")]


def train_alloy(
    family: str,
    data_dir: str | Path,
    outdir: str | Path,
    params: Mapping[str, Any],
    mode: str,
    points: Sequence[str | Path] = (),
    transfer_from: str = "best",
    device: str | None = None,
    devices: int = 1,
) -> dict[str, Any]:
    """Train one alloy model, from scratch (``normal``) or fine-tuned from a universal sweep
    point (``transfer``); writes ``training_data.json`` and, for transfer,
    ``transfer_source.json``. A failure (also of the transfer source) is recorded in
    ``status.json``, not raised; returns the status."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    try:
        size = training_set_size(data_dir, family)
    except Exception as exc:  # a broken export: recorded by train_point below
        size = {"error": f"{type(exc).__name__}: {exc}"}
    (outdir / "training_data.json").write_text(json.dumps({"data": str(data_dir), **size}, indent=2) + "\n")
    init_model = None
    if mode == "transfer":
        try:
            source = resolve_transfer_source(points, transfer_from)
        except Exception as exc:
            return _record_failure(outdir, family, f"no transfer source ({transfer_from}): {type(exc).__name__}: {exc}")
        # the per-element energy offsets: refitted on this training set, or kept from the source
        source["refit_element_energies"] = bool(params.get("refit_element_energies", True))
        (outdir / "transfer_source.json").write_text(json.dumps(source, indent=2) + "\n")
        init_model = source["model"]
    else:
        (outdir / "transfer_source.json").unlink(missing_ok=True)
    status = train_point(family, data_dir, outdir, params, init_model=init_model, device=device, devices=devices)
    if init_model is not None:
        status["transfer_from"] = source["label"]
        (outdir / "status.json").write_text(json.dumps(status, indent=2) + "\n")
    return status


def _record_failure(outdir: Path, family: str, reason: str) -> dict[str, Any]:
    from mlff2d.families import METRIC_COLUMNS

    status = {"status": "failed", "reason": reason, "family": family, "wall_time_s": 0.0, "recorded": time.strftime("%Y-%m-%dT%H:%M:%S")}
    pd.DataFrame(columns=METRIC_COLUMNS).to_csv(outdir / "metrics.csv", index=False)
    (outdir / "status.json").write_text(json.dumps(status, indent=2) + "\n")
    return status


def nested_subsets(material_ids: Sequence[str], fractions: Sequence[float], seed: int) -> dict[float, list[str]]:
    """Nested material subsets, one per fraction (see the module docstring)."""
    ids = np.array(sorted(set(map(str, material_ids))), dtype=object)
    if not len(ids):
        raise ValueError("no training materials to subsample")
    order = ids[np.random.default_rng(seed).permutation(len(ids))]
    out = {}
    for f in fractions:
        if not 0 < float(f) <= 1:
            raise ValueError(f"learning-curve fractions must lie in (0, 1], got {f}")
        n = len(ids) if float(f) == 1.0 else max(1, math.ceil(float(f) * len(ids)))
        out[float(f)] = sorted(order[:n].tolist())
    return out


def write_subset_export(export_dir: str | Path, family: str, fraction: float, seed: int, outdir: str | Path) -> dict[str, Any]:
    """A copy of an export whose training file holds only the nested subset of ``fraction`` of
    its training materials; writes ``subset.json`` (fraction, seed, counts, material ids)."""
    export_dir, outdir = Path(export_dir), Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    fmt = _format(family)
    train = export_dir / TRAIN_FILES[fmt]
    ids = _material_ids(train, fmt)
    keep = set(nested_subsets(ids, [fraction], seed)[float(fraction)])
    if fmt == "m3gnet":
        import pyarrow.parquet as pq

        table = pq.read_table(train)
        mask = pd.Series(table.column("material_id").to_pylist()).astype(str).isin(keep).to_numpy()
        pq.write_table(table.filter(mask), outdir / train.name)
    else:
        import ase.io

        frames = [a for a in ase.io.iread(train, index=":", format="extxyz") if str(a.info["material_id"]) in keep]
        ase.io.write(outdir / train.name, frames, format="extxyz")
    for other in sorted(export_dir.iterdir()):
        if other.is_file() and other.name != train.name:
            shutil.copyfile(other, outdir / other.name)
    info = {
        "fraction": float(fraction),
        "seed": int(seed),
        "n_train_materials": len(keep),
        "n_train_frames": sum(1 for i in ids if i in keep),
        "n_train_materials_full": len(set(ids)),
        "materials": sorted(keep),
    }
    (outdir / "subset.json").write_text(json.dumps(info, indent=2) + "\n")
    return info
