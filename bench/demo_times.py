"""Wall time per stage of a finished campaign, from Snakemake's `benchmark:` files.

    .venv/main/bin/python bench/demo_times.py [results/demo]

Sums the `s` column of every benchmark file per rule (the first folder under benchmarks/) and
writes `<campaign>/benchmarks/stage_times.csv`; prints the table and the total.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd


def stage_times(campaign_dir: Path) -> pd.DataFrame:
    """Jobs, summed and longest wall time (s) and peak memory (MB) per rule."""
    rows = []
    bench = campaign_dir / "benchmarks"
    for tsv in sorted(bench.rglob("*.tsv")):
        rel = tsv.relative_to(bench)
        stage = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        t = pd.read_csv(tsv, sep="\t")
        rows.append({"stage": stage, "s": float(t["s"].iloc[-1]), "max_rss_mb": float(pd.to_numeric(t["max_rss"], errors="coerce").iloc[-1])})
    table = pd.DataFrame(rows, columns=["stage", "s", "max_rss_mb"])
    return table.groupby("stage").agg(jobs=("s", "size"), total_s=("s", "sum"), longest_s=("s", "max"), max_rss_mb=("max_rss_mb", "max")).reset_index()


def main() -> None:
    campaign = Path(sys.argv[1] if len(sys.argv) > 1 else "results/demo")
    table = stage_times(campaign)
    table.to_csv(campaign / "benchmarks" / "stage_times.csv", index=False)
    print(table.to_string(index=False))
    print(f"\ntotal job time: {table['total_s'].sum():.1f} s")


if __name__ == "__main__":
    main()
