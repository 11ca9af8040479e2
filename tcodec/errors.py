"""The one exception hierarchy of tcodec.

Every error the library raises on purpose is a :class:`TcodecError`. Each class
carries the process exit code the CLI uses for it, so the mapping lives in one
place and is documented in the README. Messages are one line and say what to do.
"""

from __future__ import annotations


class TcodecError(Exception):
    """Base class of every error tcodec raises on purpose."""

    exit_code = 1


class InputError(TcodecError):
    """Bad user input: missing or unreadable image, bad quality, bad option."""

    exit_code = 2


class FormatError(TcodecError):
    """A ``.tcz`` (or a stream inside it) is not valid: magic, version, CRC, truncation."""

    exit_code = 3


class ModelError(TcodecError):
    """Model weights are missing, damaged or not the ones a file was made with."""

    exit_code = 4


class ModelNotFoundError(ModelError):
    """Weights for a model are not on this machine."""


class ModelMismatchError(ModelError):
    """A file was encoded with other weights than the ones available."""


class BackendError(TcodecError):
    """A backend is unknown, or needs an optional dependency that is not installed."""

    exit_code = 5


class OutputError(TcodecError):
    """An output cannot be written (unwritable folder, exists without --force, ...)."""

    exit_code = 7


def one_line(text: object, limit: int = 300) -> str:
    """A library's (often multi-line) message, squeezed into one line for ours."""
    squeezed = " ".join(str(text).split())
    return squeezed if len(squeezed) <= limit else squeezed[: limit - 3] + "..."


class TcodecWarning(UserWarning):
    """Something was changed on purpose, e.g. an RGBA image was flattened."""
