"""Writing outputs without ever leaving a half-written file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from tcodec.errors import OutputError

_UMASK = os.umask(0)
os.umask(_UMASK)


def write_atomic(path: str | os.PathLike, data: bytes, *, overwrite: bool = False) -> None:
    """Write ``data`` to a temporary file beside ``path``, then rename it into place.

    An interrupted write leaves either nothing or the complete file, never part of it.

    Raises:
        OutputError: ``path`` exists and ``overwrite`` is False, or it cannot be written.
    """
    path = Path(path)
    if not overwrite and path.exists():
        raise OutputError(f"{path}: already exists (use --force to overwrite)")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as error:
        raise OutputError(f"{path}: cannot write ({error.strerror or error})") from None
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the usual permissions
        if overwrite:
            os.replace(temp, path)
        else:
            _move_unless_exists(temp, path)
    except BaseException as error:  # KeyboardInterrupt too: never leave the temp file behind
        Path(temp).unlink(missing_ok=True)
        if isinstance(error, FileExistsError):
            raise OutputError(f"{path}: already exists (use --force to overwrite)") from None
        if isinstance(error, OSError):
            raise OutputError(f"{path}: cannot write ({error.strerror or error})") from None
        raise


def _move_unless_exists(temp: str, path: Path) -> None:
    """Rename ``temp`` to ``path`` unless ``path`` exists, checked in the same step: a file
    that appears there after the early check (another process, a second tcodec writing the
    same name) is kept, never replaced. A hard link is atomic and refuses an existing name;
    where the filesystem has no hard links, the check and the rename stay two steps."""
    try:
        os.link(temp, path)
    except FileExistsError:
        raise
    except OSError:  # no hard links here (FAT, some network filesystems)
        if path.exists():
            raise FileExistsError(path) from None
        os.replace(temp, path)
    else:
        os.unlink(temp)
