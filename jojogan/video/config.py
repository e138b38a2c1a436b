"""The video settings (:class:`VideoConfig`), in a module of their own without torch.

The command line builds its video options from these defaults, and a Ray driver or an alignment worker reads
them, before (or without) any model: importing the pipeline here would load torch into each of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from jojogan.inversion.paste import DEFAULT_FEATHER
from jojogan.video.flicker import DEFAULT_EVERY, DEFAULT_FLOW_SIZE
from jojogan.video.io import EncodeSettings
from jojogan.video.track import TrackConfig

__all__ = ["DEFAULT_IDENTITY_FRAMES", "LATENT_MODES", "VideoConfig"]

LATENT_MODES: tuple[str, ...] = ("smooth", "shot", "frame")
"""How a frame's code is made from the raw per-frame inversions (:mod:`jojogan.video.latents`)."""

DEFAULT_IDENTITY_FRAMES = 8
"""Frames of each face track whose identity is measured (evenly spread over the track)."""


@dataclass(frozen=True)
class VideoConfig:
    """The video settings.

    Attributes:
        latent: "smooth", "shot" or "frame" (:mod:`jojogan.video.latents`).
        code_sigma: Gaussian width of ``smooth``, in frames of the average rate.
        colour_sigma: Gaussian width of the colour targets, in frames.
        batch_size: faces per encoder/generator batch; ``None``: by device
            (:data:`jojogan.video.pipeline.DEFAULT_BATCH`).
        chunk_frames: frames per chunk (the unit of resuming and of splitting over workers).
        track: the face tracks' settings (detection, smoothing, cuts; which faces is ``StylizeConfig.face``).
        encode: the output encoder.
        report: write the report beside the output (``OUT.json``): counts, per-stage timings, figures.
        flow_size: longer side of the flicker measurement's optical flow (a downscaled copy).
        flicker_every: flicker on the frame pairs that start on every N-th frame (1: every pair; 0: not
            measured).
        identity_frames: frames of each face track whose identity is measured, evenly spread (with
            ``StylizeConfig.identity``).
        feather: soft edge of the paste mask (fraction of the crop).
    """

    latent: str = "smooth"
    code_sigma: float = 1.5
    colour_sigma: float = 3.0
    batch_size: int | None = None
    chunk_frames: int = 96
    track: TrackConfig = field(default_factory=TrackConfig)
    encode: EncodeSettings = field(default_factory=EncodeSettings)
    report: bool = False
    flow_size: int = DEFAULT_FLOW_SIZE
    flicker_every: int = DEFAULT_EVERY
    identity_frames: int = DEFAULT_IDENTITY_FRAMES
    feather: float = DEFAULT_FEATHER

    def __post_init__(self) -> None:
        if self.latent not in LATENT_MODES:
            raise ValueError(f"latent must be one of {', '.join(LATENT_MODES)}, got {self.latent!r}")
        for name in ("code_sigma", "colour_sigma", "flicker_every"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("chunk_frames", "flow_size", "identity_frames"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
