"""Face tracking (dlib detection + landmarks) frames/s with 1 and more alignment workers.

    python benchmarks/video_alignment.py --frames 48 --workers 1,2,4 --json

Builds the camera-path clip over the shared face photo (``$JOJOGAN_SHARED``), ``--width`` x ``--height``,
and runs the tracker's one pass (:func:`jojogan.video.track.analyse`, what ``jojogan video`` times as
"tracking") with ``TrackConfig(alignment_workers=N)`` for each N, ``--repeats`` times each (the best is
kept), for ``--detect-every`` 1 (the default: dlib's detector on every frame) and the values given. The
time includes decoding and, for N > 1, starting the pool (spawned processes loading dlib's models), which
is also timed alone. Each run's tracks are compared with the serial run's, array for array.

The last line printed is JSON: per detect-every and worker count, seconds, frames/s (with more than one
worker also with a pool started beforehand, what a long video sees), the speed-up over one worker and
whether the tracks are identical; the pool's start-up; the CPU model, usable CPUs and the load average
before and after (the figures are rough when the load is above the CPU count).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from unittest import mock

import numpy as np
from common import arg_parser, camera_clip, cpu_model, emit

from jojogan.inversion.align import warm_up_detector
from jojogan.video import io as vio
from jojogan.video import track
from jojogan.video.track import TrackConfig, _pool, analyse, usable_cpus


def _track(path: Path, config: TrackConfig) -> tuple[float, dict]:
    info = vio.probe(path)
    stats = vio.ReadStats()
    started = time.perf_counter()
    plan = analyse(vio.read_frames(info, stats=stats), info, config, stats, face="all")
    return time.perf_counter() - started, plan.to_arrays()


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def _pool_start(workers: int) -> float:
    started = time.perf_counter()
    with _pool(workers) as pool:
        list(pool.map(int, range(workers)))  # every worker up (its initializer loads dlib's models)
    return time.perf_counter() - started


class _Warm:
    """A started pool the tracker borrows and leaves running (to time the work without the start)."""

    def __init__(self, workers: int):
        self.pool = _pool(workers)
        list(self.pool.map(int, range(workers)))

    def __enter__(self):
        return self.pool

    def __exit__(self, *exc) -> bool:
        return False


def _warm_track(path: Path, config: TrackConfig, repeats: int) -> float:
    warm = _Warm(config.alignment_workers)
    try:
        with mock.patch.object(track, "_pool", lambda workers: warm):
            return min(_track(path, config)[0] for _ in range(repeats))
    finally:
        warm.pool.shutdown()


def main() -> None:
    parser = arg_parser(__doc__)
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--width", type=int, default=960)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--detect-every", default="1")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    load_before = [round(x, 2) for x in os.getloadavg()]
    warm_up_detector()
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        clip = camera_clip(Path(folder) / "clip.mp4", args.frames, args.width, args.height)
        for every in (int(v) for v in args.detect_every.split(",")):
            rows, serial = {}, None
            for workers in (int(v) for v in args.workers.split(",")):
                config = TrackConfig(detect_every=every, alignment_workers=workers)
                runs = [_track(clip, config) for _ in range(args.repeats)]
                seconds, arrays = min(runs, key=lambda run: run[0])
                serial = arrays if serial is None else serial
                rows[workers] = {
                    "seconds": round(seconds, 3),
                    "frames_per_second": round(args.frames / seconds, 2),
                    "identical_to_serial": _same(arrays, serial),
                }
                if not args.json:
                    print(f"detect every {every}, {workers} worker(s): {rows[workers]}", flush=True)
            first = rows[next(iter(rows))]["seconds"]
            for workers, row in rows.items():
                row["speedup"] = round(first / row["seconds"], 2)
                if workers > 1:  # a pool already started: what a long video sees
                    warm = _warm_track(
                        clip, TrackConfig(detect_every=every, alignment_workers=workers), args.repeats
                    )
                    row["frames_per_second_started_pool"] = round(args.frames / warm, 2)
                    row["speedup_started_pool"] = round(first / warm, 2)
            results[f"detect_every_{every}"] = rows
    starts = {w: _pool_start(w) for w in (int(v) for v in args.workers.split(",")) if w > 1}
    emit(
        {
            "benchmark": "video_alignment",
            "frames": args.frames,
            "frame_size": [args.width, args.height],
            "repeats": args.repeats,
            "results": results,
            "pool_start_seconds": {w: round(t, 2) for w, t in starts.items()},
            "cpu": cpu_model(),
            "usable_cpus": usable_cpus(),
            "load_average_before": load_before,
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
        }
    )


if __name__ == "__main__":
    main()
