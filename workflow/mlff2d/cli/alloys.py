"""``mlff2d`` alloy stages (workflow/rules/alloys.smk): alloy models trained normally or by
transfer, the learning-curve subsets and the alloy tables and figures."""

from __future__ import annotations

import argparse
import json
from typing import Any

from mlff2d import layout
from mlff2d.cli._common import families, log, schema_option, stage
from mlff2d.cli.training import training_devices


def alloy_default(family: str, key: str) -> Any:
    """The schema's default of ``alloys.families.<family>.<key>`` (a per-family setting)."""
    from mlff2d.config import schema_default

    return schema_default(f"alloys.families.{family}.{key}")


def cmd_train_alloy(args: argparse.Namespace) -> None:
    from mlff2d.training.sweep import resolve_params
    from mlff2d.alloys.transfer import train_alloy

    params = resolve_params(args.family, json.loads(args.params), args.lr, args.batch_size)
    if args.mode == "transfer":
        freeze = args.freeze_blocks
        params["freeze_blocks"] = alloy_default(args.family, "transfer.freeze_blocks") if freeze is None else freeze
    transfer_from = args.transfer_from or alloy_default(args.family, "transfer_from")
    device, devices = training_devices(args.gpus, args.device)
    status = train_alloy(args.family, args.data, args.outdir, params, args.mode, points=args.universal,
                         transfer_from=transfer_from, device=device, devices=devices)
    if status["status"] == "worker":  # a data-parallel worker rank: rank 0 reports
        return
    log.info("%s %s alloy training in %s: %s", args.family, args.mode, args.outdir, status["status"])
    if status["status"] != "ok":
        log.error("training failed (recorded in status.json): %s", status["reason"])


def cmd_subset_export(args: argparse.Namespace) -> None:
    from mlff2d.alloys.transfer import write_subset_export

    info = write_subset_export(args.export, args.family, args.fraction, args.seed, args.outdir)
    log.info("fraction %g: %d of %d training materials, %d frames", info["fraction"], info["n_train_materials"],
             info["n_train_materials_full"], info["n_train_frames"])


def cmd_alloy_report(args: argparse.Namespace) -> None:
    from mlff2d.alloys.report import write_alloy_report

    paths = write_alloy_report(args.models, args.sets, args.splits, args.tables, args.figures, families=args.families,
                               tolerance=args.tolerance, curve_set=args.curve_set, baselines=args.baselines)
    log.info("wrote %d alloy table and figure files", len(paths))


def add_commands(sub: Any) -> None:
    """Register the alloy stages' sub-commands."""
    _add_train_alloy(sub)

    s = stage(sub, "subset-export", "an export with a nested subset of its training materials")
    s.add_argument("--export", required=True, help="export directory")
    s.add_argument("--family", required=True, choices=("m3gnet", "mace", "nequip"))
    s.add_argument("--fraction", type=float, required=True, help="fraction of the training materials, (0, 1]")
    schema_option(s, "--seed", "seed", type=int)
    s.add_argument("--outdir", required=True)
    s.set_defaults(func=cmd_subset_export)

    s = stage(sub, "alloy-report", "alloy tables 4.3-4.7, learning curves and figures")
    s.add_argument("--models", nargs="*", default=[], help="alloy model directories (learning-curve ones included)")
    schema_option(s, "--sets", "alloys.relax_sets", nargs="+", help="relaxed sets")
    s.add_argument("--splits", nargs="+", required=True, help="alloy split names")
    s.add_argument("--families", nargs="+", default=None, help="families with a per-alloy table (default: those with alloy"
                   " models and those whose alloy models are enabled by default)")
    schema_option(s, "--tolerance", "alloys.learning_curve.tolerance", type=float, help="learning-curve match tolerance")
    s.add_argument("--curve-set", default="test", help="set of the learning curves and figures")
    s.add_argument("--baselines", default=None, help=f"root of the alloy composition baselines ({layout.BASELINE_SPLIT}/<set>/)")
    s.add_argument("--tables", required=True, help="output directory of the tables")
    s.add_argument("--figures", required=True, help="output directory of the figures")
    s.set_defaults(func=cmd_alloy_report)


def _add_train_alloy(sub: Any) -> None:
    s = stage(sub, "train-alloy", "train one alloy model, normal or transfer (thesis 4.3)")
    s.add_argument("--family", required=True, choices=families(), help="model family")
    s.add_argument("--data", required=True, help="export directory with train/val files")
    s.add_argument("--outdir", required=True, help="the alloy model's directory")
    s.add_argument("--mode", required=True, choices=("normal", "transfer"), help="normal: from scratch; transfer: fine-tune a universal model")
    s.add_argument("--lr", type=float, required=True, help="learning rate")
    s.add_argument("--batch-size", type=int, required=True, help="structures per batch (per device)")
    s.add_argument("--params", default="{}", help="JSON object of settings overriding the family's defaults")
    s.add_argument("--freeze-blocks", type=int, default=None, help="transfer: freeze the first N interaction blocks"
                   " (default: the config schema's alloys.families.<family>.transfer.freeze_blocks)")
    s.add_argument("--universal", nargs="*", default=[], help="transfer: the family's universal sweep point directories")
    s.add_argument("--transfer-from", default=None, help='transfer: "best" (lowest validation relaxation energy MAE), "best_direct" (lowest final'
                   f' direct validation energy MAE) or a sweep point label {layout.POINT_LABEL}'
                   " (default: the config schema's alloys.families.<family>.transfer_from)")
    s.add_argument("--device", default=None, help="cpu or cuda (default: CUDA when available)")
    s.add_argument("--gpus", type=int, default=0, help="GPUs for data-parallel training (0: one device)")
    s.set_defaults(func=cmd_train_alloy)
