"""The faster forms of five taco layers against the forms they replace, same inputs.

    python benchmarks/bench_taco_layers.py [--model tcodec-taco-v3] [--repeats 30]

With a packaged model's own layers, at the sizes a 768x512 image gives them, interleaved
runs, median and best: hyper synthesis's last layer in float64 as a convolution
(``StrideOneTransposedConv``) and as torch's transposed convolution, and in float32 against
float64 (what the float64 that coding needs costs); the last slice's local
context in float64 from the anchor taps (``checkerboard_context``) and as the dense 5x5
convolution; the extractor at 1/8 with its attention folded (no gradient) and as trained;
the synthesis's last layer (64 to 3 channels) as a phase convolution
(``PhaseTransposedConv``) and as torch's transposed convolution; the analysis transform's
first residual block (at 1/2) added into its input in bands
(``add_in_bands_``, into a copy of the input made before the clock starts) and run whole, both
with memory kept and with freed memory handed back before each run (fresh pages, as in a new
process).
Each pair is also checked to agree.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
import torch.nn.functional as F

from tcodec.memory import release_free_memory
from tcodec.models.layers import Extractor, PhaseTransposedConv, ResidualBottleneck, checkerboard, checkerboard_context, pack
from tcodec.weights import load_model


def compare(name: str, new, old, repeats: int, tolerance: float, before=lambda: None) -> None:
    """Times ``new`` and ``old`` alternately, ``before`` (untimed) ahead of each run."""
    before()
    first = new()
    before()
    difference = (first - old()).abs().max().item()
    assert difference <= tolerance, f"{name}: the two forms differ by {difference}"
    seconds = {"new": [], "old": []}
    for _ in range(repeats):
        for form, run in (("new", new), ("old", old)):
            before()
            started = time.perf_counter()
            run()
            seconds[form].append(time.perf_counter() - started)
    new_s, old_s = seconds["new"], seconds["old"]
    print(f"{name}: {1000 * statistics.median(new_s):.1f} ms (best {1000 * min(new_s):.1f}) against "
          f"{1000 * statistics.median(old_s):.1f} ms (best {1000 * min(old_s):.1f}); max difference {difference:.1e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # v3: the last model whose entropy-parameter networks code in float64 (v4's are integer)
    parser.add_argument("--model", default="tcodec-taco-v3")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(args.model).model  # parameter networks in float64, as when coding
    generator = torch.Generator().manual_seed(0)
    height, width = 512 // 16, 768 // 16  # the latent's size

    last = model.h_s.increase[-1]
    hidden = torch.rand(1, last.in_channels, height, width, generator=generator, dtype=torch.float64)
    last_float32, hidden_float32 = copy.deepcopy(last).float(), hidden.float()
    local = model.local_context[-1]
    y_hat = torch.randn(1, local.in_channels, height, width, generator=generator, dtype=torch.float64) * 4
    anchor, _ = checkerboard(height, width)
    extractor = next(layer for layer in model.g_a.analysis_transform if isinstance(layer, Extractor))
    text = torch.randn(1, 38, extractor.cross_attn.embed_dim, generator=generator)
    features = torch.randn(1, extractor.image_feature_dim_proj.in_features, 512 // 8, 768 // 8,
                           generator=generator).contiguous(memory_format=torch.channels_last)
    block = next(layer for layer in model.g_a.analysis_transform if isinstance(layer, ResidualBottleneck))
    activation = torch.randn(1, block.branch[0].in_channels, 512 // 2, 768 // 2,
                             generator=generator).contiguous(memory_format=torch.channels_last)

    synthesis_last = model.g_s.synthesis_transform[-1]
    assert isinstance(synthesis_last, PhaseTransposedConv)

    print(f"{args.model}, {args.threads} threads, {args.repeats} interleaved runs each")
    with torch.no_grad():
        compare(f"hyper synthesis's last layer, float64 {tuple(hidden.shape)}", lambda: last(hidden),
                lambda: F.conv_transpose2d(hidden, last.weight, last.bias, padding=last.padding),
                args.repeats, 1e-9)
        compare(f"hyper synthesis's last layer {tuple(hidden.shape)}, float32 (not for coding: float32 differs "
                "between machines) against float64", lambda: last_float32(hidden_float32), lambda: last(hidden), args.repeats, 1e-3)
        compare(f"local context of the last slice, float64 {tuple(y_hat.shape)}",
                lambda: checkerboard_context(local, pack(y_hat, anchor=True)),
                lambda: pack(local(torch.where(anchor, y_hat, 0.0)), anchor=False), args.repeats, 1e-9)
        compare(f"synthesis's last layer, float32 {tuple(activation.shape)}", lambda: synthesis_last(activation),
                lambda: F.conv_transpose2d(activation, synthesis_last.weight, synthesis_last.bias, stride=2,
                                           padding=2, output_padding=1), args.repeats, 1e-4)
        held = {}

        def copy_input(fresh_pages: bool):
            def before():  # the block's input is a layer's output: already in memory
                held["input"] = activation.clone()
                if fresh_pages:
                    release_free_memory()
            return before

        for pages, fresh_pages in (("memory kept", False), ("fresh pages", True)):
            compare(f"first residual block, float32 {tuple(activation.shape)}, {pages}",
                    lambda: block.add_in_bands_(held["input"]), lambda: block(held["input"]),
                    args.repeats, 1e-4, copy_input(fresh_pages))

    def folded():
        with torch.no_grad():
            return extractor(text, features)

    with torch.enable_grad():  # the weights need no gradient: enabled only selects the trained form
        compare(f"extractor at 1/8, float32 {tuple(features.shape)}", folded, lambda: extractor(text, features),
                args.repeats, 1e-3)


if __name__ == "__main__":
    main()
