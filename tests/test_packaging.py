"""One distribution, sub-packages under ``jojogan`` only, for both install modes."""

from __future__ import annotations

import importlib
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

import jojogan
from jojogan.cli import main as cli

REPO = Path(__file__).resolve().parents[1]
SUBPACKAGES = {"jojogan.op": "op", "jojogan.stylegan2": "stylegan2", "jojogan.inversion": "inversion"}


def test_installed_subpackages_map_to_the_top_level_folders():
    for name, folder in SUBPACKAGES.items():
        module = importlib.import_module(name)
        assert Path(module.__file__).resolve().parent == REPO / folder, name
    assert Path(jojogan.__file__).resolve().parent == REPO / "jojogan"


@pytest.mark.slow
def test_wheel_puts_everything_under_jojogan(tmp_path):
    """``pip install .`` installs the wheel built here: check its file list."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            ".",
        ],
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("jojogan-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top_levels = {n.split("/")[0] for n in names}
    assert {t for t in top_levels if not t.endswith(".dist-info")} == {"jojogan"}
    for folder in ("op", "stylegan2", "inversion"):
        assert f"jojogan/{folder}/__init__.py" in names
    assert "jojogan/op/upfirdn2d.py" in names
    # the CUDA sources travel with the package: they are compiled on the user's machine
    assert {
        "jojogan/op/csrc/upfirdn2d.cu",
        "jojogan/op/csrc/fused_bias_act.cu",
        "jojogan/op/csrc/ops.cpp",
    } <= set(names)
    assert "jojogan/cli/__init__.py" in names and "jojogan/cli/_options.py" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "jojogan = jojogan.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_cli_env_reports_ops():
    result = CliRunner().invoke(cli, ["env", "--json"])
    assert result.exit_code == 0, result.output
    assert '"ops[cpu]": "ref' in result.output
    assert jojogan.__version__ in result.output


def test_python_dash_m_runs_the_cli():
    result = subprocess.run(
        [sys.executable, "-m", "jojogan", "--version"], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == f"jojogan, version {jojogan.__version__}"


def test_the_version_has_one_owner():
    """pyproject reads the version from ``jojogan.__version__``; the installed metadata agrees."""
    import importlib.metadata

    tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11")
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "jojogan.__version__"}
    assert importlib.metadata.version("jojogan") == jojogan.__version__


def _check_export_table(module, extra: tuple[str, ...] = ()) -> None:
    """``__all__`` is the lazy ``_EXPORTS`` table (and ``extra``), the static analysers' eager imports are
    that table, and every name resolves to its owner's object (a function named like its module,
    ``jojogan.op.upfirdn2d``, to the function)."""
    import ast

    assert module.__all__ == sorted([*module._EXPORTS, *extra])
    tree = ast.parse(Path(module.__file__).read_text())
    (block,) = [n for n in tree.body if isinstance(n, ast.If) and ast.unparse(n.test) == "TYPE_CHECKING"]
    eager = {alias.name: node.module for node in block.body for alias in node.names}
    assert eager == module._EXPORTS
    for name, owner in module._EXPORTS.items():
        value = getattr(importlib.import_module(owner), name)  # the owner first: it may share the name
        assert getattr(module, name) is value, name


def test_public_names_are_the_export_table():
    _check_export_table(jojogan, extra=("__version__",))


@pytest.mark.parametrize(
    "package",
    [
        "jojogan.op",
        "jojogan.stylegan2",
        "jojogan.inversion",
        "jojogan.cleanup",
        "jojogan.video",
        "jojogan.identity",
    ],
)
def test_a_lazy_package_exports_its_table(package):
    _check_export_table(importlib.import_module(package))


# Processes that never compute: the command line's help and argument errors, the dlib alignment (video
# tracking workers and Ray's alignment actors import these modules) and Ray's drivers. torch costs each of
# them 1.5 CPU-s (`jojogan --help` took 2 s).
TORCH_FREE_MODULES = (
    "jojogan.config",
    "jojogan.inversion.align",
    "jojogan.video.track",
    "jojogan.video.config",
    "jojogan.identity.registry",
    "jojogan.batch",
    "jojogan.batch.job",
    "jojogan.batch.ray_cleanup",
    "jojogan.batch.ray_engine",
    "jojogan.cli",
)


def test_processes_that_never_compute_do_not_import_torch():
    """One fresh interpreter imports each module in turn, then shows the command line's version, each
    command's help and a usage error, and names the steps after which torch (or its compiler,
    torch._dynamo) is loaded; the first one named is the one that pulled it in."""
    code = (
        "import importlib, sys\n"
        "from click.testing import CliRunner\n"
        "def show(step):\n"
        "    print(step, *[m for m in ('torch', 'torch._dynamo') if m in sys.modules])\n"
        f"for name in {TORCH_FREE_MODULES!r}:\n"
        "    importlib.import_module(name)\n"
        "    show(name)\n"
        "from jojogan.cli import main\n"
        "calls = [['--version'], *([name, '--help'] for name in sorted(main.commands)), ['stylize']]\n"
        "for args in calls:\n"
        "    CliRunner().invoke(main, args)\n"
        "    show('jojogan:' + ':'.join(args))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    lines = [line.split() for line in result.stdout.splitlines()]
    assert [line[0] for line in lines[: len(TORCH_FREE_MODULES)]] == list(TORCH_FREE_MODULES)
    assert {"jojogan:--version", "jojogan:stylize:--help", "jojogan:video:--help", "jojogan:stylize"} <= {
        line[0] for line in lines
    }
    assert [line for line in lines if len(line) > 1] == []
