"""One display label per model, the same in every table, figure, legend and report page.

A universal sweep point reads ``M3GNet · e_cut 0.01 · lr 1e-3 · bs 128``; an alloy model
``MACE · MoWS2 · transfer · e_cut 1e6 · split 80-10-10`` (``· 25 %`` of the training materials
for a learning-curve point). Inside a table whose columns already name the family or the
cutoff, the same function leaves those parts out. Paths are read by :func:`model_parts`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

FAMILY_NAMES = {"m3gnet": "M3GNet", "mace": "MACE", "nequip": "NequIP", "baseline": "baseline"}
SEP = " · "
_POINT = re.compile(r"(?:^|/)uff/(?P<family>[^/]+)/(?:split~(?P<split>[^/]+)/)?ecut~(?P<ecut>[^/]+)/lr~(?P<lr>[^/]+)/bs~(?P<bs>[^/]+)$")
_ALLOY = re.compile(r"(?:^|/)alloys/(?P<family>[^/]+)/(?P<dataset>[^/]+)/(?P<mode>normal|transfer)/ecut~(?P<ecut>[^/]+)"
                    r"/split~(?P<split>[^/]+)(?:/frac~(?P<frac>[^/]+))?$")


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
    """The label of a model from its parts; parts given as None are left out."""
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


def model_parts(path: str | Path) -> dict[str, str | None]:
    """family, ecut, lr, bs (sweep points) or family, dataset, mode, ecut, split, frac (alloy
    models) of a results path below ``results/<campaign>/``."""
    text = str(path).rstrip("/")
    for pattern in (_POINT, _ALLOY):
        match = pattern.search(text)
        if match:
            return match.groupdict()
    raise ValueError(f"not a model directory: {path} (uff/<family>/ecut~X/lr~Y/bs~Z or alloys/<family>/<dataset>/<mode>/ecut~X/split~Y)")


def label_of(path: str | Path) -> str:
    """:func:`model_label` of a model directory (``baseline`` for the composition baseline)."""
    if Path(str(path)).name == "baseline" or "/baseline/" in f"/{path}/":
        return "composition baseline"
    parts = model_parts(path)
    return model_label(**{k: v for k, v in parts.items() if v is not None})
