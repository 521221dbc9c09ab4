"""Ingestion benchmark: our `ingest` against a naive reader, side by side in one run.

    .venv/main/bin/python bench/ingest.py                 # 20k materials x 30 steps (+ 2k for memory)
    .venv/main/bin/python bench/ingest.py --materials 2000 --quick

Dataset: synthetic Alexandria-format files (`mlff2d.demo.synthetic`, 1000 materials per .json.bz2
file, MX2 monolayers, two calcs per material). Naive baseline: bz2 + json.load of each file and
`pymatgen Structure.from_dict` per step, with forces and stress as NumPy arrays (it writes
nothing). Ours: `mlff2d.data.ingest.ingest` to the Parquet store with every check, with 1 and with 2
worker processes. Peak memory: maximum resident set size of a fresh process ingesting the 2k
and the 20k dataset (1 worker). Figures go to bench/out/ingest.json and stdout.
"""

from __future__ import annotations

import argparse
import bz2
import json
import subprocess
import sys
import time
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out"


def naive(files: list[Path]) -> int:
    import numpy as np
    from pymatgen.core import Structure

    n = 0
    for path in files:
        with bz2.open(path, "rt") as fh:
            data = json.load(fh)
        for calcs in data.values():
            for calc in calcs:
                for step in calc["steps"]:
                    Structure.from_dict(step["structure"])
                    np.array(step["forces"], dtype=float)
                    np.array(step["stress"], dtype=float)
                    n += 1
    return n


def ours(root: Path, out: Path, workers: int) -> int:
    from mlff2d.data.ingest import Source, ingest

    mats = ingest([Source(str(root), "alexandria")], out / "frames.parquet", out / "materials.csv", workers=workers)
    return int(mats["n_frames"].sum())


def peak_rss_mb(root: Path, out: Path) -> float:
    # VmHWM is the peak of the child's own memory. Linux's ru_maxrss is not: a process started
    # by fork + exec inherits its parent's peak RSS, here that of this benchmark process.
    code = (
        "import resource, sys; from pathlib import Path; sys.path.insert(0, %r); "
        "from ingest import ours; ours(Path(%r), Path(%r), 1); "
        "import os; status = '/proc/self/status'; "
        "hwm = [l.split()[1] for l in open(status) if l.startswith('VmHWM:')] if os.path.exists(status) else []; "
        "print(int(hwm[0]) / 1024 if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)"
    ) % (str(Path(__file__).resolve().parent), str(root), str(out))
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(res.stdout.split()[-1])


def dataset(n_materials: int, n_steps: int) -> Path:
    from mlff2d.demo.synthetic import write_alexandria

    root = OUT / f"alexandria_{n_materials}x{n_steps}"
    if not (root / "done").exists():
        write_alexandria(root, n_materials, n_steps, per_file=1000, seed=1)
        (root / "done").write_text("ok\n")
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--materials", type=int, default=20000)
    parser.add_argument("--small", type=int, default=2000, help="materials of the memory comparison")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--quick", action="store_true", help="skip the memory comparison")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    big = dataset(args.materials, args.steps)
    files = sorted(big.glob("*.json.bz2"))
    result: dict[str, float] = {"materials": args.materials, "steps": args.steps}

    t = time.perf_counter()
    frames = naive(files)
    result["naive_s"] = time.perf_counter() - t
    for workers in (1, 2):
        t = time.perf_counter()
        assert ours(big, OUT / "store", workers) == frames
        result[f"ours_{workers}w_s"] = time.perf_counter() - t
    result["frames"] = frames
    result["naive_frames_per_s"] = frames / result["naive_s"]
    for workers in (1, 2):
        result[f"ours_{workers}w_frames_per_s"] = frames / result[f"ours_{workers}w_s"]
        result[f"speedup_{workers}w"] = result["naive_s"] / result[f"ours_{workers}w_s"]
    if not args.quick:
        small = dataset(args.small, args.steps)
        result["peak_rss_small_mb"] = peak_rss_mb(small, OUT / "store_small")
        result["peak_rss_big_mb"] = peak_rss_mb(big, OUT / "store_big")
        result["peak_rss_ratio"] = result["peak_rss_big_mb"] / result["peak_rss_small_mb"]
    (OUT / "ingest.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
