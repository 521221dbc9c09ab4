"""One display label per model, the same in every table, figure, legend and report page.

A universal sweep point reads ``M3GNet · e_cut 0.01 · lr 1e-3 · bs 128``; an alloy model
``MACE · MoWS2 · transfer · e_cut 1e6 · split 80-10-10`` (``· 25 %`` of the training materials
for a learning-curve point). Inside a table whose columns already name the family or the
cutoff, the same function leaves those parts out. Paths are read by :func:`mlff2d.layout.model_parts`;
a family's name is its FamilySpec label.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from mlff2d.layout import model_parts

SEP = " · "


class _FamilyNames(Mapping[str, str]):
    """Family name -> display label, read from the family registry (and ``baseline``)."""

    def _names(self) -> dict[str, str]:
        from mlff2d.families import discover

        return {**{name: spec.label for name, spec in discover().items()}, "baseline": "baseline"}

    def __getitem__(self, key: str) -> str:
        return self._names()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())


#: The display label of every family (FamilySpec.label), by name.
FAMILY_NAMES: Mapping[str, str] = _FamilyNames()


def number(value: Any) -> str:
    """A swept number as labels print it: ``1e-3``, ``3e-3``, ``0.01``, ``1e6``, ``16``."""
    x = float(value)
    if x.is_integer() and abs(x) < 1e5:
        return str(int(x))
    if x != 0 and (abs(x) < 0.01 or abs(x) >= 1e5):
        mantissa, exponent = f"{x:.2e}".split("e")
        return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"
    return f"{x:.3g}"


def model_label(family: str | None = None, *, dataset: str | None = None, mode: str | None = None, ecut: Any = None,
                lr: Any = None, bs: Any = None, split: str | None = None, frac: Any = None) -> str:
    """The label of a model from its parts; parts given as None are left out, and so are the lr
    and batch size of a one-shot fit (a family without epochs, GAP: they name the point only)."""
    if family and not _trains_in_epochs(family):
        lr = bs = None
    parts = []
    if family:
        parts.append(FAMILY_NAMES.get(family, family))
    if dataset:
        parts.append(dataset)
    if mode:
        parts.append(mode)
    if ecut is not None:
        parts.append(f"e_cut {number(ecut)}")
    if lr is not None:
        parts.append(f"lr {number(lr)}")
    if bs is not None:
        parts.append(f"bs {int(float(bs))}")
    if split:
        parts.append(f"split {split}")
    if frac is not None and float(frac) < 1:
        parts.append(f"{100 * float(frac):.0f} %")
    return SEP.join(parts)


def _trains_in_epochs(family: str) -> bool:
    """Whether ``family`` trains in epochs (its FamilySpec.epochs; True for an unknown name)."""
    from mlff2d.families import discover

    spec = discover().get(family)
    return spec is None or spec.epochs


def label_of(path: str | Path) -> str:
    """:func:`model_label` of a model directory (``baseline`` for the composition baseline)."""
    if Path(str(path)).name == "baseline" or "/baseline/" in f"/{path}/":
        return "composition baseline"
    parts = model_parts(path)
    return model_label(**{k: v for k, v in parts.items() if v is not None})
