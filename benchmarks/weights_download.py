"""Weights manager overheads: a verified download from a 127.0.0.1 mirror, and the cache checks.

    python benchmarks/weights_download.py --mb 256 --json

A temporary file of ``--mb`` MB is served on 127.0.0.1 behind ``JOJOGAN_WEIGHTS_MIRROR`` and fetched with
``jojogan.weights.download`` (Range-capable downloader, sha256 check, atomic move). The last line printed is
JSON with ``download_s`` and ``download_mb_per_s`` (the local network is not the limit: this is the
manager's own cost), ``sha256_mb_per_s`` (so the one-off check of e4e's 1.2 GB is 1201.6 / that seconds),
``cached_check_ms`` (what every later ``resolve_weights`` pays: a stat and the record) and ``rehash_s``
(``jojogan weights verify``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import tempfile
import threading
import time
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from jojogan import weights as manager
from jojogan.fileio import file_sha256


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mb", type=int, default=256, help="size of the served file in MB")
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        served = root / "served"
        served.mkdir()
        data = os.urandom(args.mb * 1_000_000)
        (served / "bench.bin").write_bytes(data)
        entry = manager.WeightsEntry(
            "bench", "bench.bin", "benchmark file", "-", len(data), hashlib.sha256(data).hexdigest()
        )
        del data
        handler = partial(SimpleHTTPRequestHandler, directory=str(served))
        handler.log_message = lambda *a: None
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        os.environ["JOJOGAN_HOME"] = str(root / "cache")
        os.environ["JOJOGAN_WEIGHTS_MIRROR"] = f"http://127.0.0.1:{httpd.server_address[1]}"
        os.environ.pop("JOJOGAN_OFFLINE", None)

        start = time.perf_counter()
        manager.download(entry, progress=False)
        download_s = time.perf_counter() - start
        start = time.perf_counter()
        file_sha256(served / "bench.bin")
        sha_s = time.perf_counter() - start
        start = time.perf_counter()
        for _ in range(100):
            assert manager.check_cached(entry).state == "verified"
        cached_ms = (time.perf_counter() - start) * 10
        start = time.perf_counter()
        manager.check_cached(entry, rehash=True)
        rehash_s = time.perf_counter() - start
        httpd.shutdown()

    result = {
        "benchmark": "weights_download",
        "mb": args.mb,
        "download_s": round(download_s, 3),
        "download_mb_per_s": round(args.mb / download_s, 1),
        "sha256_mb_per_s": round(args.mb / sha_s, 1),
        "cached_check_ms": round(cached_ms, 3),
        "rehash_s": round(rehash_s, 3),
    }
    if not args.json:
        for key, value in result.items():
            print(f"{key:>20}: {value}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
