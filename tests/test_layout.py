"""The results layout (mlff2d.layout): every pattern reads back what it writes, and no path
pattern or path parser lives anywhere else in the package or the rules."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from mlff2d import layout

WORKFLOW = Path(__file__).resolve().parents[1] / "workflow"
#: What a results path pattern or a parser of one looks like: a labelled segment or a split at "~".
PATH_MARKERS = re.compile(r"(ecut|lr|bs|split|frac)~|split\(\s*['\"]~['\"]")


def test_patterns_read_back() -> None:
    point = layout.SWEEP_POINT.format(family="mace", ecut="1e6", lr="0.01", bs="16")
    assert point == "uff/mace/ecut~1e6/lr~0.01/bs~16"
    assert layout.model_parts(f"results/c/{point}") == {"family": "mace", "split": None, "ecut": "1e6", "lr": "0.01", "bs": "16"}
    repeat = layout.REPEAT_POINT.format(family="m3gnet", split="80-10-10.r1", ecut="0.01", lr="0.003", bs="16")
    assert layout.model_parts(repeat)["split"] == "80-10-10.r1"
    assert layout.model_source(repeat, "80-10-10") == ("m3gnet", layout.UNIVERSAL, "80-10-10.r1")
    assert layout.model_source(point, "90-5-5") == ("mace", layout.UNIVERSAL, "90-5-5")
    alloy = layout.CURVE_MODEL.format(family="mace", dataset="IrRuS2", mode="transfer", ecut="1e6", split="80-10-10", frac="0.25")
    assert layout.model_parts(alloy + "/") == {"family": "mace", "dataset": "IrRuS2", "mode": "transfer", "ecut": "1e6",
                                               "split": "80-10-10", "frac": "0.25"}
    assert layout.model_source(alloy, "90-5-5") == ("mace", "IrRuS2", "80-10-10")
    assert layout.point_label(f"/abs/{point}") == "ecut~1e6/lr~0.01/bs~16"
    assert layout.label_parts("ecut~0.01/lr~0.001/bs~128") == {"ecut": "0.01", "lr": "0.001", "bs": "128"}
    assert layout.alloy_table_parts(layout.ALLOY_TABLE.format(table="table_4_5", split="80-10-10")) == {"table": "table_4_5", "split": "80-10-10"}
    assert layout.sweep_labels({"e_cut": [0.01, 1e6], "lr": [1e-3], "batch_size": [16]}) == ["ecut~0.01/lr~0.001/bs~16", "ecut~1e6/lr~0.001/bs~16"]
    assert layout.fmt_float(1e-4) == "0.0001" and layout.fmt_float(1e6) == "1e6"


@pytest.mark.parametrize("bad", ["uff/mace/ecut~1e6", "alloys/mace/MoWS2/sideways/ecut~1/split~a", "somewhere/else"])
def test_not_a_model_is_named(bad: str) -> None:
    with pytest.raises(ValueError, match="not a model directory"):
        layout.model_parts(bad)


def _python_strings(path: Path) -> list[tuple[int, str]]:
    """The string constants of a module that are not docstrings, with their lines."""
    tree = ast.parse(path.read_text())
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docstrings.add(id(first.value))
    return [(n.lineno, n.value) for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docstrings]


def _smk_code_lines(path: Path) -> list[tuple[int, str]]:
    """The lines of a rules file outside comments and docstrings."""
    out, in_doc = [], False
    for number, line in enumerate(path.read_text().splitlines(), 1):
        stripped = line.strip()
        quotes = stripped.count('"""')
        if in_doc or stripped.startswith('"""'):
            in_doc = (in_doc != (quotes % 2 == 1)) if quotes else in_doc
            continue
        if not stripped.startswith("#"):
            out.append((number, line.split(" #")[0]))
    return out


def test_no_path_pattern_outside_layout() -> None:
    offenders = []
    for path in sorted(WORKFLOW.rglob("*.py")):
        if path.name == "layout.py":
            continue
        offenders += [f"{path.relative_to(WORKFLOW)}:{line}: {text!r}" for line, text in _python_strings(path) if PATH_MARKERS.search(text)]
    for path in sorted((WORKFLOW / "rules").glob("*.smk")):
        offenders += [f"{path.relative_to(WORKFLOW)}:{line}: {text.strip()}" for line, text in _smk_code_lines(path) if PATH_MARKERS.search(text)]
    assert not offenders, "results path patterns outside mlff2d.layout:\n" + "\n".join(offenders)
