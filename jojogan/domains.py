"""Domain profiles: what a base generator's pictures are, and so which stages apply to them.

A profile is data about a *kind* of model, not about one file: the resolution its generator makes, how a
photo becomes the generator's frame (``aligner``), which encoder inverts it by default, whether the
identity figure means anything (faces only) and whether a result can be pasted back into the photo.
Every base-weights row of :data:`jojogan.weights.REGISTRY` names its profile; a file passed by path gets
its registry row's profile, or the one named on the command line (``--domain``/``--aligner``), or
:data:`DEFAULT_PROFILE`.

Adding a domain is one row here (and a weights row naming it); no front end names a domain.
"""

from __future__ import annotations

from dataclasses import dataclass

from jojogan.errors import JojoganError

__all__ = ["ALIGNERS", "DEFAULT_PROFILE", "PROFILES", "DomainMismatchError", "DomainProfile", "profile_for"]

ALIGNERS: tuple[str, ...] = ("ffhq-dlib", "center-crop", "none")
"""How a photo becomes the generator's square frame: FFHQ alignment from dlib's 68 landmarks, the
largest centred square, or nothing (the input already is the frame)."""


class DomainMismatchError(JojoganError, ValueError):
    """A setting that does not apply to the base's pictures (paste-back, face selection or the identity
    loss for pictures that are not faces): one line for the user, a ``ValueError`` for the API."""


@dataclass(frozen=True)
class DomainProfile:
    """One kind of base generator.

    Attributes:
        name: the profile's name (``ffhq``, ``afhq-cat``, ...).
        description: what its pictures show.
        resolution: the side of the generator's square images, in px.
        aligner: one of :data:`ALIGNERS`.
        encoder: the default encoder (a key of :data:`jojogan.inversion.encoders.ENCODERS`).
        identity: the identity figure is measured by default (its networks recognise human faces).
        paste: results can be pasted back into the photo (the aligner keeps the transform back).
        picture: ``(width, height)`` of the content inside the square (LSUN cars: 512×384), or ``None``.
    """

    name: str
    description: str
    resolution: int
    aligner: str
    encoder: str
    identity: bool
    paste: bool
    picture: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if self.aligner not in ALIGNERS:
            raise ValueError(f"aligner must be one of {', '.join(ALIGNERS)}, got {self.aligner!r}")
        if self.paste and self.aligner == "none":
            raise ValueError("paste-back needs an aligner that keeps the transform back to the photo")

    @property
    def faces(self) -> bool:
        """Human faces, aligned by landmarks (the face-only options apply)."""
        return self.aligner == "ffhq-dlib"


PROFILES: dict[str, DomainProfile] = {
    profile.name: profile
    for profile in (
        DomainProfile(
            "ffhq",
            "human faces (FFHQ), aligned from dlib's 68 landmarks",
            1024,
            aligner="ffhq-dlib",
            encoder="e4e",
            identity=True,
            paste=True,
        ),
        # FFHQ at 512 and 256 px (NVIDIA's stylegan2-ada-pytorch transfer-learning sources): faces, but
        # e4e is trained for the 1024 px generator only, so they invert by optimisation
        *(
            DomainProfile(
                f"ffhq-{size}",
                f"human faces (FFHQ) at {size} px, aligned from dlib's 68 landmarks",
                size,
                aligner="ffhq-dlib",
                encoder="optimize",
                identity=True,
                paste=True,
            )
            for size in (512, 256)
        ),
        DomainProfile(
            "metfaces",
            "painted and sculpted portraits (MetFaces), aligned like FFHQ from dlib's 68 landmarks",
            1024,
            aligner="ffhq-dlib",
            encoder="optimize",
            identity=True,
            paste=True,
        ),
        *(
            DomainProfile(
                f"afhq-{kind}",
                f"{kind} faces (AFHQ), the animal's face filling a centred square",
                512,
                aligner="center-crop",
                encoder="optimize",
                identity=False,
                paste=True,
            )
            for kind in ("cat", "dog", "wild")
        ),
        *(
            DomainProfile(
                f"lsun-{kind}",
                f"{kind} pictures (LSUN), the largest centred square",
                256,
                aligner="center-crop",
                encoder="optimize",
                identity=False,
                paste=True,
            )
            for kind in ("church", "horse", "cat")
        ),
        DomainProfile(
            "lsun-car",
            "cars (LSUN): a 512x384 picture, centred between black bars in the 512 px square",
            512,
            aligner="center-crop",
            encoder="optimize",
            identity=False,
            paste=False,
            picture=(512, 384),
        ),
        DomainProfile(
            "generic",
            "any picture: the largest centred square, inverted by optimisation, no identity figure",
            1024,
            aligner="center-crop",
            encoder="optimize",
            identity=False,
            paste=True,
        ),
    )
}
"""Every known profile by name."""

DEFAULT_PROFILE = "ffhq"
"""The profile of a base file that no registry row and no option describes (the product's first domain)."""


def profile_for(name: str) -> DomainProfile:
    """The profile called ``name``.

    Raises:
        JojoganError: no such profile (the message lists the known ones).
    """
    try:
        return PROFILES[name]
    except KeyError:
        raise JojoganError(f"unknown domain {name!r}; known domains: {', '.join(PROFILES)}") from None
