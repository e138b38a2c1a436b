"""Bounds on the sizes a user asks for — ``sample -n``, ``--tile``, ``align --size``, ``slider --steps`` —
derived from this machine's memory and from what the output format can hold, checked before the work
starts, so that a typo (``-n 100000``) is one line saying why instead of minutes of swapping or a crash.

The estimates count what the command keeps at once (its images in memory as tensors and pictures, and the
grid or strip it writes), not the model's working set, which is small beside them at these sizes; a
quarter of the memory available is left to everything else.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from jojogan.errors import JojoganError

__all__ = [
    "MAX_SIDE",
    "available_memory",
    "check_crop_size",
    "check_picture_side",
    "check_sample",
    "check_slider",
]

_HEADROOM = 0.75
_GAP, _CAPTION = 4, 24  # what jojogan.imaging puts between tiles and under a strip
_FLOAT_IMAGE = 3 * 4  # bytes per pixel of an RGB float32 tensor
_PICTURE = 3  # bytes per pixel of an 8-bit RGB picture

MAX_SIDE = {".jpg": 65_500, ".jpeg": 65_500, ".gif": 65_535, ".webp": 16_383, ".png": 2**31 - 1}
"""The widest picture each format can hold, in pixels (others: Pillow's own bound, 2**31 - 1)."""


class LimitError(JojoganError):
    """A size asked for would not fit this machine's memory or the output format."""


def available_memory() -> int | None:
    """Bytes of memory available to this process now: the kernel's ``MemAvailable``, or the room left in
    its cgroup's limit when that is smaller (``None`` where neither can be read)."""
    found = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit.isdigit():
            used = int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
            found.append(max(int(limit) - used, 0))
    except (OSError, ValueError):
        pass
    if not found:
        try:
            found.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (OSError, ValueError):
            return None
    return min(found)


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"


def _check_memory(
    option: str, value: int, per_unit: int, fixed: int, what: str, unit: tuple[str, int] | None = None
) -> None:
    """``value`` units of ``per_unit`` bytes (plus ``fixed``) must fit in the memory available; when even
    one unit does not, the option that sizes a unit (``unit``: e.g. ``("--tile", 100000)``) is named."""
    available = available_memory()
    if available is None:
        return
    budget = int(available * _HEADROOM)
    needed = fixed + value * per_unit
    if unit is not None and fixed + per_unit > budget:
        raise LimitError(
            f"{unit[0]} {unit[1]} needs about {_size(fixed + per_unit)} of memory for a single one, more "
            f"than the {_size(budget)} this machine can spare now ({_size(available)} available)"
        )
    if needed > budget:
        most = max((budget - fixed) // per_unit, 0)
        raise LimitError(
            f"{option} {value} needs about {_size(needed)} of memory ({what}), more than the "
            f"{_size(budget)} this machine can spare now ({_size(available)} available); at most {most} fits"
        )


def check_picture_side(option: str, value: int, width: int, output: str | os.PathLike) -> None:
    """The picture ``output`` would be ``width`` pixels wide: within what its format can hold."""
    suffix = Path(output).suffix.lower()
    limit = MAX_SIDE.get(suffix, 2**31 - 1)
    if width > limit:
        raise LimitError(
            f"{option} {value} makes {Path(output).name} {width:,} px wide; a {suffix or 'picture'} holds at "
            f"most {limit:,} px"
        )


def check_sample(count: int, tile: int, size: int, output: str | os.PathLike) -> None:
    """``sample -n COUNT --tile TILE`` from a ``size`` px generator: two rows of faces.

    Raises:
        LimitError: the grid is wider than its format allows, or the faces do not fit in memory.
    """
    check_picture_side("--tile", tile, tile + _GAP, output)
    check_picture_side("-n", count, count * (tile + _GAP), output)
    per_face = 2 * size * size * (_FLOAT_IMAGE + _PICTURE) + 2 * (tile + _GAP) ** 2 * _PICTURE
    what = f"{count} faces and their styled twins at {size} px, and the grid"
    _check_memory("-n", count, per_face, 0, what, ("--tile", tile))


def check_slider(
    steps: int, tile: int, size: int, output: str | os.PathLike, gif: str | os.PathLike | None = None
) -> None:
    """``slider --steps STEPS --tile TILE`` of a ``size`` px generator: a strip and maybe a GIF.

    Raises:
        LimitError: the strip or the GIF is larger than its format allows, or it does not fit in memory.
    """
    check_picture_side("--tile", tile, tile + _GAP, output)
    check_picture_side("--steps", steps, steps * (tile + _GAP), output)
    if gif is not None:
        check_picture_side("--tile", tile, tile, gif)
    frame = size * size * _PICTURE + (tile + _GAP) * (tile + _CAPTION) * _PICTURE
    frames = frame + (2 * tile * tile * _PICTURE if gif is not None else 0)
    what = f"{steps} frames at {size} px and their {tile} px tiles"
    _check_memory("--steps", steps, frames, 0, what, ("--tile", tile))


def check_crop_size(size: int, supersample: bool = False, crops: int = 1) -> None:
    """``align --size SIZE``: each crop is resampled at ``SIZE`` (four times that with ``supersample``).

    Raises:
        LimitError: the crop does not fit in memory.
    """
    check_picture_side("--size", size, size, "crop.png")
    per_pixel = _PICTURE * (
        crops + (16 if supersample else 1) + 1
    )  # the crops kept, the resampling, the file
    available = available_memory()
    if available is None:
        return
    budget = int(available * _HEADROOM)
    if size * size * per_pixel > budget:
        most = math.isqrt(budget // per_pixel)
        raise LimitError(
            f"--size {size} needs about {_size(size * size * per_pixel)} of memory for {crops} crop(s) of "
            f"{size} × {size} px{' supersampled' if supersample else ''}, more than the {_size(budget)} this "
            f"machine can spare now; at most {most} px fits"
        )
