"""What the figures of every video run cost: the flicker pass and the identity crops, per frame.

    python benchmarks/video_figures.py --frames 48 --json

Builds the camera-path clip over the shared face photo (``$JOJOGAN_SHARED``), ``--width`` x ``--height``,
tracks it (untimed), and times :func:`jojogan.video.figures.measure` - the pass every ``jojogan video`` run
makes after the output is written: both videos decoded (frames in no measured pair never converted to
RGB), the paste mask of each measured pair's first frame, DIS flow both ways and the warping errors - with
the clip itself standing in for the output (the cost does not depend on what the frames show; the ratio
must then be 1.0, which the JSON records as a check). Settings timed: the default (flow at 256 px, one
pair in 4), every pair at 256 px, and every pair at 512 px (what ``--report`` measured before). Identity:
the same pass also cropping ``--identity-frames`` faces of the track at ``--crop-size``, and dlib scoring
those crops (the extra renders of those frames are the generator's cost, ``identity_frames`` faces per
track, not timed here).

The last line printed is JSON: per setting, milliseconds per frame and that as a share of a run at
``--run-fps`` frames per second (10: the issue's GPU goal at 1024 px; a CPU run at 1024 px is about 0.1
frames/s, where every share is 100 times smaller); the CPU model and the load average.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np
from common import arg_parser, camera_clip, cpu_model, emit

from jojogan.identity import identity_score, load_face_recognizer
from jojogan.inversion.align import align_quad, warm_up_detector
from jojogan.inversion.paste import photo_mask
from jojogan.video import figures
from jojogan.video import io as vio
from jojogan.video.track import TrackConfig, analyse


def _geometry(info, plan, size: int) -> dict:
    """Each tracked face's crop geometry (untimed: the product reads it from its chunk store)."""
    geometry = {}
    for frame in vio.read_frames(info, table=plan.table):
        geometry[frame.index] = [
            align_quad(frame.image, t.quads[r], t.landmarks[r], size) for t, r in plan.faces_at(frame.index)
        ]
    return geometry


def _mask_at(geometry: dict, side: int):
    """The paste mask of a frame built as the product builds it: at the flicker measurement's scale."""

    def mask_at(index: int):
        faces = geometry.get(index) or []
        if not faces:
            return None
        return np.maximum.reduce([photo_mask(face, side) for face in faces])

    return mask_at


def _timed(repeats: int, run) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - started)
    return best, result


def main() -> None:
    parser = arg_parser(__doc__)
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--width", type=int, default=960)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--crop-size", type=int, default=1024)
    parser.add_argument("--identity-frames", type=int, default=figures.DEFAULT_IDENTITY_FRAMES)
    parser.add_argument("--run-fps", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    load_before = [round(x, 2) for x in os.getloadavg()]
    warm_up_detector()
    settings = {"default": (4, 256), "every_pair_256": (1, 256), "every_pair_512": (1, 512)}
    rows = {}
    with tempfile.TemporaryDirectory() as folder:
        clip = camera_clip(Path(folder) / "clip.mp4", args.frames, args.width, args.height)
        info = vio.probe(clip)
        stats = vio.ReadStats()
        plan = analyse(vio.read_frames(info, stats=stats), info, TrackConfig(alignment_workers=1), stats)
        geometry = _geometry(info, plan, args.crop_size)
        common = dict(crop_size=min(args.crop_size, figures.IDENTITY_CROP))  # as the product crops
        for name, (every, size) in settings.items():
            seconds, samples = _timed(
                args.repeats,
                lambda e=every, s=size: figures.measure(
                    info,
                    plan,
                    info,
                    _mask_at(geometry, min(args.crop_size, s)),
                    every=e,
                    flow_size=s,
                    identity_frames=0,
                    **common,
                ),
            )
            rows[name] = _row(seconds, args, every, size, samples.flicker)
        alone, samples = _timed(
            args.repeats,
            lambda: figures.measure(
                info,
                plan,
                None,
                _mask_at(geometry, 256),
                every=0,
                flow_size=256,
                identity_frames=args.identity_frames,
                **common,
            ),
        )
        recognizer = load_face_recognizer("dlib")
        crops = list(samples.crops.values())
        scoring, _ = _timed(
            args.repeats, lambda: [identity_score(c.image, c.image, recognizer) for c in crops]
        )
    emit(
        {
            "benchmark": "video_figures",
            "frames": args.frames,
            "frame_size": [args.width, args.height],
            "tracked_frames": plan.stylized_frames,
            "flicker": rows,
            "identity": {
                "faces_sampled": len(crops),
                "crops_pass_seconds": round(alone, 3),
                "dlib_scoring_seconds": round(scoring, 3),
                "note": "without paste the pass decodes the input only for these crops",
            },
            "run_fps": args.run_fps,
            "cpu": cpu_model(),
            "load_average_before": load_before,
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
        }
    )


def _row(seconds: float, args, every: int, size: int, flicker: dict) -> dict:
    per_frame = seconds / args.frames
    return {
        "every": every,
        "flow_size": size,
        "ms_per_frame": round(1000 * per_frame, 2),
        "share_of_a_run": round(per_frame * args.run_fps, 4),
        "pairs": flicker["face"]["pairs"],
        "ratio_of_the_input_against_itself": flicker["face"]["ratio"],
    }


if __name__ == "__main__":
    main()
