"""``--target-bpp``: how close the search lands, how many encodes it takes, how long.

    python benchmarks/bench_rate_search.py [--limit 6] [--targets 0.25,0.5,1.0] [--threads 2]

For each Kodak image, backend (the packaged taco model and jpeg) and target, runs the real
``tcodec.encode(..., target_bpp=X)`` and reports the bpp of the file it returned (bytes
on disk), the number of encodes the search made, and the wall time of the whole call;
a plain ``encode`` at the chosen quality is timed beside it for scale. "fit" counts the
images whose lowest quality is under the target (the others are an error, not counted).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from PIL import Image

import tcodec
from tcodec.backends import get_backend
from tcodec.backends.base import ImageEncoder
from tcodec.errors import InputError

KODAK = Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak"


def count_encodes(backend: str) -> list[int]:
    """Wrap the backend so every encode at one quality is counted (calls[-1] per search)."""
    codec = get_backend(backend)
    original = codec.encoder
    calls: list[int] = []

    def counting(*args, **kwargs) -> ImageEncoder:
        prepared = original(*args, **kwargs)
        calls.append(0)

        def encode(quality):
            calls[-1] += 1
            return prepared.encode(quality)
        return ImageEncoder(prepared.qualities, encode)
    codec.encoder = counting
    return calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=6)
    parser.add_argument("--targets", default="0.25,0.5,1.0")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    images = [Image.open(p).convert("RGB") for p in sorted(KODAK.glob("kodim*.png"))[: args.limit]]
    targets = [float(t) for t in args.targets.split(",")]
    tcodec.encode(images[0], "taco", 3)  # load the model and the text encoder before timing
    print(f"{len(images)} Kodak images, {args.threads} threads; medians over images (max for bpp)")
    print(f"{'backend':<6} {'target':>6} {'bpp':>6} {'max bpp':>7} {'quality':>7} {'encodes':>7} "
          f"{'search s':>8} {'one encode s':>12} {'fit':>4}")
    for backend in ("taco", "jpeg"):
        calls = count_encodes(backend)
        for target in targets:
            bpps, qualities, seconds, single = [], [], [], []
            for image in images:
                started = time.perf_counter()
                try:
                    data = tcodec.encode(image, backend, target_bpp=target)
                except InputError:  # even the lowest quality is above the target
                    calls.pop()
                    continue
                seconds.append(time.perf_counter() - started)
                quality = tcodec.read_info(data).quality
                started = time.perf_counter()
                tcodec.encode(image, backend, quality)
                single.append(time.perf_counter() - started)
                calls.pop()  # the plain encode's
                bpps.append(8 * len(data) / (image.width * image.height))
                qualities.append(quality)
            if not bpps:
                print(f"{backend:<6} {target:6.2f}  no image fits")
                continue
            print(f"{backend:<6} {target:6.2f} {statistics.median(bpps):6.3f} {max(bpps):7.3f} "
                  f"{statistics.median(qualities):7.2f} {statistics.median(calls):7.0f} "
                  f"{statistics.median(seconds):8.2f} {statistics.median(single):12.2f} {len(bpps):>4}")
            calls.clear()


if __name__ == "__main__":
    main()
