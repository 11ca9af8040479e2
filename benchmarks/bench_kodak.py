"""The committed Kodak comparison: `tcodec bench` on the 24 Kodak images with every
codec this installation has, against CompressAI's published curves.

    python benchmarks/bench_kodak.py [--jobs 1] [extra tcodec bench options]

Writes results/kodak/ (CSV, one JSON per codec, summary.md, bd-rate.md, RD plots,
run.json). The results cache lives outside the repository, in tcodec's cache folder
(~/.cache/tcodec/bench/kodak.jsonl), so a stopped run goes on where it stopped.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tcodec.weights import cache_dir

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
CODECS = "jpeg,webp,avif,jxl,jpeg2000,pillow-jpeg"


def main() -> None:
    """Run the real command, `tcodec bench`, with the committed comparison's arguments."""
    arguments = [
        # relative paths, so the outputs do not record where this checkout lives
        os.path.relpath(SHARED / "data" / "kodak"), "-m", CODECS, "-o", os.path.relpath(ROOT / "results" / "kodak"),
        "--anchors", os.path.relpath(SHARED / "anchors" / "compressai-kodak"),
        "--cache", str(cache_dir() / "bench" / "kodak.jsonl"), *sys.argv[1:],
    ]
    sys.exit(subprocess.run([sys.executable, "-m", "tcodec", "bench", *arguments]).returncode)


if __name__ == "__main__":
    main()
