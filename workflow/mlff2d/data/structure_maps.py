"""SOAP structure maps of the splits, and relaxation error against novelty (issue 18).

Each material is described by its DFT-relaxed structure (the last frame, as in the relaxation
reference sets): a dscribe SOAP power spectrum averaged over the atoms (``average="outer"``,
``compression="mu1nu1"``: ``n_species * n_max**2 * (l_max + 1)`` features), scaled to unit length,
so that the Euclidean distance between two materials is the SOAP kernel distance
``sqrt(2 - 2 k)`` in [0, 2] (dimensionless). A PCA fitted on the training materials only maps them
to two dimensions; each material's novelty is its distance to the nearest training material
(0 for a training material itself).

Memory is bounded by blocks of ``chunk`` structures: the vectors are written to a float32
``soap.npy`` on disk (memory-mapped), the PCA accumulates a D × D scatter matrix in float64, and
the nearest-neighbour search compares one block of queries with one block of training vectors at a
time. For 1e5 structures of <= 20 atoms and 80 species (D = 5120): 2.0 GB on disk; in memory
210 MB for the scatter matrix, ~40 MB per block of 512 and ~25 MB of SOAP per 20-atom block: under
0.5 GB in all.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from ase import Atoms

from mlff2d.config import schema_default
from mlff2d.io.store import iter_tables, row_to_atoms

SETS = ("train", "val", "test")
COLOURS = {"train": "#bbbbbb", "val": "#1f77b4", "test": "#d62728"}


def reference_structures(clean: str | Path, split_csv: str | Path) -> Iterator[tuple[str, str, Atoms]]:
    """(material_id, set, DFT-relaxed structure) of every material of the split, streamed."""
    split = pd.read_csv(split_csv, dtype={"material_id": str}, keep_default_na=False)
    which = dict(zip(split["material_id"], split["split"]))
    for table in iter_tables(clean):
        frame = table.to_pandas()
        frame = frame[frame["material_id"].isin(which)]
        for mid, group in frame.groupby("material_id", sort=False):
            yield str(mid), which[mid], row_to_atoms(group.iloc[-1])


def split_species(clean: str | Path, split_csv: str | Path) -> tuple[list[int], int]:
    """(sorted atomic numbers, number of materials) of the split's materials (one pass, numbers only)."""
    ids = set(pd.read_csv(split_csv, dtype={"material_id": str}, keep_default_na=False)["material_id"])
    species: set[int] = set()
    seen: set[str] = set()
    for table in iter_tables(clean, columns=["material_id", "numbers"]):
        frame = table.to_pandas()
        frame = frame[frame["material_id"].isin(ids)]
        seen.update(frame["material_id"])
        for numbers in frame["numbers"]:
            species.update(int(z) for z in numbers)
    return sorted(species), len(seen)


def soap_descriptor(species: Sequence[int], r_cut: float = schema_default("structure_maps.r_cut"),
                    n_max: int = schema_default("structure_maps.n_max"), l_max: int = schema_default("structure_maps.l_max"),
                    sigma: float = schema_default("structure_maps.sigma")):  # type: ignore[no-untyped-def]
    """The dscribe SOAP of a dataset: periodic, averaged over atoms, mu1nu1-compressed, float32."""
    from dscribe.descriptors import SOAP

    return SOAP(species=list(species), r_cut=r_cut, n_max=n_max, l_max=l_max, sigma=sigma, periodic=True,
                average="outer", compression={"mode": "mu1nu1"}, dtype="float32")


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit Euclidean length (an all-zero row stays zero)."""
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norm, out=np.zeros_like(x), where=norm > 0)


def write_descriptors(clean: str | Path, split_csv: str | Path, out_npy: str | Path, chunk: int, **soap: float) -> pd.DataFrame:
    """Unit-length SOAP vectors of every material of the split into ``out_npy`` (float32, one row
    per material, in the order of the returned frame of material_id and set)."""
    species, n = split_species(clean, split_csv)
    descriptor = soap_descriptor(species, **soap)
    out = np.lib.format.open_memmap(out_npy, mode="w+", dtype=np.float32, shape=(n, descriptor.get_number_of_features()))
    ids: list[tuple[str, str]] = []
    block: list[Atoms] = []

    def flush() -> None:
        if block:
            vectors = np.atleast_2d(descriptor.create(block))
            out[len(ids) - len(block) : len(ids)] = unit_rows(vectors.astype(np.float32))
            block.clear()

    for mid, which, atoms in reference_structures(clean, split_csv):
        ids.append((mid, which))
        block.append(atoms)
        if len(block) == chunk:
            flush()
    flush()
    out.flush()
    return pd.DataFrame(ids, columns=["material_id", "set"])


def fit_pca(x: np.ndarray, rows: np.ndarray, chunk: int, n_components: int = 2) -> dict[str, np.ndarray]:
    """PCA of ``x[rows]`` (the training materials), streamed in blocks: mean, components
    (n_components × D, sign fixed so the largest loading is positive) and explained variance."""
    rows = np.asarray(rows)
    if rows.size < 2:
        raise ValueError(f"a PCA needs at least two training structures, got {rows.size}")
    dim = x.shape[1]
    total, scatter = np.zeros(dim), np.zeros((dim, dim))
    for start in range(0, rows.size, chunk):
        block = np.asarray(x[rows[start : start + chunk]], dtype=np.float64)
        total += block.sum(axis=0)
        scatter += block.T @ block
    mean = total / rows.size
    cov = (scatter - rows.size * np.outer(mean, mean)) / (rows.size - 1)
    values, vectors = np.linalg.eigh(cov)
    order = np.argsort(values)[::-1][:n_components]
    comps = vectors[:, order].T
    comps *= np.sign(comps[np.arange(len(comps)), np.abs(comps).argmax(axis=1)])[:, None]
    return {"mean": mean, "components": comps, "explained_variance": values[order]}


def project(x: np.ndarray, pca: dict[str, np.ndarray], chunk: int) -> np.ndarray:
    """Coordinates of every row of ``x`` on the PCA components, in blocks."""
    return np.vstack([(np.asarray(x[i : i + chunk], dtype=np.float64) - pca["mean"]) @ pca["components"].T for i in range(0, len(x), chunk)])


def nearest_distances(x: np.ndarray, queries: np.ndarray, train: np.ndarray, chunk: int) -> tuple[np.ndarray, np.ndarray]:
    """(distance, row of the nearest training vector) of each query row of ``x``, comparing one
    block of queries with one block of training vectors at a time. The winner's distance is
    recomputed as the norm of the difference, so a query that is a training vector gets exactly 0."""
    queries, train = np.asarray(queries), np.asarray(train)
    best = np.full(queries.size, np.inf)
    arg = np.zeros(queries.size, dtype=int)
    for qs in range(0, queries.size, chunk):
        q = np.asarray(x[queries[qs : qs + chunk]], dtype=np.float64)
        for ts in range(0, train.size, chunk):
            t = np.asarray(x[train[ts : ts + chunk]], dtype=np.float64)
            d2 = (q**2).sum(1)[:, None] + (t**2).sum(1)[None, :] - 2.0 * q @ t.T
            j = d2.argmin(axis=1)
            better = d2[np.arange(len(q)), j] < best[qs : qs + len(q)]
            best[qs : qs + len(q)][better] = d2[np.arange(len(q)), j][better]
            arg[qs : qs + len(q)][better] = train[ts + j[better]]
    exact = np.array([np.linalg.norm(np.asarray(x[i], dtype=np.float64) - np.asarray(x[a], dtype=np.float64)) for i, a in zip(queries, arg)])
    return exact, arg


def structure_map(clean: str | Path, split_csv: str | Path, outdir: str | Path,
                  chunk: int = schema_default("structure_maps.chunk"), **soap: float) -> pd.DataFrame:
    """SOAP vectors, PCA (fitted on train) and nearest-training distances of one dataset's split:
    writes ``soap.npy``, ``pca.npz``, ``structures.csv`` (material_id, set, pc1, pc2,
    nearest_train_distance, nearest_train_id) and ``map.png``/``map.pdf`` (coloured by set)."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    frame = write_descriptors(clean, split_csv, outdir / "soap.npy", chunk=chunk, **soap)
    x = np.load(outdir / "soap.npy", mmap_mode="r")
    train = np.flatnonzero(frame["set"].to_numpy() == "train")
    pca = fit_pca(x, train, chunk=chunk)
    np.savez(outdir / "pca.npz", **pca)
    coords = project(x, pca, chunk=chunk)
    dist, arg = nearest_distances(x, np.arange(len(frame)), train, chunk=chunk)
    frame = frame.assign(pc1=coords[:, 0], pc2=coords[:, 1], nearest_train_distance=dist,
                         nearest_train_id=frame["material_id"].to_numpy()[arg])
    frame.to_csv(outdir / "structures.csv", index=False, lineterminator="\n")
    plot_split_map(frame, outdir / "map", f"{Path(split_csv).stem}: SOAP PCA (fitted on train)")
    return frame


def plot_split_map(frame: pd.DataFrame, stem: Path, title: str) -> list[Path]:
    """The PCA map coloured train/val/test, as ``stem.png`` and ``stem.pdf``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4.2))
    for which in SETS:
        part = frame[frame["set"] == which]
        ax.scatter(part["pc1"], part["pc2"], s=10 if which == "train" else 18, c=COLOURS[which], label=f"{which} ({len(part)})", edgecolors="none")
    ax.set(xlabel="PC 1", ylabel="PC 2", title=title)
    ax.legend(fontsize=8)
    return _save(fig, stem)


def _save(fig, stem: Path) -> list[Path]:  # type: ignore[no-untyped-def]
    import matplotlib.pyplot as plt

    fig.tight_layout()
    paths = [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
    fig.savefig(paths[0], dpi=150)
    fig.savefig(paths[1])
    plt.close(fig)
    return paths


def spearman(x: Sequence[float], y: Sequence[float]) -> tuple[float, float, int]:
    """(Spearman rank correlation, two-sided p-value, n) of the finite pairs; NaN below 3 pairs."""
    from scipy.stats import spearmanr

    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(a) & np.isfinite(b)
    if keep.sum() < 3 or np.ptp(a[keep]) == 0 or np.ptp(b[keep]) == 0:
        return math.nan, math.nan, int(keep.sum())
    result = spearmanr(a[keep], b[keep])
    return float(result.statistic), float(result.pvalue), int(keep.sum())


def novelty(structures_csv: str | Path, errors_csv: str | Path, relax_set: str, outdir: str | Path, title: str = "") -> dict[str, float | int | str]:
    """Per model and set: |energy error| (meV/atom) against the nearest-training SOAP distance.
    Writes ``novelty.csv``, ``novelty.json`` (Spearman rho, p, n), ``novelty.png/pdf`` and the
    structure map coloured by the error, ``error_map.png/pdf``; returns the summary."""
    outdir = Path(outdir)
    structures = pd.read_csv(structures_csv, dtype={"material_id": str}, keep_default_na=False)
    errors = pd.read_csv(errors_csv, dtype={"material_id": str}, keep_default_na=False)
    errors["abs_energy_error_meV"] = pd.to_numeric(errors["energy_error_meV"], errors="coerce").abs()
    joined = structures[structures["set"] == relax_set].merge(errors[["material_id", "abs_energy_error_meV"]], on="material_id", how="inner")
    joined.to_csv(outdir / "novelty.csv", index=False, lineterminator="\n")
    rho, p, n = spearman(joined["nearest_train_distance"], joined["abs_energy_error_meV"])
    summary: dict[str, float | int | str] = {"set": relax_set, "n": n, "spearman_rho": rho, "spearman_p": p,
                                             "median_distance": float(joined["nearest_train_distance"].median()) if n else math.nan}
    (outdir / "novelty.json").write_text(json.dumps(summary, indent=2) + "\n")
    plot_novelty(joined, outdir / "novelty", f"{title} (Spearman ρ = {rho:.2f}, n = {n})")
    plot_error_map(structures, joined, outdir / "error_map", title)
    return summary


def plot_novelty(joined: pd.DataFrame, stem: Path, title: str) -> list[Path]:
    """|energy error| against the nearest-training distance."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4))
    ax.scatter(joined["nearest_train_distance"], joined["abs_energy_error_meV"], s=14, c=COLOURS["test"], edgecolors="none")
    ax.set(xlabel="SOAP distance to nearest training structure", ylabel="|energy error| (meV/atom)", title=title)
    ax.title.set_fontsize(9)
    return _save(fig, stem)


def plot_error_map(structures: pd.DataFrame, joined: pd.DataFrame, stem: Path, title: str) -> list[Path]:
    """The PCA map: training materials grey, the set's materials coloured by |energy error|."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.4, 4.2))
    train = structures[structures["set"] == "train"]
    ax.scatter(train["pc1"], train["pc2"], s=8, c=COLOURS["train"], edgecolors="none", label="train")
    points = ax.scatter(joined["pc1"], joined["pc2"], s=20, c=joined["abs_energy_error_meV"], cmap="viridis", edgecolors="none")
    fig.colorbar(points, ax=ax, label="|energy error| (meV/atom)")
    ax.set(xlabel="PC 1", ylabel="PC 2", title=title)
    ax.title.set_fontsize(9)
    return _save(fig, stem)


def novelty_table(summaries: Sequence[str | Path], models: Sequence[str], out: str | Path) -> pd.DataFrame:
    """One row per model and set of the novelty.json files (model, set, n, spearman_rho, ...)."""
    rows = [{"model": m, **json.loads(Path(f).read_text())} for m, f in zip(models, summaries)]
    table = pd.DataFrame(rows)
    table.to_csv(out, index=False, lineterminator="\n")
    from mlff2d.io.table_files import write_frame_html

    write_frame_html(table, Path(out).with_suffix(".html"), "Relaxation energy error against novelty (SOAP distance to the "
                     "nearest training structure): Spearman rank correlation per model and set.")
    return table
