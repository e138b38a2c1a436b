"""Time the README's install command in a fresh clone, as a new user runs it.

    python benchmarks/install_time.py --cache warm --json
    python benchmarks/install_time.py --cache cold --json

The command is read from the README (the first ``bash`` block of "Set up"), so this measures what the README
says. The repository is cloned (committed state only) into a scratch folder that is removed afterwards.
``--cache cold`` gives pip an empty ``PIP_CACHE_DIR``; ``warm`` uses the user's cache as it is. The last
line printed is JSON with ``seconds``, the load average before and after (the machine may be shared), the
CPU model, and ``compiled``: the packages pip built from source (only pure-data or pure-Python sdists may
appear there; a C/C++ build would show up as a long ``Building wheel`` for that package).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def readme_install_command() -> str:
    """The first command of the README's "Set up" section."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Set up", 1)[1]
    return re.search(r"```bash\n(.+?)\n```", section, re.S).group(1).strip()


def cpu_model() -> str:
    for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def timed_install(cache: str) -> dict:
    command = readme_install_command()
    env = dict(os.environ)
    with tempfile.TemporaryDirectory(prefix="jojogan-install-") as scratch:
        clone = Path(scratch) / "jojogan"
        subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
        if cache == "cold":
            env["PIP_CACHE_DIR"] = str(Path(scratch) / "pip-cache")
        load_before = os.getloadavg()
        start = time.perf_counter()
        done = subprocess.run(command, shell=True, cwd=clone, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        load_after = os.getloadavg()
    if done.returncode != 0:
        raise SystemExit(f"install failed ({done.returncode}):\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    built = re.findall(r"Building wheel for (\S+)", done.stdout)
    return {
        "command": command,
        "cache": cache,
        "seconds": round(seconds, 1),
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in load_after],
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "compiled": sorted(set(built)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cache", choices=("warm", "cold"), default="warm")
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    args = parser.parse_args()
    result = timed_install(args.cache)
    if not args.json:
        print(f"{result['cache']} install: {result['seconds']} s on {result['cores']} × {result['cpu']}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
