"""Batch stylization on Ray Data: a local Ray (2 CPUs, no dashboard), real photos mixed with bad files.

Ray is the optional extra ``jojogan[ray]`` (about 240 MB installed), so CI's ``.[test]`` does not bring
it and these tests skip there with a reason. Each test is bounded in time (SIGALRM); none asserts how the
work was split between actors.
"""

from __future__ import annotations

import signal

import pytest
from batch_helpers import BAD, GOOD, check_manifest, fast_settings, manifest_lines, no_temporary_files
from test_batch import photos  # noqa: F401 - the photo folder
from test_cli import FAST, run, style, workdir  # noqa: F401 - the tiny base and style fixtures

from jojogan.batch import stylize_many

ray = pytest.importorskip("ray", reason="the ray engine needs the optional extra: pip install 'jojogan[ray]'")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

LIMIT_S = 240
"""Upper bound of one Ray test on the shared 2-core machine (a hung pipeline fails instead of waiting)."""


@pytest.fixture
def bounded():
    def expire(signum, frame):
        raise TimeoutError(f"a Ray test ran for more than {LIMIT_S} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(LIMIT_S)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="module")
def single(workdir, style, photos):  # noqa: F811
    """Each good photo through ``jojogan stylize`` with one torch thread, as a Ray actor with one CPU runs.

    torch's CPU kernels split reductions by thread, so results depend on the thread count in the last
    bits (measured: an identity score 0.7943 with one thread, 0.7920 with two); bytes match for equal
    thread counts.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        outputs = {}
        for stem in GOOD:
            photo = next(photos.rglob(f"{stem}.jpeg"))
            target = workdir / f"single1_{stem}.png"
            args = ["stylize", photo, "--style", style, "--base", workdir / "base.pt", *FAST, "-o", target]
            result = run(args)
            assert result.exit_code == 0, result.output
            outputs[stem] = target.read_bytes()
    finally:
        torch.set_num_threads(threads)
    return outputs


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray for the module (starting one takes seconds); ``stylize_many`` leaves it running."""
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_ray_batch_equals_single_photo_stylize_and_reruns_skip(
    workdir,  # noqa: F811
    style,  # noqa: F811
    photos,  # noqa: F811
    single,  # noqa: F811
    local_ray,
    bounded,
    tmp_path,
):
    out = tmp_path / "out"
    settings = fast_settings(workdir, style)
    report = stylize_many([photos], settings, out, engine="ray", workers=2, progress=False)
    assert report.counts == {"ok": len(GOOD), "error": len(BAD), "skipped": 0}
    rows = check_manifest(out, photos)
    assert {row["engine"] for row in rows.values()} == {"ray"}
    for stem in GOOD:
        assert (out / rows[f"{stem}.jpeg"]["outputs"][0]).read_bytes() == single[stem]
    again = stylize_many([photos], settings, out, engine="ray", workers=2, progress=False)
    assert again.counts == {"ok": 0, "error": 0, "skipped": len(GOOD) + len(BAD)}


def test_ray_interrupted_driver_resumes_to_the_same_outputs(
    workdir,  # noqa: F811
    style,  # noqa: F811
    photos,  # noqa: F811
    single,  # noqa: F811
    local_ray,
    bounded,
    tmp_path,
):
    out = tmp_path / "out"
    settings = fast_settings(workdir, style)

    def stop(row):
        if row["status"] == "ok" or row["error"] and "face" in row["error"]:
            raise KeyboardInterrupt  # the driver dies while the actors still hold work

    with pytest.raises(KeyboardInterrupt):
        stylize_many([photos], settings, out, engine="ray", workers=1, progress=False, on_row=stop)
    assert no_temporary_files(out)
    finished = len(manifest_lines(out))
    assert finished < len(GOOD) + len(BAD)
    report = stylize_many([photos], settings, out, engine="ray", workers=1, progress=False)
    assert report.counts["skipped"] == finished
    rows = check_manifest(out, photos)
    for stem in GOOD:
        assert (out / rows[f"{stem}.jpeg"]["outputs"][0]).read_bytes() == single[stem]
