"""The real recognizers tell the same face from a different one; the metric, curve, plot and CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image, ImageOps

from jojogan.cli import main as cli_main
from jojogan.identity import (
    RECOGNIZERS,
    IdentityCurve,
    IdentityError,
    VerificationRule,
    identity_curve,
    identity_metadata,
    identity_score,
    load_face_recognizer,
    plot_identity_curve,
    verification_rule,
)
from jojogan.identity.verdict import MOBILEFACENET_ANGLE_DEG
from jojogan.inversion.align import align_face

from conftest import shared_path
from factories import reduced_image


def _photo(name: str):
    return shared_path("images", "jojogan", "test_input", f"{name}.jpeg")


def _half_size(name: str) -> Image.Image:
    """A photo at half its width and height (Pillow's 2 x 2 average): a quarter of the pixels for dlib's
    face detector, and both test faces stay larger than a 256 px crop (556 and 269 px)."""
    return reduced_image(_photo(name), 2)


@pytest.fixture(scope="module")
def faces():
    """Two people, each FFHQ-aligned at 256 px, and a second, shifted crop of each (resized back to 256).

    They are aligned from the half-size photos: the faces there are still larger than the crop, so it is
    as sharp, and every score below moved by less than 0.03 (measured against the full-size photos)."""
    out = {}
    for name, box in (("chris_hemsworth", (4, 4, 252, 252)), ("iu", (0, 6, 250, 256))):
        crop = align_face(_half_size(name), 256).image
        out[name] = crop
        out[name + "_crop"] = crop.crop(box).resize((256, 256), Image.Resampling.LANCZOS)
    return out


@pytest.fixture(scope="module")
def mobilefacenet():
    return load_face_recognizer("mobilefacenet", shared_path("weights", "mobilefacenet.pt"))


def _noise(seed: int = 0) -> Image.Image:
    """Coloured noise, what a stylization by a tiny random generator looks like."""
    pixels = np.random.default_rng(seed).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def _verdicts(recognizer, faces):
    """(same-person pairs, different-person pairs, face-vs-noise pairs) scored by ``recognizer``."""
    a, b = faces["chris_hemsworth"], faces["iu"]
    same = [
        identity_score(a, ImageOps.mirror(a), recognizer),
        identity_score(b, ImageOps.mirror(b), recognizer),
        identity_score(a, faces["chris_hemsworth_crop"], recognizer),
        identity_score(b, faces["iu_crop"], recognizer),
    ]
    different = [
        identity_score(a, b, recognizer),
        identity_score(a, ImageOps.mirror(b), recognizer),
        identity_score(faces["chris_hemsworth_crop"], faces["iu_crop"], recognizer),
    ]
    noise = [identity_score(face, _noise(seed), recognizer) for seed, face in enumerate((a, b))]
    return same, different, noise


def test_mobilefacenet_verdicts_on_a_mirror_another_person_and_noise(faces, mobilefacenet):
    same, different, noise = _verdicts(mobilefacenet, faces)
    assert all(s.same_person for s in same) and not any(s.same_person for s in different + noise)
    # the raw cosines, measured: same 0.91-0.99, different about -0.1, noise about 0
    assert min(s.similarity for s in same) > 0.8
    assert max(s.similarity for s in different + noise) < 0.2
    assert {(s.network, s.metric, s.threshold) for s in same + different} == {
        ("mobilefacenet", "cosine", 0.2841)
    }
    # the threshold is foamliu's LFW angle (73.49 degrees) as a cosine
    assert math.degrees(math.acos(same[0].threshold)) == pytest.approx(MOBILEFACENET_ANGLE_DEG, abs=0.01)


def test_dlib_verdicts_by_its_published_distance(faces):
    recognizer = load_face_recognizer("dlib")
    same, different, noise = _verdicts(recognizer, faces)
    assert all(s.same_person for s in same) and not any(s.same_person for s in different + noise)
    # dlib's rule is on the descriptors' Euclidean distance: measured 0.18 for a mirror image, about 1.05
    # between the two people, 0.8-0.85 against noise
    assert max(s.similarity for s in same) < 0.4
    assert min(s.similarity for s in different) > 0.9 and min(s.similarity for s in noise) > 0.7
    assert same[0].metric == "euclidean" and same[0].threshold == 0.6 and "99.38%" in same[0].source
    assert same[0].line().startswith("same person (dlib: distance 0.1")
    assert different[0].line().startswith("not the same person (dlib: distance 1.0")


def test_every_recognizer_row_has_a_rule_with_its_source():
    for name, info in RECOGNIZERS.items():
        rule = info.verification
        assert rule.metric in ("cosine", "euclidean") and rule.source, name
        assert (0 < rule.threshold < 1) if rule.metric == "cosine" else rule.threshold > 0, name
        assert verification_rule(name) is rule
    assert "0.1% false-accept" in RECOGNIZERS["arcface-ir-se50"].verification.source
    with pytest.raises(IdentityError, match="unknown identity network"):
        verification_rule("nope")


def test_a_score_is_judged_by_its_rule():
    cosine = VerificationRule("cosine", 0.3, "test")
    distance = VerificationRule("euclidean", 0.6, "test")
    assert cosine.judge("x", 0.3).same_person and not cosine.judge("x", 0.29).same_person
    assert distance.judge("x", 0.59).same_person and not distance.judge("x", 0.6).same_person
    embeddings = torch.tensor([[3.0, 4.0], [0.0, 1.0]])
    torch.testing.assert_close(cosine.scores(embeddings, embeddings[:1]).float(), torch.tensor([1.0, 0.8]))
    torch.testing.assert_close(
        distance.scores(embeddings, embeddings[:1]).float(), torch.tensor([0.0, math.sqrt(9 + 9)])
    )
    with pytest.raises(IdentityError, match="finite"):
        cosine.judge("x", float("nan"))
    with pytest.raises(ValueError, match="metric"):
        VerificationRule("manhattan", 1.0, "test")


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
        identity_score(faces["chris_hemsworth"], faces["iu"], mobilefacenet).similarity, abs=1e-5
    )
    assert curve.same_person[0] and not curve.same_person[2]
    record = json.loads(curve.to_json())
    assert record == {
        "network": "mobilefacenet",
        "alphas": [0.0, 0.5, 1.0],
        "similarities": list(curve.similarities),
        "same_person": list(curve.same_person),
        "threshold": 0.2841,
        "metric": "cosine",
        "source": mobilefacenet.verification.source,
    }
    assert curve.line().startswith("(mobilefacenet: same person above cosine 0.2841) α 0.00: 1.000 same")
    assert curve.line().endswith("not same")
    with pytest.raises(ValueError, match=r"one stylized image per alpha"):
        identity_curve(faces["iu"], blends[:2], alphas, mobilefacenet)


def _red_marker_at(plot, x: float, y: float) -> bool:
    pixels = np.asarray(plot).astype(int)
    red = (pixels[..., 0] > 150) & (pixels[..., 1] < 100) & (pixels[..., 2] < 100)
    return bool(red[round(y) - 2 : round(y) + 3, round(x) - 2 : round(x) + 3].all())


def test_plot_draws_each_point_where_its_value_is_and_the_threshold():
    rule = VerificationRule("cosine", 0.28, "test")
    curve = IdentityCurve("arcface-ir-se50", (0.0, 0.5, 1.0), (0.9, 0.5, 0.1), rule)
    plot = plot_identity_curve(curve, width=400, height=300)
    assert plot.size == (400, 300)
    # y axis spans [0, 1] between rows 24 and 264: a point's marker sits at 264 - value * 240
    for alpha, value in zip(curve.alphas, curve.similarities, strict=True):
        assert _red_marker_at(plot, 48 + alpha * (400 - 16 - 48), 264 - value * 240), (alpha, value)
    assert not _red_marker_at(plot, 48, 264 - 0.1 * 240)
    rows = np.asarray(plot)[round(264 - 0.28 * 240) - 1 : round(264 - 0.28 * 240) + 2, 60:340].astype(int)
    assert (np.abs(rows - 110) < 5).all(axis=2).sum(axis=1).max() > 100  # the dashed threshold line


def test_plot_of_a_distance_spans_zero_to_its_largest_value():
    curve = IdentityCurve("dlib", (0.0, 1.0), (0.0, 1.5), VerificationRule("euclidean", 0.6, "test"))
    plot = plot_identity_curve(curve, width=400, height=300)
    # [0, 1.5] between rows 264 and 24
    assert _red_marker_at(plot, 48, 264) and _red_marker_at(plot, 400 - 16, 24)


def test_metadata_is_the_scores_json():
    score = VerificationRule("euclidean", 0.6, "dlib's docs").judge("dlib", 0.73125)
    (key, text), *rest = identity_metadata(score).items()
    assert key == "jojogan:identity" and not rest
    assert json.loads(text) == {
        "network": "dlib",
        "similarity": 0.73125,
        "threshold": 0.6,
        "same_person": False,
        "metric": "euclidean",
        "source": "dlib's docs",
    }


def test_score_refuses_non_square_images(mobilefacenet):
    with pytest.raises(ValueError, match=r"square"):
        mobilefacenet.score(Image.new("RGB", (100, 80)), Image.new("RGB", (100, 100)))


def test_embed_of_a_batch_matches_one_by_one(mobilefacenet):
    images = torch.rand(3, 3, 128, 128) * 2 - 1
    with torch.no_grad():
        together = mobilefacenet.embed(images)
        apart = torch.cat([mobilefacenet.embed(image[None]) for image in images])
    torch.testing.assert_close(together, apart, rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------------------------------------- CLI


def test_cli_compares_two_photos_after_aligning_them(tmp_path):
    """The same photo twice is the same face at distance 0 (IU's photo at half size: alignment then
    comparison is what is checked, and her face there is still larger than the 256 px crop)."""
    photo = tmp_path / "iu.png"
    _half_size("iu").save(photo)
    result = CliRunner().invoke(cli_main, ["identity", str(photo), str(photo), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["network"] == "dlib" and report["similarity"] == pytest.approx(0.0, abs=1e-6)
    assert report["threshold"] == 0.6 and report["same_person"] is True and report["metric"] == "euclidean"
    assert set(report) == {"network", "similarity", "threshold", "same_person", "metric", "source"}


def test_cli_says_two_people_are_not_the_same_person(tmp_path, faces):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    faces["iu"].save(a)
    faces["chris_hemsworth"].save(b)
    result = CliRunner().invoke(cli_main, ["identity", str(a), str(b), "--aligned"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("not the same person (dlib: distance 1.0")


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
    result = CliRunner().invoke(cli_main, ["identity", *args])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("same person (mobilefacenet: cosine 0.9")
    assert "≥ 0.2841" in result.output


def test_cli_photo_without_a_face_fails_with_one_line(tmp_path):
    blank = tmp_path / "blank.png"
    Image.new("RGB", (300, 300), (120, 130, 140)).save(blank)
    result = CliRunner().invoke(cli_main, ["identity", str(blank), str(_photo("iu"))])
    assert result.exit_code != 0
    assert "No face was found in" in result.output and "blank.png" in result.output
    assert "Traceback" not in result.output
