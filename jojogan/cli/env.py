"""``jojogan env``: versions, devices and the active op implementation."""

from __future__ import annotations

import json
import platform
import sys

import click

from jojogan import __version__


def environment_report() -> dict[str, str]:
    """Versions, devices and the active op implementation, as shown by ``jojogan env``."""
    import numpy
    import torch

    from jojogan.op import memory_report, ops_report

    report = {
        "jojogan": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "cuda available": str(torch.cuda.is_available()),
        "cuda (torch build)": str(torch.version.cuda),
        "mps available": str(
            getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
        ),
        "cpu threads": str(torch.get_num_threads()),
    }
    if torch.cuda.is_available():
        report["gpu"] = torch.cuda.get_device_name(0)
    for name in ("dlib", "safetensors", "PIL"):
        try:
            module = __import__(name)
            report[name] = getattr(module, "__version__", getattr(module, "DLIB_VERSION", "installed"))
        except ImportError:
            report[name] = "not installed"
    report.update(ops_report())
    report["cpu memory"] = memory_report()
    report.update(weights_report())
    return report


def weights_report() -> dict[str, str]:
    """The weights cache folder and what it holds (``jojogan weights list`` has the details)."""
    from jojogan.weights import REGISTRY, cache_dir, cached_path, check_cached, format_size

    held = []
    for entry in REGISTRY.values():
        if cached_path(entry).is_file():
            status = check_cached(entry)
            held.append(f"{entry.name} ({format_size(status.path.stat().st_size)}, {status.state})")
    return {"weights cache": str(cache_dir()), "weights cached": ", ".join(held) or "none"}


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def env(as_json: bool) -> None:
    """Show versions, devices and which op implementation is active and why."""
    report = environment_report()
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    width = max(len(k) for k in report)
    for key, value in report.items():
        click.echo(f"{key:<{width}}  {value}")
