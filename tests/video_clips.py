"""Test clips built at run time from the shared photos: a known camera path over a face, cuts, black
frames, a tone on an audio track; written with PyAV in the codec and container asked for."""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

from conftest import shared_path

WIDTH, HEIGHT = 192, 160
TONE_HZ = 440.0


def photo(*parts: str, height: int) -> np.ndarray:
    """A shared photo as RGB, scaled to ``height`` pixels high (read-only: made once per process)."""
    return _scaled(shared_path(*parts), height)


@functools.cache
def _scaled(path: Path, height: int) -> np.ndarray:
    with Image.open(path) as image:  # decoding the 1922 x 2883 px portrait costs a tenth of a second
        image = image.convert("RGB")
        width = round(image.width * height / image.height)
        pixels = np.asarray(image.resize((width, height), Image.Resampling.LANCZOS))
    pixels.setflags(write=False)
    return pixels


def face_photo(name: str = "iu.jpeg", height: int = 200) -> np.ndarray:
    return photo("images", "jojogan", "test_input", name, height=height)


def cat_photo(height: int = HEIGHT) -> np.ndarray:
    return photo("images", "domains", "chelsea_cat.png", height=height)


def affine(
    angle_deg: float,
    zoom: float,
    shift: tuple[float, float],
    centre: tuple[float, float],
    frame: tuple[int, int] = (WIDTH, HEIGHT),
) -> np.ndarray:
    """``[3, 3]`` map from photo to frame coordinates (continuous): turn and zoom about ``centre`` of
    the photo, then put that centre at the centre of a ``frame`` (width, height) plus ``shift``."""
    theta = np.deg2rad(angle_deg)
    rotation = zoom * np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    matrix = np.eye(3)
    matrix[:2, :2] = rotation
    target = np.array([frame[0] / 2 + shift[0], frame[1] / 2 + shift[1]])
    matrix[:2, 2] = target - rotation @ np.asarray(centre, dtype=np.float64)
    return matrix


def render(source: np.ndarray, matrix: np.ndarray, size: tuple[int, int] = (WIDTH, HEIGHT)) -> np.ndarray:
    """``source`` seen through the camera ``matrix`` (photo -> frame), bicubic, in a frame of ``size``."""
    inverse = np.linalg.inv(matrix)
    coeffs = tuple(inverse[:2].reshape(-1))
    image = Image.fromarray(source).transform(
        size, Image.Transform.AFFINE, coeffs, Image.Resampling.BICUBIC, fillcolor=(40, 40, 40)
    )
    return np.asarray(image)


def camera_path(count: int, seed: int = 0) -> list[np.ndarray]:
    """A slow pan, zoom and turn with a little hand shake: one camera matrix per frame."""
    rng = np.random.default_rng(seed)
    matrices = []
    for i in range(count):
        t = i / max(count - 1, 1)
        shake = rng.normal(0.0, 0.6, size=2)
        matrices.append(
            affine(4.0 * np.sin(2 * t), 0.85 + 0.15 * t, (10 * t - 5 + shake[0], 4 * t + shake[1]), (0, 0))
        )
    return matrices


@dataclass
class Clip:
    """A written test clip and what went into it.

    Attributes:
        path: the file. pts: every frame's timestamp. time_base: their unit.
        kinds: per frame, "face", "face2", "cat" or "black".
        cameras: per frame, the camera matrix (photo -> frame) of "face" frames, else ``None``.
        face_centre: where the moving photo's face is, in its own coordinates.
        audio_seconds: length of the tone (0: no audio).
    """

    path: Path
    pts: list[int]
    time_base: Fraction
    kinds: list[str]
    cameras: list[np.ndarray | None] = field(default_factory=list)
    audio_seconds: float = 0.0

    @property
    def seconds(self) -> np.ndarray:
        return np.asarray(self.pts, dtype=np.float64) * float(self.time_base)


def write_video(
    path: Path,
    frames: list[np.ndarray],
    pts: list[int],
    time_base: Fraction,
    codec: str = "libx264",
    audio_seconds: float = 0.0,
    audio_codec: str = "aac",
    rotation: int | None = None,
    rate: Fraction = Fraction(25),
    corrupt: tuple[int, ...] = (),
    attachment: bool = False,
) -> Path:
    """Encode ``frames`` (RGB, display orientation) at ``pts``; an optional tone and display rotation;
    the packets of the frames numbered in ``corrupt`` are replaced by garbage bytes; ``attachment`` adds
    an attachment stream (Matroska)."""
    import av

    height, width = frames[0].shape[:2]
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height = (height, width) if rotation in (90, -90) else (width, height)
        stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        stream.time_base = time_base
        stream.codec_context.time_base = time_base
        if rotation is not None:
            stream.set_display_rotation(rotation)
        audio = _tone_stream(container, audio_codec) if audio_seconds else None
        if attachment:  # a stream the output will not carry
            container.add_attachment("notes.txt", "text/plain", b"not for the output")
        garbage = {int(pts[i]) for i in corrupt}
        for image, stamp in zip(frames, pts, strict=True):
            if rotation in (90, -90):  # stored sideways: the display matrix turns it upright again
                image = np.rot90(image, k=-rotation // 90)
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            frame.pts = stamp
            for packet in stream.encode(frame):
                container.mux(_garbled(packet, stream) if packet.pts in garbage else packet)
        for packet in stream.encode():
            container.mux(packet)
        if audio is not None:
            _write_tone(container, audio, audio_seconds)
    return path


def _garbled(packet, stream):
    import av

    bad = av.Packet(bytes(np.random.default_rng(0).integers(0, 255, 600, dtype=np.uint8)))
    bad.pts, bad.dts, bad.time_base, bad.stream = packet.pts, packet.dts, packet.time_base, stream
    return bad


def _tone_stream(container, codec: str):
    return container.add_stream(codec, rate=48000 if "opus" in codec else 44100, layout="mono")


def _write_tone(container, stream, seconds: float) -> None:
    import av

    rate = stream.rate
    samples = np.arange(int(seconds * rate)) / rate
    tone = (0.3 * np.sin(2 * np.pi * TONE_HZ * samples)).astype(np.float32)
    for start in range(0, len(tone), 4096):
        part = tone[start : start + 4096][None]
        frame = av.AudioFrame.from_ndarray(part, format="flt", layout="mono")
        frame.sample_rate = rate
        frame.pts = start
        frame.time_base = Fraction(1, rate)
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)


def story_clip(
    path: Path,
    codec: str = "libx264",
    moving: int = 16,
    variable: bool = False,
    audio: bool = True,
    rotation: int | None = None,
) -> Clip:
    """The test story: a camera path over a face, a cut to the cat, black frames, a cut to the other face.

    With ``variable`` the frame durations vary (variable frame rate).
    """
    face = face_photo("iu.jpeg")
    other = face_photo("chris_hemsworth.jpeg", height=190)
    cat = cat_photo()
    centre = (face.shape[1] / 2, face.shape[0] * 0.52)
    cameras = [m @ _translate(-centre[0], -centre[1]) for m in camera_path(moving)]
    frames = [render(face, m) for m in cameras]
    kinds = ["face"] * moving
    still = _centred(cat)
    frames += [still] * 4 + [np.zeros((HEIGHT, WIDTH, 3), np.uint8)] * 3
    kinds += ["cat"] * 4 + ["black"] * 3
    second = affine(0.0, 0.8, (0, 4), (other.shape[1] / 2, other.shape[0] * 0.45))
    frames += [render(other, second)] * 5
    kinds += ["face2"] * 5
    cameras += [None] * (len(frames) - moving)
    # MPEG-4 part 2 cannot count in ticks finer than 1/65535 s
    time_base = Fraction(1, 30000) if codec == "mpeg4" else Fraction(1, 90000)
    tick = int(1 / (time_base * 75))  # 1/75 s
    steps = [tick * (3 if not variable else (2, 3, 5)[i % 3]) for i in range(len(frames))]
    pts = list(np.concatenate([[0], np.cumsum(steps[:-1])]).astype(int))
    seconds = float((pts[-1] + steps[-1]) * time_base) if audio else 0.0
    write_video(path, frames, pts, time_base, codec, seconds, rotation=rotation)
    return Clip(path, [int(p) for p in pts], time_base, kinds, cameras, seconds)


def pair_clip(path: Path, count: int = 8, codec: str = "libx264") -> Clip:
    """Both face photos side by side, the camera panning slowly over them (two people in every frame)."""
    left, right = face_photo("iu.jpeg", height=150), face_photo("chris_hemsworth.jpeg", height=150)
    canvas = np.full((150, left.shape[1] + right.shape[1], 3), 60, np.uint8)
    canvas[:, : left.shape[1]] = left
    canvas[:, left.shape[1] :] = right
    centre = (canvas.shape[1] / 2, canvas.shape[0] / 2)
    cameras = [affine(0.0, 1.0, (2.0 * i - count, 0.0), centre, (2 * WIDTH, HEIGHT)) for i in range(count)]
    frames = [render(canvas, m, size=(2 * WIDTH, HEIGHT)) for m in cameras]
    pts = [3600 * i for i in range(count)]
    write_video(path, frames, pts, Fraction(1, 90000), codec)
    return Clip(path, pts, Fraction(1, 90000), ["pair"] * count, cameras)


def _translate(dx: float, dy: float) -> np.ndarray:
    matrix = np.eye(3)
    matrix[:2, 2] = (dx, dy)
    return matrix


def _centred(image: np.ndarray) -> np.ndarray:
    """``image`` cropped or padded to WIDTH x HEIGHT about its centre."""
    canvas = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    height, width = image.shape[:2]
    top, left = (height - HEIGHT) // 2, (width - WIDTH) // 2
    part = image[max(top, 0) : max(top, 0) + HEIGHT, max(left, 0) : max(left, 0) + WIDTH]
    y, x = max(-top, 0), max(-left, 0)
    canvas[y : y + part.shape[0], x : x + part.shape[1]] = part
    return canvas


# ------------------------------------------------------------------ a tiny pipeline for videos

PIPE_SIZE = 64


def linear_encoder():
    """A stand-in for e4e on tiny models, as a row of the encoder table would be: a fixed random linear map
    of the 16 x 16 crop to W+ around the generator's mean code. Like an encoder, it gives near codes to
    near crops and moves with them."""
    import torch

    from jojogan.inversion.encoders import Encoder

    class LinearEncoder(Encoder):
        name = "linear-test"

        def __init__(self, context, path=None, seed: int = 0, gain: float = 2.0):
            super().__init__(context)
            generator = context.generator
            self.shape = (generator.n_latent, generator.style_dim)
            gen = torch.Generator().manual_seed(seed)
            inputs = 16 * 16 * 3
            self.weight = (
                torch.randn(self.shape[0] * self.shape[1], inputs, generator=gen) * gain / inputs**0.5
            )
            self.mean = generator.mean_latent(500, seed=seed)[0].detach()

        def invert(self, faces, request):
            pixels = [
                np.asarray(f.convert("RGB").resize((16, 16), Image.Resampling.BOX), np.float32) for f in faces
            ]
            flat = torch.from_numpy(np.stack(pixels)).reshape(len(faces), -1) / 127.5 - 1
            return self.mean + (flat @ self.weight.T).reshape(len(faces), *self.shape)

    return LinearEncoder


def tiny_base(folder: Path) -> tuple[Path, Path]:
    """A tiny seeded base checkpoint (64 px) and a style file made from it."""
    import copy

    import torch

    from jojogan.style_file import save_style

    from factories import tiny_generator

    base = tiny_generator(PIPE_SIZE, seed=3)
    torch.save({"g_ema": base.state_dict()}, folder / "base.pt")
    styled = copy.deepcopy(base)
    gen = torch.Generator().manual_seed(9)
    with torch.no_grad():
        for param in styled.parameters():
            param.add_(0.3 * torch.randn(param.shape, generator=gen))
    return folder / "base.pt", save_style(folder / "style.safetensors", styled, {})


LINEAR = "linear-test"
"""The name the linear stand-in encoder is registered under (see :func:`encoder_row`)."""


@contextlib.contextmanager
def encoder_row(name: str = LINEAR):
    """The linear stand-in as a row ``name`` of the encoder table, for the block's duration."""
    import pytest

    from jojogan.inversion.encoders import ENCODERS

    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(ENCODERS, name, linear_encoder())
        yield


def tiny_video_pipe(folder: Path):
    """A pipeline on the tiny base, and a style file for it (invert with ``inversion=LINEAR`` inside
    :func:`encoder_row`)."""
    from jojogan.api import JoJoGAN

    base, style = tiny_base(folder)
    return JoJoGAN.from_pretrained(base=base), style


def face_clip(path: Path, count: int = 8, audio: bool = True) -> Clip:
    """A short clip: the camera moving slowly over one face (``count`` frames at 25 fps), with a tone
    as long as the video when ``audio``; in the codec the suffix's container takes by default (H.264)."""
    face = face_photo("iu.jpeg")
    centre = (face.shape[1] / 2, face.shape[0] * 0.52)
    cameras = [m @ _translate(-centre[0], -centre[1]) for m in camera_path(count)]
    time_base = Fraction(1, 90000)
    pts = [3600 * i for i in range(count)]
    seconds = count / 25 if audio else 0.0
    write_video(path, [render(face, m) for m in cameras], pts, time_base, audio_seconds=seconds)
    return Clip(path, pts, time_base, ["face"] * count, cameras, seconds)


class SeenFaces:
    """The faces the tracker's detector and landmark predictor see on each frame of one clip, found by
    the first analysis inside :meth:`replayed` and replayed to the later ones (a decode and a detection
    per frame: a few tenths of a CPU-second per clip). Only for analyses of that clip with the same
    detection settings, which differ after that step: the smoothing, which tracks are kept, or what the
    pipeline does with the tracks."""

    def __init__(self) -> None:
        self.seen: list = []

    @contextlib.contextmanager
    def replayed(self):
        import pytest

        from jojogan.video import track

        real = track._observe

        def observe(frames, config, workers=1):
            if not self.seen:
                self.seen.extend(real(frames, config, workers))
            return iter(self.seen)

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(track, "_observe", observe)
            yield
