"""Which models a front end loads, as one value: the base and its domain, optional component files, the
device. The command line gathers its model options into one; batch settings carry one to their workers."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["Models"]


@dataclass(frozen=True)
class Models:
    """Which models to load.

    Attributes:
        base: the base checkpoint (``None``: the official FFHQ file in the weights cache).
        e4e: the e4e file (``None``: the cache, fetched when first used).
        device: where the models run (``"auto"``: CUDA, then MPS, then the CPU).
        domain: the base's domain profile (``None``: its registry row's, else ffhq).
        aligner: another aligner than the domain's (:data:`jojogan.domains.ALIGNERS`).
        codeformer: the CodeFormer file (``None``: the cache, fetched when first used).
    """

    base: Path | None = None
    e4e: Path | None = None
    device: str = "auto"
    domain: str | None = None
    aligner: str | None = None
    codeformer: Path | None = None

    @property
    def files(self) -> list[Path | None]:
        """The files it names (``None`` entries: the cache), for input checks and fingerprints."""
        return [self.base, self.e4e, self.codeformer]

    def load(self):
        """The pipeline (:meth:`jojogan.api.JoJoGAN.from_pretrained`)."""
        from jojogan.api import JoJoGAN

        return JoJoGAN.from_pretrained(
            base=self.base, e4e=self.e4e, device=self.device, codeformer=self.codeformer,
            profile=self.domain, aligner=self.aligner,
        )  # fmt: skip
