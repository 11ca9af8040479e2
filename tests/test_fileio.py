import io
import os
import socket
import subprocess
import sys
import tempfile
import threading

import pytest

from tcodec import fileio
from tcodec.errors import BrokenPipe, InputError, OutputError, OutputExistsError
from tcodec.fileio import read_input, read_stdin, remove_stale_temps, write_atomic, write_stdout


def test_writes_creating_parent_folders(tmp_path):
    target = tmp_path / "a" / "b" / "out.bin"
    write_atomic(target, b"data")
    assert target.read_bytes() == b"data"


def test_refuses_to_overwrite_unless_asked(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"precious")
    with pytest.raises(OutputError, match="already exists"):
        write_atomic(target, b"new")
    assert target.read_bytes() == b"precious"
    write_atomic(target, b"new", overwrite=True)
    assert target.read_bytes() == b"new"


def test_permissions_follow_the_umask(tmp_path):
    target = tmp_path / "out.bin"
    write_atomic(target, b"x")
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


def test_an_interrupted_write_leaves_nothing(tmp_path, monkeypatch):
    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted)
    for overwrite in (False, True):
        with pytest.raises(KeyboardInterrupt):
            write_atomic(tmp_path / "out.bin", b"data", overwrite=overwrite)
        assert list(tmp_path.iterdir()) == []


def test_a_file_that_appears_while_writing_is_kept(tmp_path, monkeypatch):
    """Another writer creates the target after the early exists-check: its file stays."""
    target = tmp_path / "out.bin"
    make_temp = tempfile.mkstemp

    def racing(*args, **kwargs):
        target.write_bytes(b"theirs")
        return make_temp(*args, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", racing)
    with pytest.raises(OutputError, match="already exists"):
        write_atomic(target, b"ours")
    assert target.read_bytes() == b"theirs"
    assert list(tmp_path.iterdir()) == [target]


def test_without_hard_links_it_still_refuses_to_overwrite(tmp_path, monkeypatch):
    def no_links(*args):
        raise PermissionError("hard links not supported")

    monkeypatch.setattr(os, "link", no_links)
    target = tmp_path / "out.bin"
    write_atomic(target, b"data")
    assert target.read_bytes() == b"data"
    assert list(tmp_path.iterdir()) == [target]


def test_unwritable_folder_is_an_output_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    with pytest.raises(OutputError, match="cannot write"):
        write_atomic(blocker / "out.bin", b"x")


# --- reading -------------------------------------------------------------------------


def _without_hanging(call):
    """Run ``call`` in a thread; a test that would block forever fails instead."""
    outcome = {}

    def target():
        try:
            outcome["value"] = call()
        except BaseException as error:  # noqa: BLE001 - handed to the test
            outcome["error"] = error

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(30)
    assert not thread.is_alive(), "blocked"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def test_reads_a_regular_file_and_follows_links(tmp_path):
    (tmp_path / "a.png").write_bytes(b"pixels")
    (tmp_path / "link.png").symlink_to(tmp_path / "a.png")
    assert read_input(tmp_path / "link.png", 100) == b"pixels"


@pytest.mark.parametrize("kind, make", [
    ("character device", lambda path: path.symlink_to("/dev/zero")),
    ("FIFO", lambda path: os.mkfifo(path)),
    ("folder", lambda path: path.mkdir()),
])
def test_anything_but_a_regular_file_is_refused_at_once(tmp_path, kind, make):
    path = tmp_path / "input.png"
    make(path)
    with pytest.raises(InputError, match=f"is a {kind}, not a regular file"):
        _without_hanging(lambda: read_input(path, 1 << 30))


def test_a_socket_is_refused(tmp_path):
    path = tmp_path / "s.png"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    try:
        with pytest.raises(InputError, match="is a socket"):
            read_input(path, 100)
    finally:
        server.close()


def test_missing_and_looping_inputs(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_input(tmp_path / "none.png", 100)
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    with pytest.raises(InputError, match="a loop of symbolic links"):
        read_input(tmp_path / "a", 100)


def test_the_byte_limit(tmp_path):
    path = tmp_path / "big.png"
    path.write_bytes(bytes(1001))
    assert len(read_input(path, 1001)) == 1001
    with pytest.raises(InputError, match="larger than the input limit of 1,000 bytes"):
        read_input(path, 1000)


class _Endless(io.RawIOBase):
    """A stream that never ends, like /dev/zero; counts what was read from it."""

    def __init__(self) -> None:
        self.read_bytes = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        buffer[:] = bytes(len(buffer))
        self.read_bytes += len(buffer)
        return len(buffer)

    def fileno(self) -> int:
        raise OSError("no file descriptor")


def test_stdin_is_read_only_up_to_the_limit(monkeypatch):
    endless = _Endless()

    class Stdin:
        buffer = io.BufferedReader(endless)

        def isatty(self) -> bool:
            return False

    monkeypatch.setattr(sys, "stdin", Stdin())
    with pytest.raises(InputError, match="<stdin>: larger than the input limit of 5,000,000 bytes"):
        read_stdin(5_000_000)
    assert endless.read_bytes < 5_000_000 + (1 << 20) + 8192


def test_closed_stdin(monkeypatch):
    monkeypatch.setattr(sys, "stdin", None)
    with pytest.raises(InputError, match="stdin is closed"):
        read_stdin(100)


# --- writing: targets that are not regular files, links, stale temporary files -------


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_character_device_is_written_in_place(overwrite):
    write_atomic("/dev/null", b"data", overwrite=overwrite, named_by_user=True)
    assert os.path.exists("/dev/null") and not os.path.isfile("/dev/null")


def test_a_fifo_is_written_in_place_not_replaced(tmp_path):
    fifo = tmp_path / "out.tcz"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(open(fifo, "rb").read()), daemon=True)
    reader.start()
    write_atomic(fifo, b"through the pipe", named_by_user=True)
    reader.join(30)
    assert received == [b"through the pipe"]
    assert not fifo.is_file() and fifo.exists()


def test_special_files_are_refused_where_not_wanted(tmp_path):
    with pytest.raises(OutputError, match="is a character device"):
        write_atomic("/dev/null", b"x", overwrite=True)
    with pytest.raises(OutputError, match="is a folder"):
        write_atomic(tmp_path, b"x", overwrite=True)


def test_overwriting_through_a_link_keeps_the_link(tmp_path):
    target = tmp_path / "real.tcz"
    target.write_bytes(b"old")
    link = tmp_path / "link.tcz"
    link.symlink_to(target)
    with pytest.raises(OutputExistsError):
        write_atomic(link, b"new", named_by_user=True)
    write_atomic(link, b"new", overwrite=True, named_by_user=True)
    assert link.is_symlink() and target.read_bytes() == b"new"


def test_a_link_the_user_did_not_name_is_replaced_not_followed(tmp_path):
    """A folder run's output name that someone made a link to another file: --force replaces
    the link, and the file it named stays as it was."""
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    planted = tmp_path / "out.tcz"
    planted.symlink_to(victim)
    with pytest.raises(OutputExistsError):
        write_atomic(planted, b"new")
    write_atomic(planted, b"new", overwrite=True)
    assert not planted.is_symlink() and planted.read_bytes() == b"new"
    assert victim.read_bytes() == b"precious"
    (tmp_path / "dev.tcz").symlink_to("/dev/null")
    write_atomic(tmp_path / "dev.tcz", b"x", overwrite=True)  # the link replaced, /dev/null untouched
    assert (tmp_path / "dev.tcz").read_bytes() == b"x" and os.path.exists("/dev/null")


def test_temporary_files_name_host_and_process(tmp_path, monkeypatch):
    seen = []
    fsync = os.fsync

    def spy(fd):
        seen.extend(p.name for p in tmp_path.iterdir())
        fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    write_atomic(tmp_path / "out.tcz", b"x")
    assert len(seen) == 1 and fileio._TEMP.fullmatch(seen[0])
    assert f"-{os.getpid()}-" in seen[0]


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_rerun_removes_only_the_temporary_files_of_dead_processes(tmp_path):
    host = fileio._HOST
    dead, alive = _dead_pid(), os.getppid()
    names = {
        "dead": f".a.tcz.tcodec-{host}-{dead}-x1y2.tmp",
        "alive": f".b.tcz.tcodec-{host}-{alive}-x1y2.tmp",
        "other host": f".c.tcz.tcodec-{'0' * 8 if host != '0' * 8 else '1' * 8}-{dead}-x1y2.tmp",
        "not ours": ".d.tcz.x1y2.tmp",
        "output": "e.tcz",
    }
    for name in names.values():
        (tmp_path / name).write_bytes(b"")
    assert remove_stale_temps(tmp_path) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(v for k, v in names.items() if k != "dead")
    assert remove_stale_temps(tmp_path / "missing") == 0


def test_a_killed_write_leaves_a_temporary_file_that_the_next_run_removes(tmp_path):
    script = ("import os, sys\nfrom tcodec import fileio\n"
              "os.fsync = lambda fd: os.kill(os.getpid(), 9)\n"
              "fileio.write_atomic(sys.argv[1], b'data')")
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path / "out.tcz")], timeout=60)
    assert result.returncode == -9
    assert [p.name for p in tmp_path.iterdir() if fileio._TEMP.fullmatch(p.name)]
    assert remove_stale_temps(tmp_path) == 1
    assert list(tmp_path.iterdir()) == []


# --- standard output -----------------------------------------------------------------


class _Stdout:
    def __init__(self, error: BaseException) -> None:
        self.error = error
        self.buffer = self

    def write(self, data):
        raise self.error

    def flush(self):
        pass


@pytest.mark.parametrize("error, expected, message", [
    (BrokenPipeError(32, "Broken pipe"), BrokenPipe, "reader has gone"),
    (OSError(28, "No space left on device"), OutputError, "stdout: cannot write \\(No space left on device\\)"),
    (ValueError("I/O operation on closed file"), OutputError, "stdout is closed"),
])
def test_stdout_failures_are_one_error_each(monkeypatch, error, expected, message):
    monkeypatch.setattr(sys, "stdout", _Stdout(error))
    with pytest.raises(expected, match=message):
        write_stdout(b"data")


def test_no_stdout_at_all(monkeypatch):
    monkeypatch.setattr(sys, "stdout", None)
    with pytest.raises(OutputError, match="stdout is closed"):
        write_stdout(b"data")
    assert not fileio.stdout_is_terminal()
