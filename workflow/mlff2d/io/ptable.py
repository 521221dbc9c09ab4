"""Periodic-table heat maps drawn with matplotlib only.

The table has the standard 18 columns, with the lanthanides (57-71) and actinides (89-103) in
two rows below it. Cells with a value are coloured and show the value under the symbol; cells
without one are light grey. Pass the same ``vmin``/``vmax`` to several maps to compare them on
one colour scale.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
from ase.data import chemical_symbols
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

#: Fill of a cell without data.
NO_DATA_COLOR = "#e0e0e0"
#: Highest atomic number placed on the table.
MAX_Z = 118


def element_position(z: int) -> tuple[int, float]:
    """Column (1-18) and row of element ``z`` on the table.

    Rows 1-7 are the periods; the lanthanides sit on row 8.5 and the actinides on row 9.5
    (columns 3-17), leaving a half-row gap under period 7.
    """
    if not 1 <= z <= MAX_Z:
        raise ValueError(f"atomic number {z} is outside 1..{MAX_Z}")
    if z == 1:
        return 1, 1
    if z == 2:
        return 18, 1
    if 57 <= z <= 71:
        return z - 57 + 3, 8.5
    if 89 <= z <= 103:
        return z - 89 + 3, 9.5
    # (first Z, row, columns) of each block in the main table
    for start, row, cols in (
        (3, 2, [1, 2, *range(13, 19)]),
        (11, 3, [1, 2, *range(13, 19)]),
        (19, 4, list(range(1, 19))),
        (37, 5, list(range(1, 19))),
        (55, 6, [1, 2]),
        (72, 6, list(range(4, 19))),
        (87, 7, [1, 2]),
        (104, 7, list(range(4, 19))),
    ):
        if start <= z < start + len(cols):
            return cols[z - start], row
    raise AssertionError(z)  # pragma: no cover - every Z is placed above


def _text_color(rgba: tuple[float, ...]) -> str:
    """Black or white, whichever reads better on ``rgba``."""
    r, g, b = rgba[:3]
    return "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"


def plot_periodic_table(
    values: Mapping[str, float],
    ax: Axes | None = None,
    *,
    label: str,
    cmap: str = "viridis",
    vmin: float | None = None,
    vmax: float | None = None,
    fmt: str = "{:.3g}",
    log: bool = False,
    counts: Mapping[str, int] | None = None,
) -> Figure:
    """Draw ``values`` (element symbol -> value) as a periodic-table heat map.

    Args:
        values: value per element symbol; NaN counts as no data.
        ax: axes to draw on; a new figure is made when None.
        label: colour-bar label, with the unit.
        cmap: matplotlib colour map name.
        vmin, vmax: colour-scale limits (default: range of the finite values).
        fmt: format of the value printed in each cell.
        log: logarithmic colour scale (values must then be positive).
        counts: the number each cell's value rests on (e.g. structures), printed as ``N=k``.

    Returns:
        The figure holding ``ax``.

    Raises:
        ValueError: for a symbol that is not an element, or a non-positive value with ``log``.
    """
    data = _element_values(values, log)

    norm = _color_norm(list(data.values()), vmin, vmax, log)
    colormap = matplotlib.colormaps[cmap]

    if ax is None:  # a plain Figure: no pyplot state, no GUI backend needed
        ax = Figure(figsize=(13, 7.6)).add_subplot()
    fig = ax.figure
    if not isinstance(fig, Figure):  # a SubFigure: draw the colour bar there, return its root
        fig = fig.figure
    for z in range(1, MAX_Z + 1):
        _draw_cell(ax, z, data, colormap, norm, fmt, counts)
    for row, span in ((6, "57–71"), (7, "89–103")):  # where the f-block rows belong
        ax.text(2.5, -row + 0.5, span, ha="center", va="center", fontsize=7, color="#808080")

    ax.set_xlim(-0.1, 18.1)
    ax.set_ylim(-9.6, 0.1)
    ax.set_aspect("equal")
    ax.axis("off")
    # horizontal colour bar in the empty space above the transition metals
    cax = ax.inset_axes((2.5, -1.15, 9.0, 0.3), transform=ax.transData)
    mappable = ScalarMappable(norm=norm, cmap=colormap)
    fig.colorbar(mappable, cax=cax, orientation="horizontal")
    cax.tick_params(labelsize=8)
    cax.set_title(label, fontsize=10)
    return fig


def _element_values(values: Mapping[str, float], log: bool) -> dict[int, float]:
    """The finite values by atomic number; raises ValueError for a symbol that is not an
    element or (with ``log``) a value that is not positive."""
    data: dict[int, float] = {}
    for symbol, value in values.items():
        if symbol not in chemical_symbols[1 : MAX_Z + 1]:
            raise ValueError(f"unknown element symbol {symbol!r}")
        if np.isfinite(value):
            if log and value <= 0:
                raise ValueError(f"log scale needs positive values; {symbol} has {value}")
            data[chemical_symbols.index(symbol)] = float(value)
    return data


def _color_norm(finite: list[float], vmin: float | None, vmax: float | None, log: bool) -> Normalize:
    """The colour scale: ``vmin``/``vmax``, else the range of the values, never of zero width."""
    lo = vmin if vmin is not None else (min(finite) if finite else (1.0 if log else 0.0))
    hi = vmax if vmax is not None else (max(finite) if finite else (10.0 * lo if log else 1.0))
    if hi <= lo:  # a single value: give the scale some width
        hi = 10.0 * lo if log else lo + 1.0
    return LogNorm(lo, hi) if log else Normalize(lo, hi)


def _draw_cell(ax: Axes, z: int, data: Mapping[int, float], colormap: Any, norm: Normalize, fmt: str,
               counts: Mapping[str, int] | None) -> None:
    """One element's cell: coloured by its value (grey without one), symbol, value and ``N=k``."""
    col, row = element_position(z)
    x, y = col - 1, -row
    if z in data:
        fill = colormap(norm(data[z]))
        ink = _text_color(fill)
    else:
        fill, ink = NO_DATA_COLOR, "#505050"
    ax.add_patch(Rectangle((x + 0.03, y + 0.03), 0.94, 0.94, facecolor=fill, edgecolor="white"))
    if z in data:
        ax.text(x + 0.5, y + 0.63, chemical_symbols[z], ha="center", va="center",
                fontsize=11, fontweight="bold", color=ink)
        ax.text(x + 0.5, y + (0.33 if counts else 0.27), fmt.format(data[z]), ha="center", va="center",
                fontsize=7, color=ink)
        if counts and chemical_symbols[z] in counts:
            ax.text(x + 0.5, y + 0.13, f"N={int(counts[chemical_symbols[z]])}", ha="center", va="center",
                    fontsize=5.5, color=ink)
    else:
        ax.text(x + 0.5, y + 0.5, chemical_symbols[z], ha="center", va="center",
                fontsize=10, color=ink)


def save_figure(fig: Figure, stem: Path) -> list[Path]:
    """Write ``stem.png`` (150 dpi) and ``stem.pdf``, close ``fig`` and return both paths."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_name(stem.name + ".png"), stem.with_name(stem.name + ".pdf")]
    fig.savefig(paths[0], dpi=150, bbox_inches="tight")
    fig.savefig(paths[1], bbox_inches="tight")
    plt.close(fig)  # a no-op for figures not made through pyplot
    return paths
