"""Lazy package namespaces: a package's public names are imported from their modules on first use.

A package whose ``__init__`` imported every module eagerly would load torch into every process that
imports any one of its modules (``import jojogan.inversion.align`` runs ``jojogan/inversion/__init__.py``
first), and processes such as alignment workers, Ray drivers and ``jojogan --help`` never need it.

This is PEP 562's module ``__getattr__``, done as a module class for one more reason: a public function
may share its name with the module that defines it (``jojogan.op.upfirdn2d``, ``jojogan.inversion.project``).
Importing that module makes the import system bind it to the package under its name, which would hide the
function; :class:`LazyPackage` binds the function instead, as the eager ``from ... import`` used to.
"""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Mapping

__all__ = ["LazyPackage", "make_lazy"]


class LazyPackage(types.ModuleType):
    """A package module whose names in ``_exports`` (name -> owning module) are imported on first use."""

    _exports: Mapping[str, str]

    def __getattr__(self, name: str) -> object:
        module = self._exports.get(name)
        if module is None:
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(self, name, value)  # later look-ups skip this method
        return value

    def __setattr__(self, name: str, value: object) -> None:
        if isinstance(value, types.ModuleType) and value.__name__ == f"{self.__name__}.{name}":
            if self._exports.get(name) == value.__name__:
                value = getattr(value, name)  # the function, not its module of the same name
        super().__setattr__(name, value)

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(self._exports))


def make_lazy(name: str, exports: Mapping[str, str]) -> None:
    """Make the package ``name`` lazy over ``exports``; its ``__init__`` calls it with ``__name__``."""
    module = sys.modules[name]
    module._exports = exports
    module.__class__ = LazyPackage
