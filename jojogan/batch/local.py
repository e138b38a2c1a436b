"""The ``local`` engine: one process, one pipeline, photos one after another."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from jojogan.batch.inputs import InputItem
from jojogan.batch.job import BatchSettings, PhotoResult, Stylizer

__all__ = ["run_local"]


def run_local(items: Sequence[InputItem], settings: BatchSettings) -> Iterator[tuple[InputItem, PhotoResult]]:
    """Stylize ``items`` in this process, yielding each result as soon as it is ready.

    The pipeline is loaded once, on the first call to ``next``; a model that cannot load raises there.
    """
    if not items:
        return
    from jojogan.op.memory import cpu_memory_reuse

    stylizer = Stylizer(settings)
    # the batch is one job, as one `jojogan stylize` command is: freed CPU memory stays mapped across photos
    with cpu_memory_reuse(stylizer.pipe.device):
        for item in items:
            yield item, stylizer(item.path, item.stem)
