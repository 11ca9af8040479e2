"""Start-up of the `tcodec` command (jpeg and taco), and the container's overhead.

    python benchmarks/bench_cli.py [--kodak ../shared/data/kodak] [--runs 15] [--taco-runs 5]

Times are whole processes (wall clock, median and best of --runs; --taco-runs for the
taco rows), as a user sees them; `python -c "import torch"` is the floor a taco process
cannot go below. Overhead is the .tcz file's size minus the JPEG that Pillow writes with
the same settings, for every image and quality. Targets (issue 2): --help <= 0.3 s,
encode of kodim01 at q75 <= 0.5 s, overhead <= 32 bytes.
"""

from __future__ import annotations

import argparse
import io
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

import tcodec
from tcodec.format.container import unpack

DEFAULT_KODAK = Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak"


def tcodec_command() -> list[str]:
    script = shutil.which("tcodec", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "tcodec"]


def time_process(args: list[str], runs: int) -> tuple[float, float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(args, check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times), min(times)


def overhead_rows(images: list[Path], qualities: list[int]) -> list[tuple[int, int, int, float]]:
    rows = []
    for quality in qualities:
        overheads = []
        for path in images:
            image = Image.open(path).convert("RGB")
            reference = io.BytesIO()
            image.save(reference, "JPEG", quality=quality, optimize=True, subsampling=2)
            data = tcodec.encode(image, "jpeg", quality)
            assert unpack(data).streams[0] == reference.getvalue(), "payload differs from Pillow's JPEG"
            overheads.append(len(data) - len(reference.getvalue()))
        rows.append((quality, min(overheads), max(overheads), statistics.mean(overheads)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kodak", type=Path, default=DEFAULT_KODAK)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--taco-runs", type=int, default=5)
    args = parser.parse_args()
    images = sorted(args.kodak.glob("kodim*.png"))
    if not images:
        sys.exit(f"no Kodak images in {args.kodak}; give --kodak DIR")
    command = tcodec_command()
    with tempfile.TemporaryDirectory() as tmp:
        out, taco = Path(tmp) / "out.tcz", Path(tmp) / "taco.tcz"
        encode = [*command, "encode", str(images[0]), "-m", "jpeg", "-q", "75", "-o", str(out), "--force"]
        decode = [*command, "decode", str(out), "-o", str(Path(tmp) / "out.png"), "--force"]
        taco_encode = [*command, "encode", str(images[0]), "-m", "taco", "-q", "3", "-o", str(taco), "--force"]
        subprocess.run(encode, check=True)  # warm the file cache once
        subprocess.run(taco_encode, check=True)
        print(f"command: {' '.join(command)}   ({args.runs} runs each, taco rows {args.taco_runs}; seconds)")
        print(f"{'what':<52} {'median':>8} {'best':>8}  target")
        for label, argv, target, runs in [
            ("tcodec --help", [*command, "--help"], 0.3, args.runs),
            (f"tcodec encode {images[0].name} -m jpeg -q 75", encode, 0.5, args.runs),
            (f"tcodec decode {out.name} (to PNG)", decode, None, args.runs),
            ('python -c "import torch"', [sys.executable, "-c", "import torch"], None, args.taco_runs),
            (f"tcodec encode {images[0].name} -m taco -q 3", taco_encode, None, args.taco_runs),
            (f"tcodec encode {images[0].name} -m taco -q 3 --caption ...",
             [*taco_encode, "--caption", "a red door in a stone wall"], None, args.taco_runs),
            (f"tcodec decode {taco.name} (to PNG)",
             [*command, "decode", str(taco), "-o", str(Path(tmp) / "taco.png"), "--force"], None, args.taco_runs),
        ]:
            median, best = time_process(argv, runs)
            verdict = "" if target is None else f"<= {target}  {'ok' if median <= target else 'MISSED'}"
            print(f"{label:<52} {median:8.3f} {best:8.3f}  {verdict}")
    print(f"\ncontainer overhead over Pillow's JPEG (same bytes inside), {len(images)} images, bytes")
    print(f"{'quality':>7} {'min':>5} {'max':>5} {'mean':>6}")
    for quality, low, high, mean in overhead_rows(images, [10, 50, 75, 90, 100]):
        print(f"{quality:>7} {low:>5} {high:>5} {mean:>6.1f}")


if __name__ == "__main__":
    main()
