"""``mlff2d`` training stages (workflow/rules/uff.smk): one sweep point's training and the
validation curves of the sweep."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from mlff2d.cli._common import families, log, stage


def training_devices(gpus: int, device: str | None) -> tuple[str | None, int]:
    """(torch device, device count) of a training from ``--gpus`` and ``--device``.

    ``--gpus 0`` (default): one device, ``--device`` or CUDA when available. ``--gpus N``: N
    GPUs (the ones SLURM granted the job); with ``--device cpu`` N CPU processes instead (DDP
    with gloo, for tests). GPUs asked for but not visible to torch is an error (recorded as a
    failed point), never a silent fallback to the CPU.
    """
    if gpus < 0:
        raise SystemExit("--gpus must be >= 0")
    if gpus == 0:
        return device, 1
    if device is None or device.startswith("cuda"):
        import torch

        visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if visible < gpus:
            log.error("--gpus %d, but torch sees %d CUDA device(s) (CUDA_VISIBLE_DEVICES=%s)", gpus, visible,
                      os.environ.get("CUDA_VISIBLE_DEVICES"))
        return device or "cuda", gpus
    return device, gpus


def cmd_train(args: argparse.Namespace) -> None:
    from mlff2d.training.sweep import resolve_params, train_point

    params = resolve_params(args.family, json.loads(args.params), args.lr, args.batch_size)
    device, devices = training_devices(args.gpus, args.device)
    status = train_point(args.family, args.data, args.outdir, params, init_model=args.init_model, device=device,
                         devices=devices)
    if status["status"] == "worker":  # a data-parallel worker rank: rank 0 reports
        return
    log.info("%s training in %s: %s", args.family, args.outdir, status["status"])
    if status["status"] != "ok":
        log.error("training failed (recorded in status.json): %s", status["reason"])


def cmd_curves(args: argparse.Namespace) -> None:
    from mlff2d.io.labels import model_label, model_parts
    from mlff2d.training.sweep import plot_validation_curves

    dirs = [item.split("=", 1)[-1] for item in args.points]  # LABEL=DIR (the label is the directory's)
    points = {model_label(**{k: v for k, v in model_parts(d).items() if k != "family" and v}): d for d in dirs}
    paths = plot_validation_curves(points, args.out, title=args.title)
    log.info("wrote %s", ", ".join(map(str, paths)))


def add_commands(sub: Any) -> None:
    """Register the training stages' sub-commands."""
    s = stage(sub, "train", "train one sweep point of a model family")
    s.add_argument("--family", required=True, choices=families(), help="model family")
    s.add_argument("--data", required=True, help="export directory with train/val files")
    s.add_argument("--outdir", required=True, help="the sweep point's directory")
    s.add_argument("--lr", type=float, required=True, help="learning rate")
    s.add_argument("--batch-size", type=int, required=True, help="structures per batch (per device)")
    s.add_argument("--params", default="{}", help="JSON object of settings overriding the family's defaults")
    s.add_argument("--init-model", default=None, help="fine-tune from this trained model (transfer)")
    s.add_argument("--device", default=None, help="cpu or cuda (default: CUDA when available)")
    s.add_argument("--gpus", type=int, default=0,
                   help="GPUs to train on, data-parallel when > 1 (default 0: one device, CUDA when available);"
                        " with --device cpu: that many CPU processes")
    s.set_defaults(func=cmd_train)

    s = stage(sub, "curves", "validation curves of sweep points")
    s.add_argument("--points", nargs="+", required=True, help="POINT_DIR (or LABEL=POINT_DIR) of each sweep point; the legend shows each point's label")
    s.add_argument("--out", required=True, help="output stem (writes .png and .pdf)")
    s.add_argument("--title", default="")
    s.set_defaults(func=cmd_curves)
