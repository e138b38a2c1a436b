"""The style library: fine-tuned styles kept by name in one folder (``$JOJOGAN_HOME/styles`` by default).

Each style is three files side by side: ``NAME.safetensors`` (the style file itself, usable anywhere a
``--style`` is), ``NAME.png`` (a thumbnail) and ``NAME.json`` (what the page shows: when and how it was
trained). Every file is written atomically; the JSON goes last, so a style whose training was interrupted
while saving is either complete or absent from :meth:`StyleLibrary.list` (which lists the JSON files).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from jojogan.errors import JojoganError
from jojogan.fileio import atomic_output
from jojogan.imaging import save_image
from jojogan.op._dispatch import home_dir

__all__ = ["LibraryError", "LibraryStyle", "StyleLibrary", "check_style_name", "default_library_dir"]

STYLES_FOLDER = "styles"
"""The library's folder inside ``$JOJOGAN_HOME``."""

THUMBNAIL_PX = 256
"""Side of the thumbnails the library keeps."""

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


class LibraryError(JojoganError):
    """A style name is not allowed, is taken, or names no style in the library."""


def default_library_dir() -> Path:
    """``$JOJOGAN_HOME/styles`` (``~/.cache/jojogan/styles`` without the variable)."""
    return home_dir() / STYLES_FOLDER


def check_style_name(name: str) -> str:
    """Return ``name`` stripped of surrounding spaces if it can name a style, else raise.

    Allowed: 1 to 64 letters, digits, ``_`` and ``-``, starting with a letter or digit (so a name is a
    plain file name everywhere: no folders, no hidden files, no spaces).

    Raises:
        LibraryError: the name is empty or has other characters; says which rule it broke.
    """
    cleaned = (name or "").strip()
    if not cleaned:
        raise LibraryError("give the style a name (letters, digits, _ and -)")
    if not _NAME.fullmatch(cleaned):
        raise LibraryError(
            f"style name {cleaned!r} is not allowed: use up to 64 letters, digits, _ and -, starting with a "
            "letter or digit"
        )
    return cleaned


@dataclass(frozen=True)
class LibraryStyle:
    """One style of the library.

    Attributes:
        name: its name (the files' stem).
        path: the style file (``NAME.safetensors``).
        thumbnail: the thumbnail (``NAME.png``), or ``None`` when it is missing.
        info: the page's record (``NAME.json``): e.g. ``created``, ``references``, ``preset``,
            ``iterations``, ``final_loss``.
    """

    name: str
    path: Path
    thumbnail: Path | None
    info: dict


class StyleLibrary:
    """The styles kept in one folder.

    Args:
        root: the folder; ``None`` for :func:`default_library_dir` (read when the library is made).
    """

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root) if root is not None else default_library_dir()

    def _files(self, name: str) -> tuple[Path, Path, Path]:
        name = check_style_name(name)
        return (self.root / f"{name}.safetensors", self.root / f"{name}.png", self.root / f"{name}.json")

    def __contains__(self, name: str) -> bool:
        try:
            return self._files(name)[2].is_file()
        except LibraryError:
            return False

    def add(
        self,
        name: str,
        save_style: Callable[[Path], object],
        thumbnail: Image.Image,
        info: dict,
    ) -> LibraryStyle:
        """Store a new style.

        Args:
            name: the style's name (see :func:`check_style_name`); it must not be taken.
            save_style: writes the style file to the path it is given, atomically (e.g.
                :meth:`jojogan.api.FinetuneOutput.save`).
            thumbnail: an image of the style; stored at :data:`THUMBNAIL_PX`.
            info: JSON-serialisable record shown in the page.

        Raises:
            LibraryError: the name is not allowed or taken.
            JojoganError: a file could not be written (nothing half-written is left).
        """
        style_path, png_path, json_path = self._files(name)
        if json_path.is_file() or style_path.is_file():
            raise LibraryError(f"a style named {name!r} already exists; choose another name or delete it")
        record = json.dumps({"name": name, **info}, indent=2, sort_keys=True)  # fails before any write
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise JojoganError(f"cannot create the style library {self.root}: {error.strerror}") from error
        save_style(style_path)
        small = thumbnail.convert("RGB").resize((THUMBNAIL_PX, THUMBNAIL_PX), Image.Resampling.LANCZOS)
        save_image(small, png_path)
        with atomic_output(json_path) as tmp:
            Path(tmp).write_text(record + "\n", encoding="utf-8")
        return self.get(name)

    def get(self, name: str) -> LibraryStyle:
        """The style called ``name``.

        Raises:
            LibraryError: there is none (or its files are incomplete).
        """
        style_path, png_path, json_path = self._files(name)
        if not (json_path.is_file() and style_path.is_file()):
            raise LibraryError(f"there is no style named {name!r} in {self.root}")
        try:
            info = json.loads(json_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise LibraryError(
                f"the record of style {name!r} ({json_path}) is unreadable: {error}"
            ) from error
        return LibraryStyle(
            name=name,
            path=style_path,
            thumbnail=png_path if png_path.is_file() else None,
            info=info if isinstance(info, dict) else {},
        )

    def list(self) -> list[LibraryStyle]:
        """Every complete style, newest first (by the record's ``created``, then by name)."""
        if not self.root.is_dir():
            return []
        styles = []
        for record in self.root.glob("*.json"):
            try:
                styles.append(self.get(record.stem))
            except LibraryError:
                continue  # not a library entry (a foreign file, an unreadable or incomplete style)
        return sorted(styles, key=lambda s: (str(s.info.get("created", "")), s.name), reverse=True)

    def delete(self, name: str) -> None:
        """Remove a style's three files (the record first, so it leaves the listing at once).

        Raises:
            LibraryError: there is no such style.
        """
        style_path, png_path, json_path = self._files(name)
        if not json_path.is_file():
            raise LibraryError(f"there is no style named {name!r} in {self.root}")
        for path in (json_path, style_path, png_path):
            path.unlink(missing_ok=True)
