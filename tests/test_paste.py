"""Seamless paste-back: the photo untouched outside the mask, no seam, colour matching, several faces."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage
import torch
from PIL import Image
from test_codeformer import TINY, seeded

from jojogan.cleanup import CodeFormer, cleanup_face
from jojogan.imaging import to_pil
from jojogan.inversion.align import align_face, align_faces
from jojogan.inversion.errors import JojoganError
from jojogan.inversion.paste import PasteError, face_mask, paste_faces, photo_mask

from factories import tiny_generator

_cache: dict = {}


@pytest.fixture(scope="module")
def dlib():
    return pytest.importorskip("dlib")


@pytest.fixture
def photo(shared, dlib):
    """The test photo scaled to 400 px wide and its face aligned at 256 px (computed once)."""
    if "photo" not in _cache:
        with Image.open(shared("images", "jojogan", "test_input", "iu.jpeg")) as image:
            small = image.convert("RGB")
        small = small.resize((400, round(400 * small.height / small.width)), Image.Resampling.LANCZOS)
        _cache["photo"] = (small, align_face(small, output_size=256))
    return _cache["photo"]


def _tinted(image: Image.Image, shift=(60, -30, -50), blur: bool = True) -> Image.Image:
    """A stand-in for a stylized face: the crop, smoothed and with its colours shifted."""
    array = np.asarray(image, dtype=np.float32)
    if blur:
        array = np.asarray(image.resize((64, 64)).resize(image.size, Image.Resampling.BICUBIC), np.float32)
    return Image.fromarray(np.clip(array + np.array(shift, np.float32), 0, 255).astype(np.uint8))


def _energy(image: np.ndarray) -> np.ndarray:
    """Squared gradient magnitude per pixel (forward differences, summed over channels)."""
    a = image.astype(np.float64)
    gx = np.zeros(a.shape[:2])
    gy = np.zeros(a.shape[:2])
    gx[:, :-1] = ((a[:, 1:] - a[:, :-1]) ** 2).sum(-1)
    gy[:-1] = ((a[1:] - a[:-1]) ** 2).sum(-1)
    return gx + gy


def test_mask_is_the_face_not_the_crop(photo):
    _, face = photo
    mask = face_mask(face, 256)
    assert mask.shape == (256, 256) and mask.dtype == np.float32
    assert mask.min() == 0.0 and mask.max() == 1.0
    points = face.photo_to_aligned(face.landmarks)
    nose, chin = points[30], points[8]
    assert mask[int(nose[1]), int(nose[0])] == 1.0  # deep inside the face
    assert mask[min(int(chin[1]) + 6, 255), int(chin[0])] == 0.0  # below the jaw: the neck stays
    assert mask[:, :10].max() == 0.0 and mask[:10].max() == 0.0  # crop corners and top (hair) stay
    # Above the brows: the forehead is in, up to about the hairline.
    brow_y = points[17:27, 1].mean()
    assert mask[int(brow_y) - 10, int(nose[0])] == 1.0
    soft = (mask > 0) & (mask < 1)
    assert soft.sum() > 4 * 256  # a band several pixels wide, not a hard edge
    hard = face_mask(face, 256, feather=0.0)
    assert set(np.unique(hard)) == {0.0, 1.0}
    assert np.array_equal(hard > 0, mask > 0)  # feathering stays inside the polygon


def test_outside_the_mask_the_photo_is_untouched_bit_for_bit(photo):
    image, face = photo
    styled = _tinted(face.image)
    pasted = np.asarray(paste_faces(image, [(styled, face)]))
    original = np.asarray(image)
    mask = photo_mask(face, styled.size[0])
    assert pasted.shape == original.shape
    outside = mask == 0
    assert outside.mean() > 0.5
    assert np.array_equal(pasted[outside], original[outside])
    changed = (pasted != original).any(-1)
    assert changed[mask == 1].mean() > 0.95  # and the face itself was replaced
    # With colour matching the same holds.
    matched = np.asarray(paste_faces(image, [(styled, face)], match_colour=True))
    assert np.array_equal(matched[outside], original[outside])


def _texture(rng, height: int, width: int, base) -> Image.Image:
    """Smooth random shading plus fine grain around a base colour (no edges of its own)."""
    smooth = scipy.ndimage.gaussian_filter(rng.normal(size=(height, width, 3)), (8, 8, 0)) * 300
    grain = rng.normal(scale=4.0, size=(height, width, 3))
    return Image.fromarray(np.clip(np.array(base) + smooth + grain, 0, 255).astype(np.uint8))


def test_the_seam_has_no_more_gradient_energy_than_face_or_photo(photo):
    """The real face's geometry, but photo and face textured without edges, so a seam is the only edge.

    (On the real photo the jaw line is itself the strongest edge there, which would hide a seam.)
    """
    image, face = photo
    rng = np.random.default_rng(0)
    canvas = _texture(rng, image.height, image.width, (120, 110, 100))
    styled = _texture(rng, 256, 256, (170, 80, 60))  # a different colour: a hard cut would show
    mask = photo_mask(face, 256)
    support = mask > 0
    seam = support & (mask < 1)
    inside = scipy.ndimage.binary_erosion(mask == 1, iterations=2)
    ring = scipy.ndimage.binary_dilation(support, iterations=12) & ~scipy.ndimage.binary_dilation(
        support, iterations=2
    )
    energy = _energy(np.asarray(paste_faces(canvas, [(styled, face)])))
    face_energy, photo_energy = energy[inside].mean(), energy[ring].mean()
    assert energy[seam].mean() <= max(face_energy, photo_energy), (
        energy[seam].mean(),
        face_energy,
        photo_energy,
    )
    # The check can fail: a hard paste of the same face puts a step along its edge.
    hard = _energy(np.asarray(paste_faces(canvas, [(styled, face)], feather=0.0)))
    edge = scipy.ndimage.binary_dilation(support, iterations=1) & ~scipy.ndimage.binary_erosion(support)
    assert hard[edge].mean() > 3 * max(face_energy, photo_energy)


def test_colour_matching_takes_the_photos_low_frequencies(photo):
    image, face = photo
    styled = _tinted(face.image, shift=(-40, 25, 35), blur=False)
    mask = photo_mask(face, 256)
    inside = mask == 1
    original = np.asarray(image, dtype=np.float64)
    plain = np.asarray(paste_faces(image, [(styled, face)]), dtype=np.float64)
    matched = np.asarray(paste_faces(image, [(styled, face)], match_colour=True), dtype=np.float64)
    shift_plain = (plain[inside] - original[inside]).mean(0)
    shift_matched = (matched[inside] - original[inside]).mean(0)
    assert np.abs(shift_plain - [-40, 25, 35]).max() < 5  # the tint is pasted as it is
    assert np.abs(shift_matched).max() < 3  # the photo's colour is back
    # Detail finer than the matching scale is the face's: its high frequencies still differ from a blur.
    assert np.abs(matched[inside] - original[inside]).mean() > 0.5


def test_several_faces_each_pasted(photo):
    image, _ = photo
    canvas = Image.new("RGB", (800, image.height), (30, 30, 30))
    canvas.paste(image, (0, 0))
    canvas.paste(image, (400, 0))
    faces = align_faces(canvas, output_size=256)
    assert len(faces) == 2
    pairs = [(_tinted(f.image, shift=s), f) for f, s in zip(faces, [(-60, 0, 0), (0, 0, -60)], strict=True)]
    pasted = np.asarray(paste_faces(canvas, pairs), dtype=np.float64)
    original = np.asarray(canvas, dtype=np.float64)
    masks = [photo_mask(f, 256) for f in faces]
    for mask, channel in zip(masks, [0, 2], strict=True):
        inside = mask == 1
        assert (original[inside, channel] - pasted[inside, channel]).mean() > 40
    untouched = (masks[0] == 0) & (masks[1] == 0)
    assert np.array_equal(pasted[untouched], original[untouched])


def test_bad_input_is_refused_with_a_message(photo):
    image, face = photo
    with pytest.raises(PasteError, match="square"):
        paste_faces(image, [(Image.new("RGB", (256, 200)), face)])
    with pytest.raises(PasteError, match=r"aligned from a photo of size .* the photo given is \(10, 10\)"):
        paste_faces(Image.new("RGB", (10, 10)), [(face.image, face)])
    with pytest.raises(PasteError, match="feather"):
        face_mask(face, 64, feather=0.9)
    assert issubclass(PasteError, JojoganError)


def test_generated_face_cleaned_up_and_pasted_into_the_photo(photo):
    """The finishing stages composed as the pipeline calls them: generator face -> cleanup -> paste."""
    image, face = photo
    generator = tiny_generator(128, seed=1)
    with torch.no_grad():
        styled = generator.synthesis(generator.to_w_plus(generator.get_latent(torch.randn(1, 16))))
    with torch.random.fork_rng():
        torch.manual_seed(5)
        restorer = seeded(CodeFormer(TINY), 6).requires_grad_(False)
    cleaned = cleanup_face(styled, restorer, fidelity=0.7)
    assert cleaned.shape == styled.shape == (1, 3, 128, 128)
    assert not torch.equal(cleaned, styled.clamp(-1, 1))
    # A 128 px face into a 256 px alignment: paste scales it to the crop.
    pasted = np.asarray(paste_faces(image, [(to_pil(cleaned[0]), face)], match_colour=True))
    original = np.asarray(image)
    mask = photo_mask(face, 128)
    assert pasted.shape == original.shape
    assert np.array_equal(pasted[mask == 0], original[mask == 0])
    assert (pasted[mask == 1] != original[mask == 1]).any(-1).mean() > 0.9


def test_a_crop_without_landmarks_goes_back_as_its_feathered_square():
    """A non-face picture (``center-crop`` domains) pastes back its whole crop, softened at the edge."""
    rng = np.random.default_rng(3)
    photo = Image.fromarray(rng.integers(0, 255, (60, 90, 3), dtype=np.uint8))
    crop = align_face(photo, output_size=32, aligned=True)  # the centred 60 x 60 square
    pasted = np.asarray(paste_faces(photo, [(Image.new("RGB", (32, 32), (255, 0, 0)), crop)]), dtype=int)
    original = np.asarray(photo, dtype=int)
    assert np.array_equal(pasted[:, :14], original[:, :14]) and np.array_equal(
        pasted[:, 76:], original[:, 76:]
    )
    assert (pasted[28:32, 43:47] == [255, 0, 0]).all()  # the middle is the pasted picture
    mask = face_mask(crop, 32, feather=0.1)
    assert mask[16, 16] == 1 and 0 < mask[0, 16] < 0.1 < mask[2, 16] < 1  # rising from the crop's edge
