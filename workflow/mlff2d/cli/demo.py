"""``mlff2d`` demo stages (workflow/rules/demo.smk): the CHGNet demo dataset and synthetic
Alexandria-format files for tests."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from mlff2d.cli._common import log, stage


def cmd_demo_data(args: argparse.Namespace) -> None:
    from mlff2d.demo.data import generate_demo

    manifest = generate_demo(Path(args.outdir), args.n_2d, args.alloys, args.max_configs, args.seed, args.workers)
    log.info("demo data in %s: %s", args.outdir, json.dumps(manifest["totals"]))


def cmd_synthetic(args: argparse.Namespace) -> None:
    from mlff2d.demo.synthetic import write_alexandria

    paths = write_alexandria(args.outdir, args.materials, args.steps, args.per_file, args.seed, not args.no_compress)
    log.info("wrote %d files to %s", len(paths), args.outdir)


def add_commands(sub: Any) -> None:
    """Register the demo stages' sub-commands (their settings are not campaign settings)."""
    s = stage(sub, "demo-data", "generate the demo dataset with CHGNet (needs the 'demo' extra)")
    s.add_argument("--outdir", required=True)
    s.add_argument("--n-2d", type=int, default=None, help="first N 2D prototypes (default: all)")
    s.add_argument("--alloys", nargs="*", default=None, help="alloys to enumerate (default: all six)")
    s.add_argument("--max-configs", type=int, default=None, help="configurations per alloy")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--workers", type=int, default=1, help="relaxations run in parallel")
    s.set_defaults(func=cmd_demo_data)

    s = stage(sub, "synthetic-alexandria", "write synthetic Alexandria-format files")
    s.add_argument("--outdir", required=True)
    s.add_argument("--materials", type=int, default=100, help="number of materials (default 100)")
    s.add_argument("--steps", type=int, default=30, help="relaxation steps per material (default 30)")
    s.add_argument("--per-file", type=int, default=1000, help="materials per file (default 1000)")
    s.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    s.add_argument("--no-compress", action="store_true", help="write .json instead of .json.bz2")
    s.set_defaults(func=cmd_synthetic)
