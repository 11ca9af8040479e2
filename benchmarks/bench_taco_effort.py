"""taco's encode-effort ladder (-O effort) on Kodak against JPEG, WebP, AVIF and JPEG XL.

    python benchmarks/bench_taco_effort.py                 # the full run (about 45 minutes on 2 cores)
    python benchmarks/bench_taco_effort.py --subset kodim05.png,kodim23.png --efforts 0,1 \\
        --all-efforts 0 --limit 4 -o /tmp/effort-look     # a quick look

Issue 19, part 4. Every step is the real `tcodec bench` (real .tcz files, decoded pixels,
PSNR-RGB and MS-SSIM), all sharing one results cache of this benchmark's own (so every
codec is measured in this run; a stopped run measures only what is missing):

1. on --subset (default 6 images spread over Kodak), one measurement at a time, so that the
   times are those of the whole 2-core machine: taco at every level of --efforts and the
   qualities TACO_QUALITIES; Pillow JPEG, WebP, AVIF (libavif/aom at Pillow's default speed
   6) and JPEG XL; AVIF at speed 0 (its slowest, best);
2. on all 24 images (-j, default 2 processes): the reference codecs and taco at the levels
   of --all-efforts (default 0-2; the higher ones take hours here), reusing step 1's results.

Writes into --output (default results/taco-effort/) each run's bench outputs and
summary.md: BD-rates against AVIF at its default speed (PSNR-RGB and MS-SSIM, PCHIP,
points up to 2 bpp) on the subset for every level and AVIF speed 0, and on all 24 images
for step 2's levels; the encode and decode times per image (median and slowest) and the
peak memory of each codec from step 1; rd-psnr.png and rd-ms-ssim.png of both sets.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

from bench_perceptual_kodak import KODAK, REFERENCE_QUALITIES, ROOT, Step, bench, quality_list, timed

from tcodec.backends.taco import EFFORT_STEPS
from tcodec.bench.curves import RDCurve, bd_table
from tcodec.bench.plots import plot_rd
from tcodec.bench.report import markdown_table
from tcodec.weights import cache_dir

TACO_QUALITIES = (1, 3, 5, 7)  # 0.06-0.8 bpp for v4 at effort 0
DEFAULT_SUBSET = "kodim02.png,kodim06.png,kodim10.png,kodim14.png,kodim18.png,kodim22.png"
METRICS = "psnr-rgb,ms-ssim-rgb"
REFERENCE = "avif"
BD_METHOD, BD_MAX_BPP = "pchip", 2.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     epilog="Other options (e.g. --limit 4) go to every bench run.")
    parser.add_argument("-o", "--output", type=Path, default=ROOT / "results" / "taco-effort")
    parser.add_argument("--subset", default=DEFAULT_SUBSET, help=f"comma-separated (default {DEFAULT_SUBSET})")
    parser.add_argument("--efforts", default=",".join(map(str, range(len(EFFORT_STEPS)))),
                        help="levels measured on the subset (default all)")
    parser.add_argument("--all-efforts", default="0,1,2", help="levels measured on all images (default 0,1,2)")
    parser.add_argument("-j", "--jobs", type=int, default=2, help="processes for the all-images step (default 2)")
    parser.add_argument("--cache", type=Path, default=cache_dir() / "bench" / "kodak-effort.jsonl",
                        help="results cache (default: this benchmark's own, so that its codecs are measured "
                             "in its own run)")
    args, extra = parser.parse_known_args()
    out, steps = args.output, []
    references = [item for codec, values in REFERENCE_QUALITIES.items()
                  for item in ("-q", f"{codec}={quality_list(values, None)}")]
    taco_qualities = ["-q", f"taco={quality_list(TACO_QUALITIES, None)}"]
    with tempfile.TemporaryDirectory() as tmp:
        subset = Path(tmp) / "kodak-subset"
        subset.mkdir()
        for name in args.subset.split(","):
            if not (KODAK / name).is_file():
                sys.exit(f"--subset: no {name} in {KODAK}")
            (subset / name).symlink_to(KODAK / name)
        sets = {"subset": (subset, 1, args.efforts.split(",")), "all": (KODAK, args.jobs, args.all_efforts.split(","))}
        for set_name, (dataset, jobs, efforts) in sets.items():
            common = ["--metrics", METRICS, "--cache", str(args.cache), "-j", str(jobs), "--no-plots", *extra]
            with timed(steps, f"{set_name}: reference codecs"):
                bench(common, out / set_name / "reference", "-m", ",".join(REFERENCE_QUALITIES), *references,
                      dataset=dataset)
            if set_name == "subset":
                with timed(steps, "subset: avif speed 0"):
                    bench(common, out / set_name / "avif-speed0", "-m", "avif", "-O", "avif.speed=0",
                          "-q", f"avif={quality_list(REFERENCE_QUALITIES['avif'], None)}", dataset=dataset)
            for effort in efforts:
                with timed(steps, f"{set_name}: taco effort {effort}"):
                    bench(common, out / set_name / f"taco-effort{effort}", "-m", "taco", "-O", f"taco.effort={effort}",
                          *taco_qualities, dataset=dataset)
    tables = []
    for set_name, (_, _, efforts) in sets.items():
        curves = curves_of(out / set_name, efforts)
        tables.append(bd_against_reference(curves, set_name, images_in(out / set_name / "reference")))
        plot_rd(curves, out / set_name, f"Kodak ({set_name}), one run")
    tables.append(times_table(out / "subset", sets["subset"][2]))
    text = "\n\n".join(["# taco's effort ladder on Kodak", *tables, steps_table(steps)]) + "\n"
    (out / "summary.md").write_text(text, encoding="utf-8")
    print(text)


def curve(path: Path, label: str) -> RDCurve:
    results = json.loads(path.read_text(encoding="utf-8"))["results"]
    return RDCurve(label, tuple(results["bpp"]), tuple(results["psnr-rgb"]), tuple(results["ms-ssim-rgb"]))


def curves_of(folder: Path, efforts: list[str]) -> list[RDCurve]:
    curves = [curve(folder / "reference" / f"{codec}.json", codec) for codec in REFERENCE_QUALITIES]
    if (folder / "avif-speed0").is_dir():
        curves.append(curve(folder / "avif-speed0" / "avif.json", "avif-speed0"))
    return curves + [curve(folder / f"taco-effort{e}" / "taco.json", f"taco-effort{e}") for e in efforts]


def images_in(run: Path) -> int:
    with open(run / "per_image.csv", newline="", encoding="utf-8") as file:
        return len({line["image"] for line in csv.DictReader(file)})


def bd_against_reference(curves: list[RDCurve], set_name: str, images: int) -> str:
    reference = next(c for c in curves if c.label == REFERENCE)
    rows = [(row.label, shown(row.bd_rate_psnr), shown(row.bd_rate_ms_ssim), shown(row.bd_psnr, "+.2f"))
            for row in bd_table([c for c in curves if c is not reference], reference, BD_METHOD, BD_MAX_BPP)]
    what = f"the {images} images of the subset" if set_name == "subset" else f"all Kodak images ({images})"
    return (f"## BD-rate against AVIF (default speed 6), {what}\n\nBits for the same PSNR-RGB / MS-SSIM (dB) as "
            f"AVIF: negative is fewer. PCHIP on log-rate, points up to {BD_MAX_BPP:g} bpp.\n\n"
            + markdown_table(("codec", "BD-rate PSNR-RGB %", "BD-rate MS-SSIM %", "BD-PSNR dB"), rows))


def times_table(folder: Path, efforts: list[str]) -> str:
    """Encode and decode seconds per image and peak memory, from the subset's runs (one
    measurement at a time: the whole machine's times)."""
    sources = [(codec, folder / "reference") for codec in REFERENCE_QUALITIES]
    sources += [("avif", folder / "avif-speed0", "avif-speed0")]
    sources += [("taco", folder / f"taco-effort{e}", f"taco-effort{e}") for e in efforts]
    rows = []
    for codec, run, *label in sources:
        with open(run / "per_image.csv", newline="", encoding="utf-8") as file:
            lines = [line for line in csv.DictReader(file) if line["codec"] == codec]
        encode = [float(line["encoding_time_s"]) for line in lines]
        decode = [float(line["decoding_time_s"]) for line in lines]
        memory = [float(line["peak_memory_mib"]) for line in lines if line["peak_memory_mib"]]
        rows.append(((label or [codec])[0], str(len(lines)), f"{statistics.median(encode):.2f}", f"{max(encode):.2f}",
                     f"{statistics.median(decode):.3f}", f"{max(decode):.3f}",
                     f"{max(memory):.0f}" if memory else "-"))
    return ("## Times per 768x512 image and peak memory (subset, one measurement at a time, 2-core CPU)\n\n"
            "Wall seconds of each encode and decode in the bench's worker (model loaded), and the most "
            "memory one measurement added (MiB, resident).\n\n"
            + markdown_table(("codec", "encodes", "encode median s", "encode max s", "decode median s",
                              "decode max s", "peak MiB"), rows))


def steps_table(steps: list[Step]) -> str:
    return "## Steps\n\n" + markdown_table(("step", "wall s"), [(s.name, f"{s.seconds:.0f}") for s in steps])


def shown(value, form: str = "+.1f") -> str:
    return "-" if value is None else format(value, form) if isinstance(value, float) else f"n/a ({value})"


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
