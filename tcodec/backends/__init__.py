"""The backend registry: a stable name -> where its class lives, imported on first use.

Backends load lazily so that ``tcodec --help``, ``info`` and ``-m jpeg`` never import
torch. A backend whose optional dependencies are missing raises a BackendError that
says what to install.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from functools import cache

from tcodec.backends.base import Backend, Payload
from tcodec.errors import BackendError

__all__ = ["Backend", "BackendEntry", "Payload", "REGISTRY", "get_backend", "is_installed"]


@dataclass(frozen=True)
class BackendEntry:
    target: str  # "module:Class"
    requires: tuple[str, ...] = ()  # top-level modules that must be importable
    extra: str | None = None  # the pip extra that installs them


REGISTRY: dict[str, BackendEntry] = {
    "jpeg": BackendEntry("tcodec.backends.jpeg:JpegBackend"),
    "taco": BackendEntry("tcodec.backends.taco:TacoBackend",
                         ("torch", "compressai", "transformers", "safetensors"), "taco"),
    "perco": BackendEntry("tcodec.backends.perco:PercoBackend",
                          ("torch", "diffusers", "transformers", "safetensors"), "perco"),
}


def is_installed(name: str) -> bool:
    """Whether a backend's dependencies are importable, without importing them."""
    return all(importlib.util.find_spec(module) is not None for module in REGISTRY[name].requires)


@cache
def get_backend(name: str) -> Backend:
    """Return the backend called ``name``.

    Raises:
        BackendError: no such backend, or its dependencies are not installed.
    """
    entry = REGISTRY.get(name)
    if entry is None:
        raise BackendError(f"unknown backend {name!r} (available: {', '.join(REGISTRY)})")
    if not is_installed(name):
        raise BackendError(f"backend {name!r} needs {', '.join(entry.requires)}: pip install 'tcodec[{entry.extra}]'")
    module_name, class_name = entry.target.split(":")
    return getattr(importlib.import_module(module_name), class_name)()
