"""tcodec: image compression with text information.

Public API: :func:`encode`, :func:`decode`, :func:`read_info`, :class:`Limits` and the
errors in :mod:`tcodec.errors`. Importing tcodec registers the ``.tcz`` Pillow plugin and
imports no torch.
"""

from tcodec import pillow_plugin  # noqa: F401  (registers .tcz with Pillow)
from tcodec.api import decode, encode, read_info
from tcodec.format.container import Container
from tcodec.errors import (
    BackendError,
    FormatError,
    InputError,
    ModelError,
    ModelMismatchError,
    ModelNotFoundError,
    OutputError,
    TcodecError,
    TcodecWarning,
)
from tcodec.limits import Limits


def __getattr__(name: str):
    # importlib.metadata costs ~50 ms at start-up; only --version needs it
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("tcodec")
        except PackageNotFoundError:  # a source tree that is not installed
            return "0+unknown"
    raise AttributeError(f"module 'tcodec' has no attribute {name!r}")


__all__ = [
    "BackendError", "Container", "FormatError", "InputError", "Limits", "ModelError", "ModelMismatchError",
    "ModelNotFoundError", "OutputError",
    "TcodecError", "TcodecWarning", "decode", "encode", "read_info",
]
