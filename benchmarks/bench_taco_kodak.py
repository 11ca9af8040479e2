"""tcodec's own TACO weights on the 24 Kodak images, with JPEG and WebP in the same run.

    python benchmarks/bench_taco_kodak.py                      # the default packaged model
    python benchmarks/bench_taco_kodak.py --model tcodec-taco-v1               # an older one
    python benchmarks/bench_taco_kodak.py --config training/taco-cpu-v2.toml   # the latest checkpoint
    python benchmarks/bench_taco_kodak.py --limit 2                            # a quick look

Runs the real `tcodec bench` (real .tcz files, decoded pixels) three times, sharing one
results cache: taco at qualities 1-8 with the Kodak captions (../shared/data/kodak/
captions.jsonl) beside JPEG and WebP, BD-rates against JPEG; the same against WebP; and
taco with empty text, to show what the caption does; then BD-rates against the published
hyperprior curves (vs-hyperprior.md). Outputs go to results/taco-kodak/.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from tcodec.backends.taco import DEFAULT_MODEL
from tcodec.training import export
from tcodec.weights import cache_dir

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def bench(*arguments: str, models: str) -> None:
    kodak = os.path.relpath(SHARED / "data" / "kodak")  # relative: outputs do not record this checkout's place
    command = [sys.executable, "-m", "tcodec", "bench", kodak, *arguments]
    print("$", " ".join(command[2:]), flush=True)
    result = subprocess.run(command, env={**os.environ, "TCODEC_MODELS": models})
    if result.returncode:
        sys.exit(result.returncode)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"model name or folder (default {DEFAULT_MODEL})")
    parser.add_argument("--config", type=Path, help="export this training config's checkpoint and use it")
    parser.add_argument("--jobs", default="1")
    args, extra = parser.parse_known_args()  # anything else goes to tcodec bench, e.g. --limit 2
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if args.config:

            model = str(export(args.config, "checkpoint", Path(tmp) / "checkpoint"))
        out = ROOT / "results" / "taco-kodak"
        common = ["-q", "taco=1-8", "-O", f"taco.model={model}", "-j", args.jobs, *extra,
                  "--cache", str(cache_dir() / "bench" / "kodak.jsonl")]  # shared with bench_kodak.py
        anchors = ["--anchors", str(SHARED / "anchors" / "compressai-kodak")]
        captions = ["--captions", str(SHARED / "data" / "kodak" / "captions.jsonl")]
        bench("-m", "taco,jpeg,webp", *common, *captions, *anchors, "--reference", "jpeg", "-o", str(out / "vs-jpeg"),
              models=model)
        bench("-m", "taco,jpeg,webp", *common, *captions, *anchors, "--reference", "webp", "-o", str(out / "vs-webp"),
              "--no-plots", models=model)
        # the captioned taco curve of the first run as an anchor: BD-rate with captions vs empty text
        captioned = Path(tmp) / "captioned"
        captioned.mkdir()
        curve = json.loads((out / "vs-jpeg" / "taco.json").read_text())
        curve["name"] = "taco-with-captions"
        (captioned / "taco-with-captions.json").write_text(json.dumps(curve))
        bench("-m", "taco", *common, "--anchors", str(captioned), "--reference", "taco",
              "-o", str(out / "no-caption"), "--no-plots", models=model)
    against_published(out / "vs-jpeg" / "taco.json", out / "vs-hyperprior.md")


def against_published(taco_json: Path, report: Path) -> None:
    """BD-rate (PSNR) of the taco curve against the published learned-codec curves."""
    from tcodec.bench.bdrate import Curve, bd_quality, bd_rate

    def curve(path: Path) -> Curve:
        results = json.loads(path.read_text())["results"]
        points = [(b, q) for b, q in zip(results["bpp"], results["psnr-rgb"]) if b <= 2.0]  # as tcodec bench
        return Curve([b for b, _ in points], [q for _, q in points])

    taco = curve(taco_json)
    lines = ["# taco against published learned codecs (Kodak, PSNR-RGB, PCHIP, points up to 2 bpp)", "",
             "| reference (published) | BD-rate of taco (%) | BD-PSNR of taco (dB) |", "|---|---:|---:|"]
    for name in ("paper-bmshj2018-hyperprior", "compressai-bmshj2018-hyperprior_mse_cpu",
                 "compressai-bmshj2018-factorized_mse_cpu"):
        reference = curve(SHARED / "anchors" / "compressai-kodak" / f"{name}.json")
        lines.append(f"| {name} | {bd_rate(reference, taco):+.1f} | {bd_quality(reference, taco):+.2f} |")
    report.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
