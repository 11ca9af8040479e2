"""The `tcodec` command against hostile inputs and awkward outputs, as a real process:
special files, endless streams, bombs, smuggled content, terminal escapes, full or
closed stdout, signals and racing runs. Each ends in one line and its exit code."""

import os
import subprocess
import sys

import pytest
from PIL import Image

import tcodec
from tcodec import fileio
from tcodec.format.container import Container, pack, unpack

from tests.conftest import run_cli
from tests.cli.test_cli import assert_error
from tests.test_images import png_claiming


def run_script(code: str, *args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, timeout=120, **kwargs)


@pytest.mark.parametrize("make, kind", [
    (lambda path: path.symlink_to("/dev/zero"), "character device"),
    (lambda path: os.mkfifo(path), "FIFO"),
])
@pytest.mark.parametrize("command", ["encode", "decode", "info"])
def test_special_files_are_refused_at_once(tmp_path, make, kind, command):
    path = tmp_path / "input.png"
    make(path)
    assert_error(run_cli(command, path), 2, f"input.png: is a {kind}, not a regular file")


def test_a_folder_with_special_files_reports_them_and_finishes(tmp_path, card):
    photos = tmp_path / "photos"
    photos.mkdir()
    card.save(photos / "good.png")
    (photos / "zero.png").symlink_to("/dev/zero")
    os.mkfifo(photos / "pipe.png")
    result = run_cli("encode", photos, "-o", tmp_path / "out")
    assert result.returncode == 6
    stderr = result.stderr.decode()
    assert "zero.png: is a character device" in stderr and "pipe.png: is a FIFO" in stderr
    assert "encoded 1 file, 2 failed" in stderr
    assert (tmp_path / "out" / "good.tcz").is_file()


def test_endless_stdin_stops_at_the_byte_limit():
    with open("/dev/zero", "rb") as zeros:
        result = subprocess.run([sys.executable, "-m", "tcodec", "encode", "-", "-o", "-", "--max-input-bytes",
                                 "3000000"], stdin=zeros, capture_output=True, timeout=120)
    assert_error(result, 2, "<stdin>: larger than the input limit of 3,000,000 bytes")


def test_a_decompression_bomb_is_one_line_without_pillows_warning(tmp_path):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_claiming(12000, 12000))
    assert_error(run_cli("encode", bomb), 2, "bomb.png: 12000x12000 is 144,000,000 pixels, more than the limit")


def test_the_pixel_limit_from_option_or_environment(card_png):
    assert_error(run_cli("encode", card_png, "--max-pixels", "100"), 2, "more than the limit of 100")
    result = subprocess.run([sys.executable, "-m", "tcodec", "encode", str(card_png)], capture_output=True,
                            env={**os.environ, "TCODEC_MAX_PIXELS": "100"}, timeout=120)
    assert_error(result, 2, "more than the limit of 100")
    tcz = card_png.with_suffix(".tcz")
    assert run_cli("encode", card_png, "-o", tcz).returncode == 0
    assert_error(run_cli("decode", tcz, "-o", "/dev/null", "--max-pixels", "100"), 2,
                 "the file's image: 96x64 is 6,144 pixels")


def test_an_image_jpeg_cannot_hold_fails_in_a_folder_without_a_traceback(tmp_path, card):
    photos = tmp_path / "photos"
    photos.mkdir()
    card.save(photos / "good.png")
    Image.new("L", (65501, 1)).save(photos / "wide.png")
    result = run_cli("encode", photos, "-o", tmp_path / "out")
    assert result.returncode == 6 and b"Traceback" not in result.stderr
    assert b"wide.png: JPEG images have sides up to 65500" in result.stderr


def _jpeg_tcz_with(card, stream: bytes) -> bytes:
    fields = {**unpack(tcodec.encode(card, "jpeg", 75)).__dict__, "streams": (stream,)}
    fields.pop("layout")
    return pack(Container(**fields))


@pytest.mark.parametrize("output", ["x.jpg", "x.png"])
def test_a_tcz_cannot_smuggle_other_content_out(tmp_path, card, output):
    evil = tmp_path / "evil.tcz"
    evil.write_bytes(_jpeg_tcz_with(card, b"<html><script>alert(1)</script></html>"))
    assert_error(run_cli("decode", evil, "-o", tmp_path / output), 3, "not a JPEG file")
    assert not (tmp_path / output).exists()


def test_info_escapes_what_the_file_supplies(tmp_path, card):
    sneaky = tmp_path / "sneaky.tcz"
    sneaky.write_bytes(tcodec.encode(card, "jpeg", 75, caption="nice\x1b]0;pwned\x07\r\nmodel_hash  00ff\u202e"))
    result = run_cli("info", sneaky)
    assert result.returncode == 0
    text = result.stdout.decode()
    assert "\x1b" not in text and "\r" not in text and "\u202e" not in text
    assert "caption         nice\\x1b]0;pwned\\x07\\r\\nmodel_hash  00ff\\u202e\n" in text
    assert "\x1b" in __import__("json").loads(run_cli("info", sneaky, "--json").stdout)["caption"]


def test_output_to_a_device_is_written_in_place(card_png):
    for extra in ([], ["--force"]):
        result = run_cli("encode", card_png, "-o", "/dev/null", *extra)
        assert result.returncode == 0, result.stderr
    assert os.path.exists("/dev/null") and not os.path.isfile("/dev/null")


def test_a_loop_of_links_as_input_or_output(tmp_path, card_png):
    (tmp_path / "a.png").symlink_to(tmp_path / "b.png")
    (tmp_path / "b.png").symlink_to(tmp_path / "a.png")
    assert_error(run_cli("encode", tmp_path / "a.png"), 2, "a loop of symbolic links")
    assert_error(run_cli("decode", tmp_path / "a.png"), 2, "a loop of symbolic links")
    assert_error(run_cli("encode", card_png, "-o", tmp_path / "a.png"), 7, "a loop of symbolic links")


def test_stdout_full_closed_or_gone(card_png):
    command = [sys.executable, "-m", "tcodec", "encode", str(card_png), "-o", "-"]
    with open("/dev/full", "wb") as full:
        result = subprocess.run(command, stdout=full, stderr=subprocess.PIPE, timeout=120)
    assert_error(result, 7, "stdout: cannot write (No space left on device)")
    closed = subprocess.run(command, stderr=subprocess.PIPE, timeout=120, preexec_fn=lambda: os.close(1))
    assert_error(closed, 7, "stdout is closed")
    with open("/dev/full", "wb") as full:
        info = subprocess.run([sys.executable, "-m", "tcodec", "info", str(card_png.with_suffix(".tcz"))],
                              stdout=full, stderr=subprocess.PIPE, timeout=120)
    assert_error(info, 2, "no such file")  # errors before any output still come first
    reader_gone = run_script(
        "import os, subprocess, sys\n"
        "read, write = os.pipe()\nos.close(read)\n"
        "p = subprocess.run([sys.executable, '-m', 'tcodec', 'encode', sys.argv[1], '-o', '-'], stdout=write,"
        " stderr=subprocess.PIPE)\nsys.stdout.write(f'{p.returncode} {p.stderr!r}')", card_png)
    assert reader_gone.stdout.decode() == "141 b''"


def test_sigterm_leaves_no_partial_file(card_png, tmp_path):
    """Terminated while writing its output (the signal arrives inside the write): no output,
    no temporary file, exit 143."""
    out = tmp_path / "out"
    out.mkdir()
    script = ("import os, signal, sys\nfrom tcodec import cli\n"
              "os.fsync = lambda fd: os.kill(os.getpid(), signal.SIGTERM)\n"
              "sys.argv = ['tcodec', 'encode', sys.argv[1], '-o', sys.argv[2]]\ncli.main()")
    result = run_script(script, card_png, out / "card.tcz")
    assert result.returncode == 143, result.stderr
    assert list(out.iterdir()) == []


def test_a_file_another_run_wrote_meanwhile_is_kept(tmp_path, card):
    """Two runs on one folder: the output appears after this run planned its jobs. It is
    kept (without --force), and counted as skipped."""
    photos, out = tmp_path / "photos", tmp_path / "out"
    photos.mkdir()
    card.save(photos / "a.png")
    script = ("import sys\nfrom pathlib import Path\nfrom tcodec import api, cli\n"
              "encode, theirs = api.encode, Path(sys.argv[2], 'a.tcz')\n"
              "def racing(*args, **kwargs):\n"
              "    theirs.write_bytes(b'theirs')\n"
              "    return encode(*args, **kwargs)\n"
              "api.encode = racing\n"
              "sys.argv = ['tcodec', 'encode', sys.argv[1], '-o', sys.argv[2]]\ncli.main()")
    out.mkdir()
    result = run_script(script, photos, out)
    assert result.returncode == 0, result.stderr
    assert b"encoded 0 files, skipped 1" in result.stderr
    assert (out / "a.tcz").read_bytes() == b"theirs"
    assert [p.name for p in out.iterdir()] == ["a.tcz"]


def test_a_rerun_removes_what_a_killed_run_left(tmp_path, card, card_png):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    stale = [out / f".card.tcz.tcodec-{fileio._HOST}-{dead.pid}-abc123.tmp",
             out / "sub" / f".x.tcz.tcodec-{fileio._HOST}-{dead.pid}-abc123.tmp"]
    for path in stale:
        path.write_bytes(b"half")
    assert run_cli("encode", card_png, "-o", out / "card.tcz").returncode == 0
    assert not stale[0].exists() and stale[1].exists()
    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    card.save(photos / "sub" / "x.png")
    assert run_cli("encode", photos, "-o", out).returncode == 0
    assert not stale[1].exists()


def test_caption_files_are_read_within_limits(tmp_path, card_png):
    zero = tmp_path / "captions.jsonl"
    zero.symlink_to("/dev/zero")
    assert_error(run_cli("encode", card_png, "--captions", zero), 2, "captions.jsonl: is a character device")
    huge = card_png.with_suffix(".txt")
    huge.write_bytes(b"a" * 70000)
    assert_error(run_cli("encode", card_png, "--sidecar-captions"), 2, "card.txt: larger than the input limit")
    huge.write_bytes(b"\xff\xfe")
    assert_error(run_cli("encode", card_png, "--sidecar-captions"), 2, "card.txt: cannot read captions")


def test_a_format_that_cannot_hold_the_image_is_one_line(tmp_path):
    wide = tmp_path / "wide.png"
    Image.new("L", (16400, 2)).save(wide)
    tcz = tmp_path / "wide.tcz"
    assert run_cli("encode", wide, "-o", tcz).returncode == 0
    assert_error(run_cli("decode", tcz, "-o", tmp_path / "wide.webp"), 7, "cannot write a 16400x2 image as webp")
    assert not (tmp_path / "wide.webp").exists()
