"""Public names re-exported on first use (PEP 562), so a package costs only what is used.

``import gradcheck`` used to import the whole checker, every layer and the numerical
differentiator before the first line of a command ran; the command line needs a part of
that, and ``gradcheck --help`` none of it. A package lists where each public name lives
and lets :func:`lazy_exports` give it the module-level ``__getattr__`` and ``__dir__``
that import the home module the first time a name is asked for. ``from package import
name``, ``package.name`` and ``from package import *`` (which reads ``__all__``) behave
as with eager imports; a submodule is found by its name too (``gradcheck.checker``).
"""

from __future__ import annotations

import importlib

__all__ = ["lazy_exports"]


def lazy_exports(package: str, homes: dict):
    """``(__getattr__, __dir__)`` for ``package`` with ``homes`` (name -> module path)."""

    def __getattr__(name):
        home = homes.get(name)
        if home is None:
            try:       # a submodule or subpackage, as an eager import would have bound it
                return importlib.import_module(f"{package}.{name}")
            except ModuleNotFoundError as exc:
                if exc.name != f"{package}.{name}":
                    raise
                raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        value = getattr(importlib.import_module(home), name)
        import sys

        setattr(sys.modules[package], name, value)   # next time: a plain attribute
        return value

    def __dir__():
        import sys

        return sorted(set(vars(sys.modules[package])) | set(homes))

    return __getattr__, __dir__
