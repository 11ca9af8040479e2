import os
import tempfile

import pytest

from tcodec.errors import OutputError
from tcodec.fileio import write_atomic


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
