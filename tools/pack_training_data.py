"""Pack the training images small enough to travel to a machine that cannot read ../shared.

    python tools/pack_training_data.py OUT [--short-side 208] [--long-side 272] [--quality 80]

Each image of ../shared/data/train is downscaled once (Lanczos) to the given short side,
centre-cropped to at most the given long side, and stored as lossy WebP. Names keep their
folder, so the packed set is the same images in the same order; captions are not copied.
The defaults made the set that tcodec-taco-v2's GPU stage trained on: 17.7 MiB, small enough
to travel with a device call (64 MiB in all). At quality 80 the WebP error probably limits how
well a model trained on it learns the highest rates (training/MODEL_CARD.md).
Kodak is never read.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image

from tcodec.training import find_images

TRAIN = Path(__file__).resolve().parents[2] / "shared" / "data" / "train"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--short-side", type=int, default=208)
    parser.add_argument("--long-side", type=int, default=272)
    parser.add_argument("--quality", type=int, default=80)
    args = parser.parse_args()
    total = 0
    files = find_images([str(TRAIN)])
    for path in files:
        image = Image.open(path).convert("RGB")
        scale = args.short_side / min(image.size)
        if scale < 1:
            image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS)
        width, height = image.size
        left, top = max(0, width - args.long_side) // 2, max(0, height - args.long_side) // 2
        image = image.crop((left, top, left + min(width, args.long_side), top + min(height, args.long_side)))
        target = (args.out / path.relative_to(TRAIN)).with_suffix(".webp")
        target.parent.mkdir(parents=True, exist_ok=True)
        image.save(target, quality=args.quality, method=4)
        total += target.stat().st_size
    print(f"{len(files)} images, {total / 2**20:.1f} MiB in {args.out}")


if __name__ == "__main__":
    main()
