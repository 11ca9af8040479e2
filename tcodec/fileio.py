"""Reading inputs and writing outputs so that nothing hangs, overflows or is lost.

Inputs are regular files or standard input, read against a byte limit that is checked
while reading. Outputs are written to a temporary file beside the target and then
given its name without replacing anything unless asked; a character device or FIFO
(``-o /dev/null``) is written in place instead, never replaced by a file. Temporary
files carry the writing process's host and PID in their name, so a later run can
remove those that a killed run left behind (:func:`remove_stale_temps`).
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import socket
import stat
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from tcodec.errors import BrokenPipe, InputError, OutputError, OutputExistsError

_UMASK = os.umask(0)
os.umask(_UMASK)
_CHUNK = 1 << 20


def _host_tag() -> str:
    """Names this host and PID namespace in temporary files: containers that share a
    hostname and a volume but not their PIDs must not take each other's files for stale."""
    parts = [socket.gethostname()]
    for path in ("/proc/sys/kernel/random/boot_id", "/proc/self/ns/pid"):
        try:
            parts.append(open(path).read().strip() if path.endswith("boot_id") else str(os.stat(path).st_ino))
        except OSError:
            pass
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:8]


_HOST = _host_tag()
_TEMP = re.compile(r"\..*\.tcodec-(?P<host>[0-9a-f]{8})-(?P<pid>\d+)-\w+\.tmp")
_KINDS = {stat.S_IFDIR: "folder", stat.S_IFCHR: "character device", stat.S_IFBLK: "block device",
          stat.S_IFIFO: "FIFO", stat.S_IFSOCK: "socket"}


# --- reading -------------------------------------------------------------------------


def read_input(path: str | os.PathLike, max_bytes: int, *, raised_by: str | None = "--max-input-bytes") -> bytes:
    """The bytes of the regular file ``path`` (symbolic links followed), at most ``max_bytes``.

    A FIFO, device, socket or folder is refused at once, without reading or waiting.
    ``raised_by`` names what raises the limit, for the message (None: nothing does).

    Raises:
        InputError: missing, not a regular file, unreadable, or larger than ``max_bytes``.
    """
    label = str(path)
    try:
        _refuse_special(label, os.stat(path).st_mode)  # before opening: opening some devices acts
        # O_NONBLOCK: were it swapped for a FIFO meanwhile, opening must not wait for a writer
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0))
    except OSError as error:
        raise InputError(f"{label}: {_reason(error)}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        _refuse_special(label, mode)
    with os.fdopen(fd, "rb", buffering=0) as file:
        return _read_bounded(file, label, max_bytes, raised_by)


def _refuse_special(label: str, mode: int) -> None:
    if not stat.S_ISREG(mode):
        raise InputError(f"{label}: is a {_KINDS.get(stat.S_IFMT(mode), 'special file')}, not a regular file")


def read_stdin(max_bytes: int) -> bytes:
    """All of standard input, at most ``max_bytes`` (``cat /dev/zero | tcodec ...`` ends there).

    Raises:
        InputError: stdin is closed, a terminal, unreadable or longer than ``max_bytes``.
    """
    if sys.stdin is None:
        raise InputError("stdin is closed (pipe a file in, or give a path)")
    if sys.stdin.isatty():
        raise InputError("no input on stdin (pipe a file in, or give a path)")
    return _read_bounded(sys.stdin.buffer, "<stdin>", max_bytes, "--max-input-bytes")


def _read_bounded(file, label: str, max_bytes: int, raised_by: str | None) -> bytes:
    hint = f" ({raised_by} raises it)" if raised_by else ""
    too_big = InputError(f"{label}: larger than the input limit of {max_bytes:,} bytes{hint}")
    if _size_of(file) > max_bytes:  # a regular file says its size: refused without reading
        raise too_big
    try:
        chunks, total = [], 0
        while chunk := file.read(min(_CHUNK, max_bytes + 1 - total)):
            chunks.append(chunk)
            total += len(chunk)
            if total > max_bytes:
                raise too_big
    except OSError as error:
        raise InputError(f"{label}: {_reason(error)}") from None
    return b"".join(chunks)


def _size_of(file) -> int:
    """The size of a regular file behind ``file``, else 0 (pipes, terminals, in-memory streams)."""
    try:
        status = os.fstat(file.fileno())
    except (OSError, AttributeError, ValueError):
        return 0
    return status.st_size if stat.S_ISREG(status.st_mode) else 0


def _reason(error: OSError) -> str:
    if error.errno == errno.ENOENT:
        return "no such file"
    if error.errno == errno.ELOOP:
        return "a loop of symbolic links"
    if error.errno == errno.ENXIO:
        return "is a socket (or a device that is not there), not a regular file"
    if error.errno == errno.EISDIR:
        return "is a folder, not a file"
    if error.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    return f"cannot read ({error.strerror or error})"


# --- writing -------------------------------------------------------------------------


def write_atomic(path: str | os.PathLike, data: bytes, *, overwrite: bool = False,
                 named_by_user: bool = False) -> None:
    """Write ``data`` to ``path`` so that an interrupted write leaves nothing or the whole file.

    A new or regular target is written to a temporary file beside it, then given its
    name: without ``overwrite`` by a hard link that refuses an existing name (so a file
    another process made meanwhile is kept), with it by a rename. A symbolic link there is
    replaced itself, never followed, unless the user named ``path`` (``-o PATH``,
    ``named_by_user``): then the regular file it names is replaced (the link kept), and a
    character device or FIFO is written in place (``-o /dev/null``). A folder, block device
    or socket is refused.

    Raises:
        OutputExistsError: ``path`` exists and ``overwrite`` is False.
        OutputError: ``path`` cannot be written.
    """
    path = Path(path)
    kind = _existing_kind(path, follow_links=named_by_user)
    if kind in ("character device", "FIFO") and named_by_user:
        _write_in_place(path, data)
        return
    if kind not in (None, "file", "symbolic link"):
        raise OutputError(f"{path}: is a {kind}; tcodec writes only regular files there")
    if kind is not None:
        if not overwrite:
            raise OutputExistsError(f"{path}: already exists (use --force to overwrite)")
        if named_by_user:
            path = Path(os.path.realpath(path))
    fd, temp = _temporary_beside(path)
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
            raise OutputExistsError(f"{path}: already exists (use --force to overwrite)") from None
        if isinstance(error, OSError):
            raise OutputError(f"{path}: cannot write ({error.strerror or error})") from None
        raise


@contextmanager
def replacing(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """A temporary file beside ``path`` to write into; when the block ends normally it
    replaces ``path`` in one step, when it raises (a check failed, Ctrl-C) it is removed.
    For large files written as a stream (a model's weights).

    Raises:
        OutputError: the folder cannot be written.
    """
    path = Path(path)
    fd, temp = _temporary_beside(path)
    try:
        with os.fdopen(fd, "wb") as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temp, 0o666 & ~_UMASK)
        os.replace(temp, path)
    except OSError as error:
        Path(temp).unlink(missing_ok=True)
        raise OutputError(f"{path}: cannot write ({error.strerror or error})") from None
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def _temporary_beside(path: Path) -> tuple[int, str]:
    """A new temporary file in ``path``'s folder (made if needed), named for
    :func:`remove_stale_temps`: ``.NAME.tcodec-HOST-PID-XXXXXXXX.tmp``."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return tempfile.mkstemp(dir=path.parent, prefix=f".{path.name[:80]}.tcodec-{_HOST}-{os.getpid()}-",
                                suffix=".tmp")
    except OSError as error:
        raise OutputError(f"{path}: cannot write ({error.strerror or error})") from None


def _existing_kind(path: Path, follow_links: bool) -> str | None:
    """What is at ``path`` (after following links, if asked): None (nothing), "file",
    "symbolic link", "folder", ..."""
    try:
        mode = os.stat(path).st_mode if follow_links else os.lstat(path).st_mode
    except FileNotFoundError:
        return None
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise OutputError(f"{path}: a loop of symbolic links") from None
        if error.errno == errno.ENOTDIR:
            raise OutputError(f"{path}: cannot write (a part of the path is a file)") from None
        raise OutputError(f"{path}: cannot write ({error.strerror or error})") from None
    if stat.S_ISLNK(mode):
        return "symbolic link"
    return "file" if stat.S_ISREG(mode) else _KINDS.get(stat.S_IFMT(mode), "special file")


def _write_in_place(path: Path, data: bytes) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0))
    except OSError as error:
        raise OutputError(f"{path}: cannot write ({error.strerror or error})") from None
    with os.fdopen(fd, "wb", buffering=0) as file:
        if os.isatty(fd):
            raise OutputError(f"{path}: refusing to write binary data to a terminal")
        try:
            view = memoryview(data)
            while view:  # an unbuffered write may take only part
                view = view[file.write(view):]
        except BrokenPipeError:
            raise BrokenPipe(f"{path}: the reader has gone") from None
        except OSError as error:
            raise OutputError(f"{path}: cannot write ({error.strerror or error})") from None


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
        if os.path.lexists(path):
            raise FileExistsError(path) from None
        os.replace(temp, path)
    else:
        os.unlink(temp)


def remove_stale_temps(folder: str | os.PathLike) -> int:
    """Remove the temporary files in ``folder`` that a tcodec process on this host left
    when it was killed (its PID no longer runs); returns how many. Files of running
    processes, other hosts and other programs are left alone."""
    removed = 0
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    for entry in entries:
        match = _TEMP.fullmatch(entry.name)
        if match and match["host"] == _HOST and not _running(int(match["pid"])):
            try:
                os.unlink(entry.path)
                removed += 1
            except OSError:
                pass
    return removed


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):  # another user's process (or a PID too large)
        return True
    return True


# --- standard output -----------------------------------------------------------------


def stdout_is_terminal() -> bool:
    return sys.stdout is not None and sys.stdout.isatty()


def write_stdout(data: bytes) -> None:
    """Write to standard output and flush.

    Raises:
        BrokenPipe: the reader has gone.
        OutputError: stdout is closed or cannot be written (a full disk).
    """
    if sys.stdout is None:
        raise OutputError("stdout is closed; give -o FILE")
    try:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    except BrokenPipeError:
        raise BrokenPipe("stdout: the reader has gone") from None
    except ValueError:  # closed from Python
        raise OutputError("stdout is closed; give -o FILE") from None
    except OSError as error:
        raise OutputError(f"stdout: cannot write ({error.strerror or error})") from None
