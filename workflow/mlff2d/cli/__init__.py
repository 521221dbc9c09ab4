"""``mlff2d <stage> ...``: the command line every Snakemake rule calls (and users can run by hand).

Thread counts are set before NumPy or torch are imported: ``--threads`` (default 1) sets
OMP/OpenBLAS/MKL threads and torch's intra-op threads for the stage.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from mlff2d.cli import alloys, campaign, data, demo, formation, relaxation, training
from mlff2d.cli._common import document

__all__ = ["STAGES", "build_parser", "main"]

#: The modules of the study's stages, in the order of the campaign; each registers its
#: sub-commands with ``add_commands(sub)``.
STAGES = (data, training, relaxation, alloys, formation, demo, campaign)


def _set_threads(n: int) -> None:
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
        os.environ[var] = str(n)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)


def build_parser() -> argparse.ArgumentParser:
    """The ``mlff2d`` parser: the global options, then every stage module's sub-commands."""
    from mlff2d import __version__

    p = argparse.ArgumentParser(prog="mlff2d", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"mlff2d {__version__}")
    p.add_argument("--threads", type=int, default=1, help="BLAS/torch threads for this stage (default 1)")
    sub = p.add_subparsers(dest="command", required=True)
    for module in STAGES:
        module.add_commands(sub)
    document(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mlff2d`` command."""
    args = build_parser().parse_args(argv)
    _set_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from mlff2d.config import ConfigError
    from mlff2d.data.ingest import IngestError
    from mlff2d.slurm_profile import ProfileError

    try:
        args.func(args)
    except (IngestError, ConfigError, ProfileError) as exc:
        print(f"mlff2d {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return 0
