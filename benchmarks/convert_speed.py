"""Time and memory of converting a full-size NVIDIA pickle (what `jojogan convert` / `--base MODEL.pkl` cost).

A seeded 1024 px network in stylegan2-ada-pytorch's format (channel base 32768 as NVIDIA's FFHQ/MetFaces
models: G, G_ema and D, about 360 MB, the size of NVIDIA's ffhq.pkl) is written by the tests' writer, then a
fresh process reads it as data, maps it and saves the .safetensors; its wall time and peak RSS are reported.

    PYTHONPATH=tests python benchmarks/convert_speed.py [--size 1024] [--json]
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import arg_parser, machine

_CHILD = """
import sys, time
from jojogan.convert import convert_network_pickle, save_converted
start = time.perf_counter()
conversion = convert_network_pickle(sys.argv[1])
read = time.perf_counter() - start
save_converted(conversion, sys.argv[2])
print(read, time.perf_counter() - start)
"""


def main() -> None:
    parser = arg_parser(__doc__)
    parser.add_argument("--size", type=int, default=1024)
    args = parser.parse_args()
    from nvidia_records import build_networks, dumps

    channels = {2**i: min(32768 // 2**i, 512) for i in range(2, args.size.bit_length())}
    with tempfile.TemporaryDirectory() as folder:
        source, target = Path(folder) / "model.pkl", Path(folder) / "model.safetensors"
        source.write_bytes(dumps(build_networks(size=args.size, z_dim=512, n_mlp=8, channels=channels)))
        started = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", _CHILD, source, target], check=True, capture_output=True)
        wall = time.perf_counter() - started
        read_s, total_s = map(float, out.stdout.split())
        result = {
            "benchmark": "convert_speed",
            "size": args.size,
            "pickle_mb": round(source.stat().st_size / 1e6, 1),
            "converted_mb": round(target.stat().st_size / 1e6, 1),
            "read_and_map_s": round(read_s, 2),
            "read_map_save_s": round(total_s, 2),
            "process_wall_s": round(wall, 2),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
            **machine(),
        }
    if not args.json:
        print(f"{result['pickle_mb']} MB pickle: read and mapped in {read_s:.2f} s, saved by {total_s:.2f} s")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
