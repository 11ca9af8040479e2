"""Large images through taco: whole up to 16 MiP, in 2048x2048 tiles beyond.

    python benchmarks/bench_taco_large.py [--quality 4] [--threads 2]

Makes photos of 12 MP (4096x3072, coded whole) and 24 MP (6144x4096, 3x2 tiles) by
Lanczos-upscaling Kodak images (kodim01..), encodes each with the default taco model and
decodes it, each step in a fresh process so that its peak memory (max RSS) is its own.
Prints wall time (loading the models included), peak memory, bytes, bpp and PSNR against
the source; an upscaled photo has less detail than a real one of that size, so read its
PSNR only as a check that the tiles decode in place.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

from tcodec.cli.demo import psnr

KODAK = Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak"
SIZES = {"12 MP, whole": (4096, 3072), "24 MP, 6 tiles": (6144, 4096)}

STEP = """
import json, resource, sys, time, torch
torch.set_num_threads(int(sys.argv[4]))
import tcodec
start = time.perf_counter()
if sys.argv[1] == "encode":
    data = tcodec.encode(sys.argv[2], "taco", float(sys.argv[5]))
    open(sys.argv[3], "wb").write(data)
else:
    tcodec.decode(sys.argv[2]).save(sys.argv[3])
seconds = time.perf_counter() - start
print(json.dumps({"s": seconds, "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def step(*arguments: str) -> dict:
    result = subprocess.run([sys.executable, "-c", STEP, *arguments], capture_output=True, text=True)
    if result.returncode:
        sys.exit(result.stderr[-2000:])
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quality", default="4")
    parser.add_argument("--threads", default="2")
    args = parser.parse_args()
    print(f"{'image':18} {'enc s':>6} {'enc MiB':>8} {'dec s':>6} {'dec MiB':>8} {'bytes':>9} {'bpp':>6} {'PSNR':>6}")
    with tempfile.TemporaryDirectory() as tmp:
        for i, (label, size) in enumerate(SIZES.items()):
            source = Path(tmp) / f"source{i}.png"
            Image.open(KODAK / f"kodim{i + 1:02d}.png").convert("RGB").resize(size, Image.Resampling.LANCZOS).save(source)
            coded, decoded = Path(tmp) / f"{i}.tcz", Path(tmp) / f"{i}.png"
            encode = step("encode", str(source), str(coded), args.threads, args.quality)
            decode = step("decode", str(coded), str(decoded), args.threads, args.quality)
            size_bytes = coded.stat().st_size
            bpp = 8 * size_bytes / (size[0] * size[1])
            quality = psnr(Image.open(source).convert("RGB"), Image.open(decoded).convert("RGB"))
            print(f"{label:18} {encode['s']:6.1f} {encode['peak_mib']:8.0f} {decode['s']:6.1f} {decode['peak_mib']:8.0f} "
                  f"{size_bytes:9d} {bpp:6.3f} {quality:6.2f}")


if __name__ == "__main__":
    main()
