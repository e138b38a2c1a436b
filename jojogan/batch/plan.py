"""The plan of a batch, made before any model loads: what to list, what to skip, what to write where.

The output rule of every command (:func:`jojogan.fileio.claim_outputs`), for a whole library:

* the output folder can take files (not a file, not read-only, not full) and its manifest is a file;
* nothing the batch writes is listed as a photo: when the output folder is inside an input folder a walk
  never enters it, and the outputs an earlier run recorded are never inputs;
* an output never replaces an input (by path, symlink or hard link), the style or a weights file;
* an output that already exists is replaced only with ``force``: a rerun with other settings says which
  photos it would redo and stops.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jojogan.batch.errors import BatchError
from jojogan.batch.inputs import InputItem, input_sha256, is_video, scan_inputs, unreadable
from jojogan.batch.job import BatchSettings, video_output
from jojogan.batch.manifest import (
    MANIFEST_NAME,
    check_manifest_path,
    face_outputs,
    output_name,
    read_manifest,
    reusable,
)
from jojogan.batch.walk import MAX_PHOTOS, Exclusions
from jojogan.fileio import check_folder_writable, file_key

__all__ = ["BatchPlan", "InputFiles", "plan_batch"]

log = logging.getLogger(__name__)

_SHOWN = 3


@dataclass
class InputFiles:
    """The local files a batch reads, by resolved path and by ``(st_dev, st_ino)``."""

    paths: dict[Path, str] = field(default_factory=dict)
    keys: dict[tuple[int, int], str] = field(default_factory=dict)

    def add(self, path: str | os.PathLike) -> None:
        key = file_key(path)
        if key is not None:
            self.keys[key] = str(path)
            self.paths[_resolved(Path(path))] = str(path)

    def holding(self, path: Path) -> str | None:
        """The input that ``path`` is (the same path, a symlink to it or a hard link), else ``None``."""
        return self.paths.get(_resolved(path)) or self.keys.get(file_key(path))  # type: ignore[arg-type]


def _resolved(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError):
        return path.absolute()


@dataclass
class BatchPlan:
    """What a batch will do.

    Attributes:
        outdir: the output folder (created by the plan).
        manifest: its ``manifest.jsonl``.
        rows: one manifest line per listed input, by its path, in input order (reused or fresh).
        todo: the inputs to stylize.
        previous: the valid lines an earlier run left, by input.
        inputs: the local files the batch reads (never overwritten).
        force: existing outputs may be replaced.
        unlisted: one line per folder that could not be read.
    """

    outdir: Path
    manifest: Path
    rows: dict[Path | str, dict]
    todo: list[InputItem]
    previous: dict[str, dict]
    inputs: InputFiles
    force: bool
    unlisted: list[str]


def new_row(item: InputItem, engine: str, input_sha256: str | None, settings_sha256: str) -> dict:
    """A manifest line for an input not done yet."""
    return {
        "input": str(item.path),
        "input_sha256": input_sha256,
        "settings_sha256": settings_sha256,
        "engine": engine,
        "status": "error",
        "outputs": [],
        "faces": 0,
        "identity": [],
        "error": None,
        "seconds": 0.0,
        "skipped": False,
    }


def _check_output_folder(outdir: Path) -> Path:
    if outdir.exists() and not outdir.is_dir():
        raise BatchError(f"the output {outdir} is a file; expected a folder")
    manifest = outdir / MANIFEST_NAME
    check_manifest_path(manifest)
    check_folder_writable(outdir)
    return manifest


def plan_batch(
    inputs: list[str | os.PathLike],
    settings: BatchSettings,
    output: str | os.PathLike,
    *,
    engine: str = "local",
    filesystem: Any = None,
    retry_errors: bool = False,
    force: bool = False,
    max_photos: int = MAX_PHOTOS,
) -> BatchPlan:
    """List, hash and check everything before any model loads; create the output folder.

    Raises:
        BatchError: nothing to list, a bound passed, an output would replace an input, or outputs of an
            earlier run would be replaced without ``force``.
        OutputError: the output folder cannot take files.
    """
    outdir = Path(output)
    manifest = _check_output_folder(outdir)
    previous = read_manifest(manifest, outdir)
    earlier = frozenset(
        _resolved(outdir / name) for row in previous.values() for name in row.get("outputs", [])
    )
    listing = scan_inputs(inputs, filesystem, Exclusions(_resolved(outdir), earlier), max_photos)
    if listing.excluded:
        log.debug("%d outputs of an earlier run in %s are not taken as photos", listing.excluded, outdir)
    plan = BatchPlan(outdir, manifest, {}, [], previous, InputFiles(), force, listing.problems)
    for path in (settings.style, *settings.models.files, settings.config.identity_weights):
        if path is not None:
            plan.inputs.add(path)
    for item in listing.items:
        _plan_item(plan, item, engine, settings.fingerprint(video=is_video(item)), retry_errors)
    _check_outputs(plan, settings)
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise BatchError(f"cannot create the output folder {outdir}: {error.strerror or error}") from error
    return plan


def _plan_item(plan: BatchPlan, item: InputItem, engine: str, fingerprint: str, retry_errors: bool) -> None:
    try:
        digest = input_sha256(item)
    except OSError as error:
        row = new_row(item, engine, None, fingerprint)
        row["error"] = unreadable(item, error)
        plan.rows[item.path] = row
        return
    if item.filesystem is None:
        plan.inputs.add(item.path)
    earlier = plan.previous.get(str(item.path))
    if reusable(earlier, digest, fingerprint, plan.outdir, retry_errors):
        plan.rows[item.path] = {**earlier, "skipped": True}
    else:
        plan.rows[item.path] = new_row(item, engine, digest, fingerprint)
        plan.todo.append(item)


def expected_outputs(plan: BatchPlan, item: InputItem, settings: BatchSettings) -> list[Path]:
    """The files stylizing ``item`` will write that can be named now (with ``--face all``, one file per
    face: those already there)."""
    if is_video(item):
        return [plan.outdir / video_output(item)]
    config = settings.config
    if config.face == "all" and not config.aligned and not config.paste:
        return face_outputs(plan.outdir, item.stem)
    return [plan.outdir / output_name(item.stem)]


def _check_outputs(plan: BatchPlan, settings: BatchSettings) -> None:
    """No output replaces an input; outputs already there are replaced only with ``force``."""
    redo: list[tuple[InputItem, Path]] = []
    for item in plan.todo:
        for target in expected_outputs(plan, item, settings):
            source = plan.inputs.holding(target)
            if source is not None:
                raise BatchError(
                    f"the output {target} of {item.path} would replace the input {source}; an output never "
                    "replaces an input (choose another -o)"
                )
            if os.path.lexists(target):
                redo.append((item, target))
    if redo and not plan.force:
        raise BatchError(_redo_message(plan, redo))


def _redo_message(plan: BatchPlan, redo: list[tuple[InputItem, Path]]) -> str:
    """What a rerun would redo and replace, and why (other settings, other content, no manifest line)."""
    reasons = {"with other settings": 0, "whose photo changed": 0, "not in the manifest": 0}
    photos = list(dict.fromkeys(item.path for item, _ in redo))
    for path in photos:
        earlier = plan.previous.get(str(path))
        new = plan.rows[path]
        if earlier is None:
            reasons["not in the manifest"] += 1
        elif earlier.get("input_sha256") != new["input_sha256"]:
            reasons["whose photo changed"] += 1
        else:
            reasons["with other settings"] += 1
    why = ", ".join(f"{n} {reason}" for reason, n in reasons.items() if n)
    names = ", ".join(str(target.relative_to(plan.outdir)) for _, target in redo[:_SHOWN])
    more = f" and {len(redo) - _SHOWN} more" if len(redo) > _SHOWN else ""
    return (
        f"{len(photos)} photo(s) would be redone ({why}), replacing {len(redo)} earlier output(s) in "
        f"{plan.outdir} ({names}{more}); pass --force to redo them, or choose another -o"
    )
