"""GPU check of the relaxation engines: one command on a CUDA machine.

    .venv/main/bin/python bench/gpu_check.py                  # both families, ~5 min on one GPU
    .venv/main/bin/python bench/gpu_check.py --families mace --copies 1

1. Data: the embedded demo 2D set (``resources/demo/2d/demo_2d.json.bz2``, CHGNet standing in
   for DFT), split 80:10:10 by material (seed 42, as the demo campaign). Every third frame of
   every material is training data (all materials, so every element of the val/test sets is
   known to MACE's element table: this checks the engines on the GPU, not the models'
   accuracy); every tenth material also validates.
2. One tiny point per family trained on the GPU (``mlff2d.training.sweep.train_point``, device cuda):
   M3GNet nblocks 1, units 16; MACE 8 channels, L = 0; a few epochs.
3. The demo val and test start structures (first frames), ``--copies`` times (new ids), relaxed
   on the GPU by ``relax_shard`` with ``engine="ase"`` (one structure per model call) and
   ``engine="batched"`` (``batch_atoms`` 0: sized from the free GPU memory after the first call),
   fmax 0.1 eV/Å, max_steps 300.
4. Printed per family: structures per second of each engine, the speed-up, model calls, and the
   agreement (same outcome per structure, largest energy and area differences, step ratios).

Without CUDA it stops at once with exit status 2 and says so. No test runs it. Outputs go to
bench/out/gpu_check/ (``summary.json``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out" / "gpu_check"
DEMO_2D = ROOT / "resources" / "demo" / "2d" / "demo_2d.json.bz2"
TINY = {
    "m3gnet": {"nblocks": 1, "units": 16, "dim_node_embedding": 16, "dim_edge_embedding": 16,
               "batch_size": 16, "epochs": 8, "lr": 3e-3, "stress_weight": 1.0},
    "mace": {"epochs": 5, "lr": 0.01, "batch_size": 8, "valid_batch_size": 16, "r_max": 5.0, "max_L": 0,
             "num_channels": 8, "correlation": 2, "swa": False, "stress_weight": 10.0, "seed": 7},
}  # fmt: skip


def cuda_or_exit(device: str) -> str:
    """The CUDA device name (``device`` cpu: "cpu"), or exit 2 with a message."""
    import torch

    if device == "cpu":
        return "cpu"
    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device (torch.cuda.is_available() is False). Run it on a GPU node, "
              "for example: srun --gpus=1 .venv/main/bin/python bench/gpu_check.py", file=sys.stderr)  # fmt: skip
        raise SystemExit(2)
    return torch.cuda.get_device_name(0)


def demo_data(limit: int | None = None) -> tuple[list[Any], dict[str, str]]:
    """The demo 2D materials (the first ``limit``) and their split (material id -> train/val/test)."""
    sys.path.insert(0, str(ROOT / "workflow"))
    from mlff2d.data.ingest import Source
    from mlff2d.data.ingest_alexandria import read_alexandria
    from mlff2d.data.split import split_materials

    source = Source(path=str(DEMO_2D), format="alexandria")
    materials = list(read_alexandria(DEMO_2D, source))[:limit]
    split = split_materials([m.material_id for m in materials], [0.8, 0.1, 0.1], 42)
    return materials, dict(zip(split["material_id"], split["split"], strict=True))


def labelled(frame: Any, material_id: str) -> Any:
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator

    atoms = Atoms(numbers=frame.numbers, positions=frame.positions, cell=frame.cell, pbc=True)
    atoms.calc = SinglePointCalculator(atoms, energy=float(frame.energy), forces=frame.forces, stress=frame.stress)
    atoms.info["material_id"] = material_id
    return atoms


def write_export(family: str, materials: list[Any], outdir: Path) -> Path:
    """The family's training export of every third frame (step 2 above)."""
    from mlff2d.data.export import write_labelled

    splits: dict[str, list[Any]] = {"train": [], "val": []}
    for i, m in enumerate(materials):
        for split in ("train", "val") if i % 10 == 0 else ("train",):
            splits[split] += [labelled(f, f"{m.material_id}-{k}") for k, f in enumerate(m.frames[::3])]
    for split, frames in splits.items():
        write_labelled(family, frames, outdir, split)
    return outdir


def start_file(materials: list[Any], split: dict[str, str], copies: int) -> Path:
    """The val and test start structures, ``copies`` times over (new ids)."""
    import ase.io

    starts = [labelled(m.frames[0], m.material_id) for m in materials if split[m.material_id] in ("val", "test")]
    out = []
    for c in range(copies):
        for atoms in starts:
            copy = atoms.copy()
            copy.calc = None
            copy.info["material_id"] = f"{atoms.info['material_id']}-{c}"
            out.append(copy)
    OUT.mkdir(parents=True, exist_ok=True)
    ase.io.write(OUT / "start.extxyz", out, format="extxyz")
    return OUT / "start.extxyz"


def run(family: str, point: Path, start: Path, engine: str, n: int, device: str) -> dict[str, Any]:
    import torch

    from mlff2d.relaxation.relax import relax_shard

    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    sync()
    t0 = time.perf_counter()
    records = relax_shard(family, point, start, 0, n, OUT / f"{family}_{engine}.parquet", OUT / f"{family}_{engine}.extxyz",
                          fmax=0.1, max_steps=300, device=device, engine=engine, batch_atoms=0)  # fmt: skip
    sync()
    wall = time.perf_counter() - t0
    return {"wall_s": wall, "per_s": n / wall, "records": records}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", nargs="+", choices=("m3gnet", "mace"), default=["m3gnet", "mace"])
    parser.add_argument("--copies", type=int, default=4, help="copies of the val+test starts (default 4)")
    parser.add_argument("--device", default="cuda", help="cuda (default); cpu only to smoke-test this script")
    parser.add_argument("--max-materials", type=int, default=None, help="the first N demo materials (a quick look)")
    args = parser.parse_args()
    name = cuda_or_exit(args.device)
    sys.path.insert(0, str(ROOT / "bench"))
    from relax import agreement  # bench/relax.py

    from mlff2d.relaxation.relax import count_structures
    from mlff2d.training.sweep import train_point

    materials, split = demo_data(args.max_materials)
    start = start_file(materials, split, args.copies)
    n = count_structures(start)
    summary: dict[str, Any] = {"device": name, "structures": n, "families": {}}
    print(f"{name}: {len(materials)} demo materials, {n} start structures (val + test x {args.copies})")
    for family in args.families:
        t0 = time.perf_counter()
        point = OUT / f"point_{family}"
        shutil.rmtree(point, ignore_errors=True)  # a fresh training each time (no resume)
        status = train_point(family, write_export(family, materials, OUT / f"export_{family}"), point, TINY[family], device=args.device)
        if status["status"] != "ok":
            raise SystemExit(f"gpu_check: training {family} on the GPU failed: {status.get('reason')}")
        print(f"{family}: trained on {args.device} in {time.perf_counter() - t0:.0f} s")
        runs = {engine: run(family, point, start, engine, n, args.device) for engine in ("batched", "ase")}
        result = {e: {"structures_per_s": r["per_s"], "wall_s": r["wall_s"]} for e, r in runs.items()}
        result["speedup"] = runs["batched"]["per_s"] / runs["ase"]["per_s"]
        result["agreement"] = agreement(runs["ase"]["records"], runs["batched"]["records"])
        summary["families"][family] = result
        print(f"{family}: ASE {runs['ase']['per_s']:.2f} /s, batched {runs['batched']['per_s']:.2f} /s, "
              f"speed-up {result['speedup']:.2f}x; agreement {result['agreement']}")  # fmt: skip
    (OUT / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    print(f"summary: {OUT / 'summary.json'}")


if __name__ == "__main__":
    main()
