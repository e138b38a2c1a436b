"""The Python API: a pipeline object built once from weights, and one-call helpers.

    import jojogan

    pipe = jojogan.JoJoGAN.from_pretrained(base="stylegan2-ffhq-config-f.pt", e4e="e4e_ffhq_encode.pt")
    run = pipe.finetune(["ref.png"])                      # -> FinetuneOutput
    run.save("mystyle.safetensors")
    result = pipe.stylize("photo.jpg", "mystyle.safetensors", alpha=0.7)
    result.image.save("out.png")

Models are loaded once per pipeline (the e4e encoder lazily, on first use) into one registry of
components, and every method returns a small dataclass. The stages underneath (alignment, inversion,
mixing, fine-tuning, stylizing) are pure functions; file writes happen only in the explicit ``save`` and
resume-state helpers here, and the process-wide CPU memory policy is entered here, once per call.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import os
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from torch import nn

from jojogan.cleanup import DEFAULT_FIDELITY, CodeFormer, cleanup_face, load_codeformer, restore_image
from jojogan.config import CLEANUPS, INVERSION_DISTANCES, INVERSIONS, AlphaSpec, FinetuneConfig, check_alpha
from jojogan.errors import CheckpointError, JojoganError
from jojogan.fileio import atomic_output
from jojogan.finetune import (
    IdentityNet,
    ResumeState,
    check_resume,
    finetune,
    reference_mean_latent,
    resume_settings,
    run_record,
)
from jojogan.identity import FaceRecognizer, IdentityScore, load_face_recognizer
from jojogan.identity.metric import IdentityCurve, identity_curve, identity_metadata, identity_score
from jojogan.imaging import from_pil, to_pil
from jojogan.inversion.align import AlignedFace, align_face
from jojogan.inversion.images import DEFAULT_MAX_PIXELS, ImageSource, image_name
from jojogan.inversion.paste import paste_faces
from jojogan.inversion.project import ProjectionConfig, project
from jojogan.mixing import resolve_mask
from jojogan.op.memory import cpu_memory_reuse
from jojogan.style_file import StyleFile, file_sha256, load_style, save_style, style_metadata
from jojogan.stylegan2.checkpoint import StyleGAN2Checkpoint, load_checkpoint, read_weights_file
from jojogan.stylization import sample_styled, stylize_latents
from jojogan.weights import generator_only_error, resolve_weights

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


@dataclass
class Face:
    """One input face, aligned and inverted.

    Attributes:
        name: the input's file name (without folders), or a description of an in-memory image.
        aligned: the alignment (crop, quad, transforms for paste-back).
        w_plus: its code ``[1, n_latent, style_dim]``.
        inversion: how the code was found ("e4e" or "optimize").
    """

    name: str
    aligned: AlignedFace
    w_plus: torch.Tensor
    inversion: str


@dataclass
class StylizeResult:
    """A stylized face.

    Attributes:
        image: the stylized face in the aligned frame (the generator's size).
        face: the aligned, inverted input.
        alpha: the feature interpolation used.
        pasted: the photo with the stylized face warped back in (when asked for), else ``None``.
        identity: the input face and the stylized face compared by a face-recognition network (raw score,
            the network's "same person" threshold and verdict), or ``None`` when not measured.
        cleanup: the cleanup applied to the stylized face (``"codeformer"``), or ``None``.
        fidelity: CodeFormer's ``w`` when it ran (cleanup or input restoration).
        restored_input: whether the input face was restored with CodeFormer before inversion.
    """

    image: Image.Image
    face: Face
    alpha: AlphaSpec
    pasted: Image.Image | None = None
    identity: IdentityScore | None = None
    cleanup: str | None = None
    fidelity: float | None = None
    restored_input: bool = False

    def png_metadata(self) -> PngInfo:
        """PNG text chunks recording the result (alpha, and the identity score when measured)."""
        info = PngInfo()
        alpha = self.alpha if isinstance(self.alpha, float) else ",".join(f"{a:g}" for a in self.alpha)
        info.add_text("jojogan:alpha", str(alpha))
        if self.cleanup is not None:
            info.add_text("jojogan:cleanup", self.cleanup)
        if self.restored_input:
            info.add_text("jojogan:restored_input", "codeformer")
        if self.fidelity is not None:
            info.add_text("jojogan:fidelity", f"{self.fidelity:g}")
        if self.identity is not None:
            for key, value in identity_metadata(self.identity).items():
                info.add_text(key, value)
        return info


@dataclass
class FinetuneOutput:
    """A fine-tuned style, not yet written to disk.

    Attributes:
        generator: the fine-tuned generator.
        losses: the loss of every step.
        metadata: what the style file will record.
        references: the aligned references.
    """

    generator: torch.nn.Module
    losses: list[float]
    metadata: dict
    references: list[AlignedFace] = field(default_factory=list)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the style file (safetensors + JSON metadata) atomically."""
        return save_style(path, self.generator, self.metadata)


def _finite(codes: torch.Tensor, method: str) -> torch.Tensor:
    if not torch.isfinite(codes).all():
        raise JojoganError(
            f"{method} inversion produced NaN or infinite codes; the weights file may be damaged "
            "(re-download it) or the image may hold invalid values"
        )
    return codes


def _short_name(source: ImageSource) -> str:
    """A file's name without its folders (recorded in metadata), or the in-memory description."""
    return Path(source).name if isinstance(source, (str, os.PathLike)) else image_name(source)


def _image_sha256(source: ImageSource, aligned: AlignedFace) -> str:
    """sha256 of the reference file, or of the aligned pixels for in-memory images."""
    if isinstance(source, (str, os.PathLike)) and Path(source).is_file():
        return file_sha256(source)
    return hashlib.sha256(np.asarray(aligned.image).tobytes()).hexdigest()


def save_resume_state(state: ResumeState, path: str | os.PathLike) -> Path:
    """Write a resume state atomically (temporary file + rename).

    Raises:
        JojoganError: it could not be written (full disk, permissions); the previous file is kept.
    """
    with atomic_output(path) as tmp:
        torch.save(state.to_dict(), tmp)
    return Path(path)


def load_resume_state(path: str | os.PathLike) -> ResumeState:
    """Read a state written by :func:`save_resume_state` (weights only, never pickled code).

    Raises:
        JojoganError: the file is unreadable, holds Python objects (refused unexecuted) or is no state.
    """
    try:
        return ResumeState.from_dict(read_weights_file(path))
    except CheckpointError as error:
        reason = "it holds Python objects, not only tensors" if "Python objects" in str(error) else error
        raise JojoganError(
            f"{path} is not a fine-tuning resume state jojogan can load safely ({reason}); delete it to "
            "start over"
        ) from error
    except ValueError as error:
        raise JojoganError(f"{path} is not a readable fine-tuning resume state ({error})") from error


def _job(method: Callable) -> Callable:
    """Run a pipeline method as one job of the CPU memory policy (:mod:`jojogan.op.memory`).

    The policy is process-wide, so it is entered here, at the API's edge, and not inside the stages.
    """

    @functools.wraps(method)
    def wrapper(self: JoJoGAN, *args, **kwargs):
        with cpu_memory_reuse(self.device):
            return method(self, *args, **kwargs)

    return wrapper


def _as_sources(references: ImageSource | Sequence[ImageSource]) -> list[ImageSource]:
    single = isinstance(references, (str, os.PathLike, Image.Image, np.ndarray))
    sources = [references] if single else list(references)
    if not sources:
        raise ValueError("at least one reference image is needed")
    return sources


class JoJoGAN:
    """The JoJoGAN pipeline: base StyleGAN2 (+ optional e4e) loaded once, reused for every call.

    The models live in one registry, :attr:`components` (``generator``, ``discriminator`` when the
    checkpoint has one, ``e4e`` once loaded); :meth:`to` and later savers loop over it.

    Args:
        base: the loaded base checkpoint (generator, discriminator, mean latent).
        e4e_path: e4e weights, loaded on first use; ``None`` leaves only optimisation inversion.
        device: where the models run.
        base_path: the base checkpoint's file, recorded in style metadata.
        max_styles: how many loaded styles to keep (least recently used ones are dropped).
    """

    def __init__(
        self,
        base: StyleGAN2Checkpoint,
        e4e_path: str | os.PathLike | None = None,
        device: str | torch.device = "cpu",
        base_path: str | os.PathLike | None = None,
        max_styles: int = DEFAULT_MAX_STYLES,
    ):
        if max_styles < 1:
            raise ValueError(f"max_styles must be >= 1, got {max_styles}")
        self.components: dict[str, nn.Module] = {"generator": base.generator}
        if base.discriminator is not None:
            self.components["discriminator"] = base.discriminator
        self.latent_avg = base.latent_avg
        self.e4e_path = Path(e4e_path) if e4e_path is not None else None
        self.codeformer_path: str | os.PathLike | None = None  # None: the cached (downloaded) official file
        self.base_path = Path(base_path) if base_path is not None else base.path
        self.max_styles = max_styles
        self.max_pixels = DEFAULT_MAX_PIXELS
        self.inversion_distance = INVERSION_DISTANCES[0]  # what optimisation inversion minimises
        self._base_sha256: str | None = None
        self._styles: OrderedDict[Path, StyleFile] = OrderedDict()
        self._recognizers: dict[tuple[str, str | None], FaceRecognizer] = {}
        self.to(device)

    @classmethod
    def from_pretrained(
        cls,
        base: str | os.PathLike | None = None,
        e4e: str | os.PathLike | None = None,
        device: str | torch.device = "cpu",
        codeformer: str | os.PathLike | None = None,
    ) -> JoJoGAN:
        """Load the base checkpoint (a path, or ``None`` for the official FFHQ file in the weights cache).

        ``e4e`` is a path or ``None``; when ``None`` the cached official encoder is used if present.
        ``device`` defaults to the CPU; ``"auto"`` picks CUDA, then MPS, then the CPU.
        """
        # A missing official file is downloaded (and verified) on first use; the 1.2 GB encoder only when
        # e4e inversion is actually used (see encoder()).
        base_path = resolve_weights(base, default="ffhq", download=True)
        e4e_path = resolve_weights(e4e, default="e4e", download=True) if e4e is not None else None
        checkpoint = load_checkpoint(base_path, device="cpu")
        pipe = cls(checkpoint, e4e_path=e4e_path, device=device, base_path=base_path)
        pipe.codeformer_path = codeformer  # loaded (and downloaded) only when cleanup is first asked for
        return pipe

    # ------------------------------------------------------------------ components and devices
    def modules(self) -> Iterator[nn.Module]:
        """Every loaded model: the components, then the cached styles' generators."""
        yield from self.components.values()
        for style in self._styles.values():
            yield style.generator

    def to(self, device: str | torch.device) -> JoJoGAN:
        """Move every loaded model to ``device``; returns ``self``."""
        self.device = pick_device(device)
        self._recognizers.clear()  # identity networks load again, on the new device, when next used
        for module in self.modules():
            module.to(self.device)
        if self.latent_avg is not None:
            self.latent_avg = self.latent_avg.to(self.device)
        return self

    @property
    def generator(self):
        return self.components["generator"]

    @property
    def discriminator(self):
        """The base discriminator, or ``None`` when the checkpoint has none."""
        return self.components.get("discriminator")

    @property
    def size(self) -> int:
        return self.generator.size

    def encoder(self):
        """The e4e encoder, loaded on first use and kept in :attr:`components`."""
        if "e4e" not in self.components:
            if self.e4e_path is None:
                try:
                    self.e4e_path = resolve_weights(None, default="e4e", download=True)
                except JojoganError as error:
                    raise JojoganError(
                        f"{error} Or use optimisation inversion (--inversion optimize), which needs only "
                        "the StyleGAN2 checkpoint."
                    ) from error
            from jojogan.inversion.e4e import load_e4e

            encoder = load_e4e(self.e4e_path, device=self.device)
            n_latent, style_dim = encoder.latent_avg.shape[-2:]
            if (n_latent, style_dim) != (self.generator.n_latent, self.generator.style_dim):
                raise JojoganError(
                    f"the e4e encoder produces W+ codes [{n_latent}, {style_dim}] but the base generator "
                    f"needs [{self.generator.n_latent}, {self.generator.style_dim}]; use the FFHQ 1024 px "
                    "base or --inversion optimize"
                )
            self.components["e4e"] = encoder
        return self.components["e4e"]

    def base_sha256(self) -> str | None:
        if self._base_sha256 is None and self.base_path is not None and self.base_path.is_file():
            self._base_sha256 = file_sha256(self.base_path)
        return self._base_sha256

    def load_style(self, style: str | os.PathLike | StyleFile) -> StyleFile:
        """Load a style file made from this pipeline's base (kept among the ``max_styles`` most recent)."""
        if isinstance(style, StyleFile):
            return style
        path = Path(style)
        if path in self._styles:
            self._styles.move_to_end(path)
            return self._styles[path]
        loaded = load_style(path, device=self.device)
        gen = self.generator
        if loaded.generator.size != gen.size or loaded.generator.channels != gen.channels:
            raise JojoganError(
                f"style {path.name} was made for a {loaded.generator.size} px generator with another "
                f"architecture than the base checkpoint ({gen.size} px); use the base it was made from"
            )
        self._warn_other_base(loaded)
        self._styles[path] = loaded
        while len(self._styles) > self.max_styles:
            self._styles.popitem(last=False)
        return loaded

    def _warn_other_base(self, style: StyleFile) -> None:
        """Warn when the style's metadata names another base than this pipeline's (by sha256): its
        images then mix two unrelated generators."""
        recorded = style.metadata.get("base_checkpoint")
        made_from = recorded.get("sha256") if isinstance(recorded, dict) else None
        if not made_from or self.base_path is None:
            return
        ours = self.base_sha256()
        if ours is not None and ours != made_from:
            log.warning(
                "style %s was fine-tuned from another base (%s, sha256 %s...) than %s (sha256 %s...); "
                "results will mix two generators: pass the base it was made from with --base",
                style.path.name if style.path else "style",
                recorded.get("name", "unknown"),
                made_from[:12],
                self.base_path.name,
                ours[:12],
            )

    # ------------------------------------------------------------------ faces
    def align(self, image: ImageSource, aligned: bool = False, face: str | int = "largest") -> AlignedFace:
        """FFHQ-align one face of ``image`` at the generator's resolution.

        Images larger than ``self.max_pixels`` are refused before decoding (``None``: no limit).
        """
        return align_face(
            image, output_size=self.size, face=face, aligned=aligned, max_pixels=self.max_pixels
        )

    @_job
    def invert(
        self,
        faces: AlignedFace | Sequence[AlignedFace],
        inversion: str = "e4e",
        steps: int | None = None,
        seed: int = 0,
        show_progress: bool | str = False,
    ) -> torch.Tensor:
        """W+ codes ``[n, n_latent, style_dim]`` of aligned faces.

        Args:
            faces: aligned faces.
            inversion: "e4e" (fast, needs the encoder) or "optimize" (needs only the StyleGAN2 file).
            steps: optimisation steps in total (W then W+); default 200 + 100.
            seed: seeds optimisation.
            show_progress: a progress bar for optimisation; a string labels it (e.g. the image's name).
        """
        if inversion not in INVERSIONS:
            raise ValueError(f"inversion must be one of {INVERSIONS}, got {inversion!r}")
        faces = [faces] if isinstance(faces, AlignedFace) else list(faces)
        if inversion == "e4e":
            return _finite(self.encoder().invert([f.image for f in faces]).to(self.device), "e4e")
        if self.discriminator is None and self.inversion_distance != "lpips":
            raise JojoganError(
                "optimisation inversion measures distance with the discriminator, but the base checkpoint "
                "has none ('d'); use the official stylegan2-ffhq-config-f.pt, --distance lpips or "
                "--inversion e4e"
            )
        target = torch.cat([from_pil(f.image, self.size) for f in faces]).to(self.device)
        result = project(
            self.generator,
            target,
            ProjectionConfig.from_total_steps(steps, seed=seed),
            lpips=self.lpips() if self.inversion_distance == "lpips" else None,
            discriminator=self.discriminator,
            latent_avg=self.latent_avg,
            show_progress=show_progress,
        )
        return _finite(result.w_plus.detach(), "optimisation")

    def prepare(
        self,
        image: ImageSource,
        inversion: str = "e4e",
        aligned: bool = False,
        face: str | int = "largest",
        steps: int | None = None,
        seed: int = 0,
        show_progress: bool = False,
        restore_input: bool = False,
        fidelity: float = DEFAULT_FIDELITY,
        crop: AlignedFace | None = None,
    ) -> Face:
        """Align and invert one input; ``restore_input`` cleans the aligned face up with CodeFormer first
        (for blurry, small or compressed photos, which invert badly). ``crop``: ``image``'s face already
        aligned by :meth:`align` (elsewhere, e.g. on another machine), used instead of aligning again."""
        crop = self._input_face(image, aligned, face, restore_input, fidelity, crop)
        # the bar names the image: several inputs' bars are then told apart
        label = f"projecting {_short_name(image)}" if show_progress else False
        w_plus = self.invert(crop, inversion, steps=steps, seed=seed, show_progress=label)
        return Face(name=_short_name(image), aligned=crop, w_plus=w_plus, inversion=inversion)

    def _input_face(
        self,
        image: ImageSource,
        aligned: bool,
        face: str | int,
        restore_input: bool,
        fidelity: float,
        crop: AlignedFace | None,
    ) -> AlignedFace:
        """The aligned face that is inverted: ``crop`` or ``image`` aligned, restored when asked."""
        crop = self.align(image, aligned=aligned, face=face) if crop is None else crop
        if restore_input:
            _check_cleanup("codeformer", fidelity)
            crop = dataclasses.replace(crop, image=restore_image(crop.image, self.codeformer(), fidelity))
        return crop

    def _prepare_many(
        self,
        images: Sequence[ImageSource],
        crops: Sequence[AlignedFace | None],
        inversion: str,
        aligned: bool,
        face: str | int,
        steps: int | None,
        restore_input: bool,
        fidelity: float,
        show_progress: bool,
    ) -> list[Face]:
        """:meth:`prepare` for several inputs; e4e inverts their faces as one batch.

        Optimisation inverts each face on its own: its random noise is drawn per batch, so a face's code
        would depend on the faces beside it.
        """
        if inversion != "e4e" or len(images) == 1:
            return [
                self.prepare(
                    image,
                    inversion,
                    aligned=aligned,
                    face=face,
                    steps=steps,
                    show_progress=show_progress,
                    restore_input=restore_input,
                    fidelity=fidelity,
                    crop=crop,
                )  # fmt: skip
                for image, crop in zip(images, crops, strict=True)
            ]
        faces = [
            self._input_face(image, aligned, face, restore_input, fidelity, crop)
            for image, crop in zip(images, crops, strict=True)
        ]
        codes = self.invert(faces, inversion)
        return [
            Face(name=_short_name(image), aligned=crop, w_plus=code[None], inversion=inversion)
            for image, crop, code in zip(images, faces, codes, strict=True)
        ]

    # ------------------------------------------------------------------ fine-tuning
    @_job
    def finetune(
        self,
        references: ImageSource | Sequence[ImageSource],
        config: FinetuneConfig | None = None,
        *,
        inversion: str = "e4e",
        inversion_steps: int | None = None,
        aligned: bool = False,
        identity_net: IdentityNet | None = None,
        callback: Callable | None = None,
        resume_state_path: str | os.PathLike | None = None,
        resume: bool | ResumeState = False,
        show_progress: bool = True,
    ) -> FinetuneOutput:
        """Fine-tune a style from one or more reference faces.

        Args:
            references: image paths, PIL images or arrays (one face each).
            config: fine-tuning settings (default: the original recipe, 300 iterations);
                ``reference_code="mean"`` skips inversion (for references too far from photos).
            inversion: "e4e" or "optimize", for the reference codes that need an inversion.
            inversion_steps: optimisation steps for ``inversion="optimize"``.
            aligned: the references are already aligned face crops.
            identity_net: face-recognition network for ``config.identity_weight > 0``.
            callback: ``callback(step, loss, preview)`` after each step.
            resume_state_path: where to keep a resume state every ``config.save_state_every`` steps.
            resume: continue from ``resume_state_path`` if it exists, or from this (already loaded)
                state. The state must come from a run with the same settings, references (their
                sha256), base (its sha256) and inversion; that is checked before any inversion.
            show_progress: tqdm progress bars.

        Raises:
            ResumeMismatchError: the resume state was made by another run; names what differs.
        """
        # 1. check the inputs
        config = FinetuneConfig() if config is None else config
        if config.save_state_every and resume_state_path is None:
            raise ValueError("config.save_state_every needs resume_state_path (where the state is kept)")
        if self.discriminator is None:
            raise generator_only_error(self.base_path or "the base checkpoint", "fine-tuning")
        sources = _as_sources(references)
        # 2. the references, aligned and (unless training towards the mean code) inverted
        crops = [self.align(src, aligned=aligned) for src in sources]
        inverted = config.reference_code != "mean"
        reference_sha256s = [_image_sha256(s, c) for s, c in zip(sources, crops, strict=True)]
        provenance = {
            "base_sha256": self.base_sha256(),
            "reference_sha256s": reference_sha256s,
            "inversion": inversion if inverted else None,
        }
        state = resume if isinstance(resume, ResumeState) else None
        if state is None and resume:
            state = self._saved_state(resume_state_path)
        if state is not None:  # a resume state from another run is refused before the inversion
            keep = resolve_mask(config.mask, self.size)
            check_resume(state, resume_settings(run_record(config, keep, len(sources)), provenance))
        label = f"projecting {len(crops)} reference(s)" if show_progress else False
        latents = (
            self.invert(crops, inversion, steps=inversion_steps, seed=config.seed, show_progress=label)
            if inverted
            else None
        )
        images = torch.cat([from_pil(c.image, self.size) for c in crops]).to(self.device)
        # 3. train, continuing a saved resume state when asked
        result = finetune(
            self.generator,
            self.discriminator,
            images,
            latents,
            config,
            mean_latent=self._mean_latent(config),
            identity_net=identity_net,
            callback=callback,
            on_resume_state=self._state_saver(config, resume_state_path),
            resume=state,
            provenance=provenance,
            device=self.device,
            show_progress=show_progress,
        )
        # 4. provenance: the run's own record plus where its inputs came from
        metadata = style_metadata(
            base_name=self.base_path.name if self.base_path else "unknown",
            base_sha256=self.base_sha256(),
            reference_sha256s=reference_sha256s,
            losses=result.losses,
            run=result.record,
            inversion=inversion if inverted else None,
            reference_names=[_short_name(s) for s in sources],
        )
        return FinetuneOutput(
            generator=result.generator, losses=result.losses, metadata=metadata, references=crops
        )

    def _mean_latent(self, config: FinetuneConfig) -> torch.Tensor | None:
        """The mean latent of "mean"/"blend" codes, cached per base file (same value as uncached)."""
        if config.reference_code == "invert":
            return None
        return reference_mean_latent(self.generator, config, cache_key=self.base_sha256())

    @staticmethod
    def _state_saver(config: FinetuneConfig, path: str | os.PathLike | None):
        if path is None or not config.save_state_every:
            return None
        return functools.partial(save_resume_state, path=path)

    @staticmethod
    def _saved_state(path: str | os.PathLike | None) -> ResumeState | None:
        if path is None or not Path(path).is_file():
            return None
        state = load_resume_state(path)
        log.info("resuming from %s at step %d", path, state.step)
        return state

    # ------------------------------------------------------------------ stylizing
    def lpips(self) -> nn.Module:
        """LPIPS (VGG) for ``inversion_distance="lpips"``, loaded on first use, kept in :attr:`components`."""
        if "lpips" not in self.components:
            from jojogan.perceptual import load_lpips

            self.components["lpips"] = load_lpips("vgg").to(self.device)
        return self.components["lpips"]

    def codeformer(self) -> CodeFormer:
        """The CodeFormer network for cleanup, loaded on first use and kept in :attr:`components`."""
        if "codeformer" not in self.components:
            model = load_codeformer(self.codeformer_path, device=self.device)
            log.info("cleanup: CodeFormer loaded from %s", self.codeformer_path or "the weights cache")
            self.components["codeformer"] = model
        return self.components["codeformer"]

    @_job
    def render(
        self,
        face: Face,
        style: str | os.PathLike | StyleFile,
        alpha: AlphaSpec = 1.0,
        cleanup: str | None = None,
        fidelity: float = DEFAULT_FIDELITY,
    ) -> Image.Image:
        """The stylized version of an already prepared face (cleaned up by CodeFormer when asked)."""
        return self.render_many([face], style, alpha, cleanup=cleanup, fidelity=fidelity)[0]

    @_job
    def render_many(
        self,
        faces: Sequence[Face],
        style: str | os.PathLike | StyleFile,
        alpha: AlphaSpec = 1.0,
        cleanup: str | None = None,
        fidelity: float = DEFAULT_FIDELITY,
    ) -> list[Image.Image]:
        """:meth:`render` for several prepared faces: their codes, stacked ``[n, n_latent, style_dim]``,
        go through the generators (and CodeFormer) as one batch."""
        loaded = self.load_style(style)
        alpha = check_alpha(alpha, self.generator.num_styles)
        _check_cleanup(cleanup, fidelity)
        codes = torch.cat([face.w_plus.to(self.device) for face in faces])
        with torch.no_grad():
            images = stylize_latents(self.generator, loaded.generator, codes, alpha)
            if cleanup == "codeformer":
                images = cleanup_face(images, self.codeformer(), fidelity)
        return [to_pil(image) for image in images]

    @_job
    def stylize(
        self,
        image: ImageSource,
        style: str | os.PathLike | StyleFile,
        alpha: AlphaSpec = 1.0,
        *,
        inversion: str = "e4e",
        inversion_steps: int | None = None,
        aligned: bool = False,
        face: str | int = "largest",
        paste: bool = False,
        identity: str | FaceRecognizer | None = None,
        cleanup: str | None = None,
        fidelity: float = DEFAULT_FIDELITY,
        restore_input: bool = False,
        match_colour: bool = False,
        show_progress: bool = False,
        crop: AlignedFace | None = None,
    ) -> StylizeResult:
        """Stylize one face of a photo.

        Args:
            image: a path, PIL image or array.
            style: a style file (ours or an official JoJoGAN one) or a loaded :class:`StyleFile`.
            alpha: 0 = the original face, 1 = fully stylized; or one value per style layer.
            inversion: "e4e" or "optimize".
            aligned: the input is already an aligned face crop.
            face: which face: "largest" or an index from the left.
            paste: also blend the result back into the photo (a feathered mask from the face's landmarks).
            cleanup: ``"codeformer"`` cleans the stylized face up with CodeFormer; ``None`` does not.
            fidelity: CodeFormer's ``w`` in [0, 1] (0: most restoration, 1: most faithful to its input).
            restore_input: CodeFormer on the aligned input face before inversion.
            match_colour: with ``paste``, give the face the photo's colour and lighting (low frequencies).
            identity: measure how much of the person survived with this face-recognition network (a
                name from :data:`jojogan.identity.RECOGNIZERS`, e.g. ``"dlib"``, or a loaded recognizer);
                ``None`` does not measure.
            show_progress: a progress bar (naming the image) for optimisation inversion.
            crop: the face of ``image`` already aligned as :meth:`align` aligns it (same ``aligned`` and
                ``face``), e.g. by a batch's alignment workers; ``image`` is still read for ``paste``.
        """
        return self.stylize_many(
            [image], style, alpha, inversion=inversion, inversion_steps=inversion_steps, aligned=aligned,
            face=face, paste=paste, identity=identity, cleanup=cleanup, fidelity=fidelity,
            restore_input=restore_input, match_colour=match_colour, show_progress=show_progress,
            crops=[crop],
        )[0]  # fmt: skip

    @_job
    def stylize_many(
        self,
        images: Sequence[ImageSource],
        style: str | os.PathLike | StyleFile,
        alpha: AlphaSpec = 1.0,
        *,
        inversion: str = "e4e",
        inversion_steps: int | None = None,
        aligned: bool = False,
        face: str | int = "largest",
        paste: bool = False,
        identity: str | FaceRecognizer | None = None,
        cleanup: str | None = None,
        fidelity: float = DEFAULT_FIDELITY,
        restore_input: bool = False,
        match_colour: bool = False,
        show_progress: bool = False,
        crops: Sequence[AlignedFace | None] | None = None,
    ) -> list[StylizeResult]:
        """:meth:`stylize` one face of each of several photos, with the faces batched on the device.

        e4e inverts the faces as one batch (optimisation inverts each on its own, as :meth:`stylize`
        does) and their codes go through the generators as one batch. With one photo this is
        :meth:`stylize`; with several, each result equals :meth:`stylize`'s within float tolerance (a
        batched convolution may sum in another order). Arguments are :meth:`stylize`'s, per photo:
        ``images`` and ``crops`` (one crop or ``None`` for each image).
        """
        if paste and aligned:
            raise ValueError("paste needs the photo's alignment, which aligned=True inputs do not have")
        crops = [None] * len(images) if crops is None else list(crops)
        if len(crops) != len(images) or not images:
            raise ValueError(
                f"expected one crop (or None) for each of {len(images)} images, got {len(crops)}"
            )
        _check_cleanup(cleanup, fidelity)
        check_alpha(alpha, self.load_style(style).generator.num_styles)  # before the (slow) inversion
        recognizer = self.recognizer(identity) if identity is not None else None
        prepared = self._prepare_many(
            images, crops, inversion, aligned, face, inversion_steps, restore_input, fidelity, show_progress
        )
        styled_faces = self.render_many(prepared, style, alpha, cleanup=cleanup, fidelity=fidelity)
        return [
            self._finish_face(
                face_code,
                styled,
                alpha,
                paste_into=image if paste else None,
                recognizer=recognizer,
                cleanup=cleanup,
                fidelity=fidelity,
                restored_input=restore_input,
                match_colour=match_colour,
            )  # fmt: skip
            for image, face_code, styled in zip(images, prepared, styled_faces, strict=True)
        ]

    @_job
    def stylize_face(
        self,
        prepared: Face,
        style: str | os.PathLike | StyleFile,
        alpha: AlphaSpec = 1.0,
        *,
        paste_into: ImageSource | None = None,
        identity: str | FaceRecognizer | None = None,
        cleanup: str | None = None,
        fidelity: float = DEFAULT_FIDELITY,
        restored_input: bool = False,
        match_colour: bool = False,
    ) -> StylizeResult:
        """The stylizing half of :meth:`stylize`, for a face already prepared (aligned and inverted).

        An application that keeps :meth:`prepare`'s result (one inversion per photo) calls this for every
        new ``alpha``: it costs one pass of the two generators (plus the finishing stages asked for).

        Args:
            prepared: the face from :meth:`prepare`.
            style: as in :meth:`stylize`.
            alpha: as in :meth:`stylize`.
            paste_into: the photo ``prepared`` was aligned from: blend the result back into it.
            identity: as in :meth:`stylize`.
            cleanup: as in :meth:`stylize`.
            fidelity: as in :meth:`stylize`.
            restored_input: ``prepared`` was restored with CodeFormer (recorded in the result).
            match_colour: with ``paste_into``, give the face the photo's colour and lighting.
        """
        recognizer = self.recognizer(identity) if identity is not None else None
        styled = self.render(prepared, style, alpha, cleanup=cleanup, fidelity=fidelity)
        return self._finish_face(
            prepared, styled, alpha, paste_into=paste_into, recognizer=recognizer, cleanup=cleanup,
            fidelity=fidelity, restored_input=restored_input, match_colour=match_colour,
        )  # fmt: skip

    def _finish_face(
        self,
        prepared: Face,
        styled: Image.Image,
        alpha: AlphaSpec,
        *,
        paste_into: ImageSource | None,
        recognizer: FaceRecognizer | None,
        cleanup: str | None,
        fidelity: float,
        restored_input: bool,
        match_colour: bool,
    ) -> StylizeResult:
        """A stylized face's result: pasted back when asked, its identity score when measured."""
        pasted = (
            paste_faces(paste_into, [(styled, prepared.aligned)], match_colour=match_colour)
            if paste_into is not None
            else None
        )
        result = StylizeResult(
            image=styled, face=prepared, alpha=alpha, pasted=pasted, cleanup=cleanup,
            fidelity=fidelity if cleanup or restored_input else None, restored_input=restored_input,
        )  # fmt: skip
        if recognizer is not None:
            result.identity = identity_score(prepared.aligned.image, styled, recognizer)
            log.info("identity: %s", result.identity.line())
        return result

    def recognizer(
        self, network: str | FaceRecognizer, path: str | os.PathLike | None = None
    ) -> FaceRecognizer:
        """A face-recognition network for the identity metric, loaded once per pipeline and name."""
        if not isinstance(network, str):
            return network
        key = (network, None if path is None else str(path))
        if key not in self._recognizers:
            self._recognizers[key] = load_face_recognizer(network, path, self.device)
        return self._recognizers[key]

    def identity_curve(
        self, face: Face, frames: Sequence[tuple[float, Image.Image]], network: str | FaceRecognizer
    ) -> IdentityCurve:
        """identity(α) of a :meth:`slider`'s frames against the input face."""
        recognizer = self.recognizer(network)
        return identity_curve(
            face.aligned.image, [img for _, img in frames], [a for a, _ in frames], recognizer
        )

    @_job
    def slider(
        self, face: Face, style: str | os.PathLike | StyleFile, steps: int = 5
    ) -> list[tuple[float, Image.Image]]:
        """The same face at ``steps`` evenly spaced α from 0 to 1."""
        if steps < 2:
            raise ValueError(f"steps must be at least 2 (α = 0 and 1), got {steps}")
        alphas = [i / (steps - 1) for i in range(steps)]
        return [(a, self.render(face, style, a)) for a in alphas]

    @_job
    def sample(
        self,
        style: str | os.PathLike | StyleFile,
        n: int = 4,
        truncation: float = 0.7,
        seed: int = 0,
        alpha: AlphaSpec = 1.0,
    ) -> tuple[list[Image.Image], list[Image.Image]]:
        """Random faces and the same faces in the style: ``(originals, styled)``."""
        loaded = self.load_style(style)
        originals, styled = sample_styled(
            self.generator,
            loaded.generator,
            n,
            truncation=truncation,
            latent_avg=self.latent_avg,
            seed=seed,
            alpha=alpha,
        )
        return [to_pil(x) for x in originals], [to_pil(x) for x in styled]


def _check_cleanup(cleanup: str | None, fidelity: float) -> None:
    if cleanup is not None and cleanup not in CLEANUPS:
        raise ValueError(f"cleanup must be None or one of {', '.join(CLEANUPS)}, got {cleanup!r}")
    if isinstance(fidelity, bool) or not isinstance(fidelity, (int, float)) or not 0.0 <= fidelity <= 1.0:
        raise ValueError(f"fidelity must be a number in [0, 1], got {fidelity!r}")


def stylize(
    image: ImageSource,
    style: str | os.PathLike,
    alpha: AlphaSpec = 1.0,
    *,
    base: str | os.PathLike | None = None,
    e4e: str | os.PathLike | None = None,
    inversion: str = "e4e",
    device: str = "cpu",
    codeformer: str | os.PathLike | None = None,
    **kwargs,
) -> StylizeResult:
    """One call: load the models, stylize one photo. For many photos build a :class:`JoJoGAN` once."""
    pipe = JoJoGAN.from_pretrained(base=base, e4e=e4e, device=device, codeformer=codeformer)
    return pipe.stylize(image, style, alpha, inversion=inversion, **kwargs)


def finetune_style(
    references: ImageSource | Sequence[ImageSource],
    *,
    base: str | os.PathLike | None = None,
    e4e: str | os.PathLike | None = None,
    inversion: str = "e4e",
    device: str = "cpu",
    config: FinetuneConfig | None = None,
    **kwargs,
) -> FinetuneOutput:
    """One call: load the models and fine-tune a style (``.save(path)`` the result)."""
    pipe = JoJoGAN.from_pretrained(base=base, e4e=e4e, device=device)
    return pipe.finetune(references, config, inversion=inversion, **kwargs)
