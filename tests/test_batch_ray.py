"""Batch stylization on Ray Data: a local Ray (2 CPUs, no dashboard), real photos mixed with bad files.

Ray is the optional extra ``jojogan[ray]`` (about 240 MB installed), so CI's ``.[test]`` does not bring
it and these tests skip there with a reason. Each test is bounded in time (SIGALRM); none asserts how the
work was split between actors.
"""

from __future__ import annotations

import pytest
from batch_helpers import (
    BAD,
    GOOD,
    check_manifest,
    comparable,
    fast_settings,
    kill_after_first_line,
    manifest_lines,
    no_temporary_files,
)
from test_batch import photos  # noqa: F401 - the photo folder (its large photo at a screen's size)
from test_cli import FAST, run, style, workdir  # noqa: F401 - the tiny base and style fixtures

from jojogan.batch import stylize_many

from conftest import time_cap

ray = pytest.importorskip("ray", reason="the ray engine needs the optional extra: pip install 'jojogan[ray]'")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

LIMIT_S = 240
"""Upper bound of one Ray test on the shared 2-core machine (a hung pipeline fails instead of waiting)."""


def bounded_time():
    """Fail instead of waiting when a Ray pipeline hangs (SIGALRM after ``LIMIT_S``)."""
    return time_cap(LIMIT_S, "a Ray test")


@pytest.fixture
def bounded():
    with bounded_time():
        yield


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
def ray_out(workdir, style, photos, local_ray, tmp_path_factory):  # noqa: F811
    """One uninterrupted Ray batch of the photo folder: its output folder, report and resource plan.

    One stylize actor and a pool of alignment actors (``separate_align``): every photo's crops travel
    from an aligner to the stylize actor (the tests of both checks share the run; actors are processes
    that import torch and load the pipeline, seconds each)."""
    from jojogan.batch import ray_engine

    out = tmp_path_factory.mktemp("ray") / "out"
    plans = []
    plan = ray_engine._plan
    with bounded_time(), pytest.MonkeyPatch.context() as patch:
        patch.setattr(ray_engine, "_plan", lambda *args: plans.append(plan(*args)) or plans[-1])
        report = stylize_many(
            [photos], fast_settings(workdir, style), out, engine="ray", workers=1, separate_align=True,
            progress=False,
        )  # fmt: skip
    (used,) = plans
    return out, report, used


def test_ray_batch_equals_single_photo_stylize_and_reruns_skip(
    workdir,  # noqa: F811
    style,  # noqa: F811
    photos,  # noqa: F811
    single,  # noqa: F811
    ray_out,
    bounded,
):
    out, report, _ = ray_out
    assert report.counts == {"ok": len(GOOD), "error": len(BAD), "skipped": 0}
    rows = check_manifest(out, photos)
    assert {row["engine"] for row in rows.values()} == {"ray"}
    for stem in GOOD:
        assert (out / rows[f"{stem}.jpeg"]["outputs"][0]).read_bytes() == single[stem]
    again = stylize_many(
        [photos], fast_settings(workdir, style), out, engine="ray", workers=2, progress=False
    )
    assert again.counts == {"ok": 0, "error": 0, "skipped": len(GOOD) + len(BAD)}


def test_ray_align_actors_then_stylize_actors_give_the_same_bytes(single, ray_out):  # noqa: F811
    """Alignment in its own pool of CPU actors: the crops travel to the stylize actor unchanged."""
    out, report, plan = ray_out
    assert plan.align_actors >= 1 and plan.stylize_actors == 1
    rows = {row["input"].rsplit("/", 1)[-1]: row for row in report.rows}
    iu, blank = rows["iu.jpeg"], rows["blank.png"]
    assert iu["error"] is None and iu["outputs"] == ["more/iu_styled.png"]
    assert (out / "more" / "iu_styled.png").read_bytes() == single["iu"]
    assert blank["outputs"] == [] and "face" in blank["error"] and "blank.png" in blank["error"]


def test_ray_killed_driver_resumes_to_the_uninterrupted_outputs(
    workdir,  # noqa: F811
    style,  # noqa: F811
    photos,  # noqa: F811
    single,  # noqa: F811
    local_ray,
    ray_out,
    bounded,
    tmp_path,
):
    """``jojogan batch --engine ray`` SIGKILLed once its first manifest line is written, then rerun."""
    out = tmp_path / "out"
    address = ray.get_runtime_context().gcs_address  # the module's Ray: no second cluster to start
    args = ["batch", photos, "--style", style, "--base", workdir / "base.pt", *FAST, "--device", "cpu"]
    args += ["--engine", "ray", "--workers", "1", "--address", address, "--no-progress", "-o", out]
    left = kill_after_first_line(args, out, limit_s=LIMIT_S / 2)
    assert 1 <= len(left) < len(GOOD) + len(BAD)
    # every line is a photo the killed run finished: ok, or an error with its reason
    assert all(row["status"] == "ok" or row["error"] for row in left)
    assert no_temporary_files(out)
    # the rerun: one stylize actor aligning its own photos (the plan without an alignment pool)
    report = stylize_many(
        [photos], fast_settings(workdir, style), out, engine="ray", workers=1, separate_align=False,
        progress=False,
    )  # fmt: skip
    assert report.counts["skipped"] == len(left)
    rows = check_manifest(out, photos)
    assert comparable(manifest_lines(out)) == comparable(manifest_lines(ray_out[0]))
    for stem in GOOD:
        assert (out / rows[f"{stem}.jpeg"]["outputs"][0]).read_bytes() == single[stem]


def test_no_actor_pool_is_larger_than_the_photos(workdir, style):  # noqa: F811
    """A batch of one photo (and videos, which go to video workers) starts one stylize actor and one
    aligner, whatever the plan: Ray Data would give the other actors no row after loading their models."""
    from types import SimpleNamespace

    from jojogan.batch.inputs import InputItem
    from jojogan.batch.ray_engine import ResourcePlan, _dataset

    pools = []

    class Dataset:
        def map_batches(self, fn, compute, **kwargs):
            pools.append((fn.__name__, compute))
            return self

    strategy = lambda **sizes: sizes  # noqa: E731
    data = SimpleNamespace(from_items=lambda rows, **_: Dataset(), ActorPoolStrategy=strategy)
    plan = ResourcePlan(stylize_actors=4, stylize_resources={"num_cpus": 1}, align_actors=3)
    _dataset(
        SimpleNamespace(data=data),
        [InputItem(workdir / "face0.png", "face0")],
        fast_settings(workdir, style),
        plan,
        None,
    )
    assert pools == [("_RayAligner", {"min_size": 1, "max_size": 1}), ("_RayStylizer", {"size": 1})]
    pools.clear()
    items = [InputItem(workdir / f"face{i}.png", f"face{i}") for i in range(6)]
    _dataset(SimpleNamespace(data=data), items, fast_settings(workdir, style), plan, None)
    assert pools == [("_RayAligner", {"min_size": 1, "max_size": 3}), ("_RayStylizer", {"size": 4})]


def test_a_mixed_batch_without_an_alignment_pool_loads_the_pipeline_once_per_worker(monkeypatch, tmp_path):
    """Its photos go to the video workers (which align their own, as such a plan's stylize actors do)
    before its videos, instead of to a Ray Data pool of their own; with an alignment pool they keep it."""
    from types import SimpleNamespace

    from jojogan.batch import ray_engine, ray_video
    from jojogan.batch.inputs import InputItem

    calls = []

    def dataset(ray, rest, *args):
        calls.append(("dataset", rest))
        return SimpleNamespace(iter_rows=lambda: [])

    def run_videos(ray, videos, settings, folder, workers, *args):
        calls.append(("videos", videos, workers, args[2:]))
        return iter(())

    monkeypatch.setattr(ray_engine, "_dataset", dataset)
    monkeypatch.setattr(ray_video, "run_videos", run_videos)
    ray = SimpleNamespace(cluster_resources=lambda: {"CPU": 2.0})
    photo, clip = InputItem(tmp_path / "a.png", "a"), InputItem(tmp_path / "b.mov", "b")
    list(ray_engine._run(ray, [photo, clip], None, 2, None, None, tmp_path))
    assert calls == [("videos", [clip], 2, ([photo],))]
    calls.clear()
    list(ray_engine._run(ray, [photo, clip], None, 1, True, None, tmp_path))
    assert calls == [("dataset", [photo]), ("videos", [clip], 1, ())]
