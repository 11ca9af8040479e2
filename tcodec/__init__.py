"""tcodec: image compression with text information.

Public API: :func:`encode`, :func:`decode`, :func:`read_info` and the errors in
:mod:`tcodec.errors`. Importing tcodec registers the ``.tcz`` Pillow plugin and
imports no torch.
"""

from importlib.metadata import PackageNotFoundError, version

from tcodec import pillow_plugin  # noqa: F401  (registers .tcz with Pillow)
from tcodec.api import decode, encode, read_info
from tcodec.container import Container
from tcodec.errors import (
    BackendError,
    FormatError,
    InputError,
    ModelError,
    OutputError,
    TcodecError,
    TcodecWarning,
)

try:
    __version__ = version("tcodec")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = [
    "BackendError", "Container", "FormatError", "InputError", "ModelError", "OutputError",
    "TcodecError", "TcodecWarning", "decode", "encode", "read_info",
]
