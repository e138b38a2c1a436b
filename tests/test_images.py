"""Tests for jojogan.inversion.images: modes, orientation, damaged files and size limits."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageFile

from jojogan.inversion.errors import ImageError, JojoganError
from jojogan.inversion.images import DEFAULT_MAX_PIXELS, image_name, load_image


def _gradient(width: int = 48, height: int = 32) -> np.ndarray:
    """A smooth RGB test pattern (smooth so that JPEG keeps it close)."""
    y, x = np.mgrid[0:height, 0:width]
    return np.stack(
        [x * 255 // (width - 1), y * 255 // (height - 1), 255 - x * 255 // (width - 1)], -1
    ).astype(np.uint8)


def _png_header_only(path, width: int, height: int) -> None:
    """Write a PNG whose header claims ``width`` x ``height`` but which holds no pixel data at all."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))


# ---------------------------------------------------------------------------------------------- paths


def test_real_photo_loads_as_rgb(shared):
    path = shared("images", "jojogan", "test_input", "iu.jpeg")
    image = load_image(path)
    assert image.mode == "RGB"
    assert image.size == (900, 1079)
    with Image.open(path) as raw:
        assert np.array_equal(np.asarray(image), np.asarray(raw.convert("RGB")))


def test_str_and_path_give_the_same_image(tmp_path):
    Image.fromarray(_gradient()).save(tmp_path / "g.png")
    a = load_image(tmp_path / "g.png")
    b = load_image(str(tmp_path / "g.png"))
    assert np.array_equal(np.asarray(a), np.asarray(b))
    assert np.array_equal(np.asarray(a), _gradient())


def test_grayscale_png_becomes_three_equal_channels(tmp_path):
    gray = np.arange(0, 256, dtype=np.uint8).reshape(16, 16)
    Image.fromarray(gray).save(tmp_path / "gray.png")
    rgb = np.asarray(load_image(tmp_path / "gray.png"))
    assert rgb.shape == (16, 16, 3)
    for channel in range(3):
        assert np.array_equal(rgb[:, :, channel], gray)


def test_cmyk_tiff_converts_to_rgb(tmp_path):
    cmyk = Image.new("CMYK", (4, 1))
    cmyk.putpixel((0, 0), (0, 0, 0, 0))  # white
    cmyk.putpixel((1, 0), (255, 0, 0, 0))  # cyan
    cmyk.putpixel((2, 0), (0, 255, 255, 0))  # red
    cmyk.putpixel((3, 0), (0, 0, 0, 255))  # black
    cmyk.save(tmp_path / "cmyk.tif")
    rgb = load_image(tmp_path / "cmyk.tif")
    assert [rgb.getpixel((i, 0)) for i in range(4)] == [
        (255, 255, 255),
        (0, 255, 255),
        (255, 0, 0),
        (0, 0, 0),
    ]


def test_rgba_is_composited_on_white(tmp_path):
    rgba = np.zeros((2, 3, 4), np.uint8)
    rgba[0, 0] = (10, 20, 30, 255)  # opaque: kept
    rgba[0, 1] = (10, 20, 30, 0)  # transparent: white
    rgba[0, 2] = (0, 0, 0, 128)  # half-transparent black: mid grey
    Image.fromarray(rgba).save(tmp_path / "a.png")
    rgb = load_image(tmp_path / "a.png")
    assert rgb.getpixel((0, 0)) == (10, 20, 30)
    assert rgb.getpixel((1, 0)) == (255, 255, 255)
    assert all(abs(v - 127) <= 1 for v in rgb.getpixel((2, 0)))


def test_palette_with_transparency_is_composited_on_white(tmp_path):
    pal = Image.new("P", (2, 1))
    pal.putpalette([200, 0, 0, 0, 0, 200] + [0] * 762)
    pal.putpixel((0, 0), 0)
    pal.putpixel((1, 0), 1)
    pal.save(tmp_path / "p.png", transparency=1)
    rgb = load_image(tmp_path / "p.png")
    assert rgb.getpixel((0, 0)) == (200, 0, 0)
    assert rgb.getpixel((1, 0)) == (255, 255, 255)


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 1000, 32768, 65535, 100 * 257]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")
    with Image.open(tmp_path / "deep.png") as raw:
        assert raw.mode.startswith("I")  # really a 16-bit file
    rgb = np.asarray(load_image(tmp_path / "deep.png"))
    # Clipping would turn 1000 and 32768 into 255.
    assert rgb[0, :, 0].tolist() == [0, 4, 128, 255, 100]
    assert np.array_equal(rgb[..., 0], rgb[..., 2])


def test_exif_orientation_is_applied(tmp_path):
    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:, :20] = (230, 20, 20)  # left half red
    pixels[:, 20:] = (20, 20, 230)  # right half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    Image.fromarray(pixels).save(tmp_path / "rot.jpg", exif=exif, quality=95)

    image = load_image(tmp_path / "rot.jpg")
    assert image.size == (20, 40)  # width and height swapped
    with Image.open(tmp_path / "rot.jpg") as raw:
        stored = np.asarray(raw.convert("RGB"))
    assert np.array_equal(np.asarray(image), np.rot90(stored, k=-1))
    # Rotating clockwise puts the left (red) half on top.
    top, bottom = image.getpixel((10, 5)), image.getpixel((10, 35))
    assert top[0] > 200 and top[2] < 60
    assert bottom[2] > 200 and bottom[0] < 60


# ------------------------------------------------------------------------------------------ bad files


def test_truncated_jpeg_is_an_error_not_half_an_image(tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)).save(tmp_path / "full.jpg")
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    with pytest.raises(ImageError, match="truncated"):
        load_image(tmp_path / "cut.jpg")


def test_truncated_png_is_an_error(tmp_path):
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="cut.png"):
        load_image(tmp_path / "cut.png")


def test_non_image_file(tmp_path):
    (tmp_path / "notes.jpg").write_text("these are not pixels\n" * 20)
    with pytest.raises(ImageError, match="not an image"):
        load_image(tmp_path / "notes.jpg")


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(ImageError, match="does not exist"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(ImageError, match="not a file"):
        load_image(tmp_path)


def test_errors_share_the_product_base_class(tmp_path):
    with pytest.raises(JojoganError):
        load_image(tmp_path / "nope.png")


# ------------------------------------------------------------------------------------------- size limit


def test_size_limit_is_checked_from_the_header_before_decoding(tmp_path):
    # 9000 x 9000 = 81 Mpx: over our default limit, under Pillow's own warning threshold. The file has no
    # pixel data, so decoding it would fail as truncated: the size message proves the header check ran first.
    _png_header_only(tmp_path / "bomb.png", 9000, 9000)
    assert 9000 * 9000 > DEFAULT_MAX_PIXELS
    with pytest.raises(ImageError, match=r"9000 x 9000 = 81\.0 megapixels.*max_pixels"):
        load_image(tmp_path / "bomb.png")
    with pytest.raises(ImageError, match="truncated"):
        load_image(tmp_path / "bomb.png", max_pixels=None)


def test_size_limit_is_configurable(tmp_path):
    Image.fromarray(_gradient(100, 50)).save(tmp_path / "g.png")
    with pytest.raises(ImageError, match="100 x 50"):
        load_image(tmp_path / "g.png", max_pixels=4999)
    assert load_image(tmp_path / "g.png", max_pixels=5000).size == (100, 50)
    with pytest.raises(ImageError, match="100 x 50"):
        load_image(np.zeros((50, 100, 3), np.uint8), max_pixels=1000)
    with pytest.raises(ValueError, match="max_pixels"):
        load_image(tmp_path / "g.png", max_pixels=0)


def test_pillow_hard_limit_becomes_an_image_error(tmp_path):
    _png_header_only(tmp_path / "huge.png", 20000, 20000)  # 400 Mpx, beyond Pillow's own hard limit
    with pytest.raises(ImageError, match="too large"):
        load_image(tmp_path / "huge.png", max_pixels=None)


# ------------------------------------------------------------------------------------ in-memory sources


def test_pil_input_is_not_modified():
    rgba = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    rgb = load_image(rgba)
    assert rgba.mode == "RGBA" and rgba.getpixel((0, 0)) == (0, 0, 0, 0)
    assert rgb.getpixel((0, 0)) == (255, 255, 255)


def test_uint8_arrays():
    pattern = _gradient()
    assert np.array_equal(np.asarray(load_image(pattern)), pattern)
    gray = np.asarray(load_image(pattern[:, :, 0]))
    assert np.array_equal(gray[:, :, 1], pattern[:, :, 0])
    rgba = np.concatenate([pattern, np.zeros_like(pattern[:, :, :1])], axis=2)
    assert np.all(np.asarray(load_image(rgba)) == 255)
    assert np.array_equal(np.asarray(load_image(pattern[:, :, :1])), np.asarray(load_image(pattern[:, :, 0])))


def test_float_arrays_in_unit_range():
    values = np.array([[[0.0, 0.5, 1.0], [0.2, 0.998, 0.001]]], dtype=np.float32)
    rgb = np.asarray(load_image(values))
    assert rgb.tolist() == [[[0, 128, 255], [51, 254, 0]]]
    with pytest.raises(ImageError, match=r"\[0, 1\]"):
        load_image(values * 255)
    with pytest.raises(ImageError, match="NaN"):
        load_image(np.full((2, 2, 3), np.nan))


def test_uint16_array_is_scaled():
    assert load_image(np.full((2, 2, 3), 257 * 7, np.uint16)).getpixel((0, 0)) == (7, 7, 7)


def test_bad_arrays_and_types():
    with pytest.raises(ImageError, match=r"\[2, 2, 2\]"):
        load_image(np.zeros((2, 2, 2), np.uint8))
    with pytest.raises(ImageError, match="int64"):
        load_image(np.zeros((2, 2, 3), np.int64))
    with pytest.raises(ImageError, match="empty"):
        load_image(np.zeros((0, 5, 3), np.uint8))
    with pytest.raises(TypeError, match="PIL.Image.Image"):
        load_image(b"\x89PNG")


def test_image_name(tmp_path):
    assert image_name(tmp_path / "x.png") == str(tmp_path / "x.png")
    assert image_name(np.zeros((3, 4, 3))) == "the given 3x4x3 array"
    assert image_name(Image.new("RGB", (1, 1))) == "the given PIL image"
