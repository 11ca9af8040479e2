"""What storing tcodec's taco weights as float16 costs: the same checkpoint exported both ways.

    python benchmarks/bench_float16.py [--config training/taco-cpu-v1.toml] [--limit 6]

Exports the config's checkpoint as float32 and as float16 (what ships), encodes the first
Kodak images at qualities 1, 4 and 8 with each, and prints bpp (bytes on disk) and RGB PSNR
of the decoded pixels, averaged over the images.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

import tcodec
from tcodec.cli.demo import psnr
from tcodec.training import export

ROOT = Path(__file__).resolve().parents[1]
KODAK = ROOT.parent / "shared" / "data" / "kodak"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "training" / "taco-cpu-v1.toml")
    parser.add_argument("--limit", type=int, default=6)
    args = parser.parse_args()
    images = [Image.open(p).convert("RGB") for p in sorted(KODAK.glob("kodim*.png"))[: args.limit]]
    with tempfile.TemporaryDirectory() as tmp:
        for half in (False, True):
            folder = export(args.config, "float16" if half else "float32", Path(tmp) / str(half), half=half)
            size = (folder / "model.safetensors").stat().st_size
            print(f"{'float16' if half else 'float32'}: {size / 2**20:.1f} MiB")
            for quality in (1, 4, 8):
                bpp, quality_db = [], []
                for image in images:
                    data = tcodec.encode(image, "taco", quality, options={"model": str(folder)})
                    decoded = tcodec.decode(data, options={"model": str(folder)})
                    bpp.append(8 * len(data) / (image.width * image.height))
                    quality_db.append(psnr(image, decoded))
                print(f"  q{quality}: bpp {np.mean(bpp):.5f}  PSNR {np.mean(quality_db):.3f} dB")


if __name__ == "__main__":
    main()
