"""FFHQ-style face alignment, as JoJoGAN (and e4e, and the FFHQ dataset itself) crops faces.

A face is found with dlib's HOG frontal-face detector, its 68 landmarks with dlib's shape predictor (the
``shape_predictor_68_face_landmarks.dat`` model shipped in the ``face_recognition_models`` package), and
an oriented square is placed from the eye and mouth positions: centred just below the eyes, as wide as
twice the eye distance or 1.8 times the eye-to-mouth distance, whichever is larger, and turned so that the
eyes are level. The square is cut out of the photo (with blurred reflective padding where it leaves the
photo) and resampled to ``output_size`` pixels. The recipe, including its rounding, follows the FFHQ
dataset script and the JoJoGAN/e4e ``align_face`` so that crops match theirs pixel for pixel (the only
intended difference is the choice among several faces, see :func:`align_face`).

Coordinates: every position this module reports (``quad``, ``landmarks``, the ``to_aligned`` and
``to_photo`` matrices) is in *continuous* pixel coordinates, in which pixel ``(i, j)`` (column, row)
covers the square ``[i, i + 1) x [j, j + 1)`` and its centre is ``(i + 0.5, j + 0.5)``. This is the
convention of Pillow's ``Image.transform``; dlib's integer landmark positions are pixel indices and are
reported shifted by +0.5.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from jojogan.inversion.errors import FaceNotFoundError, FaceTooSmallError
from jojogan.inversion.images import DEFAULT_MAX_PIXELS, ImageSource, image_name, load_image

__all__ = [
    "AlignedFace",
    "FaceDetection",
    "MIN_FACE_SIZE",
    "align_face",
    "align_faces",
    "align_picture",
    "align_quad",
    "detect_faces",
    "face_quad",
    "landmark_model_path",
    "landmarks_in_box",
    "warm_up_detector",
]

logger = logging.getLogger("jojogan")

MIN_FACE_SIZE = 64
"""Smallest face accepted, in pixels: the shorter side of dlib's detection box."""

LANDMARK_MODEL_FILE = "shape_predictor_68_face_landmarks.dat"

# Supersampling resamples the quad at this many times the output size, then downscales (the FFHQ dataset
# script's 4096 px for its 1024 px crops).
SUPERSAMPLE_FACTOR = 4


@dataclass(frozen=True, eq=False)
class AlignedFace:
    """One aligned face crop and the geometry that relates it to the photo it came from.

    Attributes:
        image: The aligned crop, RGB, ``output_size`` x ``output_size``.
        quad: ``[4, 2]`` float array, the corners of the cropped square in the photo (continuous pixel
            coordinates, ``x, y``), in the order top-left, bottom-left, bottom-right, top-right of the
            crop (Pillow's QUAD order). With ``aligned=True`` it is the centre square that was kept.
        landmarks: ``[68, 2]`` float array of dlib's 68 landmarks in the photo (continuous coordinates),
            or ``None`` with ``aligned=True`` (no detection was run).
        face_index: Which detected face this is, counting detections from left to right from 0.
        num_faces: How many faces were detected in the photo (1 with ``aligned=True``).
        source_size: ``(width, height)`` of the photo after its EXIF orientation was applied.
        to_aligned: ``[3, 3]`` matrix mapping homogeneous photo coordinates to crop coordinates.
        to_photo: ``[3, 3]`` inverse of ``to_aligned``.
    """

    image: Image.Image
    quad: np.ndarray
    landmarks: np.ndarray | None
    face_index: int
    num_faces: int
    source_size: tuple[int, int]
    to_aligned: np.ndarray
    to_photo: np.ndarray

    @property
    def output_size(self) -> int:
        """Side of the aligned crop in pixels."""
        return self.image.size[0]

    def photo_to_aligned(self, points: np.ndarray) -> np.ndarray:
        """Map points ``[n, 2]`` (``x, y``) from photo coordinates to crop coordinates."""
        return _apply(self.to_aligned, points)

    def aligned_to_photo(self, points: np.ndarray) -> np.ndarray:
        """Map points ``[n, 2]`` (``x, y``) from crop coordinates to photo coordinates."""
        return _apply(self.to_photo, points)


def landmark_model_path() -> Path:
    """Path of dlib's 68-landmark model inside the installed ``face_recognition_models`` package.

    The package is located without importing it: its ``__init__`` imports the deprecated
    ``pkg_resources``.

    Raises:
        ImportError: ``face_recognition_models`` is not installed or lacks the model file.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "face alignment needs dlib's landmark model from the face_recognition_models package: "
            "pip install face_recognition_models"
        )
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / "models" / LANDMARK_MODEL_FILE
        if candidate.is_file():
            return candidate
    raise ImportError(
        f"the face_recognition_models package has no models/{LANDMARK_MODEL_FILE}; reinstall it: "
        "pip install --force-reinstall face_recognition_models"
    )


_models_lock = threading.Lock()
_models: tuple | None = None


def _dlib_models() -> tuple:
    """dlib's face detector and landmark predictor, loaded on first use and shared afterwards."""
    global _models
    with _models_lock:
        if _models is None:
            try:
                import dlib
            except ImportError as exc:
                raise ImportError("face alignment needs dlib: pip install dlib") from exc
            _models = (_frontal_face_detector(dlib), dlib.shape_predictor(str(landmark_model_path())))
        return _models


def _frontal_face_detector(dlib):
    """dlib's frontal face detector, from a copy in dlib's own binary format in the cache folder
    (``$JOJOGAN_HOME/dlib``), made on first use.

    ``get_frontal_face_detector`` decodes a compressed text copy of the model that dlib embeds: about 0.6
    CPU-seconds in every process that aligns a face (each command, UI, batch actor and alignment worker);
    the binary copy loads in a millisecond and detects the same boxes with the same scores. The copy is
    named by dlib's version; one that cannot be read or written is only a missed shortcut.
    """
    from jojogan.fileio import OutputError, atomic_output
    from jojogan.op._dispatch import home_dir

    copy = home_dir() / "dlib" / f"frontal_face_detector-{dlib.__version__}.svm"
    if copy.is_file():
        try:
            return dlib.fhog_object_detector(str(copy))
        except RuntimeError as error:  # damaged: made again below
            logger.info("rebuilding %s: %s", copy, error)
    detector = dlib.get_frontal_face_detector()
    try:
        with atomic_output(copy) as tmp:
            detector.save(str(tmp))
    except (OutputError, OSError, RuntimeError) as error:
        logger.debug("dlib's face detector is not kept in %s: %s", copy, error)
    return detector


def warm_up_detector() -> None:
    """Load dlib's face detector and landmark model now (a worker that aligns many photos loads them
    once, up front, instead of on its first photo)."""
    _dlib_models()


@dataclass(frozen=True)
class _Detection:
    box: tuple[int, int, int, int]  # left, top, width, height (dlib's inclusive box)
    landmarks: np.ndarray  # [68, 2] integer pixel indices, as dlib gives them

    @property
    def size(self) -> int:
        return min(self.box[2], self.box[3])

    @property
    def area(self) -> int:
        return self.box[2] * self.box[3]


def _detect(photo: Image.Image, upsample: int) -> list[_Detection]:
    """All faces with their landmarks, ordered from left to right."""
    detector, predictor = _dlib_models()
    pixels = np.ascontiguousarray(np.asarray(photo, dtype=np.uint8))
    found = []
    for rect in detector(pixels, upsample):
        shape = predictor(pixels, rect)
        landmarks = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.int64)
        found.append(_Detection((rect.left(), rect.top(), rect.width(), rect.height()), landmarks))
    return sorted(found, key=lambda d: (d.box[0] + d.box[2] / 2, d.box[1]))


def _ffhq_quad(landmarks: np.ndarray) -> tuple[np.ndarray, float]:
    """The FFHQ crop square from 68 landmarks (pixel indices): corners ``[4, 2]`` and side length."""
    eye_left = landmarks[36:42].mean(axis=0)
    eye_right = landmarks[42:48].mean(axis=0)
    eye_mid = (eye_left + eye_right) * 0.5
    eye_to_eye = eye_right - eye_left
    mouth_mid = (landmarks[48] + landmarks[54]) * 0.5
    eye_to_mouth = mouth_mid - eye_mid

    # Horizontal half-axis: the eye direction averaged with the mouth direction turned by 90 degrees.
    half_x = eye_to_eye - np.flipud(eye_to_mouth) * [-1, 1]
    half_x /= np.hypot(*half_x)
    half_x *= max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    half_y = np.flipud(half_x) * [-1, 1]
    centre = eye_mid + eye_to_mouth * 0.1
    quad = np.stack(
        [
            centre - half_x - half_y,
            centre - half_x + half_y,
            centre + half_x + half_y,
            centre + half_x - half_y,
        ]
    )
    return quad, float(np.hypot(*half_x) * 2)


@dataclass(frozen=True)
class _Frame:
    """The working image of a crop and where it sits in the photo: photo = working * scale + offset
    (continuous coordinates). ``quad`` (pixel indices) and ``qsize`` are in the working image."""

    image: Image.Image
    quad: np.ndarray
    qsize: float
    scale: np.ndarray
    offset: np.ndarray


def _ffhq_crop(
    photo: Image.Image, quad: np.ndarray, qsize: float, output_size: int, transform_size: int
) -> tuple[Image.Image, np.ndarray]:
    """Cut the square ``quad`` (pixel indices) out of ``photo`` the way the FFHQ script does.

    Returns:
        The crop, ``output_size`` square, and the corners of the region actually sampled, ``[4, 2]`` in
        the photo's continuous coordinates.
    """
    frame = _shrink(_Frame(photo, quad.copy(), qsize, np.ones(2), np.zeros(2)), output_size)
    border = max(int(np.rint(frame.qsize * 0.1)), 3)
    frame = _pad_outside_photo(_crop_around_quad(frame, border), border)
    # Pillow's QUAD transform works in continuous coordinates: pixel indices + 0.5.
    source_quad = frame.quad + 0.5
    aligned = frame.image.transform(
        (transform_size, transform_size),
        Image.Transform.QUAD,
        tuple(source_quad.flatten()),
        Image.Resampling.BILINEAR,
    )
    if output_size < transform_size:
        aligned = aligned.resize((output_size, output_size), Image.Resampling.LANCZOS)
    return aligned, source_quad * frame.scale + frame.offset


def _shrink(frame: _Frame, output_size: int) -> _Frame:
    """Shrink large faces first (Lanczos) to limit how far the bilinear resampling must downscale."""
    shrink = int(np.floor(frame.qsize / output_size * 0.5))
    if shrink <= 1:
        return frame
    image = frame.image
    new_size = (int(np.rint(float(image.size[0]) / shrink)), int(np.rint(float(image.size[1]) / shrink)))
    scale = np.array([image.size[0] / new_size[0], image.size[1] / new_size[1]])
    image = image.resize(new_size, Image.Resampling.LANCZOS)
    return _Frame(image, frame.quad / shrink, frame.qsize / shrink, scale, frame.offset)


def _quad_bounds(quad: np.ndarray) -> tuple[int, int, int, int]:
    """``left, top, right, bottom`` pixel bounds of a quad."""
    left, top = int(np.floor(min(quad[:, 0]))), int(np.floor(min(quad[:, 1])))
    right, bottom = int(np.ceil(max(quad[:, 0]))), int(np.ceil(max(quad[:, 1])))
    return left, top, right, bottom


def _crop_around_quad(frame: _Frame, border: int) -> _Frame:
    """Crop to the quad plus a border, to keep the padding step small."""
    image = frame.image
    left, top, right, bottom = _quad_bounds(frame.quad)
    box = (
        max(left - border, 0),
        max(top - border, 0),
        min(right + border, image.size[0]),
        min(bottom + border, image.size[1]),
    )
    if box[2] - box[0] >= image.size[0] and box[3] - box[1] >= image.size[1]:
        return frame
    offset = frame.offset + np.array(box[0:2]) * frame.scale
    return _Frame(image.crop(box), frame.quad - box[0:2], frame.qsize, frame.scale, offset)


def _pad_outside_photo(frame: _Frame, border: int) -> _Frame:
    """Pad where the quad leaves the photo: mirror the photo, blur the mirrored part increasingly with the
    distance from the photo's edge, and fade it towards the median colour."""
    image, qsize = frame.image, frame.qsize
    left, top, right, bottom = _quad_bounds(frame.quad)
    pad = (
        max(-left + border, 0),
        max(-top + border, 0),
        max(right - image.size[0] + border, 0),
        max(bottom - image.size[1] + border, 0),
    )
    if max(pad) <= border - 4:
        return frame
    # At least one pixel, so that the ramps below never divide by zero for tiny faces.
    pad = np.maximum(pad, max(int(np.rint(qsize * 0.3)), 1))
    padded = np.pad(np.float32(image), ((pad[1], pad[3]), (pad[0], pad[2]), (0, 0)), "reflect")
    height, width, _ = padded.shape
    ys, xs = np.ogrid[:height, :width]
    # 0 on the photo's edge, 1 on the padded border, negative inside the photo.
    fade_x = 1.0 - np.minimum(xs / pad[0], (width - 1 - xs) / pad[2])
    fade_y = 1.0 - np.minimum(ys / pad[1], (height - 1 - ys) / pad[3])
    ramp = np.maximum(fade_x, fade_y)[:, :, None].astype(np.float32)
    blurred = _gaussian_blur(padded, qsize * 0.02)
    padded += (blurred - padded) * np.clip(ramp * 3.0 + 1.0, 0.0, 1.0)
    padded += (np.median(padded, axis=(0, 1)) - padded) * np.clip(ramp, 0.0, 1.0)
    image = Image.fromarray(np.uint8(np.clip(np.rint(padded), 0, 255)))
    offset = frame.offset - np.asarray(pad[:2], dtype=np.float64) * frame.scale
    return _Frame(image, frame.quad + pad[:2], qsize, frame.scale, offset)


def _gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of ``[height, width, channels]`` over height and width, computed with FFTs.

    The same filter as ``scipy.ndimage.gaussian_filter(image, [sigma, sigma, 0])`` (kernel cut at four
    sigmas, mirrored edges), which the FFHQ recipe uses, but the padding of a large face needs a kernel
    of hundreds of taps, where direct convolution takes tens of seconds. numpy's FFT, not
    ``scipy.signal.fftconvolve``: importing ``scipy.signal`` takes a CPU-second, which every process that
    aligns a photo would pay for its first padded face.

    The FFTs run in the image's precision; the padding's image is float32. Measured on a 3000 x 3500 x 3
    plane: 1.4 CPU-seconds against 2.6 in float64, values within 5e-5 of those. Aligning a 1922 x 2883 px
    portrait at 1024 px, the blur took 1.7 of 4.5 CPU-seconds in float64; in float32 the aligned face
    differs from that one in one pixel of a million, by one level (PSNR 108 dB).
    """
    if sigma <= 0:
        return image.copy()
    radius = int(4.0 * sigma + 0.5)
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = (kernel / kernel.sum()).astype(np.result_type(image.dtype, np.float32))
    blurred = np.empty_like(image)
    for channel in range(image.shape[2]):
        plane = image[:, :, channel].astype(kernel.dtype)
        for axis in (0, 1):
            widths = [(0, 0), (0, 0)]
            widths[axis] = (radius, radius)
            # numpy's "symmetric" is scipy.ndimage's "reflect" (the edge pixel is repeated).
            plane = _convolve_valid(np.pad(plane, widths, mode="symmetric"), kernel, axis)
        blurred[:, :, channel] = plane
    return blurred


def _convolve_valid(plane: np.ndarray, kernel: np.ndarray, axis: int) -> np.ndarray:
    """The 'valid' part of the convolution of ``plane`` with the 1-D ``kernel`` along ``axis``, by FFT."""
    length = plane.shape[axis] + len(kernel) - 1
    size = _smooth_length(length)
    spectrum = np.fft.rfft(plane, size, axis=axis)
    spectrum *= np.fft.rfft(kernel, size).reshape((-1, 1) if axis == 0 else (1, -1))
    full = np.fft.irfft(spectrum, size, axis=axis)
    valid = slice(len(kernel) - 1, plane.shape[axis])
    return full[valid] if axis == 0 else full[:, valid]


def _smooth_length(length: int) -> int:
    """The smallest number at least ``length`` with no prime factor above 5 (fast FFT sizes)."""
    best = 1 << max(length - 1, 0).bit_length()
    fives = 1
    while fives < best:
        threes = fives
        while threes < best:
            twos = threes
            while twos < length:
                twos *= 2
            best = min(best, twos)
            threes *= 3
        fives *= 5
    return best


def _quad_to_photo_matrix(quad: np.ndarray, size: int) -> np.ndarray:
    """``[3, 3]`` affine matrix taking crop coordinates (``size`` square) to photo coordinates.

    ``quad`` is a parallelogram in QUAD order (top-left, bottom-left, bottom-right, top-right), so its
    bilinear map from the square, which is what Pillow samples, is exactly affine.
    """
    top_left, bottom_left, _, top_right = quad
    matrix = np.eye(3)
    matrix[:2, 0] = (top_right - top_left) / size
    matrix[:2, 1] = (bottom_left - top_left) / size
    matrix[:2, 2] = top_left
    return matrix


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"expected points of shape [n, 2], got {list(points.shape)}")
    homogeneous = np.concatenate([points, np.ones((len(points), 1))], axis=1) @ matrix.T
    return homogeneous[:, :2] / homogeneous[:, 2:]


def _frozen(array: np.ndarray) -> np.ndarray:
    array = np.array(array, dtype=np.float64)
    array.flags.writeable = False
    return array


def _check_common(output_size: int, detector_upsample: int, min_face_size: int) -> None:
    for name, value, low in (
        ("output_size", output_size, 1),
        ("detector_upsample", detector_upsample, 0),
        ("min_face_size", min_face_size, 0),
    ):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")


def _build(
    photo: Image.Image,
    detection: _Detection,
    index: int,
    count: int,
    output_size: int,
    supersample: bool,
) -> AlignedFace:
    quad, qsize = _ffhq_quad(detection.landmarks)
    transform_size = output_size * SUPERSAMPLE_FACTOR if supersample else output_size
    image, photo_quad = _ffhq_crop(photo, quad, qsize, output_size, transform_size)
    to_photo = _quad_to_photo_matrix(photo_quad, output_size)
    return AlignedFace(
        image=image,
        quad=_frozen(photo_quad),
        landmarks=_frozen(detection.landmarks + 0.5),
        face_index=index,
        num_faces=count,
        source_size=photo.size,
        to_aligned=_frozen(np.linalg.inv(to_photo)),
        to_photo=_frozen(to_photo),
    )


def _center_square(photo: Image.Image, output_size: int) -> AlignedFace:
    width, height = photo.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    image = photo.crop((left, top, left + side, top + side))
    if side != output_size:
        image = image.resize((output_size, output_size), Image.Resampling.LANCZOS)
    quad = np.array([[left, top], [left, top + side], [left + side, top + side], [left + side, top]], float)
    return _crop_of(image, quad, photo.size)


def _center_picture(photo: Image.Image, output_size: int, picture: tuple[int, int]) -> AlignedFace:
    """The largest centred box of ``picture``'s aspect ratio, scaled to ``picture`` and centred between
    black bars in the ``output_size`` square, as a model trained on such frames draws them (LSUN cars:
    512x384 inside 512x512). The geometry maps the square to the photo square around the box."""
    width, height = photo.size
    pic_w, pic_h = picture
    if pic_w == pic_h:
        return _center_square(photo, output_size)
    box_w = min(width, height * pic_w / pic_h)
    box_h = box_w * pic_h / pic_w
    left, top = (width - box_w) / 2, (height - box_h) / 2
    crop = photo.resize((pic_w, pic_h), Image.Resampling.LANCZOS, box=(left, top, left + box_w, top + box_h))
    image = Image.new("RGB", (output_size, output_size))
    image.paste(crop, ((output_size - pic_w) // 2, (output_size - pic_h) // 2))
    side = output_size * box_w / pic_w  # photo pixels per frame pixel, times the frame's side
    x0, y0 = width / 2 - side / 2, height / 2 - side / 2
    quad = np.array([[x0, y0], [x0, y0 + side], [x0 + side, y0 + side], [x0 + side, y0]], float)
    return _crop_of(image, quad, photo.size)


def _crop_of(image: Image.Image, quad: np.ndarray, source_size: tuple[int, int]) -> AlignedFace:
    """A crop without landmarks (no face was detected): ``image`` is the photo's square ``quad``."""
    to_photo = _quad_to_photo_matrix(quad, image.size[0])
    return AlignedFace(
        image=image,
        quad=_frozen(quad),
        landmarks=None,
        face_index=0,
        num_faces=1,
        source_size=source_size,
        to_aligned=_frozen(np.linalg.inv(to_photo)),
        to_photo=_frozen(to_photo),
    )


def align_picture(
    image: ImageSource,
    output_size: int,
    picture: tuple[int, int] | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> AlignedFace:
    """A picture that is not a face in the generator's frame: the largest centred square, or, for a model
    whose pictures are ``picture = (width, height)`` inside its square, the largest centred box of that
    shape between black bars (see :func:`_center_picture`).

    Raises:
        ImageError: The image cannot be loaded.
        ValueError: ``picture`` does not fit in the square.
    """
    if picture is not None and not (0 < min(picture) and max(picture) <= output_size):
        raise ValueError(f"picture {picture} does not fit in a {output_size} px square")
    photo = load_image(image, max_pixels=max_pixels)
    return (
        _center_square(photo, output_size)
        if picture is None
        else _center_picture(photo, output_size, picture)
    )


def align_face(
    image: ImageSource,
    output_size: int = 1024,
    face: str | int = "largest",
    aligned: bool = False,
    detector_upsample: int = 1,
    supersample: bool = False,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    min_face_size: int = MIN_FACE_SIZE,
) -> AlignedFace:
    """Detect one face in a photo and crop it the way FFHQ (and so StyleGAN2 and JoJoGAN) expects.

    With the defaults this reproduces JoJoGAN's ``align_face`` (the crop is resampled directly at
    ``output_size``). One deliberate difference: with several faces the original silently kept the last
    detection dlib returned (its least confident one); here the largest face is kept by default, it is
    logged on the ``"jojogan"`` logger, and ``face`` can pick another one.

    Args:
        image: A photo path, PIL image or array (see :func:`~jojogan.inversion.images.load_image`).
        output_size: Side of the aligned crop in pixels.
        face: ``"largest"`` (by detection box), or the index of a face counted from left to right
            (negative indices count from the right). For every face, use :func:`align_faces`.
        aligned: The image is already an aligned face crop: skip detection, keep its centre square and
            resize it to ``output_size`` (Lanczos).
        detector_upsample: How many times dlib upsamples the photo before detecting; each step finds
            faces half as large and takes about four times as long. JoJoGAN used 1.
        supersample: Resample the crop at four times ``output_size`` and downscale it (Lanczos), as the
            FFHQ dataset script did (4096 px for 1024 px crops); slower, slightly sharper.
        max_pixels: Largest photo accepted, in pixels (see ``load_image``).
        min_face_size: Smallest accepted face, in pixels (shorter side of dlib's detection box); smaller
            faces would have to be upscaled into a blurry crop.

    Returns:
        The aligned crop and its geometry.

    Raises:
        FaceNotFoundError: No face was detected, or ``face`` names a face that does not exist.
        FaceTooSmallError: The chosen face is smaller than ``min_face_size``.
        ImageError: The image cannot be loaded.
        ValueError: An argument is out of range.
    """
    _check_face_choice(face)
    _check_common(output_size, detector_upsample, min_face_size)
    name = image_name(image)
    photo = load_image(image, max_pixels=max_pixels)
    if aligned:
        return _center_square(photo, output_size)
    detections = _detect(photo, detector_upsample)
    if not detections:
        raise FaceNotFoundError(name)
    index = _choose_face(detections, face, name)
    chosen = detections[index]
    if chosen.size < min_face_size:
        raise FaceTooSmallError(name, chosen.size, min_face_size)
    return _build(photo, chosen, index, len(detections), output_size, supersample)


def _check_face_choice(face: object) -> None:
    if face == "all":
        raise ValueError('face="all" returns several crops: call align_faces(...) instead')
    if not (face == "largest" or (isinstance(face, (int, np.integer)) and not isinstance(face, bool))):
        raise ValueError(f'face must be "largest" or an integer index, got {face!r}')


def _choose_face(detections: list[_Detection], face: str | int, name: str) -> int:
    """The index of the detection ``face`` picks (``"largest"``, or an index from the left)."""
    count = len(detections)
    if face == "largest":
        # max() keeps the first of equal areas, i.e. the leftmost.
        index = max(range(count), key=lambda i: detections[i].area)
        if count > 1:
            logger.info(
                "Found %d faces in %s; aligning the largest (face %d from the left, %d px).",
                count,
                name,
                index,
                detections[index].size,
            )
        return index
    if not -count <= face < count:
        raise FaceNotFoundError(
            name, f"Face {face} was requested but only {count} face(s) were found in {name}."
        )
    return int(face) % count


def align_faces(
    image: ImageSource,
    output_size: int = 1024,
    detector_upsample: int = 1,
    supersample: bool = False,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    min_face_size: int = MIN_FACE_SIZE,
) -> list[AlignedFace]:
    """Align every face found in a photo, from left to right.

    Faces smaller than ``min_face_size`` are skipped (and logged); their ``face_index`` numbers are not
    reused, so ``face_index`` always counts all detections. Arguments are those of :func:`align_face`.

    Returns:
        One :class:`AlignedFace` per usable face, ordered from left to right.

    Raises:
        FaceNotFoundError: No face was detected.
        FaceTooSmallError: Faces were detected but all are smaller than ``min_face_size``.
        ImageError: The image cannot be loaded.
    """
    _check_common(output_size, detector_upsample, min_face_size)
    name = image_name(image)
    photo = load_image(image, max_pixels=max_pixels)
    detections = _detect(photo, detector_upsample)
    if not detections:
        raise FaceNotFoundError(name)
    usable = [i for i, d in enumerate(detections) if d.size >= min_face_size]
    if not usable:
        raise FaceTooSmallError(name, max(d.size for d in detections), min_face_size)
    if len(usable) < len(detections):
        logger.info(
            "Skipping %d of %d faces in %s that are smaller than %d px.",
            len(detections) - len(usable),
            len(detections),
            name,
            min_face_size,
        )
    return [_build(photo, detections[i], i, len(detections), output_size, supersample) for i in usable]


# ------------------------------------------------------------------ helpers for face tracks (video)
# A video's faces are detected on some frames, followed on others and smoothed over time before they are
# cropped; these helpers expose the steps of align_face one by one, in continuous coordinates.


@dataclass(frozen=True)
class FaceDetection:
    """One face found by :func:`detect_faces`.

    Attributes:
        box: ``(left, top, width, height)`` of dlib's detection box, in the photo's pixels.
        landmarks: ``[68, 2]`` float array of dlib's landmarks (continuous coordinates).
    """

    box: tuple[float, float, float, float]
    landmarks: np.ndarray

    @property
    def size(self) -> float:
        """Shorter side of the detection box (what ``min_face_size`` is compared with)."""
        return min(self.box[2], self.box[3])


def _pixels(image: np.ndarray | Image.Image) -> np.ndarray:
    pixels = np.ascontiguousarray(np.asarray(image, dtype=np.uint8))
    if pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ValueError(f"expected an RGB image [height, width, 3], got shape {list(pixels.shape)}")
    return pixels


def landmarks_in_box(image: np.ndarray | Image.Image, box: tuple[float, float, float, float]) -> np.ndarray:
    """dlib's 68 landmarks of the face inside ``box`` (no detection: the box is trusted).

    Args:
        image: RGB ``[height, width, 3]`` uint8.
        box: ``(left, top, width, height)`` in pixels, as a detection box (about brows to chin).

    Returns:
        ``[68, 2]`` float64 landmarks in continuous coordinates.
    """
    import dlib

    _, predictor = _dlib_models()
    left, top, width, height = (int(round(v)) for v in box)
    rect = dlib.rectangle(left, top, left + max(width, 1) - 1, top + max(height, 1) - 1)
    shape = predictor(_pixels(image), rect)
    return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64) + 0.5


def detect_faces(
    image: np.ndarray | Image.Image, upsample: int = 1, scale: float = 1.0
) -> list[FaceDetection]:
    """Every face of an image with its landmarks, ordered from left to right.

    Args:
        image: RGB ``[height, width, 3]`` uint8.
        upsample: dlib's detector upsampling (as in :func:`align_face`).
        scale: run the detector on the image resized by this factor (< 1: faster, finds only larger
            faces); the landmarks are always predicted on the full image.
    """
    if not 0.0 < scale <= 1.0:
        raise ValueError(f"scale must lie in (0, 1], got {scale}")
    pixels = _pixels(image)
    small = pixels
    if scale < 1.0:
        height, width = pixels.shape[:2]
        size = (max(int(round(width * scale)), 1), max(int(round(height * scale)), 1))
        small = np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.BILINEAR))
    detector, _ = _dlib_models()
    found = []
    for rect in detector(small, upsample):
        box = (rect.left() / scale, rect.top() / scale, rect.width() / scale, rect.height() / scale)
        found.append(FaceDetection(box, landmarks_in_box(pixels, box)))
    return sorted(found, key=lambda d: (d.box[0] + d.box[2] / 2, d.box[1]))


def face_quad(landmarks: np.ndarray) -> np.ndarray:
    """The FFHQ crop square of 68 landmarks, both in continuous coordinates: ``[4, 2]`` in QUAD order."""
    quad, _ = _ffhq_quad(np.asarray(landmarks, dtype=np.float64) - 0.5)
    return quad + 0.5


def align_quad(
    image: np.ndarray | Image.Image,
    quad: np.ndarray,
    landmarks: np.ndarray,
    output_size: int,
    supersample: bool = False,
    face_index: int = 0,
    num_faces: int = 1,
) -> AlignedFace:
    """Crop a face from a given square (e.g. :func:`face_quad` of landmarks smoothed over time).

    With ``quad = face_quad(landmarks)`` of a detection's landmarks this is :func:`align_face`'s crop.

    Args:
        image: the photo (RGB array or PIL image).
        quad: ``[4, 2]`` corners in continuous coordinates, QUAD order (a square).
        landmarks: ``[68, 2]`` the face's landmarks (continuous), kept for paste-back masks.
        output_size: side of the crop.
        supersample: as in :func:`align_face`.
        face_index, num_faces: recorded in the result.
    """
    _check_common(output_size, 0, 0)
    photo = image if isinstance(image, Image.Image) else Image.fromarray(_pixels(image))
    quad = np.asarray(quad, dtype=np.float64)
    qsize = float(np.hypot(*(quad[3] - quad[0])))
    transform_size = output_size * SUPERSAMPLE_FACTOR if supersample else output_size
    crop, photo_quad = _ffhq_crop(photo, quad - 0.5, qsize, output_size, transform_size)
    to_photo = _quad_to_photo_matrix(photo_quad, output_size)
    return AlignedFace(
        image=crop,
        quad=_frozen(photo_quad),
        landmarks=_frozen(landmarks),
        face_index=face_index,
        num_faces=num_faces,
        source_size=photo.size,
        to_aligned=_frozen(np.linalg.inv(to_photo)),
        to_photo=_frozen(to_photo),
    )
