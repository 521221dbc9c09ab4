"""``mlff2d`` campaign commands: the model diagnostics (workflow/rules/diagnostics.smk), the
config check and the SLURM profile, which users run by hand."""

from __future__ import annotations

import argparse
from typing import Any

from mlff2d.cli._common import log, stage


def cmd_diagnostics(args: argparse.Namespace) -> None:
    from mlff2d.relaxation.diagnostics import diagnose, write_diagnostics

    pairs = [tuple(item.split("=", 1)) for item in args.models]
    bad = [item for item, pair in zip(args.models, pairs) if len(pair) != 2]
    if bad:
        raise SystemExit(f"--models takes MODEL_DIR=BASELINE_DIR, got {bad[:3]}")
    frame = diagnose(pairs, args.sets, args.root)
    write_diagnostics(frame, len(pairs), args.md, args.csv)
    for message in frame["message"]:
        log.warning("%s", message)
    log.info("%d warnings for %d models: %s", len(frame), len(pairs), args.md)


def cmd_check_config(args: argparse.Namespace) -> None:
    """Print the config with every default filled in (YAML), check that its input paths exist,
    and end with a one-line verdict; a problem is an error naming the key."""
    import yaml

    from mlff2d.config import ConfigError, load_config, missing_sources

    config = load_config(args.configfile)
    if not args.quiet:
        print(yaml.safe_dump(config, sort_keys=False, allow_unicode=True), end="")
    missing = missing_sources(config)
    if missing:
        raise ConfigError(f"{args.configfile}: " + "; ".join(missing))
    datasets = [d["name"] for d in config["alloys"]["datasets"]]
    print(f"OK: {args.configfile} is valid (campaign {config['campaign']!r}, {len(config['data']['sources'])} 2D source(s), "
          f"{len(datasets)} alloy dataset(s); every input path matches files)")


def cmd_slurm_profile(args: argparse.Namespace) -> None:
    from mlff2d.slurm_profile import write_profile

    path, summary = write_profile(args.name, args.cpu_partition, args.gpu_partition, args.account, args.force)
    print(f"wrote {path}:\n{summary.replace('#   ', '  ')}run the campaign with: snakemake --profile {args.name}")


def add_commands(sub: Any) -> None:
    """Register the campaign commands."""
    s = stage(sub, "diagnostics", "warn about models that do not beat the baseline, do not move or did not learn")
    s.add_argument("--models", nargs="*", default=[], help="MODEL_DIR=BASELINE_DIR pairs (BASELINE_DIR/<set>/summary.json)")
    s.add_argument("--sets", nargs="+", default=["val", "test"], help="relaxed sets to check")
    s.add_argument("--root", default=None, help="models are labelled by their path below this directory")
    s.add_argument("--md", required=True, help="diagnostics.md to write")
    s.add_argument("--csv", required=True, help="diagnostics.csv to write")
    s.set_defaults(func=cmd_diagnostics)

    s = stage(sub, "check-config", "validate a config file, check its input paths, print it with every default")
    s.add_argument("configfile", help="the campaign's config file (YAML)")
    s.add_argument("--quiet", action="store_true", help="print only the verdict, not the filled-in config")
    s.set_defaults(func=cmd_check_config)

    s = stage(sub, "slurm-profile", "write the Snakemake profile for this SLURM cluster "
                                    "(partitions from sinfo, account from sacctmgr), for `snakemake --profile slurm`")
    s.add_argument("--name", default="slurm", help="profile name (default slurm); never overwrites one without --force")
    s.add_argument("--cpu-partition", help="partition of the CPU jobs (default: the cluster's default partition)")
    s.add_argument("--gpu-partition", help="partition of the trainings (default: the one with GPUs and the longest time limit)")
    s.add_argument("--account", help="account to charge, or 'none' (default: from sacctmgr; none without accounting)")
    s.add_argument("--force", action="store_true", help="replace an existing profile of that name")
    s.set_defaults(func=cmd_slurm_profile)
