"""The ``ray`` engine: a Ray Data pipeline with the stages as separate operators.

Operators: read (the listed photos become a dataset, one row per photo) → align (a pool of CPU actors,
each loading dlib's detector once, :class:`_RayAligner`) → invert + stylize (+ cleanup, paste) (a pool of
:class:`_RayStylizer` actors that load the pipeline once in ``__init__``) → the driver writes each output
atomically and appends the manifest line as rows stream back. How many actors of each kind, and what
each takes, is planned from ``ray.cluster_resources()`` at run time by :func:`plan_resources`; on a
cluster whose CPUs all go to stylize actors, each aligns its own photos (measured faster there than
a lone aligner, see :func:`plan_resources`). Then each video at a local path is split into chunks over
as many video workers (:mod:`jojogan.batch.ray_video`); when the plan has no alignment pool (and
photos go one at a time), those workers take the batch's photos first instead of a pipeline of their
own, so each loads the models once. Ray is imported only here and there; it is the optional extra
``jojogan[ray]``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import pickle
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from jojogan.batch.errors import EngineUnavailableError
from jojogan.batch.inputs import InputItem, is_video
from jojogan.batch.job import (
    GPU_BATCH_SIZE,
    AlignedPhoto,
    BatchSettings,
    PhotoResult,
    Stylizer,
    align_photo,
    generator_size,
)
from jojogan.batch.ray_cleanup import clean_orphans, forget_cluster, record_cluster, signals_as_exit
from jojogan.op.memory import worker_env

__all__ = ["ResourcePlan", "plan_resources", "run_ray"]

log = logging.getLogger(__name__)


def _import_ray():
    try:
        import ray
        import ray.data
    except ImportError as error:
        raise EngineUnavailableError(
            "the ray engine needs Ray Data: pip install 'jojogan[ray]' (or use --engine local)"
        ) from error
    return ray


@dataclass(frozen=True)
class ResourcePlan:
    """How a batch uses a Ray cluster.

    Attributes:
        stylize_actors: actors that invert and stylize (each loads the pipeline once).
        stylize_resources: what each stylize actor reserves (``{"num_gpus": 1, ...}`` or ``{"num_cpus": 1}``).
        align_actors: the most alignment actors (one CPU each; the pool grows from one up to this); 0: each
            stylize actor aligns its own photos.
        note: why the plan differs from what was asked, or ``""``.
    """

    stylize_actors: int
    stylize_resources: dict[str, float]
    align_actors: int
    note: str = ""


def plan_resources(resources: Mapping[str, float], workers: int) -> ResourcePlan:
    """Plan the actor pools from a cluster's resources (``ray.cluster_resources()``).

    With GPUs: one stylize actor per GPU up to ``workers`` (one GPU and one CPU each) and the other CPUs
    aligning (a GPU stylizes a face in milliseconds, alignment takes seconds on a CPU core). On CPUs
    only: ``workers`` stylize actors (at most one per CPU), and alignment actors on the CPUs left over;
    when none are left, each stylize actor aligns its own photos. Measured on 2 CPUs, 12 photos at
    128 px, where alignment (dlib, 3-4 s a photo) outweighs stylizing (under a second): 1 stylize actor
    aligning its own photos 21.3 photos/min, 1 stylize actor + 1 alignment actor 24.5 (the spare CPU
    works), 2 stylize actors aligning their own photos 30.5 (better than giving one of the two CPUs to a
    lone aligner, which is then the bottleneck) (``benchmarks/batch_throughput.py``,
    ``benchmarks/RESULTS.md``).

    Args:
        resources: the cluster's totals, e.g. ``{"CPU": 16.0, "GPU": 2.0, "memory": ...}``.
        workers: the stylize actors asked for.

    Returns:
        The plan (never fewer than one stylize actor).
    """
    cpus = int(resources.get("CPU", 0))
    gpus = int(resources.get("GPU", 0))
    if gpus >= 1:
        actors = min(workers, gpus)
        note = f"{workers} workers asked for, the cluster has {gpus} GPUs" if actors < workers else ""
        return ResourcePlan(actors, {"num_gpus": 1, "num_cpus": 1}, max(1, cpus - actors), note)
    actors = max(1, min(workers, cpus))
    note = f"{workers} workers asked for, the cluster has {cpus} CPUs" if actors < workers else ""
    return ResourcePlan(actors, {"num_cpus": 1}, max(0, cpus - actors), note)


class _RayAligner:
    """One alignment actor: dlib's detector loaded once, rows ``{"index", "item"}`` → ``+ "aligned"``."""

    def __init__(self, settings: BatchSettings, size: int):
        from jojogan.inversion.align import warm_up_detector

        warm_up_detector()
        self.settings, self.size = settings, size

    def __call__(self, batch: dict) -> dict:
        aligned = []
        for blob in batch["item"]:
            item: InputItem = pickle.loads(blob)
            # the crops (pixels and geometry) travel pickled: bit for bit what this process computed
            # a video is tracked and aligned frame by frame by the stylize actor that takes it
            photo = AlignedPhoto(crops=[]) if is_video(item) else align_photo(item, self.settings, self.size)
            aligned.append(pickle.dumps(photo))
        return {**batch, "aligned": aligned}


class _RayStylizer:
    """One stylize actor: a :class:`Stylizer` built once; rows ``{"index", "item"[, "aligned"]}`` →
    ``{"meta", "data"}`` (photos without ``aligned`` are aligned here first)."""

    def __init__(self, settings: BatchSettings, batch_size: int | None = None):
        from jojogan.op.memory import cpu_memory_reuse

        self.stylizer = Stylizer(settings, batch_size)
        # an actor is one long job: its freed CPU memory stays mapped for the next photo, for its lifetime
        self._job = contextlib.ExitStack()
        self._job.enter_context(cpu_memory_reuse(self.stylizer.pipe.device))

    def _results(self, batch: dict) -> list[PhotoResult]:
        """The batch's results in order: its videos one job each, its photos together."""
        items = [pickle.loads(blob) for blob in batch["item"]]
        photos = [i for i, item in enumerate(items) if not is_video(item)]
        if "aligned" in batch:
            aligned = [pickle.loads(batch["aligned"][i]) for i in photos]
        else:  # no aligner pool: this actor aligns its own photos
            aligned = [align_photo(items[i], self.stylizer.settings, self.stylizer.size) for i in photos]
        done = self.stylizer.finish_many([items[i] for i in photos], aligned)
        results = dict(zip(photos, done, strict=True))
        return [results[i] if i in results else self.stylizer.video(item) for i, item in enumerate(items)]

    def __call__(self, batch: dict) -> dict:
        results = self._results(batch)
        metas, blobs = [], []
        for index, result in zip(batch["index"], results, strict=True):
            # outputs travel as one binary column (concatenated PNGs) and their names and sizes in JSON:
            # a list column whose rows may be empty would give blocks different Arrow types
            fields = {key: getattr(result, key) for key in _RESULT_FIELDS}
            names = [name for name, _ in result.outputs]
            sizes = [len(data) for _, data in result.outputs]
            metas.append(json.dumps({"index": int(index), "names": names, "sizes": sizes, **fields}))
            blobs.append(b"".join(data for _, data in result.outputs))
        return {"meta": metas, "data": blobs}


def _connect(ray, address: str | None, num_cpus: int | None) -> tuple[bool, Path | None]:
    """Start or join Ray; returns whether this call started it (and so should shut it down) and, for a
    local cluster it started, the record that lets the next run clean up after a killed driver."""
    if ray.is_initialized():
        return False, None
    address = address or os.environ.get("RAY_ADDRESS") or "local"
    if address != "local":
        ray.init(address=address, log_to_driver=False)
        return True, None
    clean_orphans()  # what a killed batch's local Ray left running
    context = ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    session = (getattr(context, "address_info", None) or {}).get("session_dir")
    return True, record_cluster(session) if session else None


def run_ray(
    items: Sequence[InputItem],
    settings: BatchSettings,
    workers: int = 1,
    address: str | None = None,
    num_cpus: int | None = None,
    separate_align: bool | None = None,
    batch_size: int | None = None,
    workdir: Path | None = None,
) -> Iterator[tuple[InputItem, PhotoResult]]:
    """Stylize ``items`` on Ray Data, yielding results as they arrive; then each video at a local path,
    split into chunks over the workers (:mod:`jojogan.batch.ray_video`).

    Args:
        items: the photos.
        settings: the batch's settings (sent to every actor; the weights files must be readable there).
        workers: the stylize actors asked for (:func:`plan_resources` fits them to the cluster).
        address: a cluster (``ray://host:10001`` or ``host:6379``); default ``$RAY_ADDRESS``, else a local
            Ray started for this call and stopped after it.
        num_cpus: CPUs of a local Ray (default: all of this machine's).
        separate_align: override the plan: ``True`` aligns in a pool of CPU actors (as many as the CPUs
            left over, at least one), ``False`` in the stylize actors; ``None`` follows
            :func:`plan_resources`.
        batch_size: photos each stylize actor takes at a time, their faces batched on its device
            (default: 16 with GPUs, else 1).
        workdir: the output folder (shared with the workers), where videos are made chunk by chunk and
            resumed; ``None``: each video is one task in a worker's temporary folder, as are videos given
            as URIs.

    A local Ray started here is shut down on every way out this process survives (``SIGTERM`` and
    ``SIGHUP`` included); what a killed driver's Ray left running is stopped by the next run
    (:mod:`jojogan.batch.ray_cleanup`).
    """
    if not items:
        return
    ray = _import_ray()
    started, record = _connect(ray, address, num_cpus)
    try:
        # installed after ray.init, which puts its own (aborting) SIGTERM handler in place
        with signals_as_exit():  # SIGTERM/SIGHUP: the finally below still shuts Ray down
            yield from _run(ray, items, settings, workers, separate_align, batch_size, workdir)
    finally:
        if started:
            ray.shutdown()
            forget_cluster(record)


def _run(
    ray, items, settings, workers, separate_align, batch_size, workdir
) -> Iterator[tuple[InputItem, PhotoResult]]:
    """The results of the pipeline on a connected Ray (see :func:`run_ray`), as they stream back: the
    photos (and videos given as URIs) first, then the local videos, split."""
    from jojogan.batch.ray_video import run_videos

    plan = _plan(ray, workers, separate_align)
    split = [item for item in items if workdir is not None and is_video(item) and item.filesystem is None]
    taken = {id(item) for item in split}
    rest = [item for item in items if id(item) not in taken]
    resources = dict(plan.stylize_resources)
    if env := _stylize_env(plan):
        resources["runtime_env"] = {"env_vars": env}
    if split and not plan.align_actors and (batch_size or 1) == 1:
        # the video workers take the photos too, as stylize actors aligning their own: one load each
        yield from run_videos(ray, split, settings, workdir, plan.stylize_actors, resources, batch_size, rest)
        return
    if rest:
        for row in _dataset(ray, rest, settings, plan, batch_size).iter_rows():
            meta = json.loads(row["meta"])
            data, offset, outputs = row["data"], 0, []
            for name, size in zip(meta["names"], meta["sizes"], strict=True):
                outputs.append((name, bytes(data[offset : offset + size])))
                offset += size
            fields = {key: meta[key] for key in _RESULT_FIELDS}
            yield rest[meta["index"]], PhotoResult(outputs=outputs, **fields)
    # the photos' actors are gone: the video workers take their CPUs (or GPUs)
    yield from run_videos(ray, split, settings, workdir, plan.stylize_actors, resources, batch_size)


_RESULT_FIELDS = (
    "faces", "identity", "error", "seconds", "align_seconds", "peak_rss_mb", "align_peak_rss_mb", "frames",
    "chunks", "chunks_resumed", "chunk_workers",
)  # fmt: skip
"""The :class:`PhotoResult` fields a stylize actor's row carries besides the outputs (written by
:meth:`_RayStylizer.__call__`, read back by :func:`_run`)."""


def _plan(ray, workers, separate_align) -> ResourcePlan:
    """The actor pools for this cluster (:func:`plan_resources`, ``separate_align`` overriding it)."""
    resources = ray.cluster_resources()
    plan = plan_resources(resources, workers)
    if separate_align is not None:
        spare = int(resources.get("CPU", 0)) - plan.stylize_actors
        plan = dataclasses.replace(plan, align_actors=max(1, spare) if separate_align else 0)
    if plan.note:
        log.warning("ray: %s: %d stylize actor(s)", plan.note, plan.stylize_actors)
    log.info("ray: %s", plan)
    return plan


def _stylize_env(plan: ResourcePlan) -> dict[str, str]:
    """Ray calls an actor on a worker thread: on CPUs, one glibc arena keeps the CPU memory policy in force
    there (1024 px, one CPU: 64 s of stylizing a photo without it, 36 s in the local engine)."""
    return {} if "num_gpus" in plan.stylize_resources else worker_env()


def _dataset(ray, items, settings, plan: ResourcePlan, batch_size):
    """The Ray Data pipeline: read → align (a pool, or none) → invert + stylize, planned from the cluster;
    no pool has more actors than there are photos (one row each: an actor more would load its models and
    never get a row, e.g. the one photo of a batch of videos)."""
    rows = [{"index": i, "item": pickle.dumps(item)} for i, item in enumerate(items)]
    dataset = ray.data.from_items(rows, override_num_blocks=len(rows))
    if plan.align_actors:
        dataset = dataset.map_batches(
            _RayAligner,
            fn_constructor_kwargs={"settings": settings, "size": generator_size(settings.style)},
            batch_size=1,
            compute=ray.data.ActorPoolStrategy(min_size=1, max_size=min(plan.align_actors, len(rows))),
            num_cpus=1,
        )
    if batch_size is None:
        batch_size = GPU_BATCH_SIZE if "num_gpus" in plan.stylize_resources else 1
    env = _stylize_env(plan)
    return dataset.map_batches(
        _RayStylizer,
        fn_constructor_kwargs={"settings": settings, "batch_size": batch_size},
        batch_size=batch_size,
        compute=ray.data.ActorPoolStrategy(size=min(plan.stylize_actors, len(rows))),
        **({"runtime_env": {"env_vars": env}} if env else {}),
        **plan.stylize_resources,
    )
