"""What the scale table costs: the same taco weights coded under two scale tables.

    python benchmarks/bench_scale_table.py                         # tcodec-taco-v2, 24 Kodak images
    python benchmarks/bench_scale_table.py --table 0.11,64,256 --limit 6

Every scale is coded under the next entry of the model's scale table
(TacoConfig.scale_table). This re-freezes a model's CDFs over another table (in a
temporary folder; the networks stay as they are), encodes the Kodak images at every
integer quality with both, and prints the real stream sizes: the symbols, and so the
decoded pixels, are the same, which it checks on the first image at each quality.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
from PIL import Image

from tcodec.models import image_to_tensor, pad_to_multiple
from tcodec.models.coding import TensorCoder
from tcodec.models.text import text_encoder
from tcodec.models.taco_weights import save_model
from tcodec.weights import load_model

KODAK = Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak"


def retabled(loaded, table: tuple[float, float, int], folder: Path) -> Path:
    """The loaded model with its Gaussian CDFs frozen over ``table`` (all else bit-identical)."""
    from tcodec.models.taco import TacoModel

    model = TacoModel(replace(loaded.model.config, scale_table=table))
    model.load_state_dict(loaded.model.state_dict())
    save_model(model.float().eval(), folder, loaded.config["text_encoder"], half=True,
               **{k: v for k, v in loaded.config.items() if k not in ("architecture", "taco", "text_encoder")})
    return folder


def sizes(model, ys, qualities) -> tuple[list[int], float]:
    totals, started = [0] * len(qualities), time.perf_counter()
    for i, quality in enumerate(qualities):
        for y in ys:
            coder = TensorCoder.writer()
            model.compress_analysed(y, coder, quality=quality)
            totals[i] += len(coder.to_bytes())
    return totals, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tcodec-taco-v2")
    parser.add_argument("--table", default="0.11,64,160", help="smallest,largest,entries (default 0.11,64,160)")
    parser.add_argument("--limit", type=int, default=24)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    low, high, levels = args.table.split(",")
    table = (float(low), float(high), int(levels))
    images = sorted(KODAK.glob("kodim*.png"))[: args.limit]
    with tempfile.TemporaryDirectory() as tmp, torch.inference_mode():
        loaded = load_model(args.model)
        base = loaded.model
        other = load_model(str(retabled(loaded, table, Path(tmp)))).model
        text = text_encoder(loaded.config["text_encoder"]).encode([""])
        xs = [pad_to_multiple(image_to_tensor(Image.open(f).convert("RGB")), 64) for f in images]
        ys = [base.analyse(x, text) for x in xs]
        qualities = list(range(1, base.config.rates + 1))
        for quality in qualities:  # same symbols: the same decoded image
            streams = []
            for model in (base, other):
                coder = TensorCoder.writer()
                model.compress_analysed(ys[0], coder, quality=quality)
                streams.append(coder.to_bytes())
            decoded = [model.decompress(TensorCoder.reader(s), tuple(d // 64 for d in xs[0].shape[-2:]), quality)
                       for model, s in zip((base, other), streams)]
            assert torch.equal(decoded[0], decoded[1]), f"q{quality}: the tables changed the decoded image"
        before, time_before = sizes(base, ys, qualities)
        after, time_after = sizes(other, ys, qualities)
    pixels = sum(x.shape[-1] * x.shape[-2] for x in xs)  # 768x512 Kodak needs no padding
    print(f"{args.model}, {len(images)} Kodak images, stream bytes (no header), same decoded pixels")
    print(f"{'quality':>8} {'table ' + str(base.config.scale_table):>28} {'table ' + str(table):>28} {'change':>8}")
    for quality, a, b in zip(qualities, before, after):
        print(f"{quality:>8} {a:>16,} ({8 * a / pixels:.4f} bpp) {b:>16,} ({8 * b / pixels:.4f} bpp) {100 * (b / a - 1):+7.2f}%")
    calls = len(qualities) * len(ys)
    print(f"coding time per image (hyperprior, entropy parameters, range coder): "
          f"{1000 * time_before / calls:.0f} ms vs {1000 * time_after / calls:.0f} ms")


if __name__ == "__main__":
    main()
