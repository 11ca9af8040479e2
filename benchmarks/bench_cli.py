"""Start-up of the `tcodec` command (jpeg and taco), and the container's overhead.

    python benchmarks/bench_cli.py [--kodak ../shared/data/kodak] [--runs 15] [--taco-runs 5]

Times are whole processes (wall clock, median and best of --runs; --taco-runs for the
taco rows), as a user sees them; `python -c "import torch"` is the floor a taco process
cannot go below, less the interpreter's teardown of torch at exit, which `tcodec` skips
(`tcodec.cli.run`; the row with os._exit shows it). The split of a taco process: fresh
processes that time, in order, the CLI's imports, torch's, the model's load, the text
encoder's (encode), the coding of kodim01 and the PNG write (decode); "the rest" is the whole process's median less these (the
interpreter's start, argument parsing, reading and writing files, exit). Targets (issue 19):
taco encode <= 2.0 s, decode <= 1.5 s.

Overhead is the .tcz file's size minus the JPEG that Pillow writes with the same settings,
for every image and quality. Targets (issue 2): --help <= 0.3 s,
encode of kodim01 at q75 <= 0.5 s, overhead <= 32 bytes.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

import tcodec
from tcodec.format.container import unpack

DEFAULT_KODAK = Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak"


def tcodec_command() -> list[str]:
    script = shutil.which("tcodec", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "tcodec"]


def time_process(args: list[str], runs: int) -> tuple[float, float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(args, check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times), min(times)


# One taco encode or decode in a fresh process, timed stage by stage (what `tcodec encode` /
# `tcodec decode` do, through the same functions).
SPLIT_CHILD = r"""
import io, json, sys, time
started = time.perf_counter()
stages = {}
def stage(name):
    global started
    now = time.perf_counter()
    stages[name] = now - started
    started = now
import tcodec.cli
from tcodec.memory import keep_freed_memory
keep_freed_memory()  # as the command does
stage("imports: tcodec's CLI")
import torch
from tcodec.backends import taco
stage("imports: torch, taco backend")
from PIL import Image
import tcodec
from tcodec.format.container import unpack
from tcodec.weights import find_model
data = open(sys.argv[2], "rb").read()
# the name (encode) or folder (decode, from the file's hash) the backend loads the model by
model = taco.DEFAULT_MODEL if sys.argv[1] == "encode" else str(find_model(unpack(data).model_hash, "taco"))
loaded = taco._load(model, torch.device("cpu"))
stage("model load")
if sys.argv[1] == "encode":
    from tcodec.models.text import text_encoder
    text_encoder(loaded.config["text_encoder"])._load()
    stage("text encoder load")
    tcodec.encode(Image.open(io.BytesIO(data)).convert("RGB"), "taco", 3)
    stage("coding")
else:
    image = tcodec.decode(data)
    stage("coding")
    image.save(io.BytesIO(), "PNG")
    stage("PNG write")
print(json.dumps(stages))
"""


def split_rows(kind: str, path: Path, runs: int) -> dict[str, float]:
    """Median seconds of each stage of a taco ``kind`` (encode or decode) of ``path``."""
    samples = [json.loads(subprocess.run([sys.executable, "-c", SPLIT_CHILD, kind, str(path)], check=True,
                                         capture_output=True, text=True).stdout) for _ in range(runs)]
    return {name: statistics.median(sample[name] for sample in samples) for name in samples[0]}


def overhead_rows(images: list[Path], qualities: list[int]) -> list[tuple[int, int, int, float]]:
    rows = []
    for quality in qualities:
        overheads = []
        for path in images:
            image = Image.open(path).convert("RGB")
            reference = io.BytesIO()
            image.save(reference, "JPEG", quality=quality, optimize=True, subsampling=2)
            data = tcodec.encode(image, "jpeg", quality)
            assert unpack(data).streams[0] == reference.getvalue(), "payload differs from Pillow's JPEG"
            overheads.append(len(data) - len(reference.getvalue()))
        rows.append((quality, min(overheads), max(overheads), statistics.mean(overheads)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kodak", type=Path, default=DEFAULT_KODAK)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--taco-runs", type=int, default=5)
    args = parser.parse_args()
    images = sorted(args.kodak.glob("kodim*.png"))
    if not images:
        sys.exit(f"no Kodak images in {args.kodak}; give --kodak DIR")
    command = tcodec_command()
    with tempfile.TemporaryDirectory() as tmp:
        out, taco = Path(tmp) / "out.tcz", Path(tmp) / "taco.tcz"
        encode = [*command, "encode", str(images[0]), "-m", "jpeg", "-q", "75", "-o", str(out), "--force"]
        decode = [*command, "decode", str(out), "-o", str(Path(tmp) / "out.png"), "--force"]
        taco_encode = [*command, "encode", str(images[0]), "-m", "taco", "-q", "3", "-o", str(taco), "--force"]
        subprocess.run(encode, check=True)  # warm the file cache once
        subprocess.run(taco_encode, check=True)
        print(f"command: {' '.join(command)}   ({args.runs} runs each, taco rows {args.taco_runs}; seconds)")
        print(f"{'what':<52} {'median':>8} {'best':>8}  target")
        whole = {}
        for label, argv, target, runs in [
            ("tcodec --help", [*command, "--help"], 0.3, args.runs),
            (f"tcodec encode {images[0].name} -m jpeg -q 75", encode, 0.5, args.runs),
            (f"tcodec decode {out.name} (to PNG)", decode, None, args.runs),
            ('python -c "import torch"', [sys.executable, "-c", "import torch"], None, args.taco_runs),
            ('python -c "import torch, os; os._exit(0)"', [sys.executable, "-c", "import torch, os; os._exit(0)"],
             None, args.taco_runs),
            (f"tcodec encode {images[0].name} -m taco -q 3", taco_encode, 2.0, args.taco_runs),
            (f"tcodec encode {images[0].name} -m taco -q 3 --caption ...",
             [*taco_encode, "--caption", "a red door in a stone wall"], None, args.taco_runs),
            (f"tcodec decode {taco.name} (to PNG)",
             [*command, "decode", str(taco), "-o", str(Path(tmp) / "taco.png"), "--force"], 1.5, args.taco_runs),
        ]:
            median, best = time_process(argv, runs)
            whole[label] = median
            verdict = "" if target is None else f"<= {target}  {'ok' if median <= target else 'MISSED'}"
            print(f"{label:<52} {median:8.3f} {best:8.3f}  {verdict}")
        splits = {kind: split_rows(kind, path, args.taco_runs) for kind, path in [("encode", images[0]),
                                                                                  ("decode", taco)]}
    totals = {"encode": whole[f"tcodec encode {images[0].name} -m taco -q 3"],
              "decode": whole[f"tcodec decode {taco.name} (to PNG)"]}
    print(f"\nsplit of a taco process, {images[0].name} at q3 (medians of {args.taco_runs} fresh processes; seconds)")
    print(f"{'stage':<32} {'encode':>8} {'decode':>8}")
    names = list(dict.fromkeys([*splits["encode"], *splits["decode"]]))
    for name in names:
        cells = [f"{splits[kind][name]:8.3f}" if name in splits[kind] else f"{'-':>8}" for kind in totals]
        print(f"{name:<32} {' '.join(cells)}")
    rest = [totals[kind] - sum(splits[kind].values()) for kind in totals]
    print(f"{'the rest':<32} {rest[0]:8.3f} {rest[1]:8.3f}")
    print(f"{'whole process':<32} {totals['encode']:8.3f} {totals['decode']:8.3f}")
    print(f"\ncontainer overhead over Pillow's JPEG (same bytes inside), {len(images)} images, bytes")
    print(f"{'quality':>7} {'min':>5} {'max':>5} {'mean':>6}")
    for quality, low, high, mean in overhead_rows(images, [10, 50, 75, 90, 100]):
        print(f"{quality:>7} {low:>5} {high:>5} {mean:>6.1f}")


if __name__ == "__main__":
    main()
