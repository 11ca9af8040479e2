"""Speed of TACO coding on a Kodak-size image (768x512): networks vs entropy coding.

    python benchmarks/bench_taco.py [--image ../shared/data/kodak/kodim01.png] [--threads 2]

Runs the official configuration (N=192, M=320) and tcodec's CPU configuration
(training/taco-cpu-v1.toml), each with random weights (speed does not depend on the
values) and real range coding, through TacoModel.compress/decompress. "entropy coding"
is the time spent inside the coder (numpy + constriction); "networks" is the rest.
"vs ideal" compares the stream's real size with -log2 P of its symbols under the frozen
tables (random weights give an unrealistic rate; the ratio is what matters).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import tomllib
import warnings
from pathlib import Path

warnings.filterwarnings("ignore", category=FutureWarning)

import torch  # noqa: E402
from PIL import Image  # noqa: E402

from tcodec.models import image_to_tensor, pad_to_multiple  # noqa: E402
from tcodec.models.coding import TensorCoder  # noqa: E402
from tcodec.models.taco import TacoConfig, TacoModel  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_IMAGE = ROOT.parent / "shared" / "data" / "kodak" / "kodim01.png"


class TimedCoder(TensorCoder):
    """A TensorCoder that adds up the time spent in entropy coding."""

    seconds = 0.0

    def _code(self, *args):
        started = time.perf_counter()
        try:
            return super()._code(*args)
        finally:
            self.seconds += time.perf_counter() - started


def prepared(config: TacoConfig) -> TacoModel:
    torch.manual_seed(0)
    model = TacoModel(config).eval()
    model.update(force=True)
    model.prepare_for_coding()
    return model


def run(model: TacoModel, x: torch.Tensor, text: torch.Tensor, repeats: int) -> dict:
    rows = []
    for _ in range(repeats):
        writer = TimedCoder.writer()
        started = time.perf_counter()
        with torch.inference_mode():
            model.compress(x, text, writer, quality=3.0 if model.config.rates else None)
        data = writer.to_bytes()
        encode_s = time.perf_counter() - started
        reader = TimedCoder.reader(data)
        started = time.perf_counter()
        with torch.inference_mode():
            model.decompress(reader, (x.shape[2] // 64, x.shape[3] // 64), quality=3.0 if model.config.rates else None)
        decode_s = time.perf_counter() - started
        rows.append((encode_s, writer.seconds, decode_s, reader.seconds, len(data), writer.stream.ideal_bits / 8))
    keys = ["encode_s", "encode_coding_s", "decode_s", "decode_coding_s", "bytes", "ideal_bytes"]
    return {key: statistics.median(r[i] for r in rows) for i, key in enumerate(keys)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", type=Path, default=DEFAULT_IMAGE)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if not args.image.is_file():
        sys.exit(f"no image at {args.image}; give --image")
    x = pad_to_multiple(image_to_tensor(Image.open(args.image).convert("RGB")), 64)
    own = tomllib.loads((ROOT / "training" / "taco-cpu-v1.toml").read_text())["model"]
    configs = {"official (N=192, M=320)": TacoConfig(), "tcodec CPU (taco-cpu-v1)": TacoConfig.from_dict(own)}
    print(f"{args.image.name} {x.shape[3]}x{x.shape[2]}, {args.threads} threads, median of {args.repeats}, "
          "random weights, seconds")
    print(f"{'configuration':<26} {'encode':>7} {'(coding)':>9} {'decode':>7} {'(coding)':>9} {'params':>8} "
          f"{'bytes':>8} {'vs ideal':>9}")
    for label, config in configs.items():
        model = prepared(config)
        text = torch.randn(1, 38, config.text_dim)
        result = run(model, x, text, args.repeats)
        params = sum(p.numel() for p in model.parameters()) / 1e6
        excess = 100 * (result["bytes"] / result["ideal_bytes"] - 1)
        print(f"{label:<26} {result['encode_s']:7.2f} {result['encode_coding_s']:9.3f} {result['decode_s']:7.2f} "
              f"{result['decode_coding_s']:9.3f} {params:7.1f}M {result['bytes']:8.0f} {excess:+8.2f}%")


if __name__ == "__main__":
    main()
