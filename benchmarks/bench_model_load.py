"""What each packaged model costs on disk and to load: its files' bytes in the package
against the model's own, how it is stored (whole, in pieces, xz, differences), and the
time to read its weights file (assembled and checked against its sha256) and to load the
whole model ready to code (`tcodec.weights.load_model`, as an encode or decode does).

    python benchmarks/bench_model_load.py [--runs 3]

Times are the median of --runs in this process (files in the page cache, as for a user
who codes more than once); a model's first load in a process also builds it, which is in
the load column.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from tcodec import weights
from tcodec.bench.report import markdown_table

WEIGHTS_FILE = "model.safetensors"


def storage(folder) -> str:
    recipe = folder / (WEIGHTS_FILE + weights.PIECES_SUFFIX)
    if not recipe.is_file():
        return "whole"
    pieces = json.loads(recipe.read_text(encoding="utf-8"))["pieces"]
    kinds = ["pieces"]
    if any(piece[0] for piece in pieces):
        kinds.append("shared ranges")
    if any(len(piece) == 5 for piece in pieces):
        kinds.append("differences")
    if (folder / (WEIGHTS_FILE + weights.OWN_SUFFIX + weights.XZ_SUFFIX)).is_file():
        kinds.append("xz")
    return ", ".join(kinds)


def timed(function, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    rows, total = [], 0
    for name, entry in sorted(weights.read_lock().items()):
        if entry.source != "package":
            continue
        folder = weights.model_folder(name)
        on_disk = sum(path.stat().st_size for path in folder.iterdir() if not path.name.startswith("."))
        total += on_disk
        size = sum(weights.model_file_size(folder, path) for path in weights.model_files(folder))
        read = timed(lambda: weights.read_model_file(folder, WEIGHTS_FILE), args.runs)
        load = timed(lambda: weights.load_model(name), args.runs)
        rows.append((name, f"{size / 1e6:.2f}", f"{on_disk / 1e6:.2f}", storage(folder), f"{read:.3f}", f"{load:.3f}"))
        print(*rows[-1], flush=True)
    print()
    print(markdown_table(("model", "model files (MB)", "in the package (MB)", "weights stored",
                          "read weights (s)", "load model (s)"), rows))
    print(f"\npackage: {total / 1e6:.2f} MB ({total / 2**20:.2f} MiB) of packaged models")


if __name__ == "__main__":
    main()
