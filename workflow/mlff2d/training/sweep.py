"""Sweeps of universal force fields: the grid, the training of one sweep point, and the
validation curves of a family (thesis figures 4.3, 4.5, 6.9).

A sweep point lives in ``uff/<family>/ecut~<e_cut>/lr~<lr>/bs~<bs>/`` and holds ``model/``,
``metrics.csv`` (one row per epoch, see :data:`mlff2d.families.METRIC_COLUMNS`),
``status.json`` (``ok`` or ``failed`` with the reason), ``params.yaml`` (the resolved
settings), ``provenance.json`` (package versions, git commit, host) and the training log. A failed training is recorded, not raised, so the rest of the
campaign goes on and the tables show it as failed.
"""

from __future__ import annotations

import itertools
import json
import math
import time
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from mlff2d.training.checkpoints import RESUME_FILE
from mlff2d.config import fmt_float
from mlff2d.training.divergence import TrainingDiverged, diverged_at, failure_reason
from mlff2d.families import METRIC_COLUMNS, get_family
from mlff2d.io.provenance import write_provenance

GRID_WILDCARDS = {"e_cut": "ecut", "lr": "lr", "batch_size": "bs"}


def grid_table(grid: Mapping[str, list[Any]]) -> pd.DataFrame:
    """Every combination of a family's grid as strings, columns ecut, lr, bs (Paramspace input)."""
    rows = [
        {"ecut": fmt_float(e), "lr": fmt_float(lr), "bs": str(int(bs))}
        for e, lr, bs in itertools.product(grid["e_cut"], grid["lr"], grid["batch_size"])
    ]
    return pd.DataFrame(rows, columns=["ecut", "lr", "bs"])


def resolve_params(family: str, params: Mapping[str, Any], lr: float, batch_size: int) -> dict[str, Any]:
    """The family's DEFAULTS, overridden by the config's params and the sweep point's lr/bs."""
    module = get_family(family)
    unknown = sorted(set(params) - set(module.DEFAULTS))
    if unknown:
        raise ValueError(f"unknown {family} training setting(s) {unknown}; known: {sorted(module.DEFAULTS)}")
    return {**module.DEFAULTS, **params, "lr": float(lr), "batch_size": int(batch_size)}


def train_point(
    family: str,
    data_dir: str | Path,
    outdir: str | Path,
    params: Mapping[str, Any],
    init_model: str | Path | None = None,
    device: str | None = None,
    devices: int = 1,
) -> dict[str, Any]:
    """Train one sweep point and write ``status.json`` and ``params.yaml``; a failure is
    recorded (status ``failed``, an empty metrics file) instead of raised.

    ``devices`` > 1 trains data-parallel on that many devices of ``device``'s kind (see the
    families' ``train``). The extra ranks a launcher starts (``LOCAL_RANK`` > 0) only train:
    status, parameters and provenance are rank 0's.
    """
    outdir = Path(outdir)
    if worker_rank():
        get_family(family).train(Path(data_dir), outdir, dict(params), init_model=init_model, device=device,
                                 devices=devices)
        return {"status": "worker"}
    outdir.mkdir(parents=True, exist_ok=True)
    (outdir / "params.yaml").write_text(yaml.safe_dump(dict(params), sort_keys=True))
    write_provenance(outdir)
    start = time.time()
    (outdir / RESUME_FILE).unlink(missing_ok=True)
    try:
        module = get_family(family)
        kwargs = {"devices": devices} if devices != 1 else {}  # families without multi-device support
        model = module.train(Path(data_dir), outdir, dict(params), init_model=init_model, device=device, **kwargs)
        reason = diverged_at(pd.read_csv(outdir / "metrics.csv").to_dict("records"), params.get("divergence_factor"))
        if reason:  # the families stop at a divergence; this also catches one a library hid
            raise TrainingDiverged(reason)
        status = {"status": "ok", "model": str(model)}
    except Exception as exc:  # a failed point must not stop the campaign
        status = {"status": "failed", "reason": failure_reason(exc), "traceback": traceback.format_exc()}
        if not (outdir / "metrics.csv").exists():
            pd.DataFrame(columns=METRIC_COLUMNS).to_csv(outdir / "metrics.csv", index=False)
        elif not isinstance(exc, TrainingDiverged):  # e.g. a distributed run whose worker stopped at a divergence
            shown = diverged_at(pd.read_csv(outdir / "metrics.csv").to_dict("records"), params.get("divergence_factor"))
            status["reason"] = shown or status["reason"]
    if (outdir / RESUME_FILE).exists():
        status["resume"] = json.loads((outdir / RESUME_FILE).read_text())
    status["family"] = family  # the model's own record of its family (read by mlff2d relax)
    status["wall_time_s"] = round(time.time() - start, 3)
    (outdir / "status.json").write_text(json.dumps(status, indent=2) + "\n")
    return status


def worker_rank() -> bool:
    """True in a data-parallel worker process (rank > 0) started by Lightning or torchrun."""
    import os

    return int(os.environ.get("LOCAL_RANK", "0") or 0) > 0 or int(os.environ.get("RANK", "0") or 0) > 0


def point_family(point_dir: str | Path, family: str | None = None) -> str:
    """The model family of a trained point, from the ``family`` that :func:`train_point` writes
    into ``<point_dir>/status.json``. ``family`` (an old caller's ``--family``) is used where
    the file predates that key, and must agree with it otherwise.

    Raises:
        FileNotFoundError: without ``family``, when ``status.json`` is missing.
        ValueError: when it names no family (and none is given) or another one than ``family``.
    """
    path = Path(point_dir) / "status.json"
    if not path.exists():
        if family:
            return family
        raise FileNotFoundError(f"{path} is missing: it names the model's family (give --family for a point without one)")
    recorded = json.loads(path.read_text()).get("family")
    if family and recorded and family != recorded:
        raise ValueError(f"{path} records family {recorded!r}, but {family!r} was given")
    if not (family or recorded):
        raise ValueError(f"{path} records no family (trained before status.json had one): give --family")
    return str(recorded or family)


def read_point(point_dir: str | Path) -> tuple[dict[str, Any], pd.DataFrame]:
    """Status and metrics of one sweep point."""
    point_dir = Path(point_dir)
    return json.loads((point_dir / "status.json").read_text()), pd.read_csv(point_dir / "metrics.csv")


def point_scores(points: Mapping[str, str | Path]) -> dict[str, float]:
    """Final validation energy MAE (meV/atom) of every successful point, by label (NaN where a
    point has no finite final value; :func:`best_of` never picks it)."""
    scores = {}
    for label, path in points.items():
        status, metrics = read_point(path)
        if status["status"] == "ok" and len(metrics):
            scores[label] = float(metrics["energy_mae_meV_per_atom"].iloc[-1])
    return scores


def best_of(scores: Mapping[str, float]) -> str:
    """The label with the lowest finite score (see :func:`point_scores`); NaN and inf are never
    chosen, whatever their order. Raises ValueError when no finite score is left."""
    finite = {label: float(v) for label, v in scores.items() if math.isfinite(float(v))}
    if not finite:
        raise ValueError(f"no sweep point has a finite score (finished successfully): {dict(scores)}")
    return min(finite, key=finite.__getitem__)


def best_point(points: Mapping[str, str | Path]) -> str:
    """The label of the successful point with the lowest final validation energy MAE."""
    return best_of(point_scores(points))


def plot_validation_curves(points: Mapping[str, str | Path], stem: str | Path, title: str = "") -> list[Path]:
    """Validation MAE of energy, forces and in-plane stress against epoch, one line per sweep
    point (failed points are listed in the legend as failed, with their reason). A panel is
    logarithmic only where its values span more than a decade; epochs are integers; a family of
    one-shot fits (one metrics row per point) shows one marker per point, said on the axis.
    Writes ``stem.png`` and ``stem.pdf``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    from mlff2d.data.figures import wide_range
    from mlff2d.io.ptable import save_figure

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    panels = [("energy_mae_meV_per_atom", "energy MAE (meV/atom)"), ("forces_mae_meV_per_A", "force MAE (meV/Å)"),
              ("stress_mae", "in-plane stress MAE ({unit})")]
    unit, drawn, lengths = "GPa", {col: [] for col, _ in panels}, []
    for label, path in sorted(points.items()):
        status, metrics = read_point(path)
        if status["status"] != "ok" or metrics.empty:
            reason = str(status.get("reason", "no metrics"))[:60]
            axes[0].plot([], [], linestyle="none", label=f"{label} (failed: {reason})")
            continue
        unit = str(metrics["stress_unit"].iloc[0]).replace("A3", "Å³")
        lengths.append(len(metrics))
        for ax, (col, _) in zip(axes, panels):
            ax.plot(metrics["epoch"], metrics[col], marker="o", markersize=3 if len(metrics) > 1 else 8, label=label)
            drawn[col] += [float(v) for v in metrics[col] if math.isfinite(float(v))]
    one_shot = bool(lengths) and max(lengths) == 1  # a kernel fit (GAP): no epochs, one point per model
    for ax, (col, ylabel) in zip(axes, panels):
        ax.set_xlabel("one-shot fit: the fitted model's validation errors (no epochs)" if one_shot else "epoch")
        ax.set_ylabel(ylabel.format(unit=unit))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if wide_range(drawn[col]):
            ax.set_yscale("log")
        else:
            ax.ticklabel_format(axis="y", style="plain", useOffset=False)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, Path(stem))
