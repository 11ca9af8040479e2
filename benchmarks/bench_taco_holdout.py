"""The perceptual taco models against v4 and AVIF on photos that their training left out.

    python benchmarks/bench_taco_holdout.py -j 2              # the 80 held-out photos
    python benchmarks/bench_taco_holdout.py --limit 8         # a quick look
    python benchmarks/bench_taco_holdout.py --limit 40 --models taco-v4,taco-p3,taco-p4

The recipes of tcodec-taco-p1 to -p5 (training/taco-p*-release.toml) hold out every 20th
training photo (the same 80 of 1,599: ImageNet, BSDS500, COCO and SUN photos of 0.1-0.4 MP)
out of their fine-tuning; this runs the real `tcodec bench` on them (their captions where
they have one) for v4 and the fine-tuned models at four qualities each and AVIF at five,
and prints BD-rates against AVIF and of each fine-tuned model against v4 on PSNR, MS-SSIM,
ST-LPIPS and SSIMULACRA 2. v1-v4 were trained on all 1,599 photos, these included: what is
measured is what the fine-tuning did on photos it did not see. Outputs go to
results/taco-holdout/.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_perceptual_kodak import FINE_TUNED_FOR, bd_rates, load_curve, metric_label, shown
from tcodec.bench.report import markdown_table
from tcodec.training.taco import captions_for, held_out, load_config
from tcodec.weights import cache_dir

ROOT = Path(__file__).resolve().parents[1]
METRICS = "psnr-rgb,ms-ssim-rgb,st-lpips-alex,ssimulacra2"
FINE_TUNED = ("taco-p1", "taco-p2", "taco-p3", "taco-p4", "taco-p5")  # their recipes hold out the same photos (checked below)
MODELS = {label: f"model=tcodec-{label}" for label in ("taco-v4", *FINE_TUNED)}
QUALITIES = {"taco": "1,3,5,8", "avif": "10,25,40,55,65"}


def held_out_folder(folder: Path, limit: int | None) -> None:
    """Links to the held-out photos, with a captions file for those that have captions."""
    recipes = [load_config(ROOT / "training" / f"{label}-release.toml")[2] for label in FINE_TUNED]
    if len({(tuple(recipe.data), recipe.holdout) for recipe in recipes}) != 1:
        raise SystemExit("the fine-tuned models hold out different photos")
    photos = held_out(recipes[0].data, recipes[0].holdout)[:limit]
    captions = captions_for(photos)
    lines = []
    for i, photo in enumerate(photos):
        name = f"{i:03d}-{photo.name}"
        (folder / name).symlink_to(photo)
        if captions.get(photo):
            lines.append(json.dumps({"file": name, "caption": captions[photo][0]}))
    (folder.parent / "captions.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")


def bench(photos: Path, output: Path, jobs: int, *arguments: str) -> None:
    command = [sys.executable, "-m", "tcodec", "bench", str(photos), "--metrics", METRICS, "-j", str(jobs),
               "--no-plots", "--captions", str(photos.parent / "captions.jsonl"),
               "--cache", str(cache_dir() / "bench" / "holdout.jsonl"), *arguments, "-o", str(output)]
    print("$", " ".join(command[2:]), flush=True)
    if subprocess.run(command).returncode:
        raise SystemExit("tcodec bench failed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-j", "--jobs", type=int, default=1)
    parser.add_argument("--limit", type=int, help="only the first N held-out photos")
    parser.add_argument("--models", default=",".join(MODELS),
                        help=f"comma-separated, taco-v4 among them (default {','.join(MODELS)})")
    parser.add_argument("-o", "--output", type=Path, default=ROOT / "results" / "taco-holdout")
    args = parser.parse_args()
    models = args.models.split(",")
    if "taco-v4" not in models or not set(models) <= set(MODELS):
        parser.error(f"--models: taco-v4 and any of {', '.join(FINE_TUNED)}")
    fine_tuned = [label for label in FINE_TUNED if label in models]
    with tempfile.TemporaryDirectory() as tmp:
        photos = Path(tmp) / "photos"
        photos.mkdir()
        held_out_folder(photos, args.limit)
        bench(photos, args.output / "avif", args.jobs, "-m", "avif", "-q", f"avif={QUALITIES['avif']}")
        for label in models:
            bench(photos, args.output / label, args.jobs, "-m", "taco", "-O", f"taco.{MODELS[label]}",
                  "-q", f"taco={QUALITIES['taco']}")
    keys = METRICS.split(",")
    curves = {label: load_curve(args.output / label / "taco.json", label) for label in models}
    avif = load_curve(args.output / "avif" / "avif.json", "avif")
    columns = {f"{label} vs AVIF": bd_rates(curves[label], avif, keys) for label in models}
    columns.update({f"{label} vs taco-v4": bd_rates(curves[label], curves["taco-v4"], keys) for label in fine_tuned})
    rows = [(*metric_label(key), *(shown(column[key]) for column in columns.values())) for key in keys]
    images = len(json.loads((args.output / "avif" / "run.json").read_text(encoding="utf-8"))["images"])
    table = (f"# BD-rate (%) on {images} photos left out of the fine-tuning of {', '.join(fine_tuned)}\n\n"
             "Negative: fewer bits for the same value of the metric. v1-v4, and so the fine-tuning's starting "
             "point, were trained on these photos too: this measures what the perceptual fine-tuning did on "
             "photos it did not see."
             + "".join(f" {label}: {FINE_TUNED_FOR[label]}." for label in fine_tuned)
             + " Made by benchmarks/bench_taco_holdout.py.\n\n"
             + markdown_table(("metric", "better", *columns), rows))
    (args.output / "summary.md").write_text(table, encoding="utf-8")
    print(table)


if __name__ == "__main__":
    main()
