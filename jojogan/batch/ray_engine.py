"""The ``ray`` engine: a Ray Data pipeline whose stylize operator is a pool of actors.

Stages: the listed photos become a dataset (one row per photo) → ``map_batches`` with
:class:`_RayStylizer` actors, which load the pipeline once in ``__init__`` (one GPU each when the
cluster has GPUs, one CPU each otherwise) → the driver writes each output atomically and appends the
manifest line as rows stream back. Ray is imported only here; it is the optional extra ``jojogan[ray]``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator, Sequence

from jojogan.batch.errors import EngineUnavailableError
from jojogan.batch.inputs import InputItem
from jojogan.batch.job import BatchSettings, PhotoResult, Stylizer

__all__ = ["run_ray"]

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


class _RayStylizer:
    """One actor: a :class:`Stylizer` built once, applied to batches of rows ``{"index", "path", "stem"}``."""

    def __init__(self, settings: BatchSettings):
        from jojogan.op.memory import cpu_memory_reuse

        self.stylizer = Stylizer(settings)
        # an actor is one long job: its freed CPU memory stays mapped for the next photo, for its lifetime
        self._job = contextlib.ExitStack()
        self._job.enter_context(cpu_memory_reuse(self.stylizer.pipe.device))

    def __call__(self, batch: dict) -> dict:
        metas, blobs = [], []
        for index, path, stem in zip(batch["index"], batch["path"], batch["stem"], strict=True):
            result = self.stylizer(path, stem)
            # outputs travel as one binary column (concatenated PNGs) and their names and sizes in JSON:
            # a list column whose rows may be empty would give blocks different Arrow types
            metas.append(
                json.dumps(
                    {
                        "index": int(index),
                        "names": [name for name, _ in result.outputs],
                        "sizes": [len(data) for _, data in result.outputs],
                        "faces": result.faces,
                        "identity": result.identity,
                        "error": result.error,
                        "seconds": result.seconds,
                        "peak_rss_mb": result.peak_rss_mb,
                    }
                )
            )
            blobs.append(b"".join(data for _, data in result.outputs))
        return {"meta": metas, "data": blobs}


def _connect(ray, address: str | None, num_cpus: int | None) -> bool:
    """Start or join Ray; returns whether this call started it (and so should shut it down)."""
    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or "local"
    if address == "local":
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    else:
        ray.init(address=address, log_to_driver=False)
    return True


def run_ray(
    items: Sequence[InputItem],
    settings: BatchSettings,
    workers: int = 1,
    address: str | None = None,
    num_cpus: int | None = None,
) -> Iterator[tuple[InputItem, PhotoResult]]:
    """Stylize ``items`` on Ray Data with ``workers`` stylize actors, yielding results as they arrive.

    Args:
        items: the photos.
        settings: the batch's settings (sent to every actor; the weights files must be readable there).
        workers: the number of stylize actors.
        address: a cluster (``ray://host:10001`` or ``host:6379``); default ``$RAY_ADDRESS``, else a local
            Ray started for this call and stopped after it.
        num_cpus: CPUs of a local Ray (default: all of this machine's).
    """
    if not items:
        return
    ray = _import_ray()
    started = _connect(ray, address, num_cpus)
    try:
        gpus = ray.cluster_resources().get("GPU", 0)
        resources = {"num_gpus": 1} if gpus >= 1 else {"num_cpus": 1}
        log.info("ray: %d stylize actor(s), %s each", workers, "1 GPU" if gpus >= 1 else "1 CPU")
        rows = [{"index": i, "path": str(item.path), "stem": item.stem} for i, item in enumerate(items)]
        dataset = ray.data.from_items(rows, override_num_blocks=len(rows)).map_batches(
            _RayStylizer,
            fn_constructor_kwargs={"settings": settings},
            batch_size=1,
            compute=ray.data.ActorPoolStrategy(size=workers),
            **resources,
        )
        for row in dataset.iter_rows():
            meta = json.loads(row["meta"])
            data, offset, outputs = row["data"], 0, []
            for name, size in zip(meta["names"], meta["sizes"], strict=True):
                outputs.append((name, bytes(data[offset : offset + size])))
                offset += size
            result = PhotoResult(
                outputs=outputs, faces=meta["faces"], identity=meta["identity"], error=meta["error"],
                seconds=meta["seconds"], peak_rss_mb=meta["peak_rss_mb"],
            )  # fmt: skip
            yield items[meta["index"]], result
    finally:
        if started:
            ray.shutdown()
