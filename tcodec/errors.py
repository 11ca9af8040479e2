"""The one exception hierarchy of tcodec.

Every error the library raises on purpose is a :class:`TcodecError`. Each class
carries the process exit code the CLI uses for it, so the mapping lives in one
place and is documented in the README. Messages are one line and say what to do.
"""

from __future__ import annotations

import re


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


class OutputExistsError(OutputError):
    """The output exists and overwriting was not asked for (a folder run counts it as skipped)."""


class BrokenPipe(OutputError):
    """Whoever read standard output has gone (``tcodec ... -o - | head -c 10``).

    The CLI ends quietly with 141, the status a shell shows for a process that SIGPIPE
    ended, as other Unix tools do."""

    exit_code = 141


_REPR = re.compile(r"<[\w.]+ object at 0x[0-9a-fA-F]+>")


def one_line(text: object, limit: int = 300) -> str:
    """A message, squeezed into one printable line: whitespace runs become one space,
    control and format characters are escaped (they may come from a file: a caption, a
    file name), and a library's ``<_io.BytesIO object at 0x...>`` becomes "the input"."""
    squeezed = printable(" ".join(_REPR.sub("the input", str(text)).split()))
    return squeezed if len(squeezed) <= limit else squeezed[: limit - 3] + "..."


def printable(text: str) -> str:
    """``text`` with every character a terminal could act on escaped as Python writes it
    (``\\x1b``, ``\\r``, ``\\u202e``): C0/C1 controls, DEL, bidi and other format
    characters, line and paragraph separators. Everything else, non-ASCII letters
    included, is kept."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() or ch == " " else _escape(ch) for ch in text)


def _escape(ch: str) -> str:
    code = ord(ch)
    if ch in "\t\n\r":
        return repr(ch)[1:-1]
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


class TcodecWarning(UserWarning):
    """Something was changed on purpose, e.g. an RGBA image was flattened."""
