"""`tcodec encode|decode --engine ray` (tcodec.cli.ray_batch): the same files, messages and
exit codes as the local mode, resumable, never a partial output.

The CLI runs as real processes that join one shared local Ray instance (tests/conftest.py,
``ray_address``); every run has a timeout, so a stalled job fails instead of hanging.
"""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tcodec.format.container import unpack
from tests.conftest import image_bytes, run_cli

N_IMAGES = 24


@pytest.fixture(scope="module")
def photos(tmp_path_factory, card):
    """24 images in a small tree (RGB, grayscale; PNG, JPEG, WebP), captions from a JSON
    Lines file and sidecars, one broken file and one hidden."""
    root = tmp_path_factory.mktemp("ray") / "photos"
    for i in range(N_IMAGES):
        folder = root / ("" if i < 8 else "trip" if i < 16 else "trip/day 2")
        folder.mkdir(parents=True, exist_ok=True)
        image = card.rotate(15 * i, expand=i % 3 == 0)
        if i % 4 == 0:
            image.convert("L").save(folder / f"img{i:02}.webp", lossless=True)
        else:
            image.save(folder / f"img{i:02}.{'png' if i % 2 else 'jpg'}", **({} if i % 2 else {"quality": 90}))
    (root / "trip" / "img09.txt").write_text("a sidecar caption\n")
    (root / "trip" / "day 2" / "img17.txt").write_text("an overridden sidecar\n")
    (root / "trip" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    (root / ".hidden.png").write_bytes(image_bytes(card))
    captions = root.parent / "captions.jsonl"
    captions.write_text(json.dumps({"file": "img01.png", "caption": "the first card"}) + "\n"
                        + json.dumps({"file": "trip/day 2/img17.png", "captions": ["from the JSON file", "x"]}) + "\n")
    return root


def encode(src, out, *options, engine=None, address=None, timeout=180):
    ray = ["--engine", "ray", "--ray-address", address] if engine == "ray" else []
    return run_cli_timed(timeout, "encode", src, "-o", out, *options, *ray)


def run_cli_timed(timeout, *args):
    return subprocess.run([sys.executable, "-m", "tcodec", *map(str, args)], input=b"", capture_output=True,
                          timeout=timeout)


def tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def messages(result) -> list[str]:
    """stderr's tcodec lines, the run time left out; Ray's own notices dropped."""
    lines = [line for line in result.stderr.decode().splitlines() if line.startswith("tcodec: ")]
    return sorted(line.rsplit(" in ", 1)[0] if line.startswith("tcodec: info:") else line for line in lines)


@pytest.fixture(scope="module")
def local_jpeg(photos, tmp_path_factory):
    """The local mode's outputs and messages, the reference for the Ray engine."""
    out = tmp_path_factory.mktemp("local") / "tcz"
    result = encode(photos, out, "-q", "70", "-j", "2", "--captions", photos.parent / "captions.jsonl",
                    "--sidecar-captions")
    assert result.returncode == 6, result.stderr
    return out, result


def test_jpeg_outputs_messages_and_exit_code_match_local(photos, local_jpeg, ray_address, tmp_path):
    local_out, local = local_jpeg
    out = tmp_path / "tcz"
    result = encode(photos, out, "-q", "70", "--captions", photos.parent / "captions.jsonl", "--sidecar-captions",
                    engine="ray", address=ray_address)
    assert result.returncode == 6, result.stderr
    assert messages(result) == messages(local)
    stderr = result.stderr.decode()
    assert f"{photos / 'trip' / 'broken.png'}: not an image format tcodec can read" in stderr
    assert f"encoded {N_IMAGES} files, 1 failed" in stderr
    assert tree(out) == tree(local_out) and len(tree(out)) == N_IMAGES
    assert unpack((out / "img01.tcz").read_bytes()).coded_caption is not None
    import tcodec

    assert tcodec.read_info(out / "img01.tcz").caption == "the first card"
    assert tcodec.read_info(out / "trip" / "img09.tcz").caption == "a sidecar caption"
    assert tcodec.read_info(out / "trip" / "day 2" / "img17.tcz").caption == "from the JSON file"


def test_rerun_does_only_what_is_missing_unless_forced(photos, local_jpeg, ray_address, tmp_path):
    local_out, _ = local_jpeg
    out = tmp_path / "tcz"
    reference = tree(local_out)
    for name, data in reference.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_bytes(data)
    for name in ["img02.tcz", "trip/img09.tcz", "trip/day 2/img17.tcz"]:
        (out / name).unlink()
    (out / "img03.tcz").write_bytes(b"keep me")
    options = ("-q", "70", "--captions", photos.parent / "captions.jsonl", "--sidecar-captions")
    again = encode(photos, out, *options, engine="ray", address=ray_address)
    assert again.returncode == 6, again.stderr  # the broken file is still broken
    assert f"encoded 3 files, skipped {N_IMAGES - 3} (output exists; --force overwrites), 1 failed" in \
        again.stderr.decode()
    assert (out / "img03.tcz").read_bytes() == b"keep me"
    assert tree(out) == {**reference, "img03.tcz": b"keep me"}
    forced = encode(photos, out, *options, "--force", engine="ray", address=ray_address)
    assert f"encoded {N_IMAGES} files, 1 failed" in forced.stderr.decode()
    assert tree(out) == reference


def test_decode_matches_local(local_jpeg, ray_address, tmp_path):
    local_out, _ = local_jpeg
    local = run_cli_timed(180, "decode", local_out, "-o", tmp_path / "local")
    on_ray = run_cli_timed(180, "decode", local_out, "-o", tmp_path / "ray", "--engine", "ray",
                           "--ray-address", ray_address, "-j", "1")
    assert local.returncode == on_ray.returncode == 0, on_ray.stderr
    assert messages(on_ray) == messages(local)
    assert tree(tmp_path / "ray") == tree(tmp_path / "local") and len(tree(tmp_path / "local")) == N_IMAGES


def test_uris_go_through_pyarrow_filesystems(photos, local_jpeg, ray_address, tmp_path):
    """file:// takes the path any pyarrow filesystem takes (s3://, gs://, ...): listing,
    reads, sidecar captions, a temporary name then a rename; the same bytes."""
    local_out, local = local_jpeg
    out = tmp_path / "uri"
    result = encode(f"file://{photos}", f"file://{out}", "-q", "70", "--captions", photos.parent / "captions.jsonl",
                    "--sidecar-captions", engine="ray", address=ray_address)
    assert result.returncode == 6, result.stderr
    assert f"file://{photos}/trip/broken.png: not an image format tcodec can read" in result.stderr.decode()
    assert tree(out) == tree(local_out)


def test_taco_outputs_match_local(photos, tiny_folder, ray_address, tmp_path):
    options = ("-m", "taco", "-q", "2.5", "-O", f"model={tiny_folder}", "--caption", "a test card", "--device", "cpu")
    local = encode(photos, tmp_path / "local", *options, "-j", "2")
    on_ray = encode(photos, tmp_path / "ray", *options, "-j", "2", engine="ray", address=ray_address)
    assert local.returncode == on_ray.returncode == 6, on_ray.stderr
    assert messages(on_ray) == messages(local)
    assert tree(tmp_path / "ray") == tree(tmp_path / "local") and len(tree(tmp_path / "local")) == N_IMAGES
    assert unpack((tmp_path / "ray" / "img01.tcz").read_bytes()).backend == "taco"


def test_caption_auto_matches_local(photos, ray_address, tmp_path, monkeypatch):
    """Captions made on the actors (where --captions and sidecars give none), reported by
    the driver as the local mode reports them."""
    from tests.test_captioner import NAME, write_tiny_blip2

    write_tiny_blip2(tmp_path / "cache" / NAME)
    monkeypatch.setenv("TCODEC_CACHE", str(tmp_path / "cache"))  # the actors get TCODEC_* too
    options = ("--caption", "auto", "--captions", photos.parent / "captions.jsonl", "--sidecar-captions",
               "--device", "cpu", "-j", "2")
    local = encode(photos, tmp_path / "local", *options)
    on_ray = encode(photos, tmp_path / "ray", *options, engine="ray", address=ray_address)
    assert local.returncode == on_ray.returncode == 6, on_ray.stderr
    assert messages(on_ray) == messages(local)
    made = [line for line in messages(local) if line.startswith("tcodec: info: ") and ": caption " in line]
    assert len(made) == N_IMAGES - 3  # all but the three captioned by the file or a sidecar
    assert tree(tmp_path / "ray") == tree(tmp_path / "local") and len(tree(tmp_path / "local")) == N_IMAGES


def _actor_processes() -> list[int]:
    """PIDs of the Ray actors that convert files (their process title names the class)."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and b"_FileActor" in (entry / "cmdline").read_bytes():
                pids.append(int(entry.name))
        except OSError:
            pass
    return pids


def test_a_killed_job_leaves_no_partial_file_and_a_rerun_finishes_it(tiny_folder, card, ray_address, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(16):
        card.rotate(20 * i).resize((64, 48)).save(src / f"{i:02}.png")
    out = tmp_path / "out"
    command = [sys.executable, "-m", "tcodec", "encode", str(src), "-o", str(out), "-m", "taco", "-O",
               f"model={tiny_folder}", "--device", "cpu", "-j", "1", "--engine", "ray", "--ray-address", ray_address]
    driver = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not list(out.glob("*.tcz")) and driver.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    driver.send_signal(signal.SIGKILL)
    driver.wait(timeout=30)
    deadline = time.monotonic() + 60
    while _actor_processes() and time.monotonic() < deadline:  # Ray ends the dead driver's actors
        time.sleep(0.2)
    assert not _actor_processes()
    done = sorted(out.glob("*.tcz"))
    assert 1 <= len(done) < 16
    for path in done:  # each output there is whole
        unpack(path.read_bytes())
    rerun = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, timeout=180)
    assert rerun.returncode == 0, rerun.stderr
    assert f"encoded {16 - len(done)} files, skipped {len(done)}" in rerun.stderr.decode()
    assert sorted(p.name for p in out.iterdir()) == [f"{i:02}.tcz" for i in range(16)]  # no temporary left


def test_without_ray_one_line_says_what_to_install(photos, tmp_path):
    script = ("import sys; sys.modules['ray'] = None\n"  # as if Ray were not installed
              "from tcodec.cli import main\n"
              f"sys.argv = ['tcodec', 'encode', {str(photos)!r}, '-o', {str(tmp_path / 'out')!r}, '--engine', 'ray']\n"
              "main()")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert result.returncode == 5
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tcodec: error: ") and "pip install 'tcodec[ray]'" in lines[0]
    assert not (tmp_path / "out").exists()


def test_bad_engine_and_uri_without_ray_are_usage_errors(photos, tmp_path):
    bad = run_cli("encode", photos, "-o", tmp_path / "out", "--engine", "spark")
    assert bad.returncode == 2 and b"--engine must be local or ray" in bad.stderr
    uri = run_cli("encode", f"file://{photos}", "-o", tmp_path / "out")
    assert uri.returncode == 2 and b"URIs are read and written with --engine ray" in uri.stderr


def test_the_command_line_does_not_import_ray():
    code = ("import sys, tcodec, tcodec.cli, tcodec.ray_data\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('ray', 'pyarrow')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "[]"
