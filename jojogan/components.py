"""A pipeline's components: models loaded lazily by name, kept once, moved together; and the house's LRU.

:class:`Components` is the registry :class:`jojogan.api.JoJoGAN` holds its models in (HOUSE_STYLE 15): the
base generator and discriminator are put in when the pipeline is built; encoders, cleaners, recognizers
and LPIPS are loaded by a loader the first time something asks for them, on the pipeline's device, and
:meth:`Components.to` moves everything loaded so far.

:class:`LRUCache` is the one bounded cache of the house (loaded styles, the UI's inverted faces, mean
latents).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from typing import Generic, TypeVar

import torch
from torch import nn

__all__ = ["Components", "LRUCache"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LRUCache(Generic[K, V]):
    """A mapping that keeps the ``max_entries`` most recently used entries.

    Args:
        max_entries: how many entries to keep (least recently used ones are dropped); at least 1.
    """

    def __init__(self, max_entries: int):
        if isinstance(max_entries, bool) or not isinstance(max_entries, int) or max_entries < 1:
            raise ValueError(f"max_entries must be an integer >= 1, got {max_entries!r}")
        self.max_entries = max_entries
        self._entries: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K, make: Callable[[], V]) -> V:
        """The entry for ``key``, made by ``make()`` on a miss (then the oldest entries are dropped)."""
        if key in self._entries:
            self._entries.move_to_end(key)
            return self._entries[key]
        value = make()
        self._entries[key] = value
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return value

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[K]:
        return iter(list(self._entries))

    def values(self) -> Iterator[V]:
        return iter(list(self._entries.values()))

    def clear(self) -> None:
        """Forget every entry."""
        self._entries.clear()


def _move(component: object, device: torch.device) -> None:
    mover = getattr(component, "to", None)
    if isinstance(component, nn.Module) or callable(mover):
        mover(device)


class Components:
    """Models by name: some given, the others loaded on first use by a loader, all on one device.

    Args:
        device: where loaded components go.
        given: components that exist already (``generator``, ``discriminator``).
    """

    def __init__(self, device: torch.device, given: dict[str, object] | None = None):
        self.device = device
        self._loaded: dict[str, object] = dict(given or {})

    def get(self, key: str, load: Callable[[torch.device], object]) -> object:
        """The component ``key``, loaded by ``load(device)`` the first time it is asked for."""
        if key not in self._loaded:
            self._loaded[key] = load(self.device)
        return self._loaded[key]

    def __getitem__(self, key: str) -> object:
        return self._loaded[key]

    def __contains__(self, key: object) -> bool:
        return key in self._loaded

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._loaded))

    def values(self):
        return self._loaded.values()

    def drop(self, prefix: str) -> None:
        """Forget the components whose key starts with ``prefix`` (they load again when next asked for)."""
        for key in [k for k in self._loaded if k.startswith(prefix)]:
            del self._loaded[key]

    def to(self, device: torch.device) -> Components:
        """Move every loaded component to ``device``."""
        self.device = device
        for component in self._loaded.values():
            _move(component, device)
        return self
