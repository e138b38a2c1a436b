"""The Python API: a pipeline object built once from weights, and one-call helpers.

    import jojogan

    pipe = jojogan.JoJoGAN.from_pretrained(base="stylegan2-ffhq-config-f.pt", e4e="e4e_ffhq_encode.pt")
    run = pipe.finetune(["ref.png"])                      # -> FinetuneOutput
    run.save("mystyle.safetensors")
    result = pipe.stylize("photo.jpg", "mystyle.safetensors", config=jojogan.StylizeConfig(alpha=0.7))
    result.image.save("out.png")

The pipeline is a hub: its models live in :class:`jojogan.components.Components` (encoders, cleaners and
recognizers come from their tables and load on first use), every stylize setting comes in as one
:class:`jojogan.StylizeConfig` (keyword arguments of the same names are folded into it at the door), and
the stages it calls are pure functions elsewhere (:mod:`jojogan.stylization`, :mod:`jojogan.results`,
:mod:`jojogan.finetune`). The base's domain profile (:mod:`jojogan.domains`) decides the defaults that
depend on what the pictures are.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable, Sequence

import torch

from jojogan.config import SAMPLES, AlphaSpec, FinetuneConfig, StylizeConfig, check_alpha
from jojogan.domains import DomainMismatchError
from jojogan.hub import Hub, as_sources, image_sha256, pick_device, short_name
from jojogan.identity.metric import IdentityCurve, identity_curve
from jojogan.imaging import from_pil, to_pil
from jojogan.inversion.align import AlignedFace
from jojogan.inversion.images import ImageSource
from jojogan.op.memory import cpu_memory_reuse
from jojogan.results import Face, FinetuneOutput, StylizeResult, finish_faces
from jojogan.style_file import StyleFile, style_metadata
from jojogan.stylization import TRUNCATION, sample_styled, stylize_latents
from jojogan.weights import generator_only_error

__all__ = ["Face", "FinetuneOutput", "JoJoGAN", "StylizeResult", "finetune_style", "pick_device", "stylize"]

StyleSource = str | os.PathLike | StyleFile


def _job(method: Callable) -> Callable:
    """Run a pipeline method as one job of the CPU memory policy (:mod:`jojogan.op.memory`).

    The policy is process-wide, so it is entered here, at the API's edge, and not inside the stages.
    """

    @functools.wraps(method)
    def wrapper(self: JoJoGAN, *args, **kwargs):
        with cpu_memory_reuse(self.device):
            return method(self, *args, **kwargs)

    return wrapper


class JoJoGAN(Hub):
    """The JoJoGAN pipeline: a base StyleGAN2 loaded once, reused for every call.

    Build it with :meth:`from_pretrained` (or from a loaded checkpoint, see :class:`jojogan.hub.Hub`);
    the methods below are the product's stages: :meth:`prepare` (align + invert), :meth:`render_many`
    (the two generators blended by alpha, then cleanup), :meth:`stylize_many` (the whole photo flow),
    :meth:`finetune`, :meth:`slider` and :meth:`sample`.
    """

    # ------------------------------------------------------------------ faces
    @_job
    def prepare(
        self,
        image: ImageSource,
        config: StylizeConfig | None = None,
        *,
        crop: AlignedFace | None = None,
        seed: int = 0,
        show_progress: bool = False,
        **overrides,
    ) -> Face:
        """Align and invert one input (one face; restored first with ``config.restore_input``).

        ``crop``: ``image``'s face already aligned by :meth:`align`, used instead of aligning again.
        """
        config = self.settings(config, **overrides)
        crop = self.align(image, config) if crop is None else crop
        return self.invert_faces([short_name(image)], [crop], config, seed, show_progress)[0]

    def invert_faces(
        self, names: list[str], crops: list[AlignedFace], config: StylizeConfig, seed=0, show_progress=False
    ) -> list[Face]:
        """Faces from aligned crops: restored when asked, then inverted (as one batch where the encoder
        allows it: an encoder whose codes depend on their batch inverts each face alone)."""
        if config.restore_input:
            cleaner = self.cleaner(config.cleaner)
            crops = [dataclasses.replace(c, image=cleaner.restore(c.image, config.fidelity)) for c in crops]
        encoder = self.encoder(config.inversion)
        if encoder.batched and len(crops) > 1:
            codes = list(self.invert(crops, config, seed=seed))
        else:
            labels = [f"projecting {name}" if show_progress else False for name in names]
            codes = [
                self.invert([c], config, seed=seed, show_progress=lb)[0]
                for c, lb in zip(crops, labels, strict=True)
            ]
        return [
            Face(name=name, aligned=crop, w_plus=code[None], inversion=config.inversion)
            for name, crop, code in zip(names, crops, codes, strict=True)
        ]

    # ------------------------------------------------------------------ stylizing
    @_job
    def render_many(
        self, faces: Sequence[Face], style: StyleSource, alpha: AlphaSpec | None = None, *, config=None, **kw
    ) -> list:
        """Stylized images of prepared faces: their codes ``[n, n_latent, style_dim]`` go through the two
        generators (blended by alpha) and the cleaner as one batch."""
        config = self.settings(config, alpha, **kw)
        loaded = self.load_style(style)
        alpha = check_alpha(config.alpha, self.generator.num_styles)
        codes = torch.cat([face.w_plus.to(self.device) for face in faces])
        with torch.no_grad():
            images = stylize_latents(self.generator, loaded.generator, codes, alpha)
            if config.cleanup is not None:
                images = self.cleaner(config.cleanup).clean(images, config.fidelity)
        return [to_pil(image) for image in images]

    def render(self, face: Face, style: StyleSource, alpha: AlphaSpec | None = None, **kw):
        """:meth:`render_many` for one face."""
        return self.render_many([face], style, alpha, **kw)[0]

    @_job
    def stylize_many(
        self,
        images: Sequence[ImageSource],
        style: StyleSource,
        alpha: AlphaSpec | None = None,
        *,
        config: StylizeConfig | None = None,
        crops: Sequence[AlignedFace | None] | None = None,
        show_progress: bool = False,
        **overrides,
    ) -> list[StylizeResult]:
        """Stylize the faces of several photos, batched on the device.

        Args:
            images: paths, PIL images or arrays.
            style: a style file (ours or an official JoJoGAN one) or a loaded :class:`StyleFile`.
            alpha: shorthand for ``config.alpha``.
            config: every setting (:class:`StylizeConfig`); keyword ``overrides`` replace its fields.
            crops: per image, its face already aligned as :meth:`align` would (e.g. by a batch's alignment
                workers), or ``None``; ``image`` is still read for ``paste``.
            show_progress: a progress bar per image for optimisation inversion.

        Returns:
            One result per face, photo by photo: one per photo, or every face of it with
            ``face="all"`` (each then carries the photo with all its faces pasted back).
        """
        config = self.settings(config, alpha, **overrides)
        check_alpha(config.alpha, self.load_style(style).generator.num_styles)  # before the slow inversion
        crops = [None] * len(images) if crops is None else list(crops)
        if len(crops) != len(images) or not images:
            raise ValueError(
                f"expected one crop (or None) for each of {len(images)} images, got {len(crops)}"
            )
        recognizer = self.recognizer_for(config)
        per_photo = [
            self.align_all(image, config) if c is None else [c]
            for image, c in zip(images, crops, strict=True)
        ]
        names = [short_name(image) for image, faces in zip(images, per_photo, strict=True) for _ in faces]
        faces = self.invert_faces(names, [c for cs in per_photo for c in cs], config, 0, show_progress)
        styled = self.render_many(faces, style, config=config)
        results, first = [], 0
        for image, photo_faces in zip(images, per_photo, strict=True):
            span = slice(first, first + len(photo_faces))
            into = image if config.paste else None
            results += finish_faces(faces[span], styled[span], config, paste_into=into, recognizer=recognizer)
            first = span.stop
        return results

    def stylize(
        self, image: ImageSource, style: StyleSource, alpha=None, *, crop=None, **kw
    ) -> StylizeResult:
        """Stylize one face of a photo (:meth:`stylize_many` for one photo; ``face="all"``: the first face's
        result, whose ``pasted`` holds every face; :meth:`stylize_faces` gives each face's result)."""
        return self.stylize_many([image], style, alpha, crops=[crop], **kw)[0]

    def stylize_faces(self, image: ImageSource, style: StyleSource, alpha=None, **kw) -> list[StylizeResult]:
        """Every face of a group photo, each stylized; with ``paste`` each result's ``pasted`` is the
        photo with all of them pasted back. Faces too small to align are logged and left as they are."""
        return self.stylize_many([image], style, alpha, **{**kw, "face": "all"})

    @_job
    def stylize_face(
        self, prepared: Face, style: StyleSource, alpha=None, *, paste_into=None, config=None, **overrides
    ) -> StylizeResult:
        """The stylizing half of :meth:`stylize` for a face from :meth:`prepare`: an application that keeps
        the prepared face calls this for every new ``alpha`` (one pass of the generators, plus the
        finishing stages asked for). ``paste_into``: the photo it was aligned from."""
        config = self.settings(config, alpha, **overrides)
        styled = self.render_many([prepared], style, config=config)
        recognizer = self.recognizer_for(config)
        return finish_faces([prepared], styled, config, paste_into=paste_into, recognizer=recognizer)[0]

    @_job
    def stylize_video(self, source, out, style: StyleSource, config=None, video=None, **kw):
        """Stylize the faces of a video, sound and timing kept (:func:`jojogan.video.stylize_video`)."""
        from jojogan.video import stylize_video

        return stylize_video(self, source, out, style, config, video, **kw)

    @_job
    def slider(self, face: Face, style: StyleSource, steps: int = 5) -> list[tuple[float, object]]:
        """The same face at ``steps`` evenly spaced α from 0 to 1."""
        if steps < 2:
            raise ValueError(f"steps must be at least 2 (α = 0 and 1), got {steps}")
        alphas = [i / (steps - 1) for i in range(steps)]
        return [(a, self.render(face, style, a)) for a in alphas]

    def identity_curve(self, face: Face, frames: Sequence[tuple[float, object]], network) -> IdentityCurve:
        """identity(α) of a :meth:`slider`'s frames against the input face."""
        recognizer = self.recognizer(network)
        return identity_curve(face.aligned.image, [i for _, i in frames], [a for a, _ in frames], recognizer)

    @_job
    def sample(self, style: StyleSource, n=SAMPLES, truncation=TRUNCATION, seed: int = 0, alpha=1.0):
        """Random pictures and the same pictures in the style: ``(originals, styled)``."""
        loaded = self.load_style(style)
        originals, styled = sample_styled(
            self.generator, loaded.generator, n, truncation, self.latent_avg, seed, alpha
        )
        return [to_pil(x) for x in originals], [to_pil(x) for x in styled]

    # ------------------------------------------------------------------ fine-tuning
    def check_finetune(self, config: FinetuneConfig) -> FinetuneConfig:
        """``config`` when it applies to this base's pictures (the identity loss needs faces).

        Raises:
            DomainMismatchError: a face-only setting for pictures that are not faces (a ``ValueError``).
        """
        if config.identity_weight > 0 and not self.profile.faces:
            raise DomainMismatchError(
                f"the identity loss applies to faces, not to {self.profile.name} pictures"
            )
        return config

    @_job
    def finetune(
        self,
        references: ImageSource | Sequence[ImageSource],
        config: FinetuneConfig | None = None,
        *,
        inputs: StylizeConfig | None = None,
        identity_net=None,
        callback: Callable | None = None,
        resume_state_path: str | os.PathLike | None = None,
        resume=False,
        show_progress: bool = True,
        **overrides,
    ) -> FinetuneOutput:
        """Fine-tune a style from one or more reference pictures.

        Args:
            references: image paths, PIL images or arrays (one face each).
            config: fine-tuning settings (default: the original recipe, 300 iterations).
            inputs: how references are aligned and inverted: the preparation fields of a
                :class:`StylizeConfig` (``inversion``, ``inversion_steps``, ``distance``, ``aligned``,
                ``max_pixels``, ``inversion_options``); keyword ``overrides`` replace them.
            identity_net: face-recognition network for ``config.identity_weight > 0``.
            callback: ``callback(step, loss, preview)`` after each step.
            resume_state_path: where to keep a resume state every ``config.save_state_every`` steps.
            resume: continue from ``resume_state_path`` if it exists, or from this (loaded) state; a state
                of another run is refused before any inversion (:func:`jojogan.finetune.plan_run`).
            show_progress: tqdm progress bars.
        """
        from jojogan.finetune import finetune, plan_run

        config = self.check_finetune(FinetuneConfig() if config is None else config)
        inputs = self.settings(inputs, **overrides)
        if self.discriminator is None:
            raise generator_only_error(self.base_path or "the base checkpoint", "fine-tuning")
        sources = as_sources(references)
        crops = [self.align(src, inputs) for src in sources]
        sha256s = [image_sha256(s, c) for s, c in zip(sources, crops, strict=True)]
        plan = plan_run(
            self.generator, config, reference_sha256s=sha256s,
            base_sha256=self.base_sha256(), inversion=inputs.inversion, resume=resume,
            resume_state_path=resume_state_path,
        )  # fmt: skip
        label = f"projecting {len(crops)} reference(s)" if show_progress else False
        latents = self.invert(crops, inputs, seed=config.seed, show_progress=label) if plan.inverted else None
        images = torch.cat([from_pil(c.image, self.size) for c in crops]).to(self.device)
        result = finetune(
            self.generator, self.discriminator, images, latents, config, mean_latent=plan.mean_latent,
            identity_net=identity_net, callback=callback, on_resume_state=plan.save_state, resume=plan.resume,
            provenance=plan.provenance, device=self.device, show_progress=show_progress,
        )  # fmt: skip
        metadata = style_metadata(
            base_name=self.base_path.name if self.base_path else "unknown", base_sha256=self.base_sha256(),
            reference_sha256s=plan.provenance["reference_sha256s"], losses=result.losses, run=result.record,
            inversion=plan.provenance["inversion"], reference_names=[short_name(s) for s in sources],
        )  # fmt: skip
        return FinetuneOutput(result.generator, result.losses, metadata, references=crops)


def stylize(
    image: ImageSource, style, alpha=None, *, base=None, e4e=None, device="cpu", codeformer=None, **kw
):
    """One call: load the models, stylize one photo. For many photos build a :class:`JoJoGAN` once."""
    pipe = JoJoGAN.from_pretrained(base=base, e4e=e4e, device=device, codeformer=codeformer)
    return pipe.stylize(image, style, alpha, **kw)


def finetune_style(references, *, base=None, e4e=None, device="cpu", config=None, **kwargs) -> FinetuneOutput:
    """One call: load the models and fine-tune a style (``.save(path)`` the result)."""
    pipe = JoJoGAN.from_pretrained(base=base, e4e=e4e, device=device)
    return pipe.finetune(references, config, **kwargs)
