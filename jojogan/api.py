"""The Python API: a pipeline object built once from weights, and one-call helpers.

    import jojogan

    pipe = jojogan.JoJoGAN.from_pretrained(base="stylegan2-ffhq-config-f.pt", e4e="e4e_ffhq_encode.pt")
    run = pipe.finetune(["ref.png"])                      # -> FinetuneOutput
    run.save("mystyle.safetensors")
    result = pipe.stylize("photo.jpg", "mystyle.safetensors", alpha=0.7)
    result.image.save("out.png")

Models are loaded once per pipeline (the e4e encoder lazily, on first use) and every method returns a
small dataclass. The stages underneath (alignment, inversion, mixing, fine-tuning, stylizing) are pure
functions; file writes happen only in the explicit ``save``/``checkpoint`` helpers here.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from jojogan import __version__
from jojogan.config import AlphaSpec, FinetuneConfig, check_alpha
from jojogan.fileio import atomic_output
from jojogan.finetune import FinetuneState, IdentityNet, finetune
from jojogan.imaging import from_pil, to_pil
from jojogan.inversion.align import AlignedFace, align_face
from jojogan.inversion.images import DEFAULT_MAX_PIXELS, ImageSource, image_name
from jojogan.inversion.project import DEFAULT_STEPS, DEFAULT_W_PLUS_STEPS, project
from jojogan.mixing import MeanLatentCache
from jojogan.op.memory import cpu_memory_reuse
from jojogan.style_file import StyleFile, file_sha256, load_style, save_style, style_metadata
from jojogan.stylegan2.checkpoint import StyleGAN2Checkpoint, load_checkpoint
from jojogan.stylegan2.errors import JojoganError
from jojogan.stylize import sample_styled, stylize_latents
from jojogan.weights import resolve_weights

log = logging.getLogger("jojogan")

INVERSIONS = ("e4e", "optimize")
"""How a face becomes a W+ code: the e4e encoder, or optimisation against the generator."""

FINETUNE_INVERSIONS = (*INVERSIONS, "mean")
"""For fine-tuning, "mean" skips inversion and trains towards the mean style code (extreme references)."""

MEAN_LATENTS = MeanLatentCache()
"""Mean of 10,000 mapped z per base checkpoint (keyed by its sha256), shared by every pipeline."""


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
    """

    image: Image.Image
    face: Face
    alpha: AlphaSpec
    pasted: Image.Image | None = None


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


def save_checkpoint_state(state: FinetuneState, path: str | os.PathLike) -> Path:
    """Write a resumable fine-tuning state atomically (temporary file + rename).

    Raises:
        JojoganError: it could not be written (full disk, permissions); the previous file is kept.
    """
    with atomic_output(path) as tmp:
        torch.save(state.to_dict(), tmp)
    return path


def load_checkpoint_state(path: str | os.PathLike) -> FinetuneState:
    """Read a state written by :func:`save_checkpoint_state` (weights only, never pickled code)."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
        return FinetuneState.from_dict(data)
    except (OSError, ValueError, RuntimeError, EOFError) as error:
        raise JojoganError(f"{path} is not a readable fine-tuning checkpoint ({error})") from error


class JoJoGAN:
    """The JoJoGAN pipeline: base StyleGAN2 (+ optional e4e) loaded once, reused for every call.

    Args:
        base: the loaded base checkpoint (generator, discriminator, mean latent).
        e4e_path: e4e weights, loaded on first use; ``None`` leaves only optimisation inversion.
        device: where the models run.
        base_path: the base checkpoint's file, recorded in style metadata.
    """

    def __init__(
        self,
        base: StyleGAN2Checkpoint,
        e4e_path: str | os.PathLike | None = None,
        device: str | torch.device = "cpu",
        base_path: str | os.PathLike | None = None,
    ):
        self.base = base
        self.e4e_path = Path(e4e_path) if e4e_path is not None else None
        self.base_path = Path(base_path) if base_path is not None else base.path
        self.device = pick_device(device)
        self._e4e = None
        self._base_sha256: str | None = None
        self._styles: dict[Path, StyleFile] = {}
        self.max_pixels = DEFAULT_MAX_PIXELS
        self.to(self.device)

    @classmethod
    def from_pretrained(
        cls,
        base: str | os.PathLike | None = None,
        e4e: str | os.PathLike | None = None,
        device: str | torch.device = "cpu",
    ) -> JoJoGAN:
        """Load the base checkpoint (a path, or ``None`` for the official FFHQ file in the weights cache).

        ``e4e`` is a path or ``None``; when ``None`` the cached official encoder is used if present.
        ``device`` defaults to the CPU; ``"auto"`` picks CUDA, then MPS, then the CPU.
        """
        base_path = resolve_weights(base, default="ffhq")
        if e4e is not None:
            e4e_path = resolve_weights(e4e, default="e4e")
        else:
            try:
                e4e_path = resolve_weights(None, default="e4e")
            except JojoganError:
                e4e_path = None
        checkpoint = load_checkpoint(base_path, device="cpu")
        return cls(checkpoint, e4e_path=e4e_path, device=device, base_path=base_path)

    # ------------------------------------------------------------------ devices and models
    def to(self, device: str | torch.device) -> JoJoGAN:
        """Move every loaded model to ``device``; returns ``self``."""
        self.device = pick_device(device)
        self.base.generator.to(self.device)
        if self.base.discriminator is not None:
            self.base.discriminator.to(self.device)
        if self.base.latent_avg is not None:
            self.base.latent_avg = self.base.latent_avg.to(self.device)
        if self._e4e is not None:
            self._e4e.to(self.device)
        for style in self._styles.values():
            style.generator.to(self.device)
        return self

    @property
    def generator(self):
        return self.base.generator

    @property
    def size(self) -> int:
        return self.base.generator.size

    def _encoder(self):
        if self._e4e is None:
            if self.e4e_path is None:
                raise JojoganError(
                    "e4e inversion needs the e4e_ffhq_encode.pt weights: pass e4e=PATH (--e4e PATH) or "
                    "put the file in the weights cache; or use optimisation inversion "
                    "(--inversion optimize), which needs only the StyleGAN2 checkpoint."
                )
            from jojogan.inversion.e4e import load_e4e

            gen = self.base.generator
            self._e4e = load_e4e(self.e4e_path, device=self.device)
            n_latent, style_dim = self._e4e.latent_avg.shape[-2:]
            if (n_latent, style_dim) != (gen.n_latent, gen.style_dim):
                self._e4e = None
                raise JojoganError(
                    f"the e4e encoder produces W+ codes [{n_latent}, {style_dim}] but the base generator "
                    f"needs [{gen.n_latent}, {gen.style_dim}]; use the FFHQ 1024 px base or "
                    "--inversion optimize"
                )
        return self._e4e

    def base_sha256(self) -> str | None:
        if self._base_sha256 is None and self.base_path is not None and self.base_path.is_file():
            self._base_sha256 = file_sha256(self.base_path)
        return self._base_sha256

    def load_style(self, style: str | os.PathLike | StyleFile) -> StyleFile:
        """Load (once) a style file made from this pipeline's base."""
        if isinstance(style, StyleFile):
            return style
        path = Path(style)
        if path not in self._styles:
            loaded = load_style(path, device=self.device)
            gen = self.base.generator
            if loaded.generator.size != gen.size or loaded.generator.channels != gen.channels:
                raise JojoganError(
                    f"style {path.name} was made for a {loaded.generator.size} px generator with another "
                    f"architecture than the base checkpoint ({gen.size} px); use the base it was made from"
                )
            self._styles[path] = loaded
        return self._styles[path]

    # ------------------------------------------------------------------ faces
    def align(self, image: ImageSource, aligned: bool = False, face: str | int = "largest") -> AlignedFace:
        """FFHQ-align one face of ``image`` at the generator's resolution.

        Images larger than ``self.max_pixels`` are refused before decoding (``None``: no limit).
        """
        return align_face(
            image, output_size=self.size, face=face, aligned=aligned, max_pixels=self.max_pixels
        )

    def invert(
        self,
        faces: AlignedFace | Sequence[AlignedFace],
        inversion: str = "e4e",
        steps: int | None = None,
        seed: int = 0,
        show_progress: bool = False,
    ) -> torch.Tensor:
        """W+ codes ``[n, n_latent, style_dim]`` of aligned faces.

        Args:
            faces: aligned faces.
            inversion: "e4e" (fast, needs the encoder) or "optimize" (needs only the StyleGAN2 file).
            steps: optimisation steps in total (W then W+); default 200 + 100.
            seed: seeds optimisation.
        """
        if inversion not in INVERSIONS:
            raise ValueError(f"inversion must be one of {INVERSIONS}, got {inversion!r}")
        faces = [faces] if isinstance(faces, AlignedFace) else list(faces)
        if inversion == "e4e":
            return _finite(self._encoder().invert([f.image for f in faces]).to(self.device), "e4e")
        if self.base.discriminator is None:
            raise JojoganError(
                "optimisation inversion measures distance with the discriminator, but the base checkpoint "
                "has none ('d'); use the official stylegan2-ffhq-config-f.pt or --inversion e4e"
            )
        if steps is None:
            w_steps, w_plus_steps = DEFAULT_STEPS, DEFAULT_W_PLUS_STEPS
        else:
            w_plus_steps = steps // 3
            w_steps = steps - w_plus_steps
        target = torch.cat([from_pil(f.image, self.size) for f in faces]).to(self.device)
        result = project(
            self.base.generator,
            target,
            discriminator=self.base.discriminator,
            steps=w_steps,
            w_plus_steps=w_plus_steps,
            seed=seed,
            latent_avg=self.base.latent_avg,
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
    ) -> Face:
        """Align and invert one input."""
        crop = self.align(image, aligned=aligned, face=face)
        w_plus = self.invert(crop, inversion, steps=steps, seed=seed, show_progress=show_progress)
        return Face(name=_short_name(image), aligned=crop, w_plus=w_plus, inversion=inversion)

    # ------------------------------------------------------------------ fine-tuning
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
        checkpoint_path: str | os.PathLike | None = None,
        resume: bool = False,
        show_progress: bool = True,
    ) -> FinetuneOutput:
        """Fine-tune a style from one or more reference faces.

        Args:
            references: image paths, PIL images or arrays (one face each).
            config: fine-tuning settings (default: the original recipe, 300 iterations).
            inversion: "e4e", "optimize", or "mean" (no inversion: train towards the mean style code, for
                references too far from photos to invert).
            inversion_steps: optimisation steps for ``inversion="optimize"``.
            aligned: the references are already aligned face crops.
            identity_net: face-recognition network for ``config.identity_weight > 0``.
            callback: ``callback(step, loss, preview)`` after each step.
            checkpoint_path: where to keep a resumable state every ``config.checkpoint_every`` steps.
            resume: continue from ``checkpoint_path`` if it exists.
            show_progress: tqdm progress bars.
        """
        if inversion not in FINETUNE_INVERSIONS:
            raise ValueError(f"inversion must be one of {FINETUNE_INVERSIONS}, got {inversion!r}")
        config = FinetuneConfig() if config is None else config
        if config.checkpoint_every and checkpoint_path is None:
            raise ValueError("config.checkpoint_every needs checkpoint_path (where the state is kept)")
        if self.base.discriminator is None:
            raise JojoganError("fine-tuning needs the base checkpoint's discriminator ('d'), which it lacks")
        single = isinstance(references, (str, os.PathLike, Image.Image, np.ndarray))
        sources = [references] if single else list(references)
        if not sources:
            raise ValueError("at least one reference image is needed")
        crops = [self.align(src, aligned=aligned) for src in sources]
        if inversion == "mean":
            config = replace(config, reference_code="mean")
            latents = None
        else:
            latents = self.invert(crops, inversion, steps=inversion_steps, seed=config.seed)
        images = torch.cat([from_pil(c.image, self.size) for c in crops]).to(self.device)

        resume_state = None
        if resume and checkpoint_path is not None and Path(checkpoint_path).is_file():
            resume_state = load_checkpoint_state(checkpoint_path)
            log.info("resuming from %s at step %d", checkpoint_path, resume_state.step)
        on_checkpoint = None
        if checkpoint_path is not None and config.checkpoint_every:

            def on_checkpoint(state: FinetuneState) -> None:
                save_checkpoint_state(state, checkpoint_path)

        mean_latent = None
        if config.reference_code != "invert":
            key = self.base_sha256() or f"unsaved-{id(self.base.generator)}"
            mean_latent = MEAN_LATENTS.get(key, self.base.generator, n=config.mean_code_samples)
        result = finetune(
            self.base.generator,
            self.base.discriminator,
            images,
            latents,
            config,
            mean_latent=mean_latent,
            identity_net=identity_net,
            callback=callback,
            on_checkpoint=on_checkpoint,
            resume=resume_state,
            device=self.device,
            show_progress=show_progress,
        )
        metadata = style_metadata(
            base_name=self.base_path.name if self.base_path else "unknown",
            base_sha256=self.base_sha256(),
            reference_sha256s=[_image_sha256(s, c) for s, c in zip(sources, crops, strict=True)],
            swapped_layers=result.swapped_layers,
            mix_strength=config.mix_strength,
            iterations=config.iterations,
            seed=config.seed,
            losses=result.losses,
            lr=config.lr,
            betas=list(config.betas),
            inversion=inversion,
            reference_code=config.reference_code,
            identity_weight=config.identity_weight,
            reference_names=[_short_name(s) for s in sources],
            package_version=__version__,
        )
        return FinetuneOutput(
            generator=result.generator, losses=result.losses, metadata=metadata, references=crops
        )

    # ------------------------------------------------------------------ stylizing
    def render(self, face: Face, style: str | os.PathLike | StyleFile, alpha: AlphaSpec = 1.0) -> Image.Image:
        """The stylized version of an already prepared face."""
        loaded = self.load_style(style)
        alpha = check_alpha(alpha, self.base.generator.num_styles)
        with torch.no_grad():
            image = stylize_latents(self.base.generator, loaded.generator, face.w_plus.to(self.device), alpha)
        return to_pil(image[0])

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
    ) -> StylizeResult:
        """Stylize one face of a photo.

        Args:
            image: a path, PIL image or array.
            style: a style file (ours or an official JoJoGAN one) or a loaded :class:`StyleFile`.
            alpha: 0 = the original face, 1 = fully stylized; or one value per style layer.
            inversion: "e4e" or "optimize".
            aligned: the input is already an aligned face crop.
            face: which face: "largest" or an index from the left.
            paste: also warp the result back into the photo.
        """
        if paste and aligned:
            raise ValueError("paste needs the photo's alignment, which aligned=True inputs do not have")
        self.load_style(style)
        with cpu_memory_reuse(self.device):
            prepared = self.prepare(image, inversion, aligned=aligned, face=face, steps=inversion_steps)
            styled = self.render(prepared, style, alpha)
            pasted = prepared.aligned.paste_back(styled, image) if paste else None
        return StylizeResult(image=styled, face=prepared, alpha=alpha, pasted=pasted)

    def slider(
        self, face: Face, style: str | os.PathLike | StyleFile, steps: int = 5
    ) -> list[tuple[float, Image.Image]]:
        """The same face at ``steps`` evenly spaced α from 0 to 1."""
        if steps < 2:
            raise ValueError(f"steps must be at least 2 (α = 0 and 1), got {steps}")
        alphas = [i / (steps - 1) for i in range(steps)]
        with cpu_memory_reuse(self.device):
            return [(a, self.render(face, style, a)) for a in alphas]

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
            self.base.generator,
            loaded.generator,
            n,
            truncation=truncation,
            latent_avg=self.base.latent_avg,
            seed=seed,
            alpha=alpha,
        )
        return [to_pil(x) for x in originals], [to_pil(x) for x in styled]


def stylize(
    image: ImageSource,
    style: str | os.PathLike,
    alpha: AlphaSpec = 1.0,
    *,
    base: str | os.PathLike | None = None,
    e4e: str | os.PathLike | None = None,
    inversion: str = "e4e",
    device: str = "cpu",
    **kwargs,
) -> StylizeResult:
    """One call: load the models, stylize one photo. For many photos build a :class:`JoJoGAN` once."""
    pipe = JoJoGAN.from_pretrained(base=base, e4e=e4e, device=device)
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
