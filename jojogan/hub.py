"""The pipeline's hub: its weights, its components, its domain profile and the settings at its door.

:class:`Hub` is what :class:`jojogan.api.JoJoGAN` is built on. It owns

* the **components** (:class:`jojogan.components.Components`): the base generator and discriminator, and
  the encoders, cleaners, recognizers and LPIPS loaded from their tables on first use;
* the **weights** of optional components (registry row → a path given by the user, or ``None`` for the
  cache), resolved (downloaded, verified) only when the component is first needed;
* the **domain profile** of the base (:mod:`jojogan.domains`), which fills in the settings that depend on
  what the pictures are (the default encoder, the aligner, the identity figure, paste-back);
* the loaded **styles** (one LRU) and the first steps of every photo: :meth:`align` and :meth:`invert`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from jojogan.cleanup.cleaners import CLEANERS, Cleaner
from jojogan.components import Components, LRUCache
from jojogan.config import StylizeConfig
from jojogan.convert import base_checkpoint_path
from jojogan.domains import DEFAULT_PROFILE, DomainMismatchError, DomainProfile, profile_for
from jojogan.errors import JojoganError
from jojogan.fileio import file_sha256
from jojogan.identity import DEFAULT_METRIC_NETWORK, FaceRecognizer, load_face_recognizer
from jojogan.inversion.align import AlignedFace, align_face, align_faces, align_picture
from jojogan.inversion.encoders import ENCODERS, Encoder, EncoderContext, InversionRequest
from jojogan.inversion.images import ImageSource, image_name
from jojogan.style_file import StyleFile, load_style
from jojogan.stylegan2.checkpoint import StyleGAN2Checkpoint, load_checkpoint
from jojogan.weights import REGISTRY, check_cached, find_entry, mirror_url, resolve_weights

__all__ = ["DEFAULT_MAX_STYLES", "Hub", "as_sources", "image_sha256", "pick_device", "short_name"]

log = logging.getLogger("jojogan")

DEFAULT_MAX_STYLES = 8
"""Loaded styles a pipeline keeps (least recently used ones are dropped): each is a whole generator."""


def pick_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` picks CUDA, then Apple MPS, then the CPU; anything else is passed to ``torch.device``."""
    if str(device) != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def short_name(source: ImageSource) -> str:
    """A file's name without its folders (recorded in metadata), or the in-memory description."""
    return Path(source).name if isinstance(source, (str, os.PathLike)) else image_name(source)


def image_sha256(source: ImageSource, aligned: AlignedFace) -> str:
    """sha256 of the reference file, or of the aligned pixels for in-memory images."""
    if isinstance(source, (str, os.PathLike)) and Path(source).is_file():
        return file_sha256(source)
    return hashlib.sha256(np.asarray(aligned.image).tobytes()).hexdigest()


def as_sources(references: ImageSource | Sequence[ImageSource]) -> list[ImageSource]:
    """One reference or several, as a non-empty list."""
    single = isinstance(references, (str, os.PathLike, Image.Image, np.ndarray))
    sources = [references] if single else list(references)
    if not sources:
        raise ValueError("at least one reference image is needed")
    return sources


def base_profile(
    base_path: Path | None, profile: str | None, aligner: str | None = None, recorded: str | None = None
) -> DomainProfile:
    """The profile named, else that of the base's registry row, else the one the base file records (a
    converted NVIDIA model's), else ``generic`` when ``aligner`` says the pictures are no faces, else
    :data:`DEFAULT_PROFILE`; with another ``aligner`` than the profile's, the face-only stages go (no
    identity figure; paste-back of the whole crop with ``center-crop``, none with ``none``)."""
    if profile is None and base_path is not None:
        row = find_entry(base_path.name)
        profile = row.profile if row is not None else None
    profile = profile or recorded
    if profile is None and aligner not in (None, "ffhq-dlib"):
        profile = "generic"
    chosen = profile_for(profile or DEFAULT_PROFILE)
    if aligner is None or aligner == chosen.aligner:
        return chosen
    faces = aligner == "ffhq-dlib"
    paste = (faces and chosen.paste) or aligner == "center-crop"
    return dataclasses.replace(chosen, aligner=aligner, identity=faces and chosen.identity, paste=paste)


class Hub:
    """A base StyleGAN2 with its components and profile (see the module's docstring).

    Args:
        base: the loaded base checkpoint (generator, discriminator, mean latent).
        e4e_path: the e4e file (the ``e4e`` weights); ``None``: the cache, downloaded when first needed.
        device: where the models run.
        base_path: the base checkpoint's file, recorded in style metadata (and naming its profile).
        max_styles: how many loaded styles to keep (least recently used ones are dropped).
        weights: other components' files by weights-registry row (``{"codeformer": path}``).
        profile: the base's domain profile by name (``None``: its registry row's, else the one the file
            records, else ``ffhq``).
        aligner: another aligner than the profile's (:data:`jojogan.domains.ALIGNERS`).
    """

    def __init__(
        self,
        base: StyleGAN2Checkpoint,
        e4e_path: str | os.PathLike | None = None,
        device: str | torch.device = "cpu",
        base_path: str | os.PathLike | None = None,
        max_styles: int = DEFAULT_MAX_STYLES,
        weights: dict[str, str | os.PathLike | None] | None = None,
        profile: str | None = None,
        aligner: str | None = None,
    ):
        given = {"generator": base.generator}
        if base.discriminator is not None:
            given["discriminator"] = base.discriminator
        self.components = Components(pick_device(device), given)
        self.latent_avg = base.latent_avg
        self.weights = {**(weights or {}), "e4e": e4e_path}
        self.base_path = Path(base_path) if base_path is not None else base.path
        self.profile = base_profile(self.base_path, profile, aligner, recorded=base.profile)
        self.max_styles = max_styles
        self._styles: LRUCache[Path, StyleFile] = LRUCache(max_styles)
        self._base_sha256: str | None = None
        self.to(device)

    @classmethod
    def from_pretrained(cls, base=None, e4e=None, device="cpu", codeformer=None, **options):
        """Load the base checkpoint (a path, a registry name, or ``None`` for the official FFHQ file in the
        weights cache, downloaded and verified on first use; NVIDIA's ``.pkl`` files are converted once,
        nothing in them runs). ``e4e`` and ``codeformer`` are paths or ``None`` for the cache (fetched only
        when first used); ``device`` defaults to the CPU, ``"auto"`` picks CUDA, then MPS, then the CPU;
        ``options`` are the other arguments of :class:`Hub` (``profile``, ``aligner``, ``max_styles``)."""
        base_path = base_checkpoint_path(resolve_weights(base, default="ffhq", download=True))
        e4e_path = resolve_weights(e4e, default="e4e", download=True) if e4e is not None else None
        checkpoint = load_checkpoint(base_path, device="cpu")
        weights = {"codeformer": codeformer}
        return cls(checkpoint, e4e_path, device, base_path, weights=weights, **options)

    # ------------------------------------------------------------------ components and devices
    @property
    def device(self) -> torch.device:
        return self.components.device

    def modules(self) -> Iterator[nn.Module]:
        """Every loaded model: the components, then the cached styles' generators."""
        yield from (c for c in self.components.values() if isinstance(c, nn.Module))
        for style in self._styles.values():
            yield style.generator

    def to(self, device: str | torch.device):
        """Move every loaded model to ``device``; returns ``self``."""
        device = pick_device(device)
        self.components.drop("recognizer:")  # identity networks load again, on the new device
        self.components.to(device)
        for style in self._styles.values():
            style.generator.to(device)
        if self.latent_avg is not None:
            self.latent_avg = self.latent_avg.to(device)
        return self

    @property
    def generator(self):
        return self.components["generator"]

    @property
    def discriminator(self):
        """The base discriminator, or ``None`` when the checkpoint has none."""
        return self.components["discriminator"] if "discriminator" in self.components else None

    @property
    def size(self) -> int:
        return self.generator.size

    def _weights_path(self, row: str | None) -> Path | None:
        return None if row is None else resolve_weights(self.weights.get(row), default=row, download=True)

    def _encoder_weights(self, rows: tuple[str, ...]) -> Path | None:
        """The file among an encoder's rows for this domain: the first given as a path or cached, else the
        first that can be downloaded (else the first, whose error says how to get it by hand)."""
        if not rows:
            return None
        usable = [r for r in rows if self.weights.get(r) is not None or check_cached(REGISTRY[r]).usable]
        fetchable = [r for r in rows if mirror_url() or REGISTRY[r].hf_repo or REGISTRY[r].url]
        chosen = (usable or fetchable or rows)[0]
        if chosen == rows[0]:
            return self._weights_path(chosen)
        first = REGISTRY[rows[0]]
        try:
            path = self._weights_path(chosen)
        except JojoganError as error:
            hint = f" (or put {first.filename} from {first.drive_url or first.hf_url or first.url} there)"
            raise JojoganError(f"{error}{hint}") from error
        log.warning(
            "%s is not in the weights cache; using %s: %s", first.name, chosen, REGISTRY[chosen].description
        )
        return path

    def encoder(self, name: str) -> Encoder:
        """The encoder ``name`` of :data:`ENCODERS`, built (its weights resolved) on first use."""
        cls = ENCODERS[name]

        def load(device: torch.device) -> Encoder:
            try:
                path = self._encoder_weights(cls.weights_for(self.profile.name))
            except JojoganError as error:
                raise JojoganError(
                    f"{error} Or use optimisation inversion (--inversion optimize), which needs only "
                    "the StyleGAN2 checkpoint."
                ) from error
            context = EncoderContext(
                self.generator, self.discriminator, self.latent_avg, device, self.component
            )
            return cls(context, path)

        return self.components.get(f"encoder:{name}", load)

    def cleaner(self, name: str) -> Cleaner:
        """The cleaner ``name`` of :data:`CLEANERS`, built (its weights resolved) on first use."""
        cls = CLEANERS[name]

        def load(device: torch.device) -> Cleaner:
            cleaner = cls(self._weights_path(cls.weights), device)
            log.info("cleanup: %s loaded from %s", name, self.weights.get(cls.weights) or "the weights cache")
            return cleaner

        return self.components.get(f"cleaner:{name}", load)

    def component(self, name: str) -> nn.Module:
        """Another model by name, loaded on first use (``"lpips"``: LPIPS with its VGG backbone)."""
        if name != "lpips":
            raise KeyError(f"no component {name!r}")

        def load(device: torch.device) -> nn.Module:
            from jojogan.perceptual import load_lpips

            return load_lpips("vgg").to(device)

        return self.components.get("lpips", load)

    def recognizer(self, network: str | FaceRecognizer, path: str | os.PathLike | None = None):
        """A face-recognition network for the identity figure, loaded once per name and file."""
        if not isinstance(network, str):
            return network
        key = f"recognizer:{network}:{'' if path is None else path}"
        return self.components.get(key, lambda device: load_face_recognizer(network, path, device))

    def recognizer_for(self, config: StylizeConfig) -> FaceRecognizer | None:
        """The recognizer a config asks for (``None``: no identity figure)."""
        return None if config.identity is None else self.recognizer(config.identity, config.identity_weights)

    def base_sha256(self) -> str | None:
        if self._base_sha256 is None and self.base_path is not None and self.base_path.is_file():
            self._base_sha256 = file_sha256(self.base_path)
        return self._base_sha256

    # ------------------------------------------------------------------ settings at the door
    def settings(self, config: StylizeConfig | None = None, alpha=None, **overrides) -> StylizeConfig:
        """One :class:`StylizeConfig` from a config and keyword overrides, with what the domain profile
        decides filled in (the encoder, the identity network for ``"auto"``).

        Raises:
            ValueError: a setting is out of range or does not apply to this base's pictures.
        """
        config = StylizeConfig() if config is None else config
        if alpha is not None:
            overrides["alpha"] = alpha
        config = dataclasses.replace(config, **overrides) if overrides else config
        profile, filled = self.profile, {}
        if config.inversion is None:
            filled["inversion"] = profile.encoder
        if isinstance(config.identity, str) and config.identity == "auto":
            filled["identity"] = DEFAULT_METRIC_NETWORK if profile.identity else None
        encoder = ENCODERS[filled.get("inversion", config.inversion)]
        if encoder.domains is not None and profile.name not in encoder.domains:
            raise DomainMismatchError(
                f"the {encoder.name} encoder was trained for {', '.join(encoder.domains)} pictures, not "
                f"{profile.name}; use inversion 'optimize' (--inversion optimize)"
            )
        if config.paste and not profile.paste:
            raise DomainMismatchError(
                f"paste-back does not apply to {profile.name} pictures ({profile.description})"
            )
        if not profile.faces and config.face != "largest":
            raise DomainMismatchError(f"face selection applies to faces, not to {profile.name} pictures")
        return dataclasses.replace(config, **filled) if filled else config

    # ------------------------------------------------------------------ styles
    def load_style(self, style: str | os.PathLike | StyleFile) -> StyleFile:
        """Load a style file made from this pipeline's base (kept among the ``max_styles`` most recent)."""
        if isinstance(style, StyleFile):
            return style
        return self._styles.get(Path(style), lambda: self._read_style(Path(style)))

    def _read_style(self, path: Path) -> StyleFile:
        loaded = load_style(path, device=self.device)
        gen = self.generator
        if loaded.generator.size != gen.size or loaded.generator.channels != gen.channels:
            raise JojoganError(
                f"style {path.name} was made for a {loaded.generator.size} px generator with another "
                f"architecture than the base checkpoint ({gen.size} px); use the base it was made from"
            )
        recorded = loaded.metadata.get("base_checkpoint")
        made_from = recorded.get("sha256") if isinstance(recorded, dict) else None
        ours = self.base_sha256() if made_from and self.base_path is not None else None
        if ours is not None and ours != made_from:
            log.warning(
                "style %s was fine-tuned from another base (%s, sha256 %s...) than %s (sha256 %s...); "
                "results will mix two generators: pass the base it was made from with --base",
                path.name, recorded.get("name", "unknown"), made_from[:12], self.base_path.name, ours[:12],
            )  # fmt: skip
        return loaded

    # ------------------------------------------------------------------ the first steps of a photo
    def align(self, image: ImageSource, config: StylizeConfig | None = None, **overrides) -> AlignedFace:
        """One face of ``image`` in the generator's frame, as the domain profile's aligner makes it (FFHQ
        alignment for faces, the centred square otherwise). Larger images than ``config.max_pixels``
        are refused before decoding."""
        config = self.settings(config, **overrides)
        face = "largest" if config.face == "all" else config.face
        if self.profile.picture is not None and not config.aligned:
            picture = tuple(side * self.size // self.profile.resolution for side in self.profile.picture)
            return align_picture(image, self.size, picture, max_pixels=config.max_pixels)
        aligned = config.aligned or not self.profile.faces
        return align_face(image, self.size, face=face, aligned=aligned, max_pixels=config.max_pixels)

    def align_all(self, image: ImageSource, config: StylizeConfig) -> list[AlignedFace]:
        """The faces :meth:`stylize_many` works on: one, or every usable one with ``face="all"``."""
        if config.face != "all" or config.aligned or not self.profile.faces:
            return [self.align(image, config)]
        return align_faces(image, output_size=self.size, max_pixels=config.max_pixels)

    def invert(
        self,
        faces: AlignedFace | Sequence[AlignedFace],
        config: StylizeConfig | None = None,
        *,
        seed: int = 0,
        show_progress: bool | str = False,
        **overrides,
    ) -> torch.Tensor:
        """W+ codes ``[n, n_latent, style_dim]`` of aligned faces, by ``config.inversion``."""
        config = self.settings(config, **overrides)
        faces = [faces] if isinstance(faces, AlignedFace) else list(faces)
        request = InversionRequest(
            config.inversion_steps, seed, show_progress, config.distance, config.inversion_options
        )
        return self.encoder(config.inversion).invert([face.image for face in faces], request)
