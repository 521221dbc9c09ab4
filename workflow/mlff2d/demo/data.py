"""The embedded demo dataset: CHGNet relaxations of 2D monolayers standing in for DFT.

CHGNet (a universal machine-learned potential, ``chgnet==0.4.2``, pretrained weights shipped in
its wheel) plays the role of DFT: every structure is built with ASE, perturbed and relaxed with
FIRE in its in-plane cell (``FrechetCellFilter(mask=[1, 1, 0, 0, 0, 1])``), and *every* FIRE
step (energy, forces, stress) is recorded, as a DFT code records its ionic steps. The result is
written in the Alexandria geometry-optimisation format that :func:`mlff2d.data.ingest_alexandria.read_alexandria`
reads, so the demo campaign exercises the same code path as the study's data.

Two parts (see :func:`generate_demo`):

* **2D set** (``2d/demo_2d.json.bz2``): about 120 monolayers of many families (1H/1T MX2,
  halides, MX3, oxides, honeycombs, MXenes, GaSe-type, quintuple layers, phosphorene, FeSe).
  Each prototype is first relaxed in its primitive cell (not recorded), so that the recorded
  trajectory starts a few per cent from CHGNet's equilibrium: it is then made a supercell,
  strained in-plane, sheared and rattled (seeded), and relaxed with every step recorded.
* **Alloy sets** (``alloys/<ALLOY>.json.bz2``): metal-sublattice configurations of 1H MX2
  enumerated with icet (up to 6 metal sites), a deterministic spread over compositions with both
  pure end members first, started at Vegard's-law lattice constants, rattled slightly and
  relaxed. ``alloys/formation_energies.csv`` holds formation energies per metal site (and per
  atom = per site / 3) relative to the relaxed end members of the same set.

Units in the files are Alexandria's (VASP's): energy total eV, forces eV/Å, stress kbar with
compression positive, as a 3×3 matrix. Seeds are derived per material from ``seed`` and the
material's fixed position in the prototype list, so a partial run (``n_2d``, ``max_configs``)
reproduces exactly the corresponding materials of the full run.

Run it: ``python -m mlff2d.demo.data resources/demo --workers 2``.
"""

from __future__ import annotations

import argparse
import bz2
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mlff2d.demo.chgnet import FMAX, FUNCTIONAL, MAX_STEPS, to_alexandria_step
from mlff2d.demo.jobs import (
    ALLOY_STARTS,
    MAX_ALLOY_SITES,
    MAX_CONFIGS,
    RATTLE_2D,
    RATTLE_ALLOY,
    SHEAR_ALLOY,
    SHEAR_MAX,
    STRAIN_ALLOY,
    STRAIN_MAX,
    init_worker,
    run_jobs,
    alloy_configurations,
    run_2d_job,
    run_alloy_job,
)
from mlff2d.demo.readme import render_readme
from mlff2d.demo.structures import ALLOYS, FORMATION_ALLOYS, HALF_VACUUM, prototypes

log = logging.getLogger("mlff2d.demo.data")


# ----------------------------------------------------------------------------- output


def write_alexandria_file(path: Path, results: list[dict[str, Any]]) -> Path:
    """Write the kept results as ``{material_id: [{"functional", "steps"}]}`` (.json.bz2)."""
    data = {
        r["material_id"]: [{"functional": FUNCTIONAL, "steps": [to_alexandria_step(f) for f in r["frames"]]}]
        for r in results
        if not r["problem"]
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bz2.compress(json.dumps(data, separators=(",", ":")).encode(), 9))
    return path


def formation_energies(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Formation energy per metal site of every kept configuration of one alloy, relative to the
    relaxed pure end members of the same set: E_f = [E - (1-x) N e_A - x N e_B] / N, with N metal
    sites and e_A, e_B the end members' final energies per metal site (the lowest among their
    starts, as :func:`mlff2d.formation.energies.end_members` takes them). Per atom = per site / 3."""
    kept = [r for r in results if not r["problem"]]
    e_site = {r["material_id"]: r["frames"][-1]["energy"] / r["n_metal_sites"] for r in kept}
    ends: dict[float, float] = {}  # the lowest energy per site among the starts of each end member
    for r in kept:
        if r["x"] in (0.0, 1.0):
            ends[r["x"]] = min(ends.get(r["x"], np.inf), e_site[r["material_id"]])
    if set(ends) != {0.0, 1.0}:
        return []
    rows = []
    for r in kept:
        n, x = r["n_metal_sites"], r["x"]
        ef = e_site[r["material_id"]] - (1 - x) * ends[0.0] - x * ends[1.0]
        rows.append(
            {
                "alloy": r["alloy"],
                "material_id": r["material_id"],
                "n_metal_sites": n,
                "x": round(x, 6),
                "energy_per_site_eV": round(e_site[r["material_id"]], 6),
                "formation_energy_per_site_eV": round(ef, 6),
                "formation_energy_per_atom_eV": round(ef / 3, 6),
            }
        )
    return rows


def _stats(results: list[dict[str, Any]], path: Path, root: Path) -> dict[str, Any]:
    kept = [r for r in results if not r["problem"]]
    frames = [len(r["frames"]) for r in kept]
    atoms = [len(r["frames"][0]["numbers"]) for r in kept]
    elements = sorted({_symbol(z) for r in kept for z in r["frames"][0]["numbers"]})
    return {
        "path": str(path.relative_to(root)),
        "n_materials": len(kept),
        "n_dropped": len(results) - len(kept),
        "elements": elements,
        "n_elements": len(elements),
        "frames_per_trajectory": {
            "min": min(frames, default=0),
            "mean": round(float(np.mean(frames)), 3) if frames else 0.0,
            "max": max(frames, default=0),
        },
        "total_frames": int(sum(frames)),
        "atoms_per_structure": {"min": min(atoms, default=0), "max": max(atoms, default=0)},
        "n_converged": sum(r["converged"] for r in kept),
        "size_bytes": path.stat().st_size,
    }


def _fmax(frame: dict[str, Any]) -> float:
    """Largest atomic force (eV/Å) of a frame."""
    return float(np.linalg.norm(np.asarray(frame["forces"]), axis=1).max())


def _symbol(z: int) -> str:
    from ase.data import chemical_symbols

    return chemical_symbols[int(z)]


def _material_entry(r: dict[str, Any], file: str) -> dict[str, Any]:
    from ase.formula import Formula

    numbers = r["frames"][0]["numbers"] if r["frames"] else []
    formula = str(Formula.from_list([_symbol(z) for z in numbers]).reduce()[0]) if len(numbers) else ""
    entry = {
        "file": file,
        "formula": formula,
        "elements": sorted({_symbol(z) for z in numbers}),
        "n_atoms": len(numbers),
        "n_frames": len(r["frames"]),
        "converged": r["converged"],
        "fmax_start": round(_fmax(r["frames"][0]), 4) if r["frames"] else None,
    }
    for k in ("prototype", "family", "alloy", "n_metal_sites", "x", "start"):
        if k in r:
            entry[k] = round(r[k], 6) if k == "x" else r[k]
    if r["problem"]:
        entry["problem"] = r["problem"]
    return entry


def generate_demo(
    outdir: Path,
    n_2d: int | None = None,
    alloys: Sequence[str] | None = None,
    max_configs: int | None = None,
    seed: int = 0,
    workers: int = 1,
    starts: int = ALLOY_STARTS,
) -> dict[str, Any]:
    """Generate the demo dataset under ``outdir`` and return its manifest.

    Args:
        outdir: output root; writes ``2d/demo_2d.json.bz2``, ``alloys/<ALLOY>.json.bz2``,
            ``alloys/formation_energies.csv``, ``manifest.json`` and ``README.md``.
        n_2d: number of 2D prototypes (the first ``n_2d`` of :func:`prototypes`); None = all,
            0 = no 2D file.
        alloys: alloy names (keys of :data:`ALLOYS`); None = all six, [] = none.
        max_configs: configurations per alloy (a prefix of :func:`alloy_configurations`, end
            members first); None = :data:`MAX_CONFIGS`.
        seed: root of every random number (per material: seed, part, index).
        workers: processes (each loads CHGNet once and runs with one thread).
        starts: starts per alloy configuration (each a material of its own).

    Materials whose relaxation explodes (:func:`mlff2d.demo.chgnet.frame_problem`) are left out of the files and
    listed in the manifest under ``dropped``.
    """
    outdir = Path(outdir)
    t0 = time.perf_counter()
    protos = prototypes()
    protos = protos if n_2d is None else protos[:n_2d]
    alloys = list(ALLOYS) if alloys is None else list(alloys)
    unknown = [a for a in alloys if a not in ALLOYS]
    if unknown:
        raise ValueError(f"unknown alloys {unknown}; known: {list(ALLOYS)}")
    max_configs = MAX_CONFIGS if max_configs is None else max_configs

    part_results, fe_rows = _relax_parts(outdir, protos, alloys, max_configs, seed, workers, starts)
    files, materials, dropped = _catalogue(part_results, outdir)
    arguments = {"n_2d": n_2d, "alloys": alloys, "max_configs": max_configs, "seed": seed, "starts": starts}
    manifest = _manifest(arguments, files, materials, dropped, bool(fe_rows))
    (outdir / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    log.info("generated %d materials in %.0f s", manifest["totals"]["n_materials"], time.perf_counter() - t0)
    (outdir / "README.md").write_text(render_readme(manifest))
    return manifest


def _relax_parts(
    outdir: Path, protos: Sequence[Any], alloys: Sequence[str], max_configs: int | None, seed: int, workers: int, starts: int
) -> tuple[list[tuple[Path, list[dict[str, Any]]]], list[dict[str, Any]]]:
    """Relax the 2D set and the alloy sets and write their files: returns (file, results) per
    part and the formation-energy rows (also written to ``alloys/formation_energies.csv``)."""
    results_2d = run_jobs(run_2d_job, [(i + 1, p, seed) for i, p in enumerate(protos)], workers)
    part_results: list[tuple[Path, list[dict[str, Any]]]] = []
    if results_2d:
        part_results.append((write_alexandria_file(outdir / "2d" / "demo_2d.json.bz2", results_2d), results_2d))
    alloy_jobs = [
        (a, i + 1, c, start, seed)
        for a in alloys
        for start in range(starts)
        for i, c in enumerate(alloy_configurations(a, max_configs))
    ]
    alloy_results = run_jobs(run_alloy_job, alloy_jobs, workers)
    fe_rows: list[dict[str, Any]] = []
    for a in alloys:
        res = [r for r in alloy_results if r["alloy"] == a]
        part_results.append((write_alexandria_file(outdir / "alloys" / f"{a}.json.bz2", res), res))
        if a in FORMATION_ALLOYS:
            fe_rows += formation_energies(res)
    if fe_rows:
        import pandas as pd

        pd.DataFrame(fe_rows).to_csv(outdir / "alloys" / "formation_energies.csv", index=False)
    return part_results, fe_rows


def _catalogue(
    part_results: list[tuple[Path, list[dict[str, Any]]]], outdir: Path
) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    """The manifest's ``files`` (statistics per file), ``materials`` (one entry per material)
    and ``dropped`` (the materials left out, with the reason)."""
    files: dict[str, Any] = {}
    materials: dict[str, Any] = {}
    dropped = []
    for path, res in part_results:
        rel = str(path.relative_to(outdir))
        files[rel] = _stats(res, path, outdir)
        for r in res:
            materials[r["material_id"]] = _material_entry(r, rel)
            if r["problem"]:
                dropped.append({"material_id": r["material_id"], "formula": materials[r["material_id"]]["formula"],
                                "prototype": r.get("prototype", r.get("alloy", "")), "reason": r["problem"]})  # fmt: skip
    return files, materials, dropped


def _manifest(
    arguments: dict[str, Any], files: dict[str, Any], materials: dict[str, Any], dropped: list[dict[str, Any]], has_fe: bool
) -> dict[str, Any]:
    """The manifest of a generated dataset: provenance, settings, totals, files and materials."""
    all_kept = [m for m in materials.values() if "problem" not in m]
    import chgnet

    return {
        "description": "CHGNet relaxations standing in for DFT (see README.md); Alexandria format",
        "generator": "mlff2d.demo.data.generate_demo",
        "arguments": arguments,
        "chgnet_version": chgnet.__version__,
        "chgnet_model": "CHGNet.load() default (model 0.3.0)",
        "functional_label": FUNCTIONAL,
        "units": {"energy": "eV (total)", "forces": "eV/A", "stress": "kbar, compression positive (VASP sign), 3x3"},
        "settings": {
            "optimizer": "FIRE", "cell_filter": "FrechetCellFilter mask [1,1,0,0,0,1]", "fmax": FMAX,
            "max_steps": MAX_STEPS, "vacuum_A": 2 * HALF_VACUUM, "strain_max": STRAIN_MAX, "shear_max": SHEAR_MAX,
            "rattle_2d_A": RATTLE_2D, "strain_alloy": STRAIN_ALLOY, "shear_alloy": SHEAR_ALLOY,
            "rattle_alloy_A": RATTLE_ALLOY, "max_alloy_sites": MAX_ALLOY_SITES, "alloy_starts": arguments["starts"],
        },  # fmt: skip
        "totals": {
            "n_materials": len(all_kept),
            "n_dropped": len(dropped),
            "elements": sorted({e for m in all_kept for e in m["elements"]}),
            "total_frames": int(sum(m["n_frames"] for m in all_kept)),
            "size_bytes": int(sum(f["size_bytes"] for f in files.values())),
            "max_atoms": max((m["n_atoms"] for m in all_kept), default=0),
        },
        "files": files,
        "formation_energies": "alloys/formation_energies.csv" if has_fe else None,
        "dropped": dropped,
        "materials": materials,
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mlff2d.demo.data", description=__doc__.splitlines()[0])
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--n-2d", type=int, default=None, help="first N 2D prototypes (default all)")
    parser.add_argument("--alloys", nargs="*", default=None, help=f"alloys (default all: {' '.join(ALLOYS)})")
    parser.add_argument("--max-configs", type=int, default=None, help=f"configurations per alloy (default {MAX_CONFIGS})")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--starts", type=int, default=ALLOY_STARTS, help=f"starts per alloy configuration (default {ALLOY_STARTS})")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    init_worker()
    manifest = generate_demo(args.outdir, args.n_2d, args.alloys, args.max_configs, args.seed, args.workers, args.starts)
    log.info("wrote %s: %s", args.outdir, json.dumps(manifest["totals"]))


if __name__ == "__main__":
    main()
