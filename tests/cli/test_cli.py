"""The `tcodec` command, run as a real process: exit codes, stdin/stdout, folders."""

import json
import os
import subprocess
import sys

import pytest
from PIL import Image

import tcodec
from tcodec.format.container import unpack

from tests.conftest import image_bytes, run_cli


def test_help_and_version():
    assert run_cli("--help").returncode == 0
    result = run_cli("--version")
    assert result.returncode == 0 and result.stdout.decode().startswith("tcodec ")


def test_encode_writes_beside_the_input(card_png):
    result = run_cli("encode", card_png, "-m", "jpeg", "-q", "80")
    assert result.returncode == 0, result.stderr
    assert result.stdout == b""
    info = tcodec.read_info(card_png.with_suffix(".tcz"))
    assert (info.backend, info.quality, info.width) == ("jpeg", 80, 96)


def test_encode_into_an_existing_folder(card_png, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    assert run_cli("encode", card_png, "-o", out).returncode == 0
    assert (out / "card.tcz").is_file()


def test_pipeline_through_stdin_and_stdout(card):
    encoded = run_cli("encode", "-", "-m", "jpeg", "-o", "-", input=image_bytes(card))
    assert encoded.returncode == 0, encoded.stderr
    decoded = run_cli("decode", "-", "-o", "-", input=encoded.stdout)
    assert decoded.returncode == 0, decoded.stderr
    assert decoded.stdout.startswith(b"\x89PNG")
    assert decoded.stderr == b""
    from io import BytesIO

    assert Image.open(BytesIO(decoded.stdout)).tobytes() == tcodec.decode(encoded.stdout).tobytes()


def test_decode_to_jpg_gives_back_the_original_jpeg(card_png, tmp_path):
    tcz = tmp_path / "card.tcz"
    run_cli("encode", card_png, "-o", tcz, "-q", "65")
    out = tmp_path / "card.jpg"
    assert run_cli("decode", tcz, "-o", out).returncode == 0
    assert out.read_bytes() == unpack(tcz.read_bytes()).streams[0]
    again = tmp_path / "again.jpg"
    assert run_cli("decode", tcz, "--format", "jpeg", "-o", again).returncode == 0
    assert again.read_bytes() == out.read_bytes()


@pytest.mark.parametrize("fmt, pillow_format", [("png", "PNG"), ("webp", "WEBP"), ("bmp", "BMP"), ("tiff", "TIFF")])
def test_decode_formats_are_lossless(card_png, tmp_path, fmt, pillow_format):
    tcz = tmp_path / "card.tcz"
    run_cli("encode", card_png, "-o", tcz)
    out = tmp_path / f"decoded.{fmt}"
    assert run_cli("decode", tcz, "-o", out).returncode == 0
    with Image.open(out) as image:
        assert image.format == pillow_format
        assert image.convert("RGB").tobytes() == tcodec.decode(tcz).tobytes()


def test_caption_and_options(card_png, tmp_path):
    out = tmp_path / "c.tcz"
    result = run_cli("encode", card_png, "-o", out, "--caption", "a bright test card", "-O", "subsampling=4:4:4")
    assert result.returncode == 0, result.stderr
    assert tcodec.read_info(out).caption == "a bright test card"


def test_info_text_and_json(card_png, tmp_path):
    out = tmp_path / "c.tcz"
    run_cli("encode", card_png, "-o", out, "--caption", "gift ☃")
    text = run_cli("info", out)
    assert text.returncode == 0 and b"caption" in text.stdout and "gift ☃".encode() in text.stdout
    fields = json.loads(run_cli("info", "--json", out).stdout)
    assert fields["backend"] == "jpeg" and fields["size_bytes"] == out.stat().st_size
    assert fields["caption"] == "gift ☃" and fields["caption_bytes"] > 0
    assert fields["bpp"] == pytest.approx(8 * out.stat().st_size / (96 * 64), abs=1e-4)
    assert fields["header_bytes"] + fields["caption_bytes"] + sum(fields["stream_bytes"]) \
        + fields["framing_bytes"] == fields["size_bytes"]


def test_backends_lists_jpeg():
    result = run_cli("backends")
    assert result.returncode == 0 and b"jpeg: quality 1-100" in result.stdout


def test_demo_runs_with_the_built_in_image(tmp_path):
    from tcodec.cli.demo import photo_bytes

    result = run_cli("demo", "-o", tmp_path / "demo")
    assert result.returncode == 0, result.stderr
    assert b"PSNR" in result.stdout and b"webp at most as large" in result.stdout
    folder = tmp_path / "demo"
    assert tcodec.read_info(folder / "photo.tcz").caption == "a close-up of a tabby cat with green eyes"
    assert (folder / "photo.png").read_bytes() == photo_bytes()  # the shipped photo, as shipped
    assert (folder / "photo.webp").stat().st_size <= (folder / "photo.tcz").stat().st_size
    assert b"photo.decoded.png" in result.stdout and str(folder).encode() in result.stdout


def test_demo_reruns_but_replaces_a_users_file_only_with_force(tmp_path):
    folder = tmp_path / "demo"
    assert run_cli("demo", "-o", folder, "-m", "jpeg").returncode == 0
    assert run_cli("demo", "-o", folder, "-m", "jpeg").returncode == 0  # the same bytes again
    (folder / "photo.tcz").write_bytes(b"the user's own file")
    assert_error(run_cli("demo", "-o", folder, "-m", "jpeg"), 7, "photo.tcz: already exists with other contents")
    assert (folder / "photo.tcz").read_bytes() == b"the user's own file"
    assert run_cli("demo", "-o", folder, "-m", "jpeg", "--force").returncode == 0
    assert tcodec.read_info(folder / "photo.tcz").backend == "jpeg"


def test_lossy_conversion_is_warned_on_stderr(tmp_path, card):
    rgba = card.convert("RGBA")
    rgba.putpixel((0, 0), (0, 0, 0, 0))
    path = tmp_path / "alpha.png"
    rgba.save(path)
    result = run_cli("encode", path)
    assert result.returncode == 0
    assert b"warning:" in result.stderr and b"alpha channel flattened onto white" in result.stderr


# --- errors: one line on stderr, a documented exit code ---------------------------


def assert_error(result, code: int, text: str) -> None:
    assert result.returncode == code, result.stderr
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tcodec: error: ") and text in lines[0], lines
    assert b"Traceback" not in result.stderr


def test_missing_input(tmp_path):
    assert_error(run_cli("encode", tmp_path / "nope.png"), 2, "no such file")


def test_unreadable_image(tmp_path):
    path = tmp_path / "bad.png"
    path.write_bytes(b"not a png")
    assert_error(run_cli("encode", path), 2, "not an image format tcodec can read")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read anything")
def test_unreadable_permissions(card_png):
    card_png.chmod(0)
    assert_error(run_cli("encode", card_png), 2, "permission denied")


@pytest.mark.parametrize("quality", ["0", "101", "7.5"])
def test_bad_quality(card_png, quality):
    assert_error(run_cli("encode", card_png, "-q", quality), 2, "quality for jpeg must be an integer")


def test_unknown_backend(card_png):
    assert_error(run_cli("encode", card_png, "-m", "webp"), 5, "unknown backend 'webp'")


def test_bad_option_syntax(card_png):
    assert_error(run_cli("encode", card_png, "-O", "subsampling"), 2, "is not KEY=VALUE")


def test_foreign_file_to_decode(card_png):
    assert_error(run_cli("decode", card_png, "-o", "-"), 3, "not a .tcz file")


def test_truncated_tcz(card_png, tmp_path):
    tcz = tmp_path / "card.tcz"
    run_cli("encode", card_png, "-o", tcz)
    tcz.write_bytes(tcz.read_bytes()[:-100])
    assert_error(run_cli("decode", tcz, "-o", tmp_path / "out.png"), 3, "truncated")


def test_corrupted_tcz(card_png, tmp_path):
    tcz = tmp_path / "card.tcz"
    run_cli("encode", card_png, "-o", tcz)
    data = bytearray(tcz.read_bytes())
    data[len(data) // 2] ^= 0x10
    tcz.write_bytes(bytes(data))
    assert_error(run_cli("info", tcz), 3, "checksum mismatch")


def test_future_version_tcz(card_png, tmp_path):
    tcz = tmp_path / "card.tcz"
    run_cli("encode", card_png, "-o", tcz)
    data = bytearray(tcz.read_bytes())
    data[3] = 0x20
    tcz.write_bytes(bytes(data))
    assert_error(run_cli("decode", tcz, "-o", tmp_path / "out.png"), 3, "format version 2.0 is not supported")


def test_existing_output_is_kept(card_png):
    target = card_png.with_suffix(".tcz")
    target.write_bytes(b"precious")
    assert_error(run_cli("encode", card_png), 7, "already exists (use --force to overwrite)")
    assert target.read_bytes() == b"precious"
    assert run_cli("encode", card_png, "--force").returncode == 0
    assert target.read_bytes() != b"precious"


def test_unwritable_output(card_png, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    assert_error(run_cli("encode", card_png, "-o", blocker / "x.tcz"), 7, "cannot write")


def test_debug_shows_the_traceback(tmp_path):
    result = run_cli("--debug", "encode", tmp_path / "nope.png")
    assert result.returncode == 2 and b"Traceback" in result.stderr


def test_usage_errors_exit_with_2():
    assert run_cli("encode").returncode == 2
    assert run_cli("encode", "x.png", "--no-such-flag").returncode == 2


def test_bad_captions_file(card_png, tmp_path):
    captions = tmp_path / "c.jsonl"
    captions.write_text('{"file": "card.png"}\n')
    assert_error(run_cli("encode", card_png, "--captions", captions), 2, "c.jsonl:1: not a caption entry")


# --- folders -------------------------------------------------------------------------


@pytest.fixture
def photos(tmp_path, card):
    root = tmp_path / "photos"
    (root / "trip" / "day1").mkdir(parents=True)
    card.save(root / "a.png")
    card.rotate(90, expand=True).save(root / "trip" / "b.jpg", quality=95)
    card.convert("L").save(root / "trip" / "day1" / "c.webp", lossless=True)
    (root / "trip" / "notes.txt").write_text("not an image")
    (root / ".hidden.png").write_bytes(image_bytes(card))
    return root


def test_folder_is_mirrored(photos, tmp_path):
    out = tmp_path / "out"
    result = run_cli("encode", photos, "-o", out, "-q", "60", "-j", "2")
    assert result.returncode == 0, result.stderr
    found = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert found == ["a.tcz", "trip/b.tcz", "trip/day1/c.tcz"]
    assert b"encoded 3 files" in result.stderr
    assert tcodec.read_info(out / "trip" / "b.tcz").width == 64  # rotated


def test_folder_round_trip(photos, tmp_path):
    run_cli("encode", photos, "-o", tmp_path / "tcz")
    result = run_cli("decode", tmp_path / "tcz", "-o", tmp_path / "png")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "png" / "trip" / "day1" / "c.png").is_file()
    assert b"decoded 3 files" in result.stderr


def test_folder_skips_existing_outputs_unless_forced(photos, tmp_path):
    out = tmp_path / "out"
    run_cli("encode", photos, "-o", out)
    (out / "a.tcz").write_bytes(b"keep me")
    again = run_cli("encode", photos, "-o", out)
    assert again.returncode == 0 and b"encoded 0 files, skipped 3" in again.stderr
    assert (out / "a.tcz").read_bytes() == b"keep me"
    forced = run_cli("encode", photos, "-o", out, "--force")
    assert forced.returncode == 0 and b"encoded 3 files" in forced.stderr
    assert tcodec.read_info(out / "a.tcz").backend == "jpeg"


def test_one_bad_file_does_not_stop_the_folder(photos, tmp_path):
    (photos / "trip" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    out = tmp_path / "out"
    result = run_cli("encode", photos, "-o", out)
    assert result.returncode == 6
    stderr = result.stderr.decode()
    assert "broken.png: not an image format tcodec can read" in stderr and "3 files, 1 failed" in stderr
    assert len(list(out.rglob("*.tcz"))) == 3
    assert not [p for p in out.rglob("*") if p.name.startswith(".")]  # no temporary files left


def test_same_output_name_is_reported(photos, tmp_path, card):
    card.save(photos / "a.bmp")
    result = run_cli("encode", photos, "-o", tmp_path / "out")
    assert result.returncode == 6
    assert b"has the same output" in result.stderr


def test_folder_captions_from_jsonl_and_sidecars(photos, tmp_path):
    captions = tmp_path / "captions.jsonl"
    captions.write_text(json.dumps({"file": "trip/b.jpg", "captions": ["a rotated card", "other"]}) + "\n"
                        + json.dumps({"file": "a.png", "caption": "the first card"}) + "\n")
    (photos / "trip" / "day1" / "c.txt").write_text("a gray card\n")
    out = tmp_path / "out"
    result = run_cli("encode", photos, "-o", out, "--captions", captions, "--sidecar-captions")
    assert result.returncode == 0, result.stderr
    assert tcodec.read_info(out / "a.tcz").caption == "the first card"
    assert tcodec.read_info(out / "trip" / "b.tcz").caption == "a rotated card"
    assert tcodec.read_info(out / "trip" / "day1" / "c.tcz").caption == "a gray card"


def test_empty_folder_is_an_error(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_error(run_cli("encode", empty, "-o", tmp_path / "out"), 2, "no files to convert")


def test_folder_cannot_go_to_stdout(photos):
    assert_error(run_cli("encode", photos, "-o", "-"), 2, "cannot be written to stdout")


def test_refuses_to_write_binary_to_a_terminal(card):
    import pty
    import subprocess

    controller, terminal = pty.openpty()
    try:
        result = subprocess.run([sys.executable, "-m", "tcodec", "encode", "-", "-o", "-"],
                                input=image_bytes(card), stdout=terminal, stderr=subprocess.PIPE, timeout=60)
    finally:
        os.close(terminal)
        os.close(controller)
    assert result.returncode == 7
    assert b"refusing to write binary data to a terminal" in result.stderr


def test_decode_into_a_folder_whose_name_has_a_dot(photos, tmp_path):
    run_cli("encode", photos, "-o", tmp_path / "tcz")
    result = run_cli("decode", tmp_path / "tcz", "-o", tmp_path / "back.v2")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "back.v2" / "a.png").is_file()
    single = run_cli("decode", tmp_path / "tcz" / "a.tcz", "-o", tmp_path / "back.v2" / "trip")
    assert single.returncode == 0, single.stderr
    assert (tmp_path / "back.v2" / "trip" / "a.png").is_file()


def test_caption_from_undecodable_bytes_is_an_input_error(card_png):
    result = subprocess.run([sys.executable, "-m", "tcodec", "encode", card_png, "--caption", b"caf\xe9", "-o", "-"],
                            capture_output=True, timeout=120)
    assert_error(result, 2, "not valid Unicode")


# The console script leaves without the interpreter's teardown (tcodec.cli.run): a program
# stands in for the script, with an object whose finalizer shows whether the teardown ran.
EXIT_PROBE = """
import atexit, sys, threading, time
from tcodec.cli import run
class Finalized:
    def __del__(self):
        print("torn down", flush=True)
probe = Finalized()
atexit.register(print, "exit functions ran", flush=True)
if sys.argv[1] == "thread":
    threading.Thread(target=lambda: (time.sleep(0.3), print("thread finished", flush=True))).start()
sys.argv = ["tcodec", *sys.argv[2:]]
run()
"""


def run_probe(mode: str, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", EXIT_PROBE, mode, *map(str, args)], capture_output=True,
                          timeout=120)


def test_the_command_runs_exit_functions_and_skips_the_teardown(card_png):
    result = run_probe("plain", "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().splitlines() == [f"tcodec {tcodec.__version__}", "exit functions ran"]
    failed = run_probe("plain", "encode", card_png.with_name("missing.png"))
    assert failed.returncode == 2
    assert failed.stdout.decode().splitlines() == ["exit functions ran"]
    assert b"no such file" in failed.stderr


def test_with_a_thread_alive_the_command_exits_as_python_does(card_png):
    result = run_probe("thread", "--version")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.decode().splitlines()
    assert lines[0] == f"tcodec {tcodec.__version__}" and "thread finished" in lines and "torn down" in lines

