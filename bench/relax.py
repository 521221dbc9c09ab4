"""Relaxation benchmarks: the batched engine against one-by-one ASE, and two shards against one.

    .venv/main/bin/python bench/relax.py                      # engines: both families, 120 structures (~4 min)
    .venv/main/bin/python bench/relax.py --families mace --structures 100 --batch-atoms 128
    .venv/main/bin/python bench/relax.py shards               # tiny M3GNet, 40 structures, 2 rounds (~2 min)
    .venv/main/bin/python bench/relax.py shards --model default --fmax 0.05

**Engines** (the default): for each family one tiny model, trained once (cached in
bench/out/relax/engines_<family>/) by ``mlff2d.training.sweep.train_point`` on the same 60
Lennard-Jones-labelled MoS2/WSe2 monolayers (M3GNet: ``MODELS["tiny"]``, 20 epochs; MACE:
``MACE_SIZES[--mace-size]``, 20 epochs), relaxes the same start file (below; default 120 structures, 7 atoms on average)
with ``relax_shard(engine="ase")`` and ``relax_shard(engine="batched")`` in this process, one
torch/BLAS thread, fmax 0.1 eV/Å, max_steps 300; the order of the two alternates per round.
Reported per family: structures per second (structures / ``relax_shard`` wall time, model load
and I/O included), the speed-up, the share of time in the model, model calls, and the
agreement (same outcome per structure; largest energy-per-atom and area-per-atom difference;
step-count ratio). Output: a summary on stdout and bench/out/relax_engines.json.

**Shards** (``shards``):
Model: a tiny M3GNet (nblocks 1, units 16, embeddings 16; ``--model default``: the family's
default size, nblocks 3, units 64) trained for 20 epochs (lr 3e-3, stress weight 1, batch 8)
with ``mlff2d.training.sweep.train_point`` on 60 Lennard-Jones-labelled MoS2/WSe2 monolayers (3 and 6
atoms, ±3 % strain, 0.05 Å rattle) in the ``m3gnet`` export format; cached in bench/out/relax/.
Start structures: MoS2/WSe2/MoSe2/WS2 monolayers of 3, 6 and 12 atoms (1×1, 2×1, 2×2 cells),
in-plane strain ±4 %, 0.08 Å rattle, c = 18.1 Å; the second half of the file repeats the first
(new ids), so the two shards hold the same work (with ~20 random structures per shard, one
shard easily has 30 % more FIRE steps than the other, which is the data, not the sharding).
Relaxation: fmax 0.1 eV/Å (the stage's default), max_steps 300.

Every run is a fresh process (``bench/relax.py _shard ...`` calling
``mlff2d.relaxation.relax.relax_shard``, as a Snakemake job would) with one torch/BLAS thread:

* **one**: one process relaxes all structures (shard 0 of size N);
* **two**: two processes started together relax shards 0 and 1 of size ceil(N/2).

The rounds alternate the order (one → two, then two → one, ...). Reported (medians of rounds):

* (a) the share of relax wall time spent inside the calculator: the records' summed
  ``calc_time_s`` over their summed ``wall_time_s`` (a structure's wall time covers FIRE, the
  cell filter, the explosion checks and the calculator), in the one-process runs;
* (b) the speed-up one/two of: the process wall time (launch to the last exit: imports, model
  load and I/O included – a fixed cost per process); the relaxations alone (summed per-structure
  wall times; for two, the busier shard); and the CPU time (user + sys; for two, the busier
  process) of ``relax_shard`` and of the whole process, which is what two free cores would
  give – on a shared machine the wall-clock speed-up can only be as good as the cores the other
  jobs leave free (see the load average);
* a check that both layouts give the same records (times aside).

Output: a summary on stdout and bench/out/relax_<model>.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "out"
WORK = OUT / "relax"
THREAD_ENV = {v: "1" for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")}
FMAX, MAX_STEPS = 0.1, 300  # the stage's default fmax
TRAINING = {"batch_size": 8, "epochs": 20, "lr": 3e-3, "stress_weight": 1.0}
MODELS = {
    "tiny": {"nblocks": 1, "units": 16, "dim_node_embedding": 16, "dim_edge_embedding": 16},
    "default": {},  # the family's DEFAULTS: nblocks 3, units 64, embeddings 64
}
OFFSETS = {42: -10.0, 74: -12.0, 16: -4.0, 34: -3.5}  # eV per atom of Mo, W, S, Se
COMPOUNDS = [("MoS2", 3.19), ("WSe2", 3.32), ("MoSe2", 3.32), ("WS2", 3.19)]


def mx2(symbols: str, a: float) -> Any:
    import numpy as np
    from ase import Atoms

    cell = np.array([[a, 0.0, 0.0], [-a / 2, a * math.sqrt(3) / 2, 0.0], [0.0, 0.0, 18.1]])
    frac = np.array([[0.0, 0.0, 0.5], [1 / 3, 2 / 3, 0.586], [1 / 3, 2 / 3, 0.414]])
    return Atoms(symbols, scaled_positions=frac, cell=cell, pbc=True)


def training_atoms(n: int, seed: int) -> list[Any]:
    """Strained, rattled MoS2/WSe2 monolayers (3 or 6 atoms) whose calculator holds
    Lennard-Jones labels plus per-element offsets."""
    import numpy as np
    from ase.calculators.lj import LennardJones
    from ase.calculators.singlepoint import SinglePointCalculator

    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        symbols, a = COMPOUNDS[i % 2]
        atoms = mx2(symbols, a)
        atoms.set_cell(atoms.cell.array @ np.diag([*rng.uniform(0.97, 1.03, 2), 1.0]), scale_atoms=True)
        if rng.random() < 0.5:
            atoms = atoms.repeat((2, 1, 1))
        atoms.positions += rng.normal(0.0, 0.05, atoms.positions.shape)
        atoms.calc = LennardJones(sigma=2.2, epsilon=0.2, rc=6.0, smooth=True)
        energy = atoms.get_potential_energy() + sum(OFFSETS[z] for z in atoms.numbers)
        atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=atoms.get_forces(), stress=atoms.get_stress())
        atoms.info["material_id"] = f"train-{seed}-{i}"
        out.append(atoms)
    return out


def training_rows(n: int, seed: int) -> list[dict[str, Any]]:
    from mlff2d.data.export import m3gnet_row

    return [m3gnet_row(a, a.info["material_id"], 0) for a in training_atoms(n, seed)]


def write_mace_data(data: Path) -> Path:
    """The same training frames in the MACE export (extxyz, ``REF_*`` labels)."""
    from mlff2d.data.export import write_labelled

    for split, frames in (("train", training_atoms(60, 0)), ("val", training_atoms(12, 1))):
        write_labelled("mace", frames, data, split)
    return data


def trained_point(model: str) -> Path:
    """The sweep point of the benchmark model (trained once, then reused)."""
    point = WORK / f"point_{model}"
    status = point / "status.json"
    if status.exists() and json.loads(status.read_text())["status"] == "ok":
        return point
    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch

    from mlff2d.data.export import M3GNET_SCHEMA
    from mlff2d.training.sweep import train_point

    torch.set_num_threads(1)
    data = WORK / "data"
    data.mkdir(parents=True, exist_ok=True)
    for split, rows in (("train", training_rows(60, 0)), ("val", training_rows(12, 1))):
        pq.write_table(pa.Table.from_pylist(rows, schema=M3GNET_SCHEMA), data / f"{split}.parquet")
    result = train_point("m3gnet", data, point, {**MODELS[model], **TRAINING}, device="cpu")
    if result["status"] != "ok":
        raise SystemExit(f"training the benchmark model failed: {result['reason']}")
    return point


def start_file(n: int, repeat: bool = True) -> Path:
    """``n`` start structures; with ``repeat`` the second half repeats the first (new ids)."""
    import ase.io
    import numpy as np

    rng = np.random.default_rng(123)
    half = math.ceil(n / 2) if repeat else n
    structures = []
    for i in range(half):
        symbols, a = COMPOUNDS[(i // 3) % len(COMPOUNDS)]
        atoms = mx2(symbols, a).repeat([(1, 1, 1), (2, 1, 1), (2, 2, 1)][i % 3])
        atoms.set_cell(atoms.cell.array @ np.diag([*rng.uniform(0.96, 1.04, 2), 1.0]), scale_atoms=True)
        atoms.positions += rng.normal(0.0, 0.08, atoms.positions.shape)
        structures.append(atoms)
    # the second half repeats the first (new ids): both shards of "two" get the same work, so
    # the speed-up measures the two processes, not how evenly random structures split
    structures = (structures + [a.copy() for a in structures])[:n]
    for i, atoms in enumerate(structures):
        atoms.info["material_id"] = f"bench-{i:03d}"
    path = WORK / f"start_{n}{'' if repeat else '_distinct'}.extxyz"
    path.parent.mkdir(parents=True, exist_ok=True)
    ase.io.write(path, structures, format="extxyz")
    return path


# ------------------------------------------------------------------------ engines: batched vs ASE

#: The benchmark's MACE trainings (float64, stress trained): ``tiny`` (the tests' size) and
#: ``demo`` (config/demo.yaml's size: 16 channels, L = 1, r_max 5 Å).
MACE_TRAINING = {"epochs": 20, "lr": 0.01, "batch_size": 8, "valid_batch_size": 12, "swa": False, "stress_weight": 10.0, "seed": 7}
MACE_SIZES = {
    "tiny": {"num_channels": 8, "max_L": 0, "correlation": 2, "r_max": 4.0},
    "demo": {"num_channels": 16, "max_L": 1, "correlation": 2, "r_max": 5.0},
}


def engine_point(family: str, mace_size: str = "tiny") -> Path:
    """A trained model of ``family`` for the engine comparison (trained once, then reused)."""
    if family == "m3gnet":
        return trained_point("tiny")
    point = WORK / f"engines_{family}_{mace_size}"
    status = point / "status.json"
    if status.exists() and json.loads(status.read_text())["status"] == "ok":
        return point
    from mlff2d.training.sweep import train_point

    result = train_point(family, write_mace_data(WORK / "data_mace"), point, {**MACE_TRAINING, **MACE_SIZES[mace_size]}, device="cpu")
    if result["status"] != "ok":
        raise SystemExit(f"training the benchmark {family} model failed: {result['reason']}")
    return point


class CallCounter:
    """Counts the model calls the batched relaxer logs."""

    def __init__(self) -> None:
        import logging

        self.calls = 0
        self.handler = logging.Handler()
        self.handler.emit = self._emit  # type: ignore[method-assign]
        logger = logging.getLogger("mlff2d.relaxation.batched")
        logger.setLevel(logging.INFO)
        logger.addHandler(self.handler)

    def _emit(self, record: Any) -> None:
        if str(record.msg).startswith("batched relaxation:"):
            self.calls += int(record.args[1])

    def close(self) -> None:
        import logging

        logging.getLogger("mlff2d.relaxation.batched").removeHandler(self.handler)


def run_engine(family: str, point: Path, start: Path, engine: str, args: argparse.Namespace) -> dict[str, Any]:
    """One ``relax_shard`` of the whole start file with ``engine``; its wall time and records."""
    from mlff2d.relaxation.relax import count_structures, relax_shard

    out = WORK / f"engines_run_{family}_{engine}"
    counter = CallCounter()
    n = count_structures(start)
    t0 = time.perf_counter()
    records = relax_shard(family, point, start, 0, n, out / "records.parquet", out / "structures.extxyz",
                          fmax=args.fmax, max_steps=args.max_steps, device="cpu", engine=engine,
                          batch_atoms=args.batch_atoms)  # fmt: skip
    wall = time.perf_counter() - t0
    counter.close()
    calls = counter.calls if engine == "batched" else int(records["steps"].sum() + n)
    return {"wall_s": wall, "per_s": n / wall, "calc_share": float(records["calc_time_s"].sum() / wall),
            "model_calls": calls, "records": records}  # fmt: skip


def agreement(ase_records: Any, batched: Any) -> dict[str, Any]:
    """Same outcome per structure; largest energy and area differences; step-count ratios."""
    import numpy as np

    good = ase_records["failure"].isin(["", "step_limit"]).to_numpy()
    steps_a, steps_b = ase_records["steps"].to_numpy(), batched["steps"].to_numpy()
    moved = good & (steps_a > 0)
    ratio = steps_b[moved] / steps_a[moved]
    return {
        "same_outcome": bool((ase_records["failure"].to_numpy() == batched["failure"].to_numpy()).all()),
        "outcomes": ase_records["failure"].replace("", "converged").value_counts().to_dict(),
        "max_energy_diff_eV_per_atom": float(np.abs(ase_records["energy_per_atom"] - batched["energy_per_atom"])[good].max()),
        "max_area_diff_A2_per_atom": float(np.abs(ase_records["area_per_atom"] - batched["area_per_atom"])[good].max()),
        "steps_ratio_min_max": [float(ratio.min()), float(ratio.max())],
        "same_steps_share": float((steps_a == steps_b).mean()),
        "steps_total_ase": int(steps_a.sum()),
    }


def engines_main(args: argparse.Namespace) -> None:
    """Both engines on the same structures, per family, side by side (see the docstring)."""
    import torch

    torch.set_num_threads(1)
    start = start_file(args.structures, repeat=False)
    summary: dict[str, Any] = {"structures": args.structures, "fmax": args.fmax, "max_steps": args.max_steps,
                               "batch_atoms": args.batch_atoms, "mace_size": args.mace_size, "cpus": os.cpu_count(),
                               "families": {}}  # fmt: skip
    for family in args.families:
        point = engine_point(family, args.mace_size)
        runs: dict[str, list[dict[str, Any]]] = {"ase": [], "batched": []}
        for r in range(args.rounds):
            for engine in ("ase", "batched") if r % 2 == 0 else ("batched", "ase"):
                load = os.getloadavg()[0]
                runs[engine].append(run_engine(family, point, start, engine, args))
                res = runs[engine][-1]
                print(f"{family} round {r + 1} {engine:>7}: {res['per_s']:6.2f} structures/s ({res['wall_s']:.1f} s, "
                      f"{res['model_calls']} model calls, {100 * res['calc_share']:.0f} % in the model; load before {load:.2f})")  # fmt: skip
        med = statistics.median
        per_s = {e: med(x["per_s"] for x in rs) for e, rs in runs.items()}
        summary["families"][family] = {
            "structures_per_s": per_s,
            "speedup": per_s["batched"] / per_s["ase"],
            "speedup_per_round": [b["per_s"] / a["per_s"] for a, b in zip(runs["ase"], runs["batched"], strict=True)],
            "model_calls": {e: rs[0]["model_calls"] for e, rs in runs.items()},
            "agreement": agreement(runs["ase"][0]["records"], runs["batched"][0]["records"]),
        }
    print_engines(summary)
    OUT.mkdir(parents=True, exist_ok=True)
    summary["load_average_end"] = os.getloadavg()
    (OUT / "relax_engines.json").write_text(json.dumps(summary, indent=1, default=str))


def print_engines(summary: dict[str, Any]) -> None:
    print(f"\n{summary['structures']} structures, one CPU thread, fmax {summary['fmax']}, batch_atoms {summary['batch_atoms']} (0 = auto)")
    print(f"{'family':8} {'ASE /s':>8} {'batched /s':>11} {'speed-up':>9}  agreement")
    for family, f in summary["families"].items():
        a = f["agreement"]
        print(f"{family:8} {f['structures_per_s']['ase']:8.2f} {f['structures_per_s']['batched']:11.2f} {f['speedup']:8.2f}x  "
              f"same outcome {a['same_outcome']} {a['outcomes']}, |dE| <= {a['max_energy_diff_eV_per_atom']:.1e} eV/atom, "
              f"|dA| <= {a['max_area_diff_A2_per_atom']:.1e} A2/atom, steps x{a['steps_ratio_min_max'][0]:.2f}..{a['steps_ratio_min_max'][1]:.2f} "
              f"({100 * a['same_steps_share']:.0f} % identical)")  # fmt: skip


def engines_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", nargs="+", choices=("m3gnet", "mace"), default=["m3gnet", "mace"])
    parser.add_argument("--structures", type=int, default=120)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--batch-atoms", type=int, default=0, help="0: automatic (the relax stage's default)")
    parser.add_argument("--mace-size", choices=sorted(MACE_SIZES), default="tiny", help="MACE model size (default tiny)")
    parser.add_argument("--fmax", type=float, default=FMAX)
    parser.add_argument("--max-steps", type=int, default=MAX_STEPS)
    return parser


# ------------------------------------------------------------------------- shards: two against one


def shard_main(args: argparse.Namespace) -> None:
    """Child process: relax one shard and print its timings as JSON."""
    t_start = time.perf_counter()
    import torch

    torch.set_num_threads(1)
    import matgl  # noqa: F401  (imported here so that relax_shard's time is model load + relaxations)

    from mlff2d.relaxation.relax import relax_shard

    def cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    c0, t0 = cpu(), time.perf_counter()
    out = Path(args.out)
    records = relax_shard(
        "m3gnet", args.point, args.start, args.shard, args.size,
        out / f"records_{args.shard}.parquet", out / f"structures_{args.shard}.extxyz",
        fmax=args.fmax, max_steps=args.max_steps, device="cpu", engine=args.engine,
    )  # fmt: skip
    t1, c1 = time.perf_counter(), cpu()
    print(
        json.dumps(
            {
                "imports_s": t0 - t_start,  # torch, matgl, mlff2d.relaxation.relax
                "relax_shard_s": t1 - t0,
                "relaxations_s": float(records["wall_time_s"].sum()),
                "relax_shard_cpu_s": c1 - c0,
                "cpu_s": c1,
                "n": len(records),
            }
        )
    )


def launch(point: Path, start: Path, shards: int, size: int, out: Path, fmax: float, max_steps: int, engine: str = "ase") -> dict[str, Any]:
    """Run ``shards`` shard processes at once; wall time from launch to the last exit."""
    import pandas as pd

    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **THREAD_ENV, "PYTHONUNBUFFERED": "1"}
    cmds = [
        [sys.executable, __file__, "_shard", "--point", str(point), "--start", str(start), "--shard", str(i),
         "--size", str(size), "--out", str(out), "--fmax", str(fmax), "--max-steps", str(max_steps), "--engine", engine]
        for i in range(shards)
    ]  # fmt: skip
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    procs = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for c in cmds]
    shard_results = []
    for p in procs:
        stdout, stderr = p.communicate()
        if p.returncode:
            raise SystemExit(f"shard process failed ({p.returncode}):\n{stderr[-3000:]}")
        shard_results.append(json.loads(stdout.strip().splitlines()[-1]))
    wall = time.perf_counter() - t0
    records = pd.concat([pd.read_parquet(out / f"records_{i}.parquet") for i in range(shards)], ignore_index=True)
    return {
        "process_wall_s": wall,
        "relax_shard_s": max(r["relax_shard_s"] for r in shard_results),
        "relaxations_s": max(r["relaxations_s"] for r in shard_results),
        "cpu_s": max(r["cpu_s"] for r in shard_results),
        "relax_shard_cpu_s": max(r["relax_shard_cpu_s"] for r in shard_results),
        "shards": shard_results,
        "load_before": load_before,
        "records": records,
    }


def shards_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench/relax.py shards", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--structures", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--model", choices=sorted(MODELS), default="tiny", help="M3GNet size (default: tiny)")
    parser.add_argument("--fmax", type=float, default=FMAX)
    parser.add_argument("--max-steps", type=int, default=MAX_STEPS)
    parser.add_argument("--engine", choices=("ase", "batched"), default="ase", help="relax_shard engine (default ase)")
    args = parser.parse_args(argv)
    os.environ.update(THREAD_ENV)

    t = time.perf_counter()
    point = trained_point(args.model)
    start = start_file(args.structures)
    print(f"model {point} ready in {time.perf_counter() - t:.1f} s; {args.structures} structures in {start}")
    print(f"cpus {os.cpu_count()}, load average {os.getloadavg()}")

    n, half = args.structures, math.ceil(args.structures / 2)
    runs: dict[str, list[dict[str, Any]]] = {"one": [], "two": []}
    for r in range(args.rounds):
        for layout in ["one", "two"] if r % 2 == 0 else ["two", "one"]:
            shards, size = (1, n) if layout == "one" else (2, half)
            res = launch(point, start, shards, size, WORK / f"run_{args.model}_{layout}_{r}", args.fmax, args.max_steps, args.engine)
            runs[layout].append(res)
            per = res["shards"]
            print(
                f"round {r + 1} {layout}: process wall {res['process_wall_s']:.2f} s; per process: relaxations "
                f"{[round(x['relaxations_s'], 2) for x in per]} s, relax_shard {[round(x['relax_shard_s'], 2) for x in per]} s, "
                f"cpu {[round(x['relax_shard_cpu_s'], 2) for x in per]} s of {[round(x['cpu_s'], 2) for x in per]} s; "
                f"load before {res['load_before']:.2f}"
            )

    timeless = ["material_id", "formula", "n_atoms", "converged", "steps", "energy_per_atom", "area_per_atom", "failure"]
    reference = runs["one"][0]["records"][timeless]
    same = all(res["records"][timeless].equals(reference) for rs in runs.values() for res in rs)

    med = statistics.median
    one_recs = [res["records"] for res in runs["one"]]
    shares = [float(x["calc_time_s"].sum() / x["wall_time_s"].sum()) for x in one_recs]
    steps = int(one_recs[0]["steps"].sum())
    evals = steps + n
    calc_ms = med(1000 * float(x["calc_time_s"].sum()) / evals for x in one_recs)
    other_ms = med(1000 * float(x["wall_time_s"].sum() - x["calc_time_s"].sum()) / max(steps, 1) for x in one_recs)

    def ratio(key: str) -> tuple[float, float, float, list[float]]:
        per_round = [a[key] / b[key] for a, b in zip(runs["one"], runs["two"], strict=True)]
        return med(r[key] for r in runs["one"]), med(r[key] for r in runs["two"]), med(per_round), per_round

    speedups = {key: ratio(key) for key in ("process_wall_s", "relaxations_s", "relax_shard_cpu_s", "cpu_s")}
    summary = {
        "model": args.model,
        "structures": n,
        "fmax": args.fmax,
        "max_steps": args.max_steps,
        "outcomes": one_recs[0]["failure"].replace("", "converged").value_counts().to_dict(),
        "steps_total": steps,
        "calc_ms_per_evaluation": calc_ms,
        "other_ms_per_step": other_ms,
        "calc_share_per_round": shares,
        "calc_share": med(shares),
        "speedups": {k: {"one_s": v[0], "two_s": v[1], "speedup": v[2], "per_round": v[3]} for k, v in speedups.items()},
        "fixed_s_per_process": med(
            x["imports_s"] + x["relax_shard_s"] - x["relaxations_s"] for rs in runs.values() for r in rs for x in r["shards"]
        ),
        "same_records": same,
        "load_average_end": os.getloadavg(),
    }
    print()
    print(
        f"{args.model} M3GNet, {n} structures ({summary['outcomes']}), {steps} FIRE steps, "
        f"{calc_ms:.2f} ms per evaluation inside the calculator, {other_ms:.3f} ms per step outside it; "
        f"fixed cost per process (imports, model load, I/O) {summary['fixed_s_per_process']:.1f} s"
    )
    print(f"(a) calc share of relax wall time: {med(shares):.3f} (rounds {[round(x, 3) for x in shares]})")
    labels = {
        "process_wall_s": "process wall, launch to exit",
        "relaxations_s": "relaxations only (sum of per-structure wall times, busier shard)",
        "relax_shard_cpu_s": "CPU time of relax_shard (model load + relaxations; busier shard)",
        "cpu_s": "CPU time of the whole process (busier shard)",
    }
    for key, (one, two, sp, per_round) in speedups.items():
        print(f"(b) speed-up, {labels[key]}: {sp:.2f}x ({one:.1f} s / {two:.1f} s; rounds {[round(x, 2) for x in per_round]})")
    print(f"same records in every run: {same}; load average at the end {os.getloadavg()}")
    for rs in runs.values():
        for res in rs:
            res["records"] = res["records"].to_dict("records")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"relax_{args.model}.json").write_text(json.dumps({"summary": summary, "runs": runs}, indent=1, default=str))


def demo_main(argv: list[str]) -> None:
    """The demo's relaxation stage, ASE against batched: every trained universal point and alloy
    model of a finished demo campaign relaxes its val and test starts (the demo's fmax and
    max_steps) with both engines, one process and one thread; prints the summed wall times."""
    import yaml

    from mlff2d.relaxation.relax import count_structures, relax_shard

    parser = argparse.ArgumentParser(prog="bench/relax.py demo")
    parser.add_argument("campaign", type=Path, help="a finished campaign, e.g. results/demo")
    args = parser.parse_args(argv)
    config = yaml.safe_load((args.campaign / "config.resolved.yaml").read_text())
    relax_cfg = config["relax"]
    models = sorted(args.campaign.glob("uff/*/ecut~*/lr~*/bs~*")) + sorted(args.campaign.glob("alloys/*/*/*/ecut~*/split~*"))
    totals = {"ase": 0.0, "batched": 0.0}
    n_structures, same, worst = 0, 0, 0.0
    for model in models:
        parts = model.relative_to(args.campaign).parts  # uff/<family>/... or alloys/<family>/<dataset>/<mode>/ecut/split
        family = parts[1]
        dataset, split = ("2d", f"split~{config['uff']['split']}") if parts[0] == "uff" else (parts[2], parts[5])
        sets = args.campaign / "data" / dataset / "relax" / split
        for relax_set in ("val", "test"):
            start = sets / f"{relax_set}_start.extxyz"
            n = count_structures(start)
            records = {}
            for engine in ("ase", "batched"):
                out = WORK / "demo_stage" / engine
                t0 = time.perf_counter()
                records[engine] = relax_shard(family, model, start, 0, n, out / "r.parquet", out / "s.extxyz",
                                              fmax=relax_cfg["fmax"], max_steps=relax_cfg["max_steps"], device="cpu", engine=engine)
                totals[engine] += time.perf_counter() - t0
            n_structures += n
            a, b = records["ase"], records["batched"]
            same += int((a["failure"].to_numpy() == b["failure"].to_numpy()).sum())
            worst = max(worst, float((a["energy_per_atom"] - b["energy_per_atom"]).abs().max()))
            print(f"{model.relative_to(args.campaign)} {relax_set}: {n} structures, ase {totals['ase']:.1f} s, batched {totals['batched']:.1f} s (running totals)", flush=True)
    print(f"demo relaxation stage, {len(models)} models, {n_structures} relaxations, one thread:")
    print(f"  ase {totals['ase']:.1f} s, batched {totals['batched']:.1f} s: {totals['ase'] / totals['batched']:.2f}x")
    print(f"  same outcome {same}/{n_structures}; largest energy difference {worst:.2e} eV/atom")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_shard":
        p = argparse.ArgumentParser()
        p.add_argument("_shard")
        p.add_argument("--point", required=True)
        p.add_argument("--start", required=True)
        p.add_argument("--shard", type=int, required=True)
        p.add_argument("--size", type=int, required=True)
        p.add_argument("--out", required=True)
        p.add_argument("--fmax", type=float, required=True)
        p.add_argument("--max-steps", type=int, required=True)
        p.add_argument("--engine", default="ase")
        shard_main(p.parse_args())
    elif len(sys.argv) > 1 and sys.argv[1] == "shards":
        shards_main(sys.argv[2:])
    elif len(sys.argv) > 1 and sys.argv[1] == "demo":
        os.environ.update(THREAD_ENV)
        demo_main(sys.argv[2:])
    else:
        os.environ.update(THREAD_ENV)
        engines_main(engines_parser().parse_args())
