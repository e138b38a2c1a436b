"""The figures of a finished run: flicker, and the identity of each face track.

Both are measured in one more pass over the input (and the written output) after it is joined, values in,
values out (:func:`measure`):

- **flicker** (:mod:`jojogan.video.flicker`): the warping error of the output against the input's, on
  sampled frame pairs of a downscaled copy; only where the faces are pasted back into the input's frames.
- **identity**: on up to ``most`` frames of each face track, evenly spread, the input face (the crop
  the tracker gave the encoder, at :data:`IDENTITY_CROP` px at most) and the stylized face (its final
  code through both generators, blended and cleaned up as the video's) are compared by the configured
  face-recognition network (:func:`jojogan.identity.identity_score`, as for photos). Per track: every
  score, their min, median and max, and the verdict of the median by the network's published rule
  (threshold and source), plus how many of the sampled frames that rule judges the same person.

Frames that neither figure needs are decoded but never converted to RGB.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from jojogan.identity import FaceRecognizer, identity_score
from jojogan.inversion.align import AlignedFace, align_quad
from jojogan.video import flicker
from jojogan.video.config import DEFAULT_IDENTITY_FRAMES
from jojogan.video.io import Frame, VideoInfo, read_frames
from jojogan.video.track import FaceTrack, Plan

__all__ = [
    "DEFAULT_IDENTITY_FRAMES",
    "IDENTITY_CROP",
    "Samples",
    "identity_line",
    "identity_rows",
    "measure",
    "track_identity",
]

IDENTITY_CROP = 256
"""Largest side of the input crops compared: every recognizer here reads 256 px (dlib) or less (112), and
a 1024 px crop costs about ten times more."""


def identity_rows(track: FaceTrack, most: int) -> list[int]:
    """Rows of ``track`` to measure: every ``ceil(n / most)``-th, from its first frame (at most ``most``)."""
    count = len(track.frames)
    step = max(1, -(-count // most))
    return list(range(0, count, step))


@dataclass
class Samples:
    """What the pass collected: the flicker figures, and the input crop of each sampled face.

    Attributes:
        flicker: per region the warping errors and their ratio (``None``: not measured).
        crops: ``(track, frame)`` -> the input face as the encoder saw it.
    """

    flicker: dict | None = None
    crops: dict[tuple[int, int], AlignedFace] = field(default_factory=dict)


def measure(
    info: VideoInfo,
    plan: Plan,
    output: VideoInfo | None,
    mask_at: Callable[[int], np.ndarray | None],
    *,
    every: int,
    flow_size: int,
    identity_frames: int,
    crop_size: int,
    timed: Callable[[], AbstractContextManager] = contextlib.nullcontext,
) -> Samples:
    """One pass over the input (and ``output``, for flicker) collecting both figures' material.

    Args:
        info, plan: the input video and its face tracks.
        output: the written video, when its frames are the input's with faces pasted back (else ``None``:
            no flicker figure).
        mask_at: the paste mask of a frame (:func:`jojogan.video.flicker.measure`).
        every: flicker on the pairs starting on every ``every``-th frame; 0: no flicker figure.
        flow_size: longer side of the flicker measurement.
        identity_frames: frames sampled per face track for identity; 0: none.
        crop_size: side of the face crops.
        timed: a context each identity crop is made in (e.g. a stage timer, so that the crops count as
            identity's cost rather than flicker's).
    """
    wanted = _identity_faces(plan, identity_frames)
    flickers = output is not None and every > 0
    if not wanted and not flickers:
        return Samples()

    def pick(index: int) -> bool:
        return index in wanted or (flickers and flicker.measured(index, every))

    samples = Samples()
    frames = read_frames(info, table=plan.table, pick=pick)
    source = _collecting(frames, wanted, samples, crop_size, timed)
    if not flickers:
        for _ in source:
            pass
        return samples
    made = read_frames(output, pick=pick)
    pairs = ((s.image, m.image, s.index) for s, m in zip(source, made, strict=False))
    samples.flicker = flicker.measure(pairs, plan.shots, mask_at, flow_size, every)
    for _ in source:  # faces sampled after the output's last frame
        pass
    return samples


def _identity_faces(plan: Plan, most: int) -> dict[int, list[tuple[FaceTrack, int]]]:
    """frame -> the sampled faces on it, as (track, row)."""
    wanted: dict[int, list[tuple[FaceTrack, int]]] = {}
    if most <= 0:
        return wanted
    for track in plan.tracks:
        for row in identity_rows(track, most):
            wanted.setdefault(int(track.frames[row]), []).append((track, row))
    return wanted


def _collecting(frames: Iterator[Frame], wanted, samples: Samples, size: int, timed) -> Iterator[Frame]:
    """``frames``, cropping the sampled faces of each on the way (the crop of inversion)."""
    for frame in frames:
        for track, row in wanted.get(frame.index, ()):
            with timed():
                crop = align_quad(
                    frame.image, track.quads[row], track.landmarks[row], size, face_index=track.track
                )
            samples.crops[(track.track, frame.index)] = crop
        yield frame


def track_identity(
    plan: Plan,
    crops: dict[tuple[int, int], AlignedFace],
    styled: dict[tuple[int, int], Image.Image],
    recognizer: FaceRecognizer,
) -> list[dict]:
    """Per face track: the sampled frames' scores, their min, median and max, and the verdict.

    Args:
        plan: the face tracks.
        crops: ``(track, frame)`` -> the input face (:class:`Samples`).
        styled: ``(track, frame)`` -> the stylized face of the same frame.
        recognizer: the network that judges.

    Returns:
        One record per track with samples: ``track``, ``shot``, ``frames``, ``similarities``, ``min``,
        ``median``, ``max``, ``same_person_frames`` and ``verdict`` (the median judged by the network's
        rule: ``network``, ``similarity``, ``threshold``, ``same_person``, ``metric``, ``source``).
    """
    records = []
    for track in plan.tracks:
        keys = sorted(key for key in crops if key[0] == track.track)
        if not keys:
            continue
        scores = [identity_score(crops[key].image, styled[key], recognizer) for key in keys]
        values = [score.similarity for score in scores]
        median = float(np.median(values))
        records.append(
            {
                "track": track.track,
                "shot": track.shot,
                "frames": [frame for _, frame in keys],
                "similarities": values,
                "min": min(values),
                "median": median,
                "max": max(values),
                "same_person_frames": sum(score.same_person for score in scores),
                "verdict": recognizer.verification.judge(recognizer.name, median).to_dict(),
            }
        )
    return records


def identity_line(records: Sequence[dict]) -> str:
    """The identity records as one line: each track's verdict with the median, min and max of its sampled
    frames' scores, then the network's rule and where its threshold comes from."""
    if not records:
        return "identity: no face track was sampled"
    rule = records[0]["verdict"]
    side = "cosine at or above" if rule["metric"] == "cosine" else "distance below"
    tracks = "; ".join(
        f"track {r['track']} {'same person' if r['verdict']['same_person'] else 'not the same person'}, "
        f"median {r['median']:.3f} (min {r['min']:.3f}, max {r['max']:.3f}, {len(r['frames'])} frames)"
        for r in records
    )
    return (
        f"identity ({rule['network']}): {tracks} [same person at {side} {rule['threshold']:g}; "
        f"threshold: {rule['source']}]"
    )
