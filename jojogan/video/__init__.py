"""Stylizing videos: face tracks, steady codes, sound and timing kept, a flicker and an identity figure.

``stylize_video(pipe, "in.mp4", "out.mp4", "style.safetensors")`` is the entry point
(:mod:`jojogan.video.pipeline`); reading and writing live in :mod:`jojogan.video.io`, the face tracks in
:mod:`jojogan.video.track`, the codes over time in :mod:`jojogan.video.latents`, the flicker measurement
in :mod:`jojogan.video.flicker`, the run's figures (flicker, identity per face track) in
:mod:`jojogan.video.figures`, the resumable chunk store in :mod:`jojogan.video.store`, and a run as
steps that several workers share in :mod:`jojogan.video.chunks`.
"""

from __future__ import annotations

from jojogan.video.io import CONTAINERS, EncodeSettings, VideoError, probe
from jojogan.video.latents import LATENT_MODES
from jojogan.video.pipeline import VideoConfig, VideoResult, stylize_video, video_settings
from jojogan.video.track import TrackConfig

__all__ = [
    "CONTAINERS",
    "LATENT_MODES",
    "EncodeSettings",
    "TrackConfig",
    "VideoConfig",
    "VideoError",
    "VideoResult",
    "probe",
    "stylize_video",
    "video_settings",
]
