"""Where the time of one taco encode and decode goes, with a packaged (trained) model.

    python benchmarks/bench_taco_stages.py [--model tcodec-taco-v4] [--image ../shared/data/kodak/kodim01.png]

Model loaded once; each stage timed as the best of --repeats runs, 2 threads: the text
encoder (MiniLM), the analysis transform, then per quality the rest of an encode
(hyperprior, entropy-parameter networks, range coder) and a whole decode; the
time inside the range coder (numpy + constriction) is shown beside each. The same again with
the entropy-parameter networks in float32 (for a model whose networks code in float64),
which is not safe to code with (float32 differs between machines) but shows what integer
networks computed in float32 could approach.

Then whole ``tcodec.encode`` / ``tcodec.decode`` calls, median and best of --repeats, two
ways: "warm", memory kept between calls, as in a process that codes a folder; and "cold",
freed memory handed back to the system before each call (``gc.collect`` and glibc's
``malloc_trim``, as ``tcodec bench`` does before it measures), so the call runs on fresh pages
as in a new process.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from pathlib import Path

import torch
from PIL import Image

import tcodec
import tcodec.models.coding as coding
from tcodec.backends.taco import DEFAULT_MODEL, _load, _text
from tcodec.memory import release_free_memory
from tcodec.models import image_to_tensor, pad_to_multiple
from tcodec.models.taco import TacoModel
from tcodec.models.coding import TensorCoder

KODAK = Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak"


class CoderClock:
    """Adds up the seconds spent in TensorCoder._code (the range coder and its numpy)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._code = coding.TensorCoder._code
        clock = self

        def timed(coder, *args, **kwargs):
            started = time.perf_counter()
            try:
                return clock._code(coder, *args, **kwargs)
            finally:
                clock.seconds += time.perf_counter() - started
        coding.TensorCoder._code = timed


def best(run, repeats: int, clock: CoderClock):
    """(result, best wall seconds, coder seconds of that run)."""
    fastest = (None, float("inf"), 0.0)
    for _ in range(repeats):
        clock.seconds = 0.0
        started = time.perf_counter()
        result = run()
        elapsed = time.perf_counter() - started
        if elapsed < fastest[1]:
            fastest = (result, elapsed, clock.seconds)
    return fastest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--image", type=Path, default=KODAK / "kodim01.png")
    parser.add_argument("--qualities", default="2,6")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    loaded = _load(args.model, device)
    model, clock = loaded.model, CoderClock()
    x = pad_to_multiple(image_to_tensor(Image.open(args.image).convert("RGB")), TacoModel.downsampling)
    z_size = (x.shape[-2] // TacoModel.downsampling, x.shape[-1] // TacoModel.downsampling)
    with torch.inference_mode():
        text, text_s, _ = best(lambda: _text(loaded, "a photo", device), args.repeats, clock)
        y, analysis_s, _ = best(lambda: model.analyse(x, text), args.repeats, clock)
        print(f"{args.model} on {args.image.name} ({args.threads} threads, best of {args.repeats}): "
              f"text encoder {1000 * text_s:.0f} ms, analysis transform {1000 * analysis_s:.0f} ms")
        forms = [("", model)]
        if not model.config.integer_bits:  # float64 networks: what float32 would give
            forms.append((" parameter networks in float32", float32_networks(model)))
        for quality in (float(q) for q in args.qualities.split(",")):
            for label, coding_model in forms:
                def encode():
                    coder = TensorCoder.writer()
                    coding_model.compress_analysed(y, coder, quality=quality)
                    return coder.to_bytes()
                data, encode_s, encode_coder_s = best(encode, args.repeats, clock)
                _, decode_s, decode_coder_s = best(
                    lambda: coding_model.decompress(TensorCoder.reader(data), z_size, quality=quality),
                    args.repeats, clock)
                print(f"  q{quality:g}{label}: rest of encode {1000 * encode_s:.0f} ms "
                      f"(range coder {1000 * encode_coder_s:.0f}), decode {1000 * decode_s:.0f} ms "
                      f"(range coder {1000 * decode_coder_s:.0f}), {len(data):,} bytes")
    whole_operations(args)


def float32_networks(model):
    """A copy of ``model`` whose entropy-parameter networks run in float32: NOT a way to code
    (float32 results differ between machines, so another machine may not decode its files);
    its times bound what integer networks computed with float32 arithmetic could reach."""
    fast = copy.deepcopy(model)
    for network in fast.parameter_networks():
        network.float()
    fast._dequantize_z = lambda z_symbols: model._dequantize_z(z_symbols).float()
    return fast


def whole_operations(args) -> None:
    image = Image.open(args.image).convert("RGB")
    options = {"model": args.model}
    for quality in (float(q) for q in args.qualities.split(",")):
        data = tcodec.encode(image, "taco", quality, caption="a photo", options=options)  # untimed: warms up
        for name, before in (("warm", lambda: None), ("cold", release_free_memory)):
            encode_s, decode_s = [], []
            for _ in range(args.repeats):
                before()
                started = time.perf_counter()
                data = tcodec.encode(image, "taco", quality, caption="a photo", options=options)
                encode_s.append(time.perf_counter() - started)
                before()
                started = time.perf_counter()
                tcodec.decode(data)
                decode_s.append(time.perf_counter() - started)
            print(f"  q{quality:g} whole, {name}: encode {_median_best(encode_s)}, decode {_median_best(decode_s)}")


def _median_best(seconds: list[float]) -> str:
    return f"{1000 * statistics.median(seconds):.0f} ms (best {1000 * min(seconds):.0f})"


if __name__ == "__main__":
    main()
