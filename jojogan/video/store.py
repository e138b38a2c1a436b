"""The chunk store: a run's finished work, kept beside the output so that an interrupted run resumes.

For ``OUT`` the store is the hidden folder ``.OUT.jojogan-video`` beside it. It holds ``run.json`` (the
fingerprint of the run: input, style, base, settings), the face tracks (``plan.npz``), each chunk's raw
codes (``codes-NNNNN.safetensors``), each chunk's encoded video (``segment-NNNNN.nut``) and, when the run
is split over workers (:mod:`jojogan.video.chunks`), each chunk's final codes
(``final-NNNNN.safetensors``). Every file is
written atomically, so a file that exists is complete. A run whose fingerprint matches continues from
there; any other run starts the store afresh. The store is removed once the output is written.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import torch

from jojogan.errors import JojoganError
from jojogan.fileio import atomic_output

__all__ = ["ChunkStore", "store_path"]

log = logging.getLogger("jojogan")

_FINGERPRINT = "run.json"


def store_path(out: str | os.PathLike) -> Path:
    """The store folder of an output path."""
    out = Path(out)
    return out.parent / f".{out.name}.jojogan-video"


def fingerprint(record: dict) -> str:
    """sha256 of a run's record (JSON with sorted keys)."""
    return hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()


class ChunkStore:
    """A run's files (see the module docstring).

    Args:
        out: the output video's path.
        record: what identifies the run (compared on resume).
    """

    def __init__(self, out: str | os.PathLike, record: dict):
        self.folder = store_path(out)
        self.record = record
        self.key = fingerprint(record)

    def open(self, resume: bool = True) -> int:
        """Create the store, or keep a matching one when ``resume``; returns the chunks already done."""
        marker = self.folder / _FINGERPRINT
        if self.folder.exists():
            same = resume and marker.is_file() and _read_key(marker) == self.key
            if same:
                done = len(list(self.folder.glob("segment-*.nut"))) + len(list(self.folder.glob("codes-*")))
                log.info("resuming from %s (%d chunk file(s) done)", self.folder, done)
                return done
            log.info("starting %s afresh (it holds another run's work)", self.folder)
            self.remove()
        try:
            self.folder.mkdir(parents=True)
        except OSError as error:
            raise JojoganError(f"could not create {self.folder}: {error.strerror or error}") from error
        self.write_json(_FINGERPRINT, {"key": self.key, "record": self.record})
        return 0

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    # ---------------------------------------------------------------- files
    def path(self, name: str) -> Path:
        return self.folder / name

    def codes_path(self, chunk: int) -> Path:
        return self.folder / f"codes-{chunk:05d}.safetensors"

    def segment_path(self, chunk: int) -> Path:
        return self.folder / f"segment-{chunk:05d}.nut"

    def write_json(self, name: str, value: dict) -> None:
        with atomic_output(self.folder / name) as tmp:
            tmp.write_text(json.dumps(value, indent=1, sort_keys=True, default=str))

    def write_arrays(self, name: str, arrays: dict[str, np.ndarray]) -> None:
        with atomic_output(self.folder / name) as tmp, open(tmp, "wb") as handle:
            np.savez(handle, **arrays)

    def read_arrays(self, name: str) -> dict[str, np.ndarray] | None:
        path = self.folder / name
        if not path.is_file():
            return None
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}

    def write_tensors(self, path: Path, tensors: dict[str, torch.Tensor]) -> None:
        from safetensors.torch import save_file

        with atomic_output(path) as tmp:
            save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp))

    @staticmethod
    def read_tensors(path: Path) -> dict[str, torch.Tensor]:
        from safetensors.torch import load_file

        return load_file(str(path))


def _read_key(marker: Path) -> str | None:
    try:
        return json.loads(marker.read_text()).get("key")
    except (OSError, ValueError, AttributeError):
        return None
