"""Encode and decode times of packaged taco models side by side, in one process.

    python benchmarks/bench_taco_models.py                                  # v4, p5 and p4, 4 Kodak images
    python benchmarks/bench_taco_models.py --models tcodec-taco-v3,tcodec-taco-v4 --repeats 5
    python benchmarks/bench_taco_models.py --models tcodec-taco-p5 --quality 2   # near v4's q3 rate

Each model is loaded once (a warm-up encode and decode first); then, for each image, the
best of ``--repeats`` whole ``tcodec.encode`` / ``tcodec.decode`` calls at ``--quality`` (3), the
models taking turns so that a slower minute of the machine hits both. Decoding time grows with
the bits decoded, so a model that spends more bits per quality is best compared at a quality
of equal rate (the mean bpp is printed).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from PIL import Image

import tcodec

KODAK = Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak"


def best_of(repeats: int, call) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = call()
        times.append(time.perf_counter() - started)
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="tcodec-taco-v4,tcodec-taco-p5,tcodec-taco-p4")
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quality", type=float, default=3.0)
    args = parser.parse_args()
    models = args.models.split(",")
    images = sorted(KODAK.glob("kodim*.png"))[: args.images]
    for model in models:  # load and warm up
        tcodec.decode(tcodec.encode(images[0], "taco", args.quality, options={"model": model}))
    totals = {model: [0.0, 0.0, 0.0] for model in models}
    print(f"{'image':<12}" + "".join(f"{m + ' enc/dec ms':>30}" for m in models))
    for image in images:
        row = f"{image.name:<12}"
        with Image.open(image) as opened:
            pixels = opened.width * opened.height
        for model in models:
            encode, data = best_of(args.repeats, lambda: tcodec.encode(image, "taco", args.quality,
                                                                         options={"model": model}))
            decode, _ = best_of(args.repeats, lambda: tcodec.decode(data))
            totals[model][0] += encode
            totals[model][1] += decode
            totals[model][2] += 8 * len(data) / pixels
            row += f"{1000 * encode:>22.0f} / {1000 * decode:<5.0f}"
        print(row)
    print(f"{'mean':<12}" + "".join(f"{1000 * e / len(images):>22.0f} / {1000 * d / len(images):<5.0f}"
                                    for e, d, _ in totals.values()))
    print(f"{'mean bpp':<12}" + "".join(f"{bpp / len(images):>30.3f}" for _, _, bpp in totals.values()))


if __name__ == "__main__":
    main()
