"""A taco encode and decode in fresh processes, with glibc's default handling of freed memory
and with the CLI's (``tcodec.memory.keep_freed_memory``).

    python benchmarks/bench_fresh_process.py [--runs 8] [--images 4] [--image ../shared/data/kodak/kodim01.png]

Each run starts a new Python process per setting (the two alternate), which loads the model
and codes a 64x64 image untimed (weights, first calls), then encodes and decodes the image
--images times: the first time is what one `tcodec encode` / `tcodec decode` costs beyond
process start; the later ones are a folder conversion's images. Medians over the runs of wall
time and of minor page faults (pages the kernel handed over), for the first image and for
the later ones.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

KODAK = Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak"

CHILD = r"""
import json, resource, sys, time
import torch
from PIL import Image
import tcodec
from tcodec.memory import keep_freed_memory

if sys.argv[1] == "kept":
    assert keep_freed_memory(), "glibc's mallopt refused"
torch.set_num_threads(2)
image = Image.open(sys.argv[2]).convert("RGB")
tcodec.decode(tcodec.encode(Image.new("RGB", (64, 64)), "taco", 3))  # load the model, first calls

def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt

rows = []
for _ in range(int(sys.argv[3])):
    before, started = faults(), time.perf_counter()
    data = tcodec.encode(image, "taco", 3)
    encoded, encode_faults = time.perf_counter(), faults()
    tcodec.decode(data)
    rows.append([encoded - started, time.perf_counter() - encoded, encode_faults - before, faults() - encode_faults])
print(json.dumps(rows))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--image", type=Path, default=KODAK / "kodim01.png")
    args = parser.parse_args()
    results: dict[str, list] = {"default": [], "kept": []}
    for _ in range(args.runs):
        for setting in results:
            output = subprocess.run([sys.executable, "-c", CHILD, setting, str(args.image), str(args.images)],
                                    capture_output=True, text=True, check=True).stdout
            results[setting].append(json.loads(output))
    print(f"{args.image.name}, taco q3, 2 threads; medians over {args.runs} fresh processes per setting")
    for setting, runs in results.items():
        for label, rows in (("first image", [run[0] for run in runs]),
                            ("later images", [row for run in runs for row in run[1:]])):
            if not rows:
                continue
            encode, decode, encode_faults, decode_faults = (statistics.median(column) for column in zip(*rows))
            print(f"  {setting:<8} {label:<13} encode {1000 * encode:4.0f} ms ({encode_faults:6.0f} page faults), "
                  f"decode {1000 * decode:4.0f} ms ({decode_faults:6.0f} page faults)")


if __name__ == "__main__":
    main()
