"""House tooling: ruff lint and format hold for the whole repository."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(
    importlib.util.find_spec("ruff") is None, reason="ruff not installed: pip install -e '.[test]'"
)
@pytest.mark.parametrize("args", [["check", "."], ["format", "--check", "."]], ids=["lint", "format"])
def test_ruff(args):
    result = subprocess.run([sys.executable, "-m", "ruff", *args], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


PRODUCT_PACKAGES = ("jojogan", "stylegan2", "inversion", "op")
MAX_UNIT_LINES = 60
MAX_PIPELINE_LINES = 250


def _units():
    """Every function of the product packages with its length in lines (its def line to its last)."""
    import ast

    for package in PRODUCT_PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    yield path.relative_to(REPO), node


def test_units_stay_short_and_the_pipeline_small():
    """No function over 60 lines (split it into named steps), and the JoJoGAN class within 250."""
    import ast

    long = [
        f"{path}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for path, node in _units()
        if not isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno + 1 > MAX_UNIT_LINES
    ]
    assert long == []
    (pipeline,) = [node for path, node in _units() if path.name == "api.py" and node.name == "JoJoGAN"]
    assert pipeline.end_lineno - pipeline.lineno + 1 <= MAX_PIPELINE_LINES
