"""The offline perceptual metrics on one Kodak image through Pillow JPEG: their values
(to compare with published ones) and their cost per image.

    python benchmarks/bench_metrics.py [--image ../shared/data/kodak/kodim23.png]

On kodim23 at JPEG q90/50/10, when tcodec adopted them: ST-LPIPS (alex) 0.0043 / 0.0199 /
0.1348 (as ../shared/docs/DESIGN.md records), SSIMULACRA 2 85.09 / 64.33 / -15.81,
ColorVideoVDP 9.96 / 9.79 / 8.46 JOD; a
different result means a different package, weights, preprocessing or implementation.
"""

from __future__ import annotations

import argparse
import io
import time
from pathlib import Path

import numpy as np
from PIL import Image

from tcodec.bench.metrics import METRICS, metric_versions, unavailable_reason

DEFAULT_IMAGE = Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak" / "kodim23.png"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", type=Path, default=DEFAULT_IMAGE)
    parser.add_argument("--qualities", default="90,50,10")
    args = parser.parse_args()
    reference = Image.open(args.image).convert("RGB")
    usable = [m for m in METRICS.values() if m.scope == "image" and unavailable_reason(m) is None]
    print(f"{args.image.name} {reference.width}x{reference.height}; versions {metric_versions(usable)}")
    for metric in usable:  # the first call of each builds its network: not timed
        metric.compute(np.asarray(reference), np.asarray(reference))
    for quality in map(int, args.qualities.split(",")):
        buffer = io.BytesIO()
        reference.save(buffer, "JPEG", quality=quality)
        decoded = np.asarray(Image.open(buffer).convert("RGB"))
        cells = []
        for metric in usable:
            started = time.perf_counter()
            value = metric.compute(np.asarray(reference), decoded)
            cells.append(f"{metric.key} {value:.4f} ({(time.perf_counter() - started) * 1000:.0f} ms)")
        print(f"JPEG q{quality:<3} {len(buffer.getvalue()) * 8 / (reference.width * reference.height):.3f} bpp  "
              + "  ".join(cells))


if __name__ == "__main__":
    main()
