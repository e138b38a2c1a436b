"""Smoothing over time: a centred Gaussian on each frame's real timestamp.

A value at frame ``i`` (a landmark, a crop's centre, a W+ code) is replaced by the average of the values at
frames ``j`` of the same run (a face track within one shot), weighted by
``exp(-(t_j - t_i)^2 / (2 sigma^2))`` and cut at three sigmas. The weights use timestamps, not frame
numbers, so a variable-frame-rate video is smoothed over the same span of time everywhere; ``sigma`` is
given in frames of the video's average rate. At a run's ends the window is cut and renormalised (no
padding), so the first and last frames are not pulled towards values that do not exist.
"""

from __future__ import annotations

import numpy as np

__all__ = ["gaussian_weights", "smooth"]


def gaussian_weights(times: np.ndarray, sigma: float) -> np.ndarray:
    """``[n, n]`` row-normalised weights of a centred Gaussian over ``times`` (``[n]``, seconds).

    Args:
        times: timestamps of one run, increasing.
        sigma: the Gaussian's standard deviation in seconds; 0 gives the identity.
    """
    times = np.asarray(times, dtype=np.float64)
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    if sigma == 0 or len(times) < 2:
        return np.eye(len(times))
    offsets = (times[None, :] - times[:, None]) / sigma
    weights = np.exp(-0.5 * offsets**2) * (np.abs(offsets) <= 3.0)
    return weights / weights.sum(axis=1, keepdims=True)


def smooth(values: np.ndarray, times: np.ndarray, sigma: float) -> np.ndarray:
    """``values`` ``[n, ...]`` smoothed along the first axis with :func:`gaussian_weights`.

    Only frames within three sigmas weigh, so a long run is processed in blocks (memory stays linear).
    """
    values = np.asarray(values, dtype=np.float64)
    times = np.asarray(times, dtype=np.float64)
    if len(values) != len(times):
        raise ValueError(f"expected one time per value, got {len(times)} times for {len(values)} values")
    flat = values.reshape(len(values), -1)
    out = np.empty_like(flat)
    block = 256
    for start in range(0, len(values), block):
        stop = min(start + block, len(values))
        lo = np.searchsorted(times, times[start] - 3 * sigma, side="left")
        hi = np.searchsorted(times, times[stop - 1] + 3 * sigma, side="right")
        weights = gaussian_weights(times[lo:hi], sigma)[start - lo : stop - lo]
        out[start:stop] = weights @ flat[lo:hi]
    return out.reshape(values.shape)
