"""The real recognizers tell the same face from a different one; the metric, curve, plot and CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image, ImageOps

from jojogan.cli.identity import identity
from jojogan.identity import (
    IdentityCurve,
    IdentityError,
    identity_curve,
    identity_metadata,
    identity_similarity,
    load_face_recognizer,
    plot_identity_curve,
)
from jojogan.inversion.align import align_face

from conftest import shared_path


def _photo(name: str):
    return shared_path("images", "jojogan", "test_input", f"{name}.jpeg")


@pytest.fixture(scope="module")
def faces():
    """Two people, each FFHQ-aligned at 256 px, and a second, shifted crop of each (resized back to 256)."""
    out = {}
    for name, box in (("chris_hemsworth", (4, 4, 252, 252)), ("iu", (0, 6, 250, 256))):
        crop = align_face(_photo(name), 256).image
        out[name] = crop
        out[name + "_crop"] = crop.crop(box).resize((256, 256), Image.Resampling.LANCZOS)
    return out


@pytest.fixture(scope="module")
def mobilefacenet():
    return load_face_recognizer("mobilefacenet", shared_path("weights", "mobilefacenet.pt"))


def _same_and_different(recognizer, faces):
    a, b = faces["chris_hemsworth"], faces["iu"]
    same = [
        identity_similarity(a, ImageOps.mirror(a), recognizer),
        identity_similarity(b, ImageOps.mirror(b), recognizer),
        identity_similarity(a, faces["chris_hemsworth_crop"], recognizer),
        identity_similarity(b, faces["iu_crop"], recognizer),
    ]
    different = [
        identity_similarity(a, b, recognizer),
        identity_similarity(a, ImageOps.mirror(b), recognizer),
        identity_similarity(faces["chris_hemsworth_crop"], faces["iu_crop"], recognizer),
    ]
    return same, different


def test_mobilefacenet_tells_the_same_face_from_another(faces, mobilefacenet):
    same, different = _same_and_different(mobilefacenet, faces)
    # measured: same 0.91-0.99, different about -0.1
    assert min(same) > 0.8
    assert max(different) < 0.2
    assert min(same) - max(different) > 0.6


def test_dlib_tells_the_same_face_from_another(faces):
    recognizer = load_face_recognizer("dlib")
    same, different = _same_and_different(recognizer, faces)
    # measured: same >= 0.99, different about 0.75 (dlib's descriptors all share one half-space)
    assert min(same) > 0.95
    assert max(different) < 0.85
    assert min(same) - max(different) > 0.15


def test_identity_curve_falls_as_the_face_turns_into_another(faces, mobilefacenet):
    a = np.asarray(faces["chris_hemsworth"], dtype=np.float64)
    b = np.asarray(faces["iu"], dtype=np.float64)
    alphas = [0.0, 0.5, 1.0]
    blends = [Image.fromarray(((1 - t) * a + t * b).round().astype(np.uint8)) for t in alphas]
    curve = identity_curve(faces["chris_hemsworth"], blends, alphas, mobilefacenet)
    assert curve.network == "mobilefacenet" and curve.alphas == (0.0, 0.5, 1.0)
    assert curve.similarities[0] == pytest.approx(1.0, abs=1e-5)  # the face itself
    assert curve.similarities[0] > curve.similarities[1] > curve.similarities[2]
    assert curve.similarities[2] == pytest.approx(
        identity_similarity(faces["chris_hemsworth"], faces["iu"], mobilefacenet), abs=1e-5
    )
    assert json.loads(curve.to_json()) == {
        "network": "mobilefacenet",
        "alphas": [0.0, 0.5, 1.0],
        "similarities": list(curve.similarities),
    }
    with pytest.raises(ValueError, match=r"one stylized image per alpha"):
        identity_curve(faces["iu"], blends[:2], alphas, mobilefacenet)


def test_plot_draws_each_point_where_its_value_is():
    curve = IdentityCurve("dlib", (0.0, 0.5, 1.0), (0.9, 0.5, 0.1))
    plot = plot_identity_curve(curve, width=400, height=300)
    assert plot.size == (400, 300)
    pixels = np.asarray(plot).astype(int)
    red = (pixels[..., 0] > 150) & (pixels[..., 1] < 100) & (pixels[..., 2] < 100)
    # y axis spans [0, 1] between rows 24 and 264: a point's marker sits at 264 - value * 240
    for alpha, value in zip(curve.alphas, curve.similarities, strict=True):
        x = round(48 + alpha * (400 - 16 - 48))
        y = round(264 - value * 240)
        assert red[y - 2 : y + 3, x - 2 : x + 3].all(), (alpha, value)
    assert not red[round(264 - 0.1 * 240) - 2 : round(264 - 0.1 * 240) + 3, 48 - 2 : 48 + 3].any()


def test_metadata_is_text_and_refuses_nan():
    assert identity_metadata(0.73125, "dlib") == {
        "jojogan:identity": "0.7312",
        "jojogan:identity_net": "dlib",
    }
    with pytest.raises(IdentityError, match=r"finite"):
        identity_metadata(float("nan"), "dlib")


def test_similarity_refuses_non_square_images(mobilefacenet):
    with pytest.raises(ValueError, match=r"square"):
        mobilefacenet.similarity(Image.new("RGB", (100, 80)), Image.new("RGB", (100, 100)))


def test_embed_of_a_batch_matches_one_by_one(mobilefacenet):
    images = torch.rand(3, 3, 128, 128) * 2 - 1
    with torch.no_grad():
        together = mobilefacenet.embed(images)
        apart = torch.cat([mobilefacenet.embed(image[None]) for image in images])
    torch.testing.assert_close(together, apart, rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------------------------------------- CLI


def test_cli_compares_two_photos_after_aligning_them():
    result = CliRunner().invoke(identity, [str(_photo("iu")), str(_photo("iu")), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["network"] == "dlib" and report["similarity"] == pytest.approx(1.0, abs=1e-6)


def test_cli_aligned_flag_and_chosen_network(tmp_path, faces):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    faces["iu"].save(a)
    ImageOps.mirror(faces["iu"]).save(b)
    weights = shared_path("weights", "mobilefacenet.pt")
    args = [
        str(a),
        str(b),
        "--aligned",
        "--identity-net",
        "mobilefacenet",
        "--identity-weights",
        str(weights),
    ]
    result = CliRunner().invoke(identity, args)
    assert result.exit_code == 0, result.output
    assert result.output.startswith("identity similarity (mobilefacenet): 0.9")


def test_cli_photo_without_a_face_fails_with_one_line(tmp_path):
    blank = tmp_path / "blank.png"
    Image.new("RGB", (300, 300), (120, 130, 140)).save(blank)
    result = CliRunner().invoke(identity, [str(blank), str(_photo("iu"))])
    assert result.exit_code != 0
    assert "No face was found in" in result.output and "blank.png" in result.output
    assert "Traceback" not in result.output
