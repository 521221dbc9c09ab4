"""Training benchmark: per-epoch wall time of `mlff2d train` against matgl / MACE used directly.

    .venv/main/bin/python bench/training.py                    # both families, 8 epochs, 4 rounds
    .venv/main/bin/python bench/training.py --families mace --epochs 4 --rounds 2

Dataset: synthetic Alexandria files (`mlff2d.demo.synthetic`, 40 MX2 monolayers x 30 steps) through
the real pipeline (ingest, outlier filter, step selection at e_cut 0.01 eV/atom, 80/10/10 split
by material, export), so both sides read the exports the workflow writes: ~240 training and
~30 validation frames (3 atoms each). Every process runs with 1 torch/BLAS thread.

* **Ours**: `mlff2d --threads 1 train --family F --data D --outdir O --lr L --batch-size B
  --params JSON`, exactly as the Snakemake rule `train_uff` calls it, in a subprocess.
  Per-epoch time: `time_s` of `O/metrics.csv`.
* **Direct M3GNet**: matgl's documented Lightning path in a subprocess of this script
  (`_direct-m3gnet`): Structure2Graph -> MGLDataset -> MGLDataLoader(collate_fn_pes,
  num_workers=0) -> M3GNet -> PotentialLightningModule -> lightning Trainer (CSVLogger, default
  per-epoch ModelCheckpoint, progress bar off) -> `Potential.save`. Same model (DEFAULT_ELEMENTS,
  nblocks, units, embeddings), element refs fitted with `matgl.utils.training.fit_element_refs`,
  same loss weights, lr, cosine decay, `allow_missing_labels` (the export's out-of-plane stress
  labels are NaN), same seed. Per-epoch time: a callback timing `on_train_epoch_start` ->
  `on_train_epoch_end`, the same two hooks ours times (both exclude the checkpoint write, which
  comes after them); the full cycle (start-to-start, incl. checkpoint) is reported as well, for
  ours from the modification times of `checkpoints/last.ckpt`, polled while it runs.
* **Direct MACE**: the `mace_run_train` console script with the same settings as ours (the
  flags our family builds, `--loss stress`, `--plot False`, ...), in a subprocess. Per-epoch
  time: differences of the timestamps (ms) of MACE's "Initial"/"Epoch k" validation log lines,
  i.e. from the end of one validation to the end of the next, the same span as ours' `time_s`
  (ours' own log timestamps are parsed the same way, as a cross-check).

The runs alternate (round 1: ours then direct, round 2: direct then ours, ...) against drift on a
shared machine. The first epoch of every run is excluded as warm-up (both sides) from the median.
Besides wall time, the CPU time (user + sys) each process spent in the same epochs is sampled
from /proc every 10 ms ("epoch cpu"; it leaves out waiting for a core, not cache sharing).
Also reported per process: wall time (launch to exit), CPU time (user + sys), setup (launch to
the start of the first epoch: imports, data, graphs, model) and teardown (end of the last epoch
to exit: final model save, MACE's test evaluation and TorchScript compile). Figures go to stdout
and to bench/out/training.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "out"
WORK = OUT / "training"
BIN = Path(sys.executable).parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
THREAD_ENV = {v: "1" for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")}

#: MACE's run tag (its log is ``<work_dir>/logs/<tag>.log``): ``<name>_run-<seed>``, our DEFAULTS.
MACE_TAG = "mace_run-123"

#: Family settings (the config's `params`) and the sweep point's lr and batch size.
SETTINGS: dict[str, dict[str, Any]] = {
    "m3gnet": {
        "lr": 1e-3,
        "batch_size": 16,
        "params": {"nblocks": 2, "units": 32, "dim_node_embedding": 32, "dim_edge_embedding": 32},
    },
    "mace": {
        "lr": 0.01,
        "batch_size": 16,
        "params": {"num_channels": 16, "max_L": 1, "correlation": 2, "r_max": 5.0},
    },
}


# ----------------------------------------------------------------------------- dataset


def dataset(n_materials: int, e_cut: float) -> tuple[Path, dict[str, Any]]:
    """Synthetic raw files through the real pipeline to the mace and m3gnet exports."""
    from mlff2d.data.export import export_family
    from mlff2d.data.ingest import Source, ingest
    from mlff2d.data.outliers import remove_outliers
    from mlff2d.data.select_steps import select_dataset
    from mlff2d.data.split import split_dataset

    root = WORK / f"data_{n_materials}_{e_cut:g}"
    done = root / "done.json"
    if done.exists():
        return root, json.loads(done.read_text())
    shutil.rmtree(root, ignore_errors=True)
    from mlff2d.demo.synthetic import write_alexandria

    write_alexandria(root / "raw", n_materials, 30, per_file=1000, seed=7)
    ingest([Source(str(root / "raw"), "alexandria")], root / "frames.parquet", root / "materials.csv")
    remove_outliers(
        root / "frames.parquet", root / "materials.csv", root / "clean.parquet",
        root / "ledger_frames.parquet", root / "ledger_materials.csv", root / "summary.csv",
    )
    select_dataset(root / "clean.parquet", root / "selected.parquet", e_cut)
    split_dataset(root / "ledger_materials.csv", root / "split.csv", [0.8, 0.1, 0.1], 42)
    info: dict[str, Any] = {"materials": n_materials, "steps": 30, "e_cut": e_cut, "atoms_per_frame": 3}
    for family in ("mace", "m3gnet"):
        info[family] = export_family(root / "clean.parquet", root / "selected.parquet", root / "split.csv", family, root / family)
    done.write_text(json.dumps(info, indent=2) + "\n")
    return root, info


# ----------------------------------------------------------------------------- processes


def _proc_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` so far (all its threads), from /proc."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14, 15)


def run_process(cmd: list[str], log: Path, poll: Path | None = None) -> dict[str, Any]:
    """Run ``cmd`` (1 thread) to completion. Returns wall and CPU time, samples (unix time,
    CPU seconds) of its CPU time every 10 ms, and the distinct modification times of ``poll``
    (a file replaced once per epoch) seen while it ran."""
    env = {**os.environ, **THREAD_ENV, "PYTHONUNBUFFERED": "1"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    mtimes: list[float] = []
    cpu_samples: list[tuple[float, float]] = []
    stop = threading.Event()

    def watch(pid: int) -> None:
        last = None
        while not stop.is_set():
            now, cpu = time.time(), _proc_cpu_s(pid)
            if cpu is not None:
                cpu_samples.append((now, cpu))
            if poll is not None:
                try:
                    m = poll.stat().st_mtime_ns
                except FileNotFoundError:
                    m = None
                if m is not None and m != last:
                    mtimes.append(m / 1e9)
                    last = m
            stop.wait(0.01)

    launch = time.time()
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)
        watcher = threading.Thread(target=watch, args=(proc.pid,), daemon=True)
        watcher.start()
        rc = proc.wait()
    wall = time.perf_counter() - t0
    stop.set()
    watcher.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if rc != 0:
        raise RuntimeError(f"{cmd[0]} failed ({rc}); see {log}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"launch": launch, "exit": launch + wall, "wall_s": wall, "cpu_s": cpu, "mtimes": mtimes, "cpu_samples": cpu_samples}


def cpu_between(samples: list[tuple[float, float]], marks: list[float]) -> list[float]:
    """CPU seconds the process used between consecutive unix times ``marks`` (interpolated
    between the 10 ms samples; /proc counts in 10 ms ticks)."""
    import numpy as np

    if len(samples) < 2 or len(marks) < 2:
        return []
    t, c = np.array(samples).T
    at = np.interp(marks, t, c)
    return [float(b - a) for a, b in zip(at, at[1:])]


def mace_log_times(log: Path) -> list[float]:
    """Unix times of MACE's validation log lines: "Initial", then "Epoch 0", "Epoch 1", ..."""
    times = []
    for line in log.read_text().splitlines():
        if " INFO: Initial: " in line or (" INFO: Epoch " in line and ": head: " in line):
            stamp = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S.%f")
            times.append(stamp.timestamp())
    return times


def ours(family: str, data: Path, outdir: Path, epochs: int) -> dict[str, Any]:
    s = SETTINGS[family]
    cmd = [
        str(BIN / "mlff2d"), "--threads", "1", "train", "--family", family, "--data", str(data / family),
        "--outdir", str(outdir), "--lr", str(s["lr"]), "--batch-size", str(s["batch_size"]),
        "--params", json.dumps({**s["params"], "epochs": epochs}),
    ]
    poll = outdir / "checkpoints" / "last.ckpt" if family == "m3gnet" else None
    res = run_process(cmd, outdir.with_suffix(".log"), poll)
    status = json.loads((outdir / "status.json").read_text())
    if status["status"] != "ok":
        raise RuntimeError(f"ours {family} failed: {status.get('reason')}")
    import pandas as pd

    epoch_s = pd.read_csv(outdir / "metrics.csv")["time_s"].tolist()
    res.update(cmd=cmd, epoch_s=epoch_s)
    if family == "m3gnet":
        ends = res["mtimes"]  # end of each epoch, after its checkpoint write
        if len(ends) != epochs:
            raise RuntimeError(f"saw {len(ends)} checkpoint writes of {epochs} epochs")
        # cycles end(k-1) -> end(k): epochs 2..N (epoch 1 has no observed start)
        res["cycle"] = {"epochs": list(range(2, epochs + 1)), "s": [b - a for a, b in zip(ends, ends[1:])]}
        res["cpu_epoch"] = {"epochs": list(range(2, epochs + 1)), "s": cpu_between(res["cpu_samples"], ends)}
        # first epoch start ~ end of its checkpoint - its time_s (the csv/ckpt write, ms, ignored)
        res["setup_s"] = ends[0] - epoch_s[0] - res["launch"]
        res["teardown_s"] = res["exit"] - ends[-1]
    else:
        marks = mace_log_times(outdir / "mace" / "logs" / f"{MACE_TAG}.log")
        _mace_marks(res, marks)
        res["log_epoch_s"] = [b - a for a, b in zip(marks, marks[1:])]  # cross-check of time_s
    return res


def _mace_marks(res: dict[str, Any], marks: list[float]) -> None:
    """Setup, teardown and CPU per epoch from MACE's validation log times."""
    res["setup_s"] = marks[0] - res["launch"]
    res["teardown_s"] = res["exit"] - marks[-1]
    res["cpu_epoch"] = {"epochs": list(range(1, len(marks))), "s": cpu_between(res["cpu_samples"], marks)}


def direct_m3gnet(data: Path, outdir: Path, epochs: int) -> dict[str, Any]:
    s = SETTINGS["m3gnet"]
    cmd = [
        sys.executable, str(Path(__file__).resolve()), "_direct-m3gnet", "--data", str(data / "m3gnet"),
        "--outdir", str(outdir), "--epochs", str(epochs), "--lr", str(s["lr"]), "--batch-size", str(s["batch_size"]),
        "--params", json.dumps(s["params"]),
    ]
    res = run_process(cmd, outdir.with_suffix(".log"))
    timing = json.loads((outdir / "epoch_times.json").read_text())
    # cycles start(k) -> start(k+1) (the last one to on_train_end): epoch k and its checkpoint
    bounds = timing["start_unix"] + [timing["train_end_unix"]]
    res.update(cmd=cmd, epoch_s=timing["epoch_s"])
    res["cycle"] = {"epochs": list(range(1, epochs + 1)), "s": [b - a for a, b in zip(bounds, bounds[1:])]}
    res["cpu_epoch"] = {"epochs": list(range(1, epochs + 1)), "s": cpu_between(res["cpu_samples"], bounds)}
    res["setup_s"] = bounds[0] - res["launch"]
    res["teardown_s"] = res["exit"] - bounds[-1]
    return res


def mace_direct_argv(data: Path, outdir: Path, epochs: int) -> list[str]:
    """`mace_run_train` flags with the settings our family would use (same DEFAULTS and params),
    MACE's own `--loss stress`; booleans as MACE's parser takes them."""
    from mace.tools import build_default_arg_parser

    from mlff2d.families.mace import DEFAULTS, mace_settings

    s = SETTINGS["mace"]
    params = {**DEFAULTS, **s["params"], "epochs": epochs, "lr": s["lr"], "batch_size": s["batch_size"]}
    settings = mace_settings((data / "mace").resolve(), outdir.resolve(), params, None, "cpu", restart=False)
    settings["loss"] = "stress"
    actions = {a.dest: a for a in build_default_arg_parser()._actions}  # noqa: SLF001
    argv = [str(BIN / "mace_run_train")]
    for key, value in settings.items():
        if value is None:
            continue
        action = actions[key]
        if isinstance(value, bool):
            if type(action).__name__ == "_StoreTrueAction":
                if value != action.default:
                    if not value:
                        raise ValueError(f"cannot switch off --{key} from the command line")
                    argv.append(f"--{key}")
            else:
                argv += [f"--{key}", str(value)]
        else:
            argv += [f"--{key}", str(value)]
    return argv


def direct_mace(data: Path, outdir: Path, epochs: int) -> dict[str, Any]:
    outdir.mkdir(parents=True, exist_ok=True)
    cmd = mace_direct_argv(data, outdir, epochs)
    res = run_process(cmd, outdir.with_suffix(".log"))
    marks = mace_log_times(outdir / "mace" / "logs" / f"{MACE_TAG}.log")
    res.update(cmd=cmd, epoch_s=[b - a for a, b in zip(marks, marks[1:])])
    _mace_marks(res, marks)
    return res


# ----------------------------------------------------------------------------- direct matgl (child process)


def direct_m3gnet_child(args: argparse.Namespace) -> None:
    """matgl's documented low-level training path (runs in its own process)."""
    import lightning as pl
    import numpy as np
    import pandas as pd
    from lightning.pytorch.loggers import CSVLogger
    from matgl.config import DEFAULT_ELEMENTS
    from matgl.ext.pymatgen import Structure2Graph
    from matgl.graph.data import MGLDataLoader, MGLDataset, collate_fn_pes
    from matgl.models import M3GNet
    from matgl.utils.training import PotentialLightningModule, fit_element_refs
    from pymatgen.core import Lattice, Structure

    p = json.loads(args.params)
    outdir = Path(args.outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    pl.seed_everything(42, workers=True)
    element_types = tuple(DEFAULT_ELEMENTS)
    converter = Structure2Graph(element_types=element_types, cutoff=5.0)

    def load(split: str) -> tuple[list[Structure], dict[str, list]]:
        frame = pd.read_parquet(Path(args.data) / f"{split}.parquet")
        structures = [
            Structure(Lattice(np.reshape(c, (3, 3))), [int(v) for v in z], np.reshape(x, (-1, 3)), coords_are_cartesian=True)
            for z, x, c in zip(frame["numbers"], frame["positions"], frame["cell"])
        ]
        labels = {
            "energies": frame["energy"].tolist(),
            "forces": [np.reshape(f, (-1, 3)).tolist() for f in frame["forces"]],
            "stresses": [np.reshape(s, (3, 3)).tolist() for s in frame["stress_gpa"]],  # out-of-plane NaN
        }
        return structures, labels

    (train_s, train_l), (val_s, val_l) = load("train"), load("val")
    train_data = MGLDataset(structures=train_s, labels=train_l, converter=converter, root=str(outdir / "graphs_train"))
    val_data = MGLDataset(structures=val_s, labels=val_l, converter=converter, root=str(outdir / "graphs_val"))
    train_loader, val_loader = MGLDataLoader(
        train_data=train_data, val_data=val_data, collate_fn=collate_fn_pes, batch_size=args.batch_size, num_workers=0
    )
    model = M3GNet(
        element_types=element_types,
        is_intensive=False,
        nblocks=p["nblocks"],
        units=p["units"],
        dim_node_embedding=p["dim_node_embedding"],
        dim_edge_embedding=p["dim_edge_embedding"],
        max_n=3,
        max_l=3,
        cutoff=5.0,
        threebody_cutoff=4.0,
    )
    refs = fit_element_refs(train_s, train_l["energies"], element_types)
    module = PotentialLightningModule(
        model=model, element_refs=refs, energy_weight=1.0, force_weight=1.0, stress_weight=0.1,
        lr=args.lr, decay_steps=args.epochs, decay_alpha=0.01, allow_missing_labels=True,
    )

    class EpochTimer(pl.Callback):
        def __init__(self) -> None:
            self.epoch_s: list[float] = []
            self.start_unix: list[float] = []
            self.end_unix: list[float] = []

        def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
            self.start_unix.append(time.time())
            self.t0 = time.perf_counter()

        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            self.epoch_s.append(time.perf_counter() - self.t0)
            self.end_unix.append(time.time())

        def on_train_end(self, trainer: Any, pl_module: Any) -> None:
            self.train_end_unix = time.time()

    timer = EpochTimer()
    trainer = pl.Trainer(
        max_epochs=args.epochs,
        accelerator="cpu",
        logger=CSVLogger(str(outdir), name="logs"),
        inference_mode=False,
        callbacks=[timer],
        enable_progress_bar=False,
        default_root_dir=str(outdir),
    )
    trainer.fit(model=module, train_dataloaders=train_loader, val_dataloaders=val_loader)
    module.model.save(str(outdir / "model"))
    (outdir / "epoch_times.json").write_text(
        json.dumps(
            {"epoch_s": timer.epoch_s, "start_unix": timer.start_unix, "end_unix": timer.end_unix,
             "train_end_unix": timer.train_end_unix}
        )
    )


# ----------------------------------------------------------------------------- summary


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _steady(series: dict[str, list[float]]) -> list[float]:
    """Values of an epoch-labelled series from epoch 2 on (epoch 1 is warm-up)."""
    return [t for e, t in zip(series["epochs"], series["s"]) if e >= 2]


def summarize(runs: list[dict[str, Any]], family: str, side: str) -> dict[str, Any]:
    mine = [r for r in runs if r["family"] == family and r["side"] == side]
    steady = [t for r in mine for t in r["epoch_s"][1:]]  # first epoch of each run: warm-up
    out = {
        "runs": len(mine),
        "epoch_s_median": _median(steady),
        "epoch_s_min": min(steady) if steady else float("nan"),
        "epoch_cpu_s_median": _median([t for r in mine for t in _steady(r["cpu_epoch"])]),
        "epoch1_s_median": _median([r["epoch_s"][0] for r in mine]),
        "wall_s_median": _median([r["wall_s"] for r in mine]),
        "cpu_s_median": _median([r["cpu_s"] for r in mine]),
        "setup_s_median": _median([r["setup_s"] for r in mine]),
        "teardown_s_median": _median([r["teardown_s"] for r in mine]),
        "per_round_epoch_s_median": [_median(r["epoch_s"][1:]) for r in sorted(mine, key=lambda r: r["round"])],
    }
    if family == "m3gnet":
        out["cycle_s_median"] = _median([t for r in mine for t in _steady(r["cycle"])])
    if family == "mace" and side == "ours":
        out["log_epoch_s_median"] = _median([t for r in mine for t in r["log_epoch_s"][1:]])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", nargs="+", default=["m3gnet", "mace"], choices=["m3gnet", "mace"])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=4, help="ours/direct pairs per family (order alternates)")
    parser.add_argument("--materials", type=int, default=40)
    parser.add_argument("--e-cut", type=float, default=0.01)
    args = parser.parse_args()
    os.environ.update(THREAD_ENV)
    t_start = time.perf_counter()

    data, info = dataset(args.materials, args.e_cut)
    print(f"data: {info}", flush=True)
    runs_dir = WORK / "runs"
    shutil.rmtree(runs_dir, ignore_errors=True)
    runs_dir.mkdir(parents=True)
    runners = {"ours": ours, "direct": {"m3gnet": direct_m3gnet, "mace": direct_mace}}
    runs: list[dict[str, Any]] = []
    for rnd in range(args.rounds):
        for family in args.families:
            order = ("ours", "direct") if rnd % 2 == 0 else ("direct", "ours")
            for side in order:
                outdir = runs_dir / f"{family}-{side}-{rnd}"
                fn = runners["ours"] if side == "ours" else runners["direct"][family]  # type: ignore[index]
                res = fn(family, data, outdir, args.epochs) if side == "ours" else fn(data, outdir, args.epochs)
                res.update(family=family, side=side, round=rnd)
                res.pop("mtimes", None)
                res.pop("cpu_samples", None)
                runs.append(res)
                print(
                    f"round {rnd} {family:6s} {side:6s} wall {res['wall_s']:6.1f} s  epochs "
                    + " ".join(f"{t:.3f}" for t in res["epoch_s"]),
                    flush=True,
                )

    summary: dict[str, Any] = {}
    for family in args.families:
        o, d = summarize(runs, family, "ours"), summarize(runs, family, "direct")
        summary[family] = {
            "ours": o,
            "direct": d,
            "epoch_ratio": o["epoch_s_median"] / d["epoch_s_median"],
            "epoch_ratio_per_round": [a / b for a, b in zip(o["per_round_epoch_s_median"], d["per_round_epoch_s_median"])],
            "epoch_cpu_ratio": o["epoch_cpu_s_median"] / d["epoch_cpu_s_median"],
            "wall_ratio": o["wall_s_median"] / d["wall_s_median"],
            "cpu_ratio": o["cpu_s_median"] / d["cpu_s_median"],
        }
        if family == "m3gnet":
            summary[family]["cycle_ratio"] = o["cycle_s_median"] / d["cycle_s_median"]

    cols = ["epoch s", "ep cpu s", "cycle s", "epoch1 s", "setup s", "teardn s", "wall s", "cpu s"]
    keys = ["epoch_s_median", "epoch_cpu_s_median", "cycle_s_median", "epoch1_s_median", "setup_s_median",
            "teardown_s_median", "wall_s_median", "cpu_s_median"]
    header = f"{'family':7s} {'side':6s} " + " ".join(f"{c:>8s}" for c in cols)
    print("\n" + header + "\n" + "-" * len(header))
    for family in args.families:
        for side in ("ours", "direct"):
            r = summary[family][side]
            print(f"{family:7s} {side:6s} " + " ".join(f"{r.get(k, float('nan')):8.3f}" for k in keys))
        s = summary[family]
        rounds = ", ".join(f"{x:.3f}" for x in s["epoch_ratio_per_round"])
        extra = f", cycle {s['cycle_ratio']:.3f}" if "cycle_ratio" in s else ""
        print(
            f"{family:7s} ours/direct: epoch {s['epoch_ratio']:.3f} (per round {rounds}), epoch cpu "
            f"{s['epoch_cpu_ratio']:.3f}{extra}, wall {s['wall_ratio']:.3f}, cpu {s['cpu_ratio']:.3f}"
            f"  [target epoch <= 1.05: {'ok' if s['epoch_ratio'] <= 1.05 else 'MISSED'}]"
        )
    result = {
        "machine": {"cpus": os.cpu_count(), "threads": 1, "note": "shared machine, 1 torch/BLAS thread per process"},
        "epochs": args.epochs,
        "rounds": args.rounds,
        "warmup_excluded": "first epoch of every run",
        "data": info,
        "settings": SETTINGS,
        "summary": summary,
        "runs": runs,
        "benchmark_s": time.perf_counter() - t_start,
    }
    (OUT / "training.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"\nwrote {OUT / 'training.json'} ({result['benchmark_s']:.0f} s)")


def child_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", required=True)
    parser.add_argument("--outdir", required=True)
    parser.add_argument("--epochs", type=int, required=True)
    parser.add_argument("--lr", type=float, required=True)
    parser.add_argument("--batch-size", type=int, required=True)
    parser.add_argument("--params", required=True)
    direct_m3gnet_child(parser.parse_args(argv))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_direct-m3gnet":
        child_main(sys.argv[2:])
    else:
        main()
