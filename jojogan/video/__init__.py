"""Stylizing videos: face tracks, steady codes, sound and timing kept, a flicker and an identity figure.

``stylize_video(pipe, "in.mp4", "out.mp4", "style.safetensors")`` is the entry point
(:mod:`jojogan.video.pipeline`); reading and writing live in :mod:`jojogan.video.io`, the face tracks in
:mod:`jojogan.video.track`, the codes over time in :mod:`jojogan.video.latents`, the flicker measurement
in :mod:`jojogan.video.flicker`, the run's figures (flicker, identity per face track) in
:mod:`jojogan.video.figures`, the resumable chunk store in :mod:`jojogan.video.store`, and a run as
steps that several workers share in :mod:`jojogan.video.chunks`.

The package is lazy (:mod:`jojogan.op.lazy`): the face tracker's alignment workers are spawned
processes that import :mod:`jojogan.video.track` and only run dlib; importing the pipeline here would load
torch into each of them for nothing. The names below are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from jojogan.op.lazy import make_lazy

# public name -> the module that owns it
_EXPORTS = {
    "CONTAINERS": "jojogan.video.io",
    "EncodeSettings": "jojogan.video.io",
    "VideoError": "jojogan.video.io",
    "probe": "jojogan.video.io",
    "LATENT_MODES": "jojogan.video.config",
    "VideoConfig": "jojogan.video.config",
    "VideoResult": "jojogan.video.pipeline",
    "stylize_video": "jojogan.video.pipeline",
    "video_settings": "jojogan.video.pipeline",
    "TrackConfig": "jojogan.video.track",
}

__all__ = sorted(_EXPORTS)

make_lazy(__name__, _EXPORTS)


if TYPE_CHECKING:  # static analysers see the eager imports; a test pins them to _EXPORTS
    from jojogan.video.config import LATENT_MODES, VideoConfig  # noqa: F401
    from jojogan.video.io import CONTAINERS, EncodeSettings, VideoError, probe  # noqa: F401
    from jojogan.video.pipeline import VideoResult, stylize_video, video_settings  # noqa: F401
    from jojogan.video.track import TrackConfig  # noqa: F401
