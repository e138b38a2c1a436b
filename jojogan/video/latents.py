"""The codes that draw each frame's face, and the face's colour, made steady over time.

Every frame's face is inverted on its own (its *raw* code, W+ ``[n_latent, style_dim]``); what the
generator then draws depends on the latent mode:

- ``smooth`` (default): the raw codes of one face track (one person within one shot) smoothed over time
  with a centred Gaussian of ``code_sigma`` frames (:mod:`jojogan.video.smoothing`). Expressions and head
  turns still come through; the frame-to-frame jitter of the encoder does not.
- ``shot``: one code per track, the mean of its raw codes, as the one-code-per-clip stylizers do
  (VToonify, StyleGANEX): steadiest, but the face keeps one expression for the whole shot.
- ``frame``: the raw codes, for comparison.

Colour matching is never recomputed raw per frame either: the photo's low frequencies under the face
mask (its colour and lighting, :func:`colour_target`) are taken per frame in the aligned frame, smoothed
over the track with the same Gaussian, and given to the stylized face (:func:`match_colour`) before it is
pasted. The paste mask follows the track's smoothed landmarks (:mod:`jojogan.video.track`), so it is
smoothed too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from PIL import Image

from jojogan.inversion.align import AlignedFace
from jojogan.inversion.paste import DEFAULT_COLOUR_SIGMA, face_mask
from jojogan.video.config import LATENT_MODES
from jojogan.video.smoothing import smooth

__all__ = ["COLOUR_SIZE", "LATENT_MODES", "colour_target", "final_codes", "match_colour", "windowed"]

COLOUR_SIZE = 64
"""Side of the aligned frame in which colour is matched (low frequencies need no more)."""


def windowed(
    values: Callable[[Sequence[int]], np.ndarray],
    track_frames: np.ndarray,
    times: np.ndarray,
    frames: Sequence[int],
    sigma: float,
) -> np.ndarray:
    """Values of ``frames`` of one track smoothed over time, reading only the frames within 3 sigmas.

    Args:
        values: returns the raw values ``[k, ...]`` of the given frames of the track.
        track_frames: ``[n]`` every frame of the track (consecutive).
        times: ``[n_video_frames]`` every frame's timestamp (seconds).
        frames: the frames wanted (all in the track).
        sigma: Gaussian width in seconds.
    """
    first, last = int(track_frames[0]), int(track_frames[-1])
    lo = int(np.searchsorted(times, times[min(frames)] - 3 * sigma, side="left"))
    hi = int(np.searchsorted(times, times[max(frames)] + 3 * sigma, side="right"))
    window = list(range(max(lo, first), min(hi - 1, last) + 1))
    smoothed = smooth(np.asarray(values(window), dtype=np.float64), times[window], sigma)
    return smoothed[[f - window[0] for f in frames]]


def final_codes(
    mode: str,
    raw: Callable[[Sequence[int]], torch.Tensor],
    track_frames: np.ndarray,
    times: np.ndarray,
    frames: Sequence[int],
    sigma: float,
) -> torch.Tensor:
    """The codes that draw ``frames`` of one track.

    Args:
        mode: one of :data:`LATENT_MODES`.
        raw: returns the raw codes ``[k, n_latent, style_dim]`` of the given frames of the track.
        track_frames, times, frames, sigma: as for :func:`windowed` (``sigma`` is used by ``smooth``).

    Returns:
        ``[len(frames), n_latent, style_dim]`` float32.
    """
    if mode not in LATENT_MODES:
        raise ValueError(f"latent mode must be one of {', '.join(LATENT_MODES)}, got {mode!r}")
    frames = list(frames)
    if mode == "frame":
        return raw(frames).float()
    if mode == "shot":
        mean = _track_mean(raw, track_frames)
        return mean.expand(len(frames), *mean.shape[1:]).clone()
    smoothed = windowed(lambda f: raw(f).double().numpy(), track_frames, times, frames, sigma)
    return torch.from_numpy(smoothed).float()


def _track_mean(raw: Callable[[Sequence[int]], torch.Tensor], track_frames: np.ndarray) -> torch.Tensor:
    """Mean raw code of a whole track, ``[1, n_latent, style_dim]``, read in blocks."""
    total, count = None, 0
    for start in range(0, len(track_frames), 256):
        block = raw([int(f) for f in track_frames[start : start + 256]]).double()
        total = block.sum(0) if total is None else total + block.sum(0)
        count += len(block)
    return (total / count).float()[None]


def _masked_low_pass(image: np.ndarray, weight: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian average of ``image`` ``[h, w, 3]`` over the pixels where ``weight`` ``[h, w]`` is high."""
    import scipy.ndimage  # here: every command imports this module for its options, few need the filter

    num = scipy.ndimage.gaussian_filter(image * weight[..., None], (sigma, sigma, 0), mode="nearest")
    den = scipy.ndimage.gaussian_filter(weight, sigma, mode="nearest")[..., None]
    return num / np.maximum(den, 1e-6)


def _small(image: Image.Image) -> np.ndarray:
    resized = image.convert("RGB").resize((COLOUR_SIZE, COLOUR_SIZE), Image.Resampling.BOX)
    return np.asarray(resized, dtype=np.float32)


def colour_target(crop: AlignedFace) -> np.ndarray:
    """The input face's colour and lighting: ``[COLOUR_SIZE, COLOUR_SIZE, 3]`` float32, its low
    frequencies under the face mask in the aligned frame (0-255)."""
    weight = face_mask(crop, COLOUR_SIZE)
    return _masked_low_pass(_small(crop.image), weight, DEFAULT_COLOUR_SIGMA * COLOUR_SIZE).astype(np.float32)


def match_colour(styled: Image.Image, face: AlignedFace, target: np.ndarray) -> Image.Image:
    """Give a stylized face (aligned frame) the low frequencies ``target`` of the photo under its mask.

    The difference of the two low-pass images is computed at :data:`COLOUR_SIZE` and added, scaled up
    bilinearly, to the face at its own size: the face's detail stays, its colour and shading follow the
    photo.
    """
    weight = face_mask(face, COLOUR_SIZE)
    own = _masked_low_pass(_small(styled), weight, DEFAULT_COLOUR_SIGMA * COLOUR_SIZE)
    shift = (target - own).astype(np.float32)
    side = styled.size[0]
    channels = [
        np.asarray(Image.fromarray(shift[..., c], mode="F").resize((side, side), Image.Resampling.BILINEAR))
        for c in range(3)
    ]
    out = np.asarray(styled.convert("RGB"), dtype=np.float32) + np.stack(channels, axis=-1)
    return Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8))
