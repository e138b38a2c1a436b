"""Tests for jojogan.inversion.align: parity with the original crops, geometry, faces, bad input."""

from __future__ import annotations

import dataclasses
import logging
import subprocess
import sys

import numpy as np
import pytest
import scipy.ndimage
from PIL import Image

from jojogan.inversion import align as align_module
from jojogan.inversion.align import AlignedFace, align_face, align_faces, landmark_model_path
from jojogan.inversion.errors import FaceNotFoundError, FaceTooSmallError, JojoganError
from jojogan.inversion.images import load_image


def _psnr(a, b) -> float:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    mse = np.mean((a - b) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


@pytest.fixture
def iu_path(shared):
    return shared("images", "jojogan", "test_input", "iu.jpeg")


_aligned_cache: dict = {}


@pytest.fixture
def iu_face(dlib, iu_path) -> AlignedFace:
    """The test photo aligned at 256 px, computed once for the whole module (detection is the slow part)."""
    if iu_path not in _aligned_cache:
        _aligned_cache[iu_path] = align_face(iu_path, output_size=256)
    return _aligned_cache[iu_path]


# ------------------------------------------------------------------------------------------------ parity


def test_sketch_reproduces_the_original_crop(dlib, shared):
    """The original JoJoGAN code's own crop of sketch.jpeg at 512 px is the reference."""
    ours = align_face(shared("images", "jojogan", "style_images", "sketch.jpeg"), output_size=512)
    with Image.open(shared("images", "jojogan", "style_images_aligned", "sketch.png")) as ref:
        reference = np.asarray(ref.convert("RGB"))
    assert ours.image.size == (512, 512)
    assert ours.num_faces == 1 and ours.face_index == 0
    # The original code rerun today reproduces its own file at 69.5 dB; a half-pixel or resampling slip
    # drops below 40 dB.
    assert _psnr(ours.image, reference) >= 60.0


# ---------------------------------------------------------------------------------------------- geometry


def test_geometry_round_trip_and_corners(iu_face):
    size = iu_face.output_size
    assert iu_face.image.size == (size, size) and iu_face.image.mode == "RGB"
    assert iu_face.source_size == (900, 1079)
    assert np.allclose(iu_face.to_photo @ iu_face.to_aligned, np.eye(3), atol=1e-9)

    corners = np.array([[0, 0], [0, size], [size, size], [size, 0]], dtype=float)
    assert np.allclose(iu_face.photo_to_aligned(iu_face.quad), corners, atol=1e-6)
    points = np.random.default_rng(0).uniform(0, 900, (10, 2))
    assert np.allclose(iu_face.aligned_to_photo(iu_face.photo_to_aligned(points)), points, atol=1e-6)


def test_landmarks_land_where_ffhq_puts_them(iu_face):
    lm = iu_face.photo_to_aligned(iu_face.landmarks)
    size = iu_face.output_size
    eye_left, eye_right = lm[36:42].mean(0), lm[42:48].mean(0)
    mouth = (lm[48] + lm[54]) / 2
    # The crop is turned so that the eyes are level and centred horizontally, and the square's centre
    # lies a tenth of the way from the eyes to the mouth.
    assert abs(eye_left[1] - eye_right[1]) < 0.02 * size
    assert abs((eye_left[0] + eye_right[0]) / 2 - size / 2) < 0.03 * size
    eye_mid = (eye_left + eye_right) / 2
    assert np.allclose(eye_mid + 0.1 * (mouth - eye_mid), [size / 2, size / 2], atol=0.5)


def _warp(photo: Image.Image, to_photo: np.ndarray, size: int) -> np.ndarray:
    coeffs = tuple(to_photo[:2].reshape(-1))
    return np.asarray(
        photo.transform((size, size), Image.Transform.AFFINE, coeffs, Image.Resampling.BILINEAR)
    )


def _shifted(matrix: np.ndarray, pixels: float) -> np.ndarray:
    return np.array([[1.0, 0.0, pixels], [0.0, 1.0, pixels], [0.0, 0.0, 1.0]]) @ matrix


def test_matrix_describes_the_pixels_actually_sampled(iu_face, iu_path):
    # Without shrinking, the crop is a bilinear resampling of the photo, so warping the photo directly with
    # to_photo reproduces its interior; a half-pixel error in the matrix costs about 20 dB here.
    photo = load_image(iu_path)
    size = iu_face.output_size
    centre = (slice(size // 4, 3 * size // 4),) * 2
    crop = np.asarray(iu_face.image)[centre]
    assert _psnr(_warp(photo, iu_face.to_photo, size)[centre], crop) > 50.0
    assert _psnr(_warp(photo, _shifted(iu_face.to_photo, 0.5), size)[centre], crop) < 40.0


def test_matrix_accounts_for_the_shrink_step(dlib, iu_path):
    # At 64 px the photo is first shrunk 7 times (rounded sizes, half-pixel offsets in shrunk pixels);
    # compare with a supersampled direct warp, which is best only when the matrix is right.
    photo = load_image(iu_path)
    face = align_face(photo, output_size=64)
    centre = (slice(16, 48),) * 2
    crop = np.asarray(face.image)[centre]

    def score(to_photo):
        fine = _warp(photo, to_photo @ np.diag([1 / 8, 1 / 8, 1.0]), 512)
        return _psnr(
            np.asarray(Image.fromarray(fine).resize((64, 64), Image.Resampling.LANCZOS))[centre], crop
        )

    best = score(face.to_photo)
    assert best > 32.0
    assert best > score(_shifted(face.to_photo, 3.5)) + 4
    assert best > score(_shifted(face.to_photo, -3.5)) + 4


def test_landmarks_found_again_in_the_crop(dlib, iu_face):
    # Independent check of the geometry: dlib run on the crop finds the landmarks where to_aligned puts them.
    again = align_module._detect(iu_face.image, 1)
    assert len(again) == 1
    expected = iu_face.photo_to_aligned(iu_face.landmarks)
    found = again[0].landmarks + 0.5
    assert np.median(np.linalg.norm(found - expected, axis=1)) < 0.01 * iu_face.output_size


def test_result_is_frozen(iu_face):
    with pytest.raises(dataclasses.FrozenInstanceError):
        iu_face.face_index = 3
    with pytest.raises(ValueError):
        iu_face.quad[0, 0] = 1.0


def test_supersample_keeps_the_geometry(dlib, iu_path, iu_face):
    fine = align_face(iu_path, output_size=256, supersample=True)
    assert np.allclose(fine.quad, iu_face.quad)
    assert fine.image.size == (256, 256)
    # Same crop, resampled differently: they differ in fine detail (aliasing) but not in position.
    coarse = scipy.ndimage.gaussian_filter(np.asarray(iu_face.image, np.float64), (1.5, 1.5, 0))
    smooth = scipy.ndimage.gaussian_filter(np.asarray(fine.image, np.float64), (1.5, 1.5, 0))
    assert _psnr(smooth, coarse) > 35.0
    assert _psnr(fine.image, iu_face.image) < 35.0


# ----------------------------------------------------------------------------------------------- faces


def test_no_face_names_the_image_and_hints_at_aligned(dlib, tmp_path):
    path = tmp_path / "wall.png"
    Image.new("RGB", (200, 160), (128, 128, 128)).save(path)
    with pytest.raises(FaceNotFoundError, match="--aligned") as info:
        align_face(path)
    assert "wall.png" in str(info.value)
    assert "aligned=True" in str(info.value)
    noise = np.random.default_rng(0).integers(0, 256, (160, 200, 3), dtype=np.uint8)
    with pytest.raises(FaceNotFoundError):
        align_faces(noise)


@pytest.fixture
def two_faces(dlib, iu_path) -> np.ndarray:
    """A canvas with a small copy of the photo on the left and a large one on the right."""
    photo = load_image(iu_path)
    small = photo.resize((200, 240), Image.Resampling.LANCZOS)
    large = photo.resize((350, 420), Image.Resampling.LANCZOS)
    canvas = Image.new("RGB", (570, 420), (90, 90, 90))
    canvas.paste(small, (0, 90))
    canvas.paste(large, (220, 0))
    return np.asarray(canvas)


def test_several_faces_largest_index_and_all(two_faces, caplog):
    with caplog.at_level(logging.INFO, logger="jojogan"):
        largest = align_face(two_faces, output_size=128)
    assert largest.num_faces == 2 and largest.face_index == 1
    assert largest.quad[:, 0].mean() > 220  # the large copy is on the right
    assert any("2 faces" in r.getMessage() and r.name == "jojogan" for r in caplog.records)

    left = align_face(two_faces, output_size=128, face=0)
    assert left.face_index == 0 and left.quad[:, 0].mean() < 200
    assert align_face(two_faces, output_size=128, face=-1).face_index == 1
    # The same person at two scales aligns to nearly the same crop.
    assert _psnr(left.image, largest.image) > 20.0

    everyone = align_faces(two_faces, output_size=128)
    assert [f.face_index for f in everyone] == [0, 1]
    assert np.allclose(everyone[1].quad, largest.quad)

    with pytest.raises(FaceNotFoundError, match="only 2 face"):
        align_face(two_faces, output_size=128, face=2)


def test_tiny_face_is_a_clear_error(dlib, iu_path):
    photo = load_image(iu_path)
    tiny = photo.resize((100, 120), Image.Resampling.LANCZOS)  # the face's box is about 50 px
    with pytest.raises(FaceTooSmallError, match=r"only \d+ px across but at least 64 px") as info:
        align_face(tiny, output_size=64)
    assert 20 <= info.value.face_px < 64
    assert isinstance(info.value, FaceNotFoundError) and isinstance(info.value, JojoganError)
    with pytest.raises(FaceTooSmallError):
        align_faces(tiny, output_size=64)
    small_ok = align_face(tiny, output_size=64, min_face_size=info.value.face_px)
    assert small_ok.image.size == (64, 64)


# ------------------------------------------------------------------------------------- already aligned


def test_aligned_input_is_centre_cropped_and_resized():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (300, 200, 3), dtype=np.uint8)
    face = align_face(pixels, output_size=100, aligned=True)
    expected = Image.fromarray(pixels[50:250]).resize((100, 100), Image.Resampling.LANCZOS)
    assert np.array_equal(np.asarray(face.image), np.asarray(expected))
    assert face.landmarks is None and face.num_faces == 1
    assert np.allclose(face.quad, [[0, 50], [0, 250], [200, 250], [200, 50]])
    assert np.allclose(face.photo_to_aligned([[0, 50], [200, 250]]), [[0, 0], [100, 100]])
    same = align_face(pixels[50:250], output_size=200, aligned=True)
    assert np.array_equal(np.asarray(same.image), pixels[50:250])


def test_fft_blur_matches_scipy_gaussian_filter():
    image = np.random.default_rng(0).uniform(0, 255, (70, 50, 3)).astype(np.float32)
    for sigma in (1.3, 7.5, 20.0):  # the last kernel is wider than the image: repeated mirroring
        expected = scipy.ndimage.gaussian_filter(image, [sigma, sigma, 0])
        assert np.abs(align_module._gaussian_blur(image, sigma) - expected).max() < 1e-3


# ------------------------------------------------------------------------------------------- arguments


def test_bad_arguments():
    pixels = np.zeros((32, 32, 3), np.uint8)
    with pytest.raises(ValueError, match="align_faces"):
        align_face(pixels, face="all")
    with pytest.raises(ValueError, match="largest"):
        align_face(pixels, face="biggest")
    with pytest.raises(ValueError, match="output_size"):
        align_face(pixels, output_size=0, aligned=True)


def test_landmark_model_found_without_importing_its_package():
    path = landmark_model_path()
    assert path.name == "shape_predictor_68_face_landmarks.dat" and path.stat().st_size > 90_000_000
    # In a fresh interpreter: the package's __init__ (which imports pkg_resources) must not run.
    code = (
        "import sys; from jojogan.inversion.align import landmark_model_path; landmark_model_path(); "
        "print('face_recognition_models' in sys.modules)"
    )
    assert (
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.strip()
        == "False"
    )


def test_models_are_loaded_once(dlib):
    assert align_module._dlib_models() is align_module._dlib_models()


def _detections(detector, image):
    boxes, scores, kinds = detector.run(image, 1, 0.0)
    return [(b.left(), b.top(), b.right(), b.bottom()) for b in boxes], list(scores), list(kinds)


def test_the_face_detector_is_kept_in_dlibs_binary_form(dlib, shared, tmp_path, monkeypatch):
    """The first process keeps dlib's detector in the cache folder; the copy loaded from there finds the
    same box with the same score on a real photo."""
    monkeypatch.setenv("JOJOGAN_HOME", str(tmp_path))
    built = align_module._frontal_face_detector(dlib)  # dlib's own, decoded
    (copy,) = (tmp_path / "dlib").iterdir()
    assert copy.name == f"frontal_face_detector-{dlib.__version__}.svm"
    with monkeypatch.context() as patch:  # the second process reads the copy: dlib's own copy is not decoded
        patch.setattr(dlib, "get_frontal_face_detector", lambda: pytest.fail("built again"))
        loaded = align_module._frontal_face_detector(dlib)
    image = np.asarray(load_image(shared("images", "jojogan", "test_input", "iu.jpeg")))
    found = _detections(loaded, image)
    assert found == _detections(built, image) and len(found[0]) == 1


def test_a_damaged_or_unwritable_detector_copy_is_only_a_missed_shortcut(dlib, tmp_path, monkeypatch):
    monkeypatch.setenv("JOJOGAN_HOME", str(tmp_path))
    copy = tmp_path / "dlib" / f"frontal_face_detector-{dlib.__version__}.svm"
    copy.parent.mkdir()
    copy.write_bytes(b"not a detector")
    blank = np.zeros((64, 64, 3), np.uint8)
    assert _detections(align_module._frontal_face_detector(dlib), blank) == ([], [], [])
    assert copy.stat().st_size > 100_000  # made again
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("JOJOGAN_HOME", str(tmp_path / "file"))  # a cache folder that cannot exist
    assert _detections(align_module._frontal_face_detector(dlib), blank) == ([], [], [])
