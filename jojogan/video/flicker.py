"""Flicker: the warping error of Lai et al. (ECCV 2018), relative to the input video's own.

For consecutive frames ``t`` and ``t + 1`` of one shot, optical flow is computed on the *input* frames
(OpenCV's DIS flow, preset "medium", on grey frames scaled so that the longer side is ``size`` pixels):
forward ``F`` (t -> t+1) and backward ``B`` (t+1 -> t). A pixel ``x`` is visible in both frames when the
two flows agree (Ruder et al. 2016: ``|F(x) + B(x + F(x))|^2 <= 0.01 (|F(x)|^2 + |B(x + F(x))|^2) + 0.5``).
The output frame ``t + 1`` is warped back onto frame ``t`` along ``F`` and compared with output frame ``t``:

    E_pair = sum_x M(x) |O_t(x) - O_{t+1}(x + F(x))|^2 / sum_x M(x)

with RGB in [0, 1] and ``M`` the visible pixels inside a region. ``E_warp`` is the mean of ``E_pair`` over
the pairs. The same is computed for the input video with the same flow and masks; the figure reported is
their ratio, ``E_warp(output) / E_warp(input)``: 1.0 means the output is as steady as the source; above 1
it flickers more (the source's own error is not zero: flow is imperfect, and noise and light change).

Regions: ``face`` (where the paste mask is at least 0.5) and ``seam`` (where it lies strictly between 0
and 1 - the soft edge of the paste - widened by two pixels at the flow's scale).

Every run measures it, so it is kept cheap: on a downscaled copy (flow and errors at ``size`` =
:data:`DEFAULT_FLOW_SIZE` = 256 px on the longer side; Lai et al. measure at full size) and on sampled
pairs (``every`` = :data:`DEFAULT_EVERY`: the pairs that start on every 4th frame). Both are settings
(``VideoConfig.flow_size``, ``flicker_every``: 1 measures every pair). What it costs is in
``benchmarks/video_figures.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "DEFAULT_EVERY",
    "DEFAULT_FLOW_SIZE",
    "FlickerMeter",
    "measure",
    "measured",
    "occlusion_mask",
    "regions_from_mask",
    "warp",
]

DEFAULT_FLOW_SIZE = 256
"""Longer side, in pixels, at which flow and errors are computed."""

DEFAULT_EVERY = 4
"""The pairs measured: those whose first frame's index is a multiple of this."""


def measured(index: int, every: int) -> bool:
    """Whether frame ``index`` belongs to a measured pair (as its first or its second frame)."""
    return every == 1 or index % every in (0, 1)


def _cv2():
    import cv2

    return cv2


def _grey(image: np.ndarray) -> np.ndarray:
    return _cv2().cvtColor(image, _cv2().COLOR_RGB2GRAY)


def _flow(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """DIS optical flow ``[h, w, 2]`` from grey ``first`` to ``second`` (pixels, x then y)."""
    dis = _cv2().DISOpticalFlow_create(_cv2().DISOPTICAL_FLOW_PRESET_MEDIUM)
    return dis.calc(first, second, None)


def warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """``image`` sampled at ``x + flow(x)`` (bilinear, edges replicated): frame t+1 brought onto frame t."""
    cv2 = _cv2()
    height, width = flow.shape[:2]
    grid_x, grid_y = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    return cv2.remap(
        image, grid_x + flow[..., 0], grid_y + flow[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )


def occlusion_mask(forward: np.ndarray, backward: np.ndarray) -> np.ndarray:
    """``[h, w]`` bool: pixels whose forward flow the backward flow undoes (visible in both frames)."""
    height, width = forward.shape[:2]
    grid_x, grid_y = np.meshgrid(np.arange(width), np.arange(height))
    inside = (
        (grid_x + forward[..., 0] >= 0)
        & (grid_x + forward[..., 0] <= width - 1)
        & (grid_y + forward[..., 1] >= 0)
        & (grid_y + forward[..., 1] <= height - 1)
    )
    back = warp(backward, forward)
    mismatch = np.sum((forward + back) ** 2, axis=-1)
    bound = 0.01 * (np.sum(forward**2, axis=-1) + np.sum(back**2, axis=-1)) + 0.5
    return inside & (mismatch <= bound)


def regions_from_mask(mask: np.ndarray) -> dict[str, np.ndarray]:
    """The ``face`` and ``seam`` regions (bool ``[h, w]``) of a paste mask ``[h, w]`` in [0, 1]."""
    cv2 = _cv2()
    band = ((mask > 0.0) & (mask < 1.0)).astype(np.uint8)
    band = cv2.dilate(band, np.ones((5, 5), np.uint8)) > 0
    return {"face": mask >= 0.5, "seam": band}


@dataclass
class _Sums:
    output: list[float] = field(default_factory=list)
    input: list[float] = field(default_factory=list)


@dataclass
class FlickerMeter:
    """Accumulates the warping error of consecutive frame pairs (see the module docstring).

    Attributes:
        size: longer side at which flow and errors are computed.
    """

    size: int = DEFAULT_FLOW_SIZE
    _sums: dict[str, _Sums] = field(default_factory=dict)

    def scale(self, image: np.ndarray) -> np.ndarray:
        """``image`` (RGB or a mask) scaled so that its longer side is at most :attr:`size`."""
        height, width = image.shape[:2]
        factor = min(1.0, self.size / max(height, width))
        if factor == 1.0:
            return image
        shape = (max(int(round(width * factor)), 1), max(int(round(height * factor)), 1))
        return _cv2().resize(image, shape, interpolation=_cv2().INTER_AREA)

    def add(
        self,
        inputs: tuple[np.ndarray, np.ndarray],
        outputs: tuple[np.ndarray, np.ndarray],
        mask: np.ndarray | None,
    ) -> None:
        """One pair: input frames t and t+1, output frames t and t+1 (RGB uint8, same size) and the paste
        mask of frame t (``[h, w]`` in [0, 1], full size), or ``None`` when frame t has no face."""
        if mask is None or not np.any(mask > 0):
            return
        first, second = (self.scale(x) for x in inputs)
        forward = _flow(_grey(first), _grey(second))
        backward = _flow(_grey(second), _grey(first))
        visible = occlusion_mask(forward, backward)
        regions = regions_from_mask(self.scale(mask.astype(np.float32)))
        images = {"input": (first, second), "output": tuple(self.scale(x) for x in outputs)}
        errors = {}
        for which, (now, after) in images.items():
            difference = now.astype(np.float32) / 255 - warp(after, forward).astype(np.float32) / 255
            errors[which] = np.sum(difference**2, axis=-1)
        for name, region in regions.items():
            weight = region & visible
            if weight.sum() == 0:
                continue
            sums = self._sums.setdefault(name, _Sums())
            sums.output.append(float(errors["output"][weight].mean()))
            sums.input.append(float(errors["input"][weight].mean()))

    def result(self) -> dict[str, dict[str, float | int | None]]:
        """Per region: mean warping error of the output and of the input, their ratio, pairs counted."""
        report = {}
        for name in ("face", "seam"):
            sums = self._sums.get(name, _Sums())
            out = float(np.mean(sums.output)) if sums.output else None
            src = float(np.mean(sums.input)) if sums.input else None
            ratio = out / src if out is not None and src else None
            report[name] = {"output": out, "input": src, "ratio": ratio, "pairs": len(sums.output)}
        return report


def measure(
    pairs: Iterable[tuple[np.ndarray, np.ndarray, int]],
    shots: np.ndarray,
    mask_at: Callable[[int], np.ndarray | None],
    size: int = DEFAULT_FLOW_SIZE,
    every: int = 1,
) -> dict[str, dict[str, float | int | None]]:
    """The flicker figures of a whole video.

    Args:
        pairs: ``(input_frame, output_frame, frame_index)`` in order (RGB uint8, display orientation);
            frames in no measured pair (:func:`measured`) may come without pixels.
        shots: ``[n_frames]`` shot of every frame (pairs across a cut are skipped).
        mask_at: the paste mask of a frame (``[h, w]`` in [0, 1]) or ``None`` without faces.
        size: longer side of the flow.
        every: measure the pairs whose first frame's index is a multiple of ``every``.
    """
    meter = FlickerMeter(size)
    previous = None
    for source, output, index in pairs:
        first = previous is not None and previous[2] == index - 1 and previous[2] % every == 0
        if first and shots[previous[2]] == shots[index]:
            meter.add((previous[0], source), (previous[1], output), mask_at(previous[2]))
        previous = (source, output, index)
    return meter.result()
