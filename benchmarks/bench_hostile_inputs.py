"""The hostile inputs of issue 15, each run as a whole `tcodec` process: exit code, wall
time, peak memory (the process's max RSS, from GNU time) and the first line it printed on stderr.

    python benchmarks/bench_hostile_inputs.py [--only NAME]

Every case is made here in a temporary folder (special files, crafted .tcz files,
bombs); nothing is downloaded. The target (issue 15): each ends with a one-line error
(or, for -o /dev/null, works) and its documented exit code within a second or two, and
within a few hundred MB beyond a loaded model; taco cases load the model (~1 GB, and
the imports take most of the time: issue 19).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

import tcodec
from tcodec.format.container import Container, pack, unpack


def tcodec_command() -> list[str]:
    script = shutil.which("tcodec", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "tcodec"]


def repacked(data: bytes, **change) -> bytes:
    fields = {**unpack(data).__dict__, **change}
    fields.pop("layout")
    return pack(Container(**fields))


def make_cases(folder: Path) -> list[tuple[str, list[str], dict]]:
    """(name, tcodec arguments, subprocess options) for every reproduction."""
    small = Image.effect_noise((64, 48), 40).convert("RGB")
    small.save(folder / "small.png")
    (folder / "zero.png").symlink_to("/dev/zero")
    os.mkfifo(folder / "fifo.png")
    photos = folder / "photos"
    photos.mkdir()
    small.save(photos / "good.png")
    (photos / "zero.png").symlink_to("/dev/zero")
    os.mkfifo(photos / "fifo.png")
    Image.new("1", (12000, 12000)).save(folder / "bomb.png")  # 12000x12000, a few kB
    Image.new("L", (65520, 1)).save(folder / "wide.png")
    Image.new("L", (70000, 1)).save(folder / "wider.png")
    (folder / "a").symlink_to(folder / "b")
    (folder / "b").symlink_to(folder / "a")

    jpeg = tcodec.encode(small, "jpeg", 75)
    stream = bytearray(unpack(jpeg).streams[0])
    sof = stream.index(b"\xff\xc0")
    stream[sof + 5 : sof + 9] = (12800).to_bytes(2, "big") * 2
    (folder / "jpeg-bomb.tcz").write_bytes(repacked(jpeg, width=12800, height=12800, streams=(bytes(stream),)))
    html = b"<html><script>alert(1)</script></html>"
    (folder / "html.tcz").write_bytes(repacked(jpeg, streams=(html,)))
    (folder / "two-streams.tcz").write_bytes(repacked(jpeg, streams=(unpack(jpeg).streams[0], html)))
    (folder / "caption.tcz").write_bytes(tcodec.encode(small, "jpeg", 75,
                                                       caption="x\x1b]0;pwned\x07\r\nmodel_hash  00"))
    taco_hash = unpack(tcodec.encode(small, "taco", 1)).model_hash
    for name, side, tiles, stream in [("taco-4096-empty", 4096, 1, b""), ("taco-4097-empty", 4097, 9, b""),
                                      ("taco-16384-empty", 16384, 64, b""),
                                      ("taco-4096-short", 4096, 1, os.urandom(40))]:
        (folder / f"{name}.tcz").write_bytes(pack(Container("taco", 1, side, side, "RGB", (stream,) * tiles,
                                                            "constriction-range", taco_hash)))
    with open(folder / "small.tcz", "wb") as file:
        file.write(jpeg)
    return [
        ("encode /dev/zero link", ["encode", "zero.png"], {}),
        ("info /dev/zero link", ["info", "zero.png"], {}),
        ("decode /dev/zero link", ["decode", "zero.png"], {}),
        ("encode FIFO", ["encode", "fifo.png"], {}),
        ("encode stdin of zeros", ["encode", "-", "-o", "-"], {"stdin": "/dev/zero"}),
        ("folder with FIFO and /dev/zero", ["encode", "photos", "-o", "out"], {}),
        ("taco 4096x4096, empty stream", ["decode", "taco-4096-empty.tcz"], {}),
        ("taco 4097x4097, 9 empty tiles", ["decode", "taco-4097-empty.tcz"], {}),
        ("taco 16384x16384, 64 empty tiles", ["decode", "taco-16384-empty.tcz"], {}),
        ("same, --max-pixels 2^28", ["decode", "taco-16384-empty.tcz", "--max-pixels", str(1 << 28)], {}),
        ("taco 4096x4096, 40 random bytes", ["decode", "taco-4096-short.tcz"], {}),
        ("jpeg .tcz claiming 164 MP", ["decode", "jpeg-bomb.tcz", "--max-pixels", str(1 << 28)], {}),
        ("PNG bomb 12000x12000, jpeg", ["encode", "bomb.png", "-m", "jpeg"], {}),
        ("PNG bomb 12000x12000, taco", ["encode", "bomb.png", "-m", "taco"], {}),
        ("-o /dev/null", ["encode", "small.png", "-o", "/dev/null"], {}),
        ("-o /dev/null --force", ["encode", "small.png", "-o", "/dev/null", "--force"], {}),
        ("HTML as .jpg", ["decode", "html.tcz", "-o", "html.jpg"], {}),
        ("two streams as .jpg", ["decode", "two-streams.tcz", "-o", "two.jpg"], {}),
        ("info of a caption with escapes", ["info", "caption.tcz"], {}),
        ("jpeg side 65520", ["encode", "wide.png", "-m", "jpeg"], {}),
        ("taco 70000x1", ["encode", "wider.png", "-m", "taco"], {}),
        ("symlink loop", ["encode", "a"], {}),
        ("stdout to /dev/full", ["decode", "small.tcz", "-o", "-"], {"stdout": "/dev/full"}),
    ]


def min_symbol_bits() -> float:
    import torch

    from tcodec.backends.taco import DEFAULT_MODEL, _load
    from tcodec.models.coding import cdf_tables

    model = _load(DEFAULT_MODEL, torch.device("cpu")).model
    return min(cdf_tables(m).min_symbol_bits for m in (model.entropy_bottleneck, model.gaussian_conditional))


def run_case(folder: Path, args: list[str], options: dict) -> tuple[int, float, float, str, str]:
    """Runs under GNU time (``/usr/bin/time``, Debian's ``time`` package) for the child's own
    peak memory."""
    files = {key: open(path, "rb" if key == "stdin" else "wb") for key, path in options.items()}
    measured = folder / "time.txt"
    started = time.perf_counter()
    result = subprocess.run(["/usr/bin/time", "-o", str(measured), "-f", "%M", *tcodec_command(), *args],
                            cwd=folder, stdout=files.get("stdout", subprocess.PIPE), stderr=subprocess.PIPE,
                            stdin=files.get("stdin", subprocess.DEVNULL), timeout=300)
    elapsed = time.perf_counter() - started
    peak_mb = int(measured.read_text().split()[-1]) / 1024
    for file in files.values():
        file.close()
    lines = result.stderr.decode(errors="replace").strip().splitlines()
    shown = next((line for line in lines if "error" in line), lines[0] if lines else "")
    stdout = (result.stdout or b"").decode(errors="replace")
    return result.returncode, elapsed, peak_mb, shown, stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="run the cases whose name contains this")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        cases = make_cases(folder)
        print(f"fewest bits any symbol of the default taco model can cost (b_min, formats/tcz.md): {min_symbol_bits():.3g}")
        print(f"{'case':<34} {'rc':>4} {'time s':>7} {'peak MB':>8}  first error line (or what it printed)")
        for name, arguments, options in cases:
            if args.only and args.only not in name:
                continue
            code, elapsed, peak_mb, line, stdout = run_case(folder, arguments, options)
            if name.startswith("info of") and code == 0:
                line = next(row for row in stdout.splitlines() if row.startswith("caption "))
            print(f"{name:<34} {code:>4} {elapsed:>7.2f} {peak_mb:>8.0f}  {line[:150]}")


if __name__ == "__main__":
    main()
