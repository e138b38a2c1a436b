"""Shared pieces of the batch tests (local and Ray): a photo folder with bad files mixed in, and checks."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from jojogan.batch import BatchSettings
from jojogan.config import StylizeConfig
from jojogan.models import Models

from factories import reduced_photo

GOOD = ("chris_hemsworth", "iu")
BAD = {
    "notes.jpg": "not an image file",
    "broken.jpeg": "truncated",
    "huge.png": "megapixels, above the limit",
    "blank.png": "face",
}
"""Bad file → a word its manifest error line must contain."""


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(width: int = 60000, height: int = 60000) -> bytes:
    """A PNG whose header claims width × height pixels (a decompression bomb), with almost no data."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def photo_folder(root: Path, shared) -> Path:
    """root/photos: the two real test photos (one in a sub-folder) and one bad file of each kind."""
    folder = root / "photos"
    (folder / "more").mkdir(parents=True)
    source = shared("images", "jojogan", "test_input")
    # real photos at a quarter and a half of their sides (480 x 720 and 450 x 540 px): dlib's detector's
    # time grows with the pixels (1922 x 2883 px took 3 s of every batch test), and the faces (290 and
    # 269 px) are still far larger than the tiny base's crop
    reduced_photo(source / "chris_hemsworth.jpeg", 4, folder / "chris_hemsworth.jpeg")
    reduced_photo(source / "iu.jpeg", 2, folder / "more" / "iu.jpeg")
    (folder / "notes.jpg").write_text("this is not a photo\n")
    data = (source / "iu.jpeg").read_bytes()
    (folder / "broken.jpeg").write_bytes(data[: len(data) // 3])
    (folder / "huge.png").write_bytes(bomb_png())
    Image.new("RGB", (160, 160), (128, 128, 128)).save(folder / "blank.png")
    return folder


def fast_settings(workdir: Path, style: Path, **changes) -> BatchSettings:
    """Settings of a batch on the tiny base (optimisation inversion, 3 steps); ``changes`` are
    :class:`StylizeConfig` fields."""
    config = StylizeConfig(**{"inversion": "optimize", "inversion_steps": 3, "identity": "auto", **changes})
    return BatchSettings(style=style, config=config, models=Models(base=workdir / "base.pt", device="cpu"))


def manifest_lines(outdir: Path) -> list[dict]:
    return [json.loads(line) for line in (outdir / "manifest.jsonl").read_text().splitlines()]


def check_manifest(outdir: Path, folder: Path) -> dict[str, dict]:
    """One ok line per good photo, one error line with its reason per bad file; returns them by name."""
    lines = manifest_lines(outdir)
    by_name = {Path(row["input"]).name: row for row in lines}
    assert len(lines) == len(GOOD) + len(BAD) == len(by_name)
    for stem in GOOD:
        row = by_name[f"{stem}.jpeg"]
        assert row["status"] == "ok" and row["error"] is None and row["faces"] == 1, row
        (identity,) = row["identity"]
        assert identity["network"] == "dlib" and identity["same_person"] == (identity["similarity"] < 0.6)
        assert row["seconds"] > row["align_seconds"] > 0 and len(row["input_sha256"]) == 64
        assert row["worker_peak_rss_mb"] > 0 and row["align_worker_peak_rss_mb"] > 0
        assert all((outdir / name).is_file() for name in row["outputs"])
    assert by_name["iu.jpeg"]["outputs"] == ["more/iu_styled.png"]
    assert by_name["chris_hemsworth.jpeg"]["outputs"] == ["chris_hemsworth_styled.png"]
    for name, reason in BAD.items():
        row = by_name[name]
        assert row["status"] == "error" and row["outputs"] == [] and reason in row["error"].lower(), row
        assert "\n" not in row["error"] and name in row["error"]
    return by_name


def no_temporary_files(outdir: Path) -> bool:
    return not [p for p in outdir.rglob("*") if p.name.endswith(".tmp")]


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def comparable(rows: list[dict]) -> dict[str, tuple]:
    """What a manifest says about each input, without timings and run bookkeeping."""
    keys = ("status", "outputs", "faces", "error", "identity", "input_sha256", "settings_sha256")
    return {Path(row["input"]).name: tuple(str(row[k]) for k in keys) for row in rows}


def kill_after_first_line(args: list, outdir: Path, limit_s: float) -> list[dict]:
    """Run ``jojogan ARGS`` in a subprocess, SIGKILL it once the manifest has a complete line, and
    return the lines it left (the driver gets no chance to clean up)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    manifest = outdir / "manifest.jsonl"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    process = subprocess.Popen(
        [sys.executable, "-m", "jojogan", *map(str, args)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )
    deadline = time.monotonic() + limit_s
    try:
        while time.monotonic() < deadline and process.poll() is None:
            if manifest.is_file() and manifest.read_text().endswith("\n"):
                break
            time.sleep(0.05)
        assert process.poll() is None, f"the run ended before it was killed: {process.stderr.read()!r}"
        assert manifest.is_file(), f"no manifest line within {limit_s} s"
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stderr.close()
    return manifest_lines(outdir)
