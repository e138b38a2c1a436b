"""Face tracks through a video: detection, association, shot cuts, gaps and smoothing over time.

One pass over the frames (:func:`analyse`) does, per frame:

1. **Shot cuts.** The frame, shrunk to 64 px wide, gives a colour histogram (8 x 8 x 8 RGB bins); the
   Hellinger distance to the previous frame's histogram, ``sqrt(1 - sum(sqrt(p * q)))`` in [0, 1], above
   ``cut_threshold`` (0.5) starts a new shot. A camera move over the same scene stays far below it (under
   0.1 on the test clips), a cut between two scenes lands far above it (0.6 or more), black frames
   against anything are near 1. Every track ends at a cut.
2. **Faces.** dlib's HOG detector with its 68 landmarks (:func:`~jojogan.inversion.align.detect_faces`),
   on every ``detect_every``-th frame and on every shot's first frame. In between, each face is
   followed by the landmark predictor alone, in its box of the frame before moved with the landmarks
   (a fraction of the detector's cost). Runs of frames from one detection to the next depend on no
   other run, so ``alignment_workers`` processes take them in parallel; they come back in order, and
   the tracks are the same for any number of workers.
3. **Association.** A face joins the track whose last box it overlaps most (intersection over union at
   least 0.3) if its landmarks also lie within half an eye distance, on average, of that track's last
   landmarks; else it starts a track. A track missing from more than ``max_gap`` frames ends.

Then each track is cleaned up and smoothed: tracks seen on fewer than ``min_track`` frames (a false
detection flashing for a frame or two) or smaller than ``min_face_size`` are dropped; gaps of at most
``max_gap`` frames inside a track are bridged by linear interpolation of the landmarks; a track is never
carried past its last detection (the frames after it pass through unchanged).

The filter. Each frame's 68 landmarks are split into a *motion* - the least-squares similarity (shift,
turn, scale; Umeyama 1991) that takes the track's mean shape (generalised Procrustes) onto them - and a
*residual* (expression, and the landmarks' own noise). Fitted to all 68 points, the motion averages the
detector's per-point noise away; it is then smoothed over time as STIT (Tzaban et al. 2022) smooths its
crop: a centred Gaussian on the centre (``centre_sigma``) and a wider one on the scaled-rotation vector
(``size_sigma``). The residual is smoothed with ``landmark_sigma``. The crop square is the mean shape's
FFHQ square moved by the smoothed motion (so it does not breathe with the mouth); the landmarks that
shape the paste mask are the mean shape plus the smoothed residual, moved the same way. Gaussians weigh
real timestamps and are renormalised at a track's ends (:mod:`jojogan.video.smoothing`); widths are in
frames of the average rate. Defaults: 0.5 frame on the centre, 1 on the size, 2 on the residual. On the
test clip (a known camera path with hand shake over a photo, 135 px crop squares) the crop corners miss
the true motion by 0.33 px on average with these, 0.41 px without smoothing, and 1.14 px with STIT's
widths (1 and 3 frames), which also smooth away the real shake that the pasted face must follow.

Which tracks are stylized: ``face="largest"``: in each shot the track with the largest total box area
(size times time on screen); an index: in each shot the track at that place counting from the left
(by mean centre); ``"all"``: every track.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from jojogan.errors import JojoganError
from jojogan.inversion.align import (
    MIN_FACE_SIZE,
    FaceDetection,
    detect_faces,
    face_quad,
    landmarks_in_box,
    warm_up_detector,
)
from jojogan.video.io import Frame, FrameTable, ReadStats, VideoInfo
from jojogan.video.smoothing import smooth

__all__ = [
    "AUTO_MIN_FRAMES",
    "AUTO_WORKERS",
    "FaceTrack",
    "Plan",
    "TrackConfig",
    "analyse",
    "colour_histogram",
    "hellinger",
    "observe_run",
    "usable_cpus",
]

log = logging.getLogger("jojogan")

_HIST_WIDTH = 64
_HIST_BINS = 8
_IOU_MIN = 0.3
_LANDMARK_DISTANCE_MAX = 0.5

AUTO_WORKERS = 4
"""Most alignment processes ``alignment_workers=0`` starts (a cap: one video does not take every CPU of a
large machine)."""

AUTO_MIN_FRAMES = 100
"""Shorter videos are tracked in one process when ``alignment_workers=0``: starting the pool (spawned
processes loading dlib's models) took 2.4-6 s on the shared 2-CPU test machine, what tracking 15-40
frames of 960x720 costs there (``benchmarks/video_alignment.py``)."""


@dataclass(frozen=True)
class TrackConfig:
    """Settings of the face tracks (the module docstring describes each step).

    Attributes:
        detect_every: run the detector on every N-th frame (and each shot's first); follow faces with
            the landmark predictor in between.
        detect_scale: shrink frames by this factor for the detector (landmarks still use the full frame);
            ``None``: so that the longer side is at most 720 px.
        upsample: the detector's upsampling (finds faces half as large per step, 4x slower).
        min_face_size: smallest face kept, in pixels (median box side over the track).
        max_gap: frames a track may miss and still be bridged.
        min_track: frames a track must be seen on.
        cut_threshold: histogram distance that starts a new shot.
        centre_sigma, size_sigma, landmark_sigma: Gaussian widths, in frames of the average rate.
        alignment_workers: processes that detect and follow faces (runs of frames from one detection to
            the next go to them in parallel; the tracks are the same for any number); 1: in this
            process; 0: one per CPU but one, at most :data:`AUTO_WORKERS` (see :meth:`workers`). The
            processes are spawned, so a script that asks for them keeps its work under
            ``if __name__ == "__main__":``, as for any ``multiprocessing`` pool.
    """

    detect_every: int = 1
    detect_scale: float | None = None
    upsample: int = 1
    min_face_size: int = MIN_FACE_SIZE
    max_gap: int = 5
    min_track: int = 3
    cut_threshold: float = 0.5
    centre_sigma: float = 0.5
    size_sigma: float = 1.0
    landmark_sigma: float = 2.0
    alignment_workers: int = 1

    def __post_init__(self) -> None:
        for name in ("detect_every", "min_track"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in (
            "upsample", "min_face_size", "max_gap", "centre_sigma", "size_sigma", "landmark_sigma",
            "alignment_workers",
        ):  # fmt: skip
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 < self.cut_threshold <= 1.0:
            raise ValueError(f"cut_threshold must lie in (0, 1], got {self.cut_threshold}")
        if self.detect_scale is not None and not 0.0 < self.detect_scale <= 1.0:
            raise ValueError(f"detect_scale must lie in (0, 1], got {self.detect_scale}")

    def workers(self, frames: int | None = None) -> int:
        """The alignment processes to use for a video of about ``frames`` frames: ``alignment_workers``,
        or for 0 one per usable CPU but one, at most :data:`AUTO_WORKERS` (1, no pool, on a machine with
        one or two CPUs, and for videos shorter than :data:`AUTO_MIN_FRAMES`)."""
        if self.alignment_workers:
            return self.alignment_workers
        if frames is not None and frames < AUTO_MIN_FRAMES:
            return 1
        return max(1, min(AUTO_WORKERS, usable_cpus() - 1))


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity where the system tells it)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@dataclass(frozen=True)
class FaceTrack:
    """One person's face through consecutive frames of one shot, smoothed.

    Attributes:
        track: the track's number (unique in the video).
        shot: the shot it belongs to.
        frames: ``[n]`` frame indices, consecutive.
        landmarks: ``[n, 68, 2]`` smoothed landmarks (continuous coordinates, display orientation).
        quads: ``[n, 4, 2]`` smoothed FFHQ crop squares (QUAD order).
        boxes: ``[n, 4]`` (left, top, width, height) of the faces (interpolated in gaps).
        seen: ``[n]`` whether the face was found on that frame (``False``: a bridged gap).
    """

    track: int
    shot: int
    frames: np.ndarray
    landmarks: np.ndarray
    quads: np.ndarray
    boxes: np.ndarray
    seen: np.ndarray

    @property
    def area(self) -> float:
        """Total box area over the track (size times time on screen)."""
        return float(np.sum(self.boxes[:, 2] * self.boxes[:, 3]))


@dataclass
class Plan:
    """What :func:`analyse` found: the frame table, shots and the face tracks to stylize.

    Attributes:
        table: every good frame's timestamp and duration.
        shots: ``[n_frames]`` shot number of each frame.
        tracks: the selected tracks.
        found: how many tracks were found before selection.
    """

    table: FrameTable
    shots: np.ndarray
    tracks: list[FaceTrack]
    found: int = 0
    _index: dict[int, list[tuple[FaceTrack, int]]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._index = {}
        for track in self.tracks:
            for row, frame in enumerate(track.frames):
                self._index.setdefault(int(frame), []).append((track, row))

    def faces_at(self, frame: int) -> list[tuple[FaceTrack, int]]:
        """The tracks present at ``frame`` with the row of that frame in each."""
        return self._index.get(frame, [])

    @property
    def stylized_frames(self) -> int:
        return len(self._index)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Everything as named arrays (for ``numpy.savez``)."""
        rows = [(t.track, t.shot, f, s) for t in self.tracks for f, s in zip(t.frames, t.seen, strict=True)]
        rows_array = np.asarray(rows, dtype=np.int64).reshape(-1, 4)
        stack = lambda name, shape: (  # noqa: E731
            np.concatenate([getattr(t, name) for t in self.tracks]) if self.tracks else np.zeros(shape)
        )
        return {
            "pts": self.table.pts,
            "durations": self.table.durations,
            "corrupt": np.asarray(self.table.corrupt),
            "seekable": np.asarray(self.table.seekable),
            "shots": self.shots,
            "rows": rows_array,
            "landmarks": stack("landmarks", (0, 68, 2)),
            "quads": stack("quads", (0, 4, 2)),
            "boxes": stack("boxes", (0, 4)),
            "found": np.asarray(self.found),
        }

    @classmethod
    def from_arrays(cls, arrays) -> Plan:
        table = FrameTable(
            arrays["pts"], arrays["durations"], int(arrays["corrupt"]), bool(arrays["seekable"])
        )
        rows = arrays["rows"]
        tracks = []
        for number in dict.fromkeys(rows[:, 0].tolist()):
            pick = rows[:, 0] == number
            tracks.append(
                FaceTrack(
                    track=int(number),
                    shot=int(rows[pick, 1][0]),
                    frames=rows[pick, 2],
                    landmarks=arrays["landmarks"][pick],
                    quads=arrays["quads"][pick],
                    boxes=arrays["boxes"][pick],
                    seen=rows[pick, 3].astype(bool),
                )
            )
        return cls(table, arrays["shots"], tracks, int(arrays["found"]))


# ------------------------------------------------------------------ shot cuts


def colour_histogram(image: np.ndarray) -> np.ndarray:
    """``[512]`` normalised 8 x 8 x 8 RGB histogram of an image shrunk to 64 px wide."""
    height, width = image.shape[:2]
    small_height = max(int(round(height * _HIST_WIDTH / width)), 1)
    small = np.asarray(Image.fromarray(image).resize((_HIST_WIDTH, small_height), Image.Resampling.BOX))
    bins = (small // (256 // _HIST_BINS)).reshape(-1, 3).astype(np.int64)
    codes = (bins[:, 0] * _HIST_BINS + bins[:, 1]) * _HIST_BINS + bins[:, 2]
    counts = np.bincount(codes, minlength=_HIST_BINS**3).astype(np.float64)
    return counts / counts.sum()


def hellinger(p: np.ndarray, q: np.ndarray) -> float:
    """Hellinger distance of two normalised histograms, in [0, 1]."""
    return float(np.sqrt(max(0.0, 1.0 - float(np.sum(np.sqrt(p * q))))))


# ------------------------------------------------------------------ observing faces


@dataclass(frozen=True)
class _Seen:
    box: np.ndarray  # [4] left, top, width, height
    landmarks: np.ndarray  # [68, 2]


def _box_after(previous: _Seen, landmarks: np.ndarray) -> np.ndarray:
    """The previous box moved and scaled as the landmarks moved."""
    before, after = previous.landmarks, landmarks
    scale = np.std(after, axis=0).mean() / max(np.std(before, axis=0).mean(), 1e-6)
    centre = previous.box[:2] + previous.box[2:] / 2 + (after.mean(0) - before.mean(0))
    size = previous.box[2:] * scale
    return np.concatenate([centre - size / 2, size])


def _follow(image: np.ndarray, previous: list[_Seen]) -> list[_Seen]:
    """Each face of the frame before, found again by the landmark predictor alone."""
    followed = []
    for seen in previous:
        landmarks = landmarks_in_box(image, tuple(seen.box))
        followed.append(_Seen(_box_after(seen, landmarks), landmarks))
    return followed


def _detect(image: np.ndarray, config: TrackConfig) -> list[_Seen]:
    scale = config.detect_scale
    if scale is None:
        scale = min(1.0, 720 / max(image.shape[:2]))
    found: list[FaceDetection] = detect_faces(image, upsample=config.upsample, scale=scale)
    return [_Seen(np.asarray(d.box, dtype=np.float64), d.landmarks) for d in found]


def _decisions(frames: Iterable[Frame], config: TrackConfig) -> Iterator[tuple[Frame, bool, bool]]:
    """Each frame with whether it starts a shot and whether the detector runs on it (at a cut and on
    every ``detect_every``-th frame): cheap, and independent of the faces found."""
    previous_hist, since = None, 0
    for frame in frames:
        hist = colour_histogram(frame.image)
        cut = previous_hist is None or hellinger(hist, previous_hist) > config.cut_threshold
        previous_hist = hist
        since += 1
        detect = cut or since >= config.detect_every
        if detect:
            since = 0
        yield frame, cut, detect


def _runs(decided: Iterable[tuple[Frame, bool, bool]]) -> Iterator[list[tuple[Frame, bool]]]:
    """The frames in runs that each start with a detection: a run's faces depend on no other run."""
    run: list[tuple[Frame, bool]] = []
    for frame, cut, detect in decided:
        if detect and run:
            yield run
            run = []
        run.append((frame, cut))
    if run:
        yield run


def observe_run(images: list[np.ndarray], config: TrackConfig) -> list[list[_Seen]]:
    """The faces of one run of frames: detected on the first, followed by the landmark predictor on the
    others (a pool worker's task; module level so that a process pool can call it)."""
    faces = _detect(images[0], config)
    seen = [faces]
    for image in images[1:]:
        if faces:
            faces = _follow(image, faces)
        seen.append(faces)
    return seen


def _observe(
    frames: Iterable[Frame], config: TrackConfig, workers: int = 1
) -> Iterator[tuple[Frame, bool, list[_Seen]]]:
    """Each frame with whether it starts a shot and the faces seen on it.

    With ``workers`` above one, runs of frames (a detection and the frames followed after it)
    go to a pool of processes (dlib holds the GIL, so threads would not help); at most two runs per
    worker wait, so memory stays bounded, and runs come back in order, so the faces are the serial ones.
    """
    runs = _runs(_decisions(frames, config))
    if workers <= 1:
        for run in runs:
            yield from _joined(run, observe_run([f.image for f, _ in run], config))
        return
    try:
        with _pool(workers) as pool:
            pending: deque = deque()
            for run in runs:
                pending.append((run, pool.submit(observe_run, [f.image for f, _ in run], config)))
                if len(pending) >= 2 * workers:
                    run, done = pending.popleft()
                    yield from _joined(run, done.result())
            while pending:
                run, done = pending.popleft()
                yield from _joined(run, done.result())
    except BrokenProcessPool as error:
        raise JojoganError(
            f"an alignment worker process died ({error}); a script that starts them needs its work under "
            "if __name__ == '__main__':, or set alignment_workers=1 (--alignment-workers 1)"
        ) from error


def _joined(run: list[tuple[Frame, bool]], faces: list[list[_Seen]]) -> Iterator[tuple[Frame, bool, list]]:
    for (frame, cut), seen in zip(run, faces, strict=True):
        yield frame, cut, seen


def _pool(workers: int) -> ProcessPoolExecutor:
    """Processes started fresh ("spawn": no copy of a parent's torch threads or open files), each loading
    dlib's models once."""
    return ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=warm_up_detector)


# ------------------------------------------------------------------ association


@dataclass
class _Open:
    number: int
    shot: int
    frames: list[int] = field(default_factory=list)
    faces: list[_Seen] = field(default_factory=list)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    left, top = np.maximum(a[:2], b[:2])
    right, bottom = np.minimum(a[:2] + a[2:], b[:2] + b[2:])
    inter = max(right - left, 0.0) * max(bottom - top, 0.0)
    union = a[2] * a[3] + b[2] * b[3] - inter
    return float(inter / union) if union > 0 else 0.0


def _landmark_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Mean landmark distance in eye distances (of ``b``)."""
    eyes = np.linalg.norm(b[36:42].mean(0) - b[42:48].mean(0))
    return float(np.linalg.norm(a - b, axis=1).mean() / max(eyes, 1e-6))


def _match(open_tracks: list[_Open], faces: list[_Seen]) -> dict[int, int]:
    """Greedy matching face -> open track by overlap, checked by landmarks."""
    pairs = []
    for t, track in enumerate(open_tracks):
        for f, face in enumerate(faces):
            overlap = _iou(track.faces[-1].box, face.box)
            if overlap >= _IOU_MIN and _landmark_distance(track.faces[-1].landmarks, face.landmarks) <= (
                _LANDMARK_DISTANCE_MAX
            ):
                pairs.append((overlap, t, f))
    matched, used = {}, set()
    for _, t, f in sorted(pairs, reverse=True):
        if f not in matched and t not in used:
            matched[f] = t
            used.add(t)
    return matched


def _associate(observed, config: TrackConfig) -> tuple[list[_Open], list[int], list[Frame]]:
    """Tracks of raw observations, the shot of each frame and the frames' (pts, duration) records."""
    finished: list[_Open] = []
    open_tracks: list[_Open] = []
    shots: list[int] = []
    records: list[Frame] = []
    shot, count = -1, 0
    for frame, cut, faces in observed:
        records.append(Frame(frame.index, frame.pts, frame.duration, _NO_IMAGE))
        if cut:
            shot += 1
            finished += open_tracks
            open_tracks = []
        shots.append(shot)
        alive = [t for t in open_tracks if frame.index - t.frames[-1] <= config.max_gap + 1]
        finished += [t for t in open_tracks if t not in alive]
        open_tracks = alive
        matched = _match(open_tracks, faces)
        for f, face in enumerate(faces):
            if f in matched:
                track = open_tracks[matched[f]]
            else:
                track = _Open(count, shot)
                count += 1
                open_tracks.append(track)
            track.frames.append(frame.index)
            track.faces.append(face)
    return finished + open_tracks, shots, records


_NO_IMAGE = np.zeros((0, 0, 3), np.uint8)


# ------------------------------------------------------------------ smoothing and selection


def _filled(track: _Open) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Frames, landmarks, boxes and seen flags with the gaps linearly interpolated."""
    seen_frames = np.asarray(track.frames)
    frames = np.arange(seen_frames[0], seen_frames[-1] + 1)
    landmarks = np.stack([f.landmarks for f in track.faces]).reshape(len(seen_frames), -1)
    boxes = np.stack([f.box for f in track.faces])
    interp = lambda values: np.stack(  # noqa: E731
        [np.interp(frames, seen_frames, values[:, k]) for k in range(values.shape[1])], axis=1
    )
    return frames, interp(landmarks).reshape(-1, 68, 2), interp(boxes), np.isin(frames, seen_frames)


def _similarity(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``[2, 3]`` least-squares similarity (turn, scale, shift) taking ``source`` ``[n, 2]`` onto ``target``
    (Umeyama 1991)."""
    mu_s, mu_t = source.mean(0), target.mean(0)
    src, dst = source - mu_s, target - mu_t
    u, d, vt = np.linalg.svd(dst.T @ src / len(source))
    flip = np.diag([1.0, np.sign(np.linalg.det(u @ vt)) or 1.0])
    linear = u @ flip @ vt * (np.trace(np.diag(d) @ flip) / max(np.mean(np.sum(src**2, axis=1)), 1e-12))
    return np.concatenate([linear, (mu_t - linear @ mu_s)[:, None]], axis=1)


def _apply(transform: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ transform[:, :2].T + transform[:, 2]


def _mean_shape(landmarks: np.ndarray, rounds: int = 3) -> np.ndarray:
    """The track's mean face shape ``[68, 2]`` (generalised Procrustes, in the first frame's place)."""
    reference = landmarks[0]
    for _ in range(rounds):
        reference = np.mean([_apply(_similarity(lm, reference), lm) for lm in landmarks], axis=0)
    return reference


def _smoothed(track: _Open, times: np.ndarray, spf: float, config: TrackConfig) -> FaceTrack:
    """The track with gaps filled, its motion and shape denoised and smoothed over time.

    Each frame's 68 landmarks are split into a similarity motion of the track's mean shape (fitted to
    all 68 points, so one landmark's noise barely moves it) and a residual (expression). The motion's
    centre and its scaled-rotation vector are smoothed with ``centre_sigma`` and ``size_sigma`` (STIT),
    the residual with ``landmark_sigma``; the crop square is the mean shape's FFHQ square moved by the
    smoothed motion, so it does not breathe with the mouth.
    """
    frames, landmarks, boxes, seen = _filled(track)
    t = times[frames]
    mean = _mean_shape(landmarks)
    centre = mean.mean(0)
    motions = np.stack([_similarity(mean, lm) for lm in landmarks])  # [n, 2, 3]
    centres = smooth(np.stack([_apply(m, centre[None])[0] for m in motions]), t, config.centre_sigma * spf)
    axes = smooth(motions[:, :, 0], t, config.size_sigma * spf)  # (s cos a, s sin a)
    residual = np.stack([_apply(_inverse(m), lm) for m, lm in zip(motions, landmarks, strict=True)]) - mean
    shape = mean + smooth(residual, t, config.landmark_sigma * spf)
    quad = face_quad(mean) - centre
    linear = np.stack([np.stack([axes[:, 0], -axes[:, 1]], 1), np.stack([axes[:, 1], axes[:, 0]], 1)], 1)
    moved = lambda points: np.einsum("nij,nkj->nki", linear, points - centre) + centres[:, None]  # noqa: E731
    return FaceTrack(
        track=track.number,
        shot=track.shot,
        frames=frames,
        landmarks=moved(shape),
        quads=np.einsum("nij,kj->nki", linear, quad) + centres[:, None],
        boxes=boxes,
        seen=seen,
    )


def _inverse(transform: np.ndarray) -> np.ndarray:
    linear = np.linalg.inv(transform[:, :2])
    return np.concatenate([linear, (-linear @ transform[:, 2])[:, None]], axis=1)


def _select(tracks: list[FaceTrack], face: str | int) -> list[FaceTrack]:
    if face == "all":
        return tracks
    chosen = []
    for shot in sorted({t.shot for t in tracks}):
        in_shot = [t for t in tracks if t.shot == shot]
        if face == "largest":
            chosen.append(max(in_shot, key=lambda t: t.area))
            continue
        by_x = sorted(in_shot, key=lambda t: float(np.mean(t.boxes[:, 0] + t.boxes[:, 2] / 2)))
        if -len(by_x) <= face < len(by_x):
            chosen.append(by_x[face])
    return sorted(chosen, key=lambda t: t.track)


def analyse(
    frames: Iterable[Frame],
    info: VideoInfo,
    config: TrackConfig,
    stats: ReadStats,
    face: str | int = "largest",
) -> Plan:
    """Find, follow and smooth the faces of a whole video in one pass over its frames.

    Args:
        frames: every frame, in order (:func:`~jojogan.video.io.read_frames` without a table).
        info: the video (its time base, average frame rate and end).
        config: the tracking settings.
        stats: the reader's count of skipped corrupt frames.
        face: which tracks to keep: ``"largest"``, ``"all"`` or an index from the left, per shot.

    Returns:
        The plan; its tracks are the selected ones, in order of their numbers.
    """
    raw, shots, records = _associate(_observe(frames, config, config.workers(info.packets)), config)
    if not records:
        raise JojoganError("the video has no frame that decodes")
    table = FrameTable.build([r.pts for r in records], records[-1].duration, stats.corrupt, info.end_pts)
    times = table.seconds(info.time_base)
    spf = float(1 / info.fps)
    kept = []
    for track in raw:
        sizes = [min(f.box[2], f.box[3]) for f in track.faces]
        if len(track.frames) < config.min_track or np.median(sizes) < config.min_face_size:
            continue
        kept.append(_smoothed(track, times, spf, config))
    dropped = len(raw) - len(kept)
    if dropped:
        log.info("ignoring %d face track(s) seen on fewer than %d frames or smaller than %d px", dropped,
                 config.min_track, config.min_face_size)  # fmt: skip
    return Plan(table, np.asarray(shots, dtype=np.int64), _select(kept, face), found=len(kept))
