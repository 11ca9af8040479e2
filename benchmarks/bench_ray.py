"""Folder conversion with taco: the local mode (-j 1, -j 2) against the Ray engine (1 and
2 actors) on this machine, in images per second at steady state.

    python benchmarks/bench_ray.py [--images 96] [--size 384x256] [--quality 3] [--photos DIR] [-o results/ray]

Inputs are centre crops of the first ``--images`` photos of ../shared/data/train/bsds500
(or, without it, the built-in test card turned), written as PNG. Every run is a real
``tcodec encode DIR -o OUT -m taco`` process. Its outputs' modification times say when each
file was finished; the steady-state rate leaves out each worker's first two files (model
loading, first calls) and its last one (the tail, where workers run out of files), so
process and cluster start-up and model loading are not in it: they are reported apart, as
the cluster's start (``ray.init`` of a local 2-CPU instance, which the Ray runs then join
with --ray-address) and as the time to the first output beyond one steady image.

Prints one table and writes ``bench_ray.json`` to ``-o``. The target (issue 20): Ray with 2
actors at least 80% of the local mode with -j 2.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TRAIN = Path(__file__).resolve().parents[2] / "shared" / "data" / "train" / "bsds500"


def make_inputs(folder: Path, count: int, size: tuple[int, int], photos_dir: Path) -> str:
    from PIL import Image

    from tcodec.sample import sample_image

    folder.mkdir(parents=True)
    photos = sorted(photos_dir.glob("*.jpg"))[:count] if photos_dir.is_dir() else []
    width, height = size
    for i in range(count):
        if i < len(photos):
            image = Image.open(photos[i]).convert("RGB")
            if image.width < image.height:
                image = image.rotate(90, expand=True)
            left, top = (image.width - width) // 2, (image.height - height) // 2
            image = image.crop((left, top, left + width, top + height))
        else:
            image = sample_image(width, height).rotate(7 * i)
        image.save(folder / f"{i:03}.png")
    return f"{len(photos)} crops of {photos_dir}" + (f" and {count - len(photos)} test cards" if len(photos) < count else "")


def run(src: Path, out: Path, jobs: int, quality: float, address: str | None) -> dict:
    command = [sys.executable, "-m", "tcodec", "encode", str(src), "-o", str(out), "-m", "taco", "-q", str(quality),
               "--device", "cpu", "-j", str(jobs)]
    if address:
        command += ["--engine", "ray", "--ray-address", address]
    started = time.time()
    result = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, timeout=3600)
    ended = time.time()
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr.decode()}")
    finished = sorted(p.stat().st_mtime for p in out.rglob("*.tcz"))
    skip_first, skip_last = 2 * jobs, jobs
    window = finished[skip_first - 1: len(finished) - skip_last]
    rate = (len(window) - 1) / (window[-1] - window[0])
    return {"jobs": jobs, "images": len(finished), "wall_s": ended - started,
            "first_output_s": finished[0] - started, "steady_images_per_s": rate,
            "startup_and_model_s": finished[0] - started - 1 / rate * jobs,
            "summary": result.stderr.decode().strip().splitlines()[-1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--size", default="384x256", help="crop WIDTHxHEIGHT")
    parser.add_argument("--quality", type=float, default=3)
    parser.add_argument("--photos", type=Path, default=TRAIN, help="folder of JPEG photos to crop")
    parser.add_argument("-o", "--output", type=Path, default=Path("results/ray"))
    args = parser.parse_args()
    size = tuple(int(n) for n in args.size.lower().split("x"))
    load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())  # the machine may be shared
    with tempfile.TemporaryDirectory(prefix="bench-ray-") as work:
        work = Path(work)
        source = make_inputs(work / "src", args.images, size, args.photos)
        # untimed: the model's files into the page cache, so that no run pays for the disk
        subprocess.run([sys.executable, "-m", "tcodec", "encode", str(work / "src" / "000.png"), "-o",
                        str(work / "warm.tcz"), "-m", "taco"], capture_output=True, check=True, timeout=600)
        rows = {}
        for jobs in (1, 2):
            rows[f"local -j {jobs}"] = run(work / "src", work / f"local{jobs}", jobs, args.quality, None)
            print(f"local -j {jobs}: {rows[f'local -j {jobs}']['steady_images_per_s']:.2f} images/s", flush=True)
        import ray

        started = time.perf_counter()
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, logging_level="WARNING")
        cluster_start_s = time.perf_counter() - started
        address = ray.get_runtime_context().gcs_address
        try:
            for jobs in (1, 2):
                rows[f"ray, {jobs} actor(s)"] = run(work / "src", work / f"ray{jobs}", jobs, args.quality, address)
                print(f"ray {jobs}: {rows[f'ray, {jobs} actor(s)']['steady_images_per_s']:.2f} images/s", flush=True)
        finally:
            ray.shutdown()
        same = all(sorted((p.relative_to(work / name).as_posix(), p.read_bytes()) for p in (work / name).rglob("*.tcz"))
                   == sorted((p.relative_to(work / "local1").as_posix(), p.read_bytes())
                             for p in (work / "local1").rglob("*.tcz")) for name in ("local2", "ray1", "ray2"))
    ratio = rows["ray, 2 actor(s)"]["steady_images_per_s"] / rows["local -j 2"]["steady_images_per_s"]
    print(f"\n{args.images} images {size[0]}x{size[1]} ({source}), taco q{args.quality:g}, "
          f"{os.cpu_count()} CPUs, load average before: {load_before}")
    print(f"ray cluster start (local instance): {cluster_start_s:.2f} s")
    print(f"{'run':<18} {'steady img/s':>12} {'first output s':>15} {'start+model s':>14} {'wall s':>8}")
    for name, row in rows.items():
        print(f"{name:<18} {row['steady_images_per_s']:>12.3f} {row['first_output_s']:>15.2f} "
              f"{row['startup_and_model_s']:>14.2f} {row['wall_s']:>8.1f}")
    scaling = rows["ray, 2 actor(s)"]["steady_images_per_s"] / rows["ray, 1 actor(s)"]["steady_images_per_s"]
    print(f"ray 2 actors / local -j 2: {ratio:.1%} (target >= 80%: {'ok' if ratio >= 0.8 else 'missed'}); "
          f"ray 2 actors / 1 actor: {scaling:.2f}x; outputs byte-identical across all four: {same}")
    args.output.mkdir(parents=True, exist_ok=True)
    record = {"images": args.images, "size": list(size), "inputs": source, "quality": args.quality,
              "cpus": os.cpu_count(), "machine": platform.platform(), "load_average_before": load_before,
              "ray_cluster_start_s": cluster_start_s, "runs": rows, "ray2_over_local2": ratio,
              "ray2_over_ray1": scaling, "byte_identical": same,
              "date": time.strftime("%Y-%m-%d")}
    (args.output / "bench_ray.json").write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
