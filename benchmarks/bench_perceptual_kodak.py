"""Perceptual quality on Kodak: taco v4 and the perceptual taco models against other codecs.

Issue 18, part 3: taco v4, the perceptual taco models, JPEG, WebP, AVIF and JPEG XL on
PSNR, MS-SSIM, ST-LPIPS, SSIMULACRA 2, ColorVideoVDP and VMAF, and what the caption does
to each metric.

    python benchmarks/bench_perceptual_kodak.py -j 2                          # the full run
    python benchmarks/bench_perceptual_kodak.py --limit 2 --points 3 \\
        --crop kodim01.png:256,128 -o /tmp/perceptual-look                    # a quick look (minutes)
    python benchmarks/bench_perceptual_kodak.py --perceptual tune=perceptual  # how the models are chosen
    python benchmarks/bench_perceptual_kodak.py --metrics psnr-rgb,st-lpips-alex,ssimulacra2

The full run measures about 1,500 encodes (24 images; see summary.md's step times).
Every step is the real `tcodec bench` (real files, decoded pixels), and all share one
results cache (~/.cache/tcodec/bench/kodak.jsonl, as bench_kodak.py and
bench_taco_kodak.py), so a stopped or repeated run measures only what is missing:

1. pillow-jpeg, webp, avif and jxl at qualities that span about 0.05-1 bpp on Kodak
   (WebP and JPEG XL go no lower than about 0.10 and 0.15 bpp on their quality scales);
2. taco v4 (-O taco.model=tcodec-taco-v4) and the perceptual models (--perceptual, default
   -O taco.model=tcodec-taco-p5 and tcodec-taco-p4, the tunes perceptual and ssimulacra2) at
   qualities 1-8 with each image's own caption (../shared/data/kodak/captions.jsonl), and at
   4 of them (--caption-points) with empty text (no caption) and with another image's caption
   (each image gets the next one's).

It writes into --output (default results/perceptual-kodak/):

- reference/, taco-v4/{own,empty,other}-caption/, taco-p5/..., taco-p4/...: each bench run's
  own outputs (CompressAI JSON per codec, per_image.csv, summary.md, bd-rate.md, run.json);
- curves/: the main curves (own captions for taco) in CompressAI's JSON format;
- rd-*.png: RD plots of those curves on every metric (tcodec bench's plotting);
- bd-rate-vs-avif.md: BD-rate of every codec against AVIF, metric by metric;
- caption-effect.md: for every taco model, empty text and another image's caption against
  the own caption, per metric: BD-rate, and the mean difference at equal quality setting;
- crops.png: 256x256 crops, 2x nearest neighbour, of the original, AVIF, taco v4 and the
  perceptual models, each at its point closest to --target-bpp;
- summary.md: those tables, each step's wall time and the metric cost per decoded image
  that tcodec bench reported.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from statistics import fmean

from PIL import Image, ImageDraw, ImageFont

from tcodec.bench.curves import RDCurve, bd_table
from tcodec.bench.metrics import METRICS
from tcodec.bench.qualities import format_quality
from tcodec.bench.report import markdown_table
from tcodec.caption_files import read_jsonl
from tcodec.weights import cache_dir

ROOT = Path(__file__).resolve().parents[1]
KODAK = ROOT.parent / "shared" / "data" / "kodak"
CAPTIONS = KODAK / "captions.jsonl"
METRIC_KEYS = "psnr-rgb,ms-ssim-rgb,st-lpips-alex,ssimulacra2,cvvdp,vmaf"
# Chosen from rates measured on six Kodak images: 6-8 points from the codec's lowest rate
# (or about 0.05 bpp) to about 1 bpp on the 24 images.
REFERENCE_QUALITIES = {
    "pillow-jpeg": (1, 5, 10, 15, 20, 30, 40, 60),  # 0.09-1.0 bpp
    "webp": (0, 2, 10, 20, 40, 60, 75),  # 0.10-0.98 (q0 is libwebp's lowest rate)
    "avif": (0, 10, 20, 30, 40, 50, 60, 65),  # 0.07-0.98
    "jxl": (0, 10, 20, 30, 45, 55, 65, 75),  # 0.15-0.92 (q0 is the lowest rate)
}
TACO_QUALITIES = (1, 2, 3, 4, 5, 6, 7, 8)  # 0.06-0.99 bpp for v4
V4_OPTION = "model=tcodec-taco-v4"
PERCEPTUAL_OPTIONS = ("model=tcodec-taco-p5", "model=tcodec-taco-p4")
REFERENCE = "avif"
# what each fine-tuned model was trained for (training/MODEL_CARD.md); other metrics are checks
FINE_TUNED_FOR = {"taco-p1": "fine-tuned with ST-LPIPS (alex) in its loss",
                  "taco-p2": "its decoder fine-tuned with SSIMULACRA 2 in its loss",
                  "taco-p3": "fine-tuned, encoder and decoder, with SSIMULACRA 2 in its loss",
                  "taco-p4": "p3 trained on with a heavier SSIMULACRA 2 term",
                  "taco-p5": "p4 trained on with an ST-LPIPS (alex) term beside its SSIMULACRA 2 term"}
BD_METHOD, BD_MAX_BPP = "pchip", 2.0  # tcodec bench's defaults
CAPTION_VARIANTS = {"own-caption": "its own caption", "empty-caption": "empty text",
                    "other-caption": "another image's caption"}
DEFAULT_CROPS = ("kodim23.png:380,90", "kodim13.png:256,240")  # a parrot's head; water and stones
CROP_SIDE, ZOOM, LABEL_HEIGHT = 256, 2, 86


@dataclass(frozen=True)
class Crop:
    image: str
    left: int
    top: int


@dataclass
class Step:
    name: str
    seconds: float = 0.0
    metric_cost: str = ""  # the line tcodec bench printed, for steps that run it


def main() -> None:
    args, extra = parse_arguments()
    check_crops(args.crop)  # the checks come before the long part
    tacos = {"taco-v4": V4_OPTION, **{perceptual_label(option): option for option in args.perceptual}}
    for option in args.perceptual:
        check_taco_option(option)
    out, steps = args.output, []
    common = ["--metrics", args.metrics, "--cache", str(args.cache), "-j", str(args.jobs), "--no-plots", *extra]
    with tempfile.TemporaryDirectory() as tmp:
        captions = {"own-caption": ["--captions", os.path.relpath(CAPTIONS)],
                    "empty-caption": [],  # without a caption taco encodes empty text
                    "other-caption": ["--captions", str(write_other_captions(Path(tmp) / "other-captions.jsonl"))]}
        with timed(steps, "reference codecs") as step:
            qualities = [item for codec, values in REFERENCE_QUALITIES.items()
                         for item in ("-q", f"{codec}={quality_list(values, args.points)}")]
            step.metric_cost = bench(common, out / "reference", "-m", ",".join(REFERENCE_QUALITIES),
                                     *qualities)
        for label, option in tacos.items():
            for variant, what in CAPTION_VARIANTS.items():
                points = args.points if variant == "own-caption" else min(args.points or 99, args.caption_points)
                with timed(steps, f"{label}, {what}") as step:
                    step.metric_cost = bench(common, out / label / variant, "-m", "taco", "-O", f"taco.{option}",
                                             "-q", f"taco={quality_list(TACO_QUALITIES, points)}",
                                             *captions[variant])
    metric_keys = args.metrics.split(",")
    with timed(steps, "tables and plots"):
        curves = main_curves(out, list(tacos))
        tables = [bd_against_avif(curves, metric_keys), caption_effect(out, list(tacos), metric_keys),
                  perceptual_against_v4(curves, [label for label in tacos if label != "taco-v4"], metric_keys)]
        plot(curves, out)
    with timed(steps, "crops"):
        tables.append(crop_picture(out, args.crop, args.target_bpp, tacos))
    write(out / "bd-rate-vs-avif.md", tables[0])
    write(out / "caption-effect.md", tables[1])
    write(out / "summary.md", summary(out, args, tacos, tables, steps))
    print("", *tables, steps_table(steps), f"outputs in {out}", sep="\n")


def parse_arguments() -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     epilog="Other options (e.g. --limit 2, --device cpu) go to every bench run.")
    parser.add_argument("-o", "--output", type=Path, default=ROOT / "results" / "perceptual-kodak")
    parser.add_argument("--perceptual", action="append", metavar="KEY=VALUE",
                        help="a taco option that selects a perceptual model (repeatable; default "
                             f"{' and '.join(PERCEPTUAL_OPTIONS)})")
    parser.add_argument("--metrics", default=METRIC_KEYS, help=f"comma-separated (default {METRIC_KEYS})")
    parser.add_argument("-j", "--jobs", type=int, default=1, help="measurements in parallel (processes)")
    parser.add_argument("--cache", type=Path, default=cache_dir() / "bench" / "kodak.jsonl",
                        help="results cache shared by every run (default: tcodec's Kodak bench cache)")
    parser.add_argument("--points", type=int,
                        help="only this many of each codec's qualities, spread out (a quick look)")
    parser.add_argument("--caption-points", type=int, default=4,
                        help="qualities of the empty- and other-caption runs (default 4 of the 8, spread out)")
    parser.add_argument("--target-bpp", type=float, default=0.15, help="rate of the crops (default 0.15)")
    parser.add_argument("--crop", type=parse_crop, action="append", metavar="IMAGE:LEFT,TOP",
                        help=f"a 256x256 crop region (repeatable; default {' and '.join(DEFAULT_CROPS)})")
    args, extra = parser.parse_known_args()
    args.crop = args.crop or [parse_crop(text) for text in DEFAULT_CROPS]
    args.perceptual = args.perceptual or list(PERCEPTUAL_OPTIONS)
    return args, extra


def perceptual_label(option: str) -> str:
    """model=tcodec-taco-p1 (or a model folder of that name) -> taco-p1; tune=perceptual
    -> taco-perceptual."""
    key, _, value = option.partition("=")
    return Path(value).name.removeprefix("tcodec-") if key == "model" else f"taco-{value}"


def parse_crop(text: str) -> Crop:
    image, _, corner = text.partition(":")
    try:
        left, top = (int(value) for value in corner.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not IMAGE:LEFT,TOP (e.g. kodim23.png:380,90)") from None
    return Crop(image, left, top)


def check_crops(crops: list[Crop]) -> None:
    """Before the long part: every crop must lie inside its image."""
    for crop in crops:
        path = KODAK / crop.image
        if not path.is_file():
            sys.exit(f"--crop {crop.image}: no such image in {KODAK}")
        with Image.open(path) as image:
            width, height = image.size
        if not (0 <= crop.left <= width - CROP_SIDE and 0 <= crop.top <= height - CROP_SIDE):
            sys.exit(f"--crop {crop.image}:{crop.left},{crop.top}: a {CROP_SIDE}x{CROP_SIDE} region there "
                     f"leaves the {width}x{height} image")


def check_taco_option(option: str) -> None:
    """A perceptual model's option must name an installed model."""
    from tcodec.bench.codecs import get_codec
    from tcodec.errors import TcodecError

    try:
        get_codec("taco", "auto", taco_options(option)).current_model_hash()
    except TcodecError as error:
        sys.exit(f"--perceptual {option}: {error}")


def taco_options(option: str) -> tuple[tuple[str, str], ...]:
    """``model=NAME`` as the bench's codec options (``get_codec``'s form)."""
    key, _, value = option.partition("=")
    return ((key, value),)


def quality_list(qualities: tuple[float, ...], points: int | None) -> str:
    """The qualities as tcodec bench reads them; with ``points``, that many spread from the
    lowest to the highest (a subset, so a quick look's results are reused by the full run)."""
    if points and points < len(qualities):
        qualities = tuple(qualities[round(i * (len(qualities) - 1) / max(points - 1, 1))] for i in range(points))
    return ",".join(format_quality(q) for q in qualities)


def write_other_captions(path: Path) -> Path:
    """Each image gets the next image's caption, the last the first's: a fixed derangement,
    so that every run asks for the same encodes and the cache serves them."""
    captions = read_jsonl(CAPTIONS)
    names = sorted(captions)
    lines = [json.dumps({"file": name, "caption": captions[names[(i + 1) % len(names)]]})
             for i, name in enumerate(names)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@contextmanager
def timed(steps: list[Step], name: str):
    """Time the ``with`` block as a step, print it and add it to ``steps``."""
    step = Step(name)
    started = time.monotonic()
    yield step
    step.seconds = time.monotonic() - started
    steps.append(step)
    print(f"== step '{name}': {step.seconds:.1f} s wall time" + (f"; {step.metric_cost}" if step.metric_cost else ""),
          flush=True)


def bench(common: list[str], output: Path, *arguments: str, dataset: Path = KODAK) -> str:
    """Run ``tcodec bench`` on Kodak (or ``dataset``) into ``output``, showing what it
    prints; returns its line on the metrics' cost per decoded image."""
    images = os.path.relpath(dataset)  # relative: the outputs do not record where this checkout lives
    command = [sys.executable, "-m", "tcodec", "bench", images, *arguments, *common, "-o", str(output)]
    print("$", shlex.join(command[2:]), flush=True)
    cost = ""
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as process:
        for line in process.stdout:
            print(line, end="", flush=True)
            if line.startswith("metric cost per decoded image"):
                cost = line.strip()
    if process.returncode:
        sys.exit(process.returncode)
    return cost


def main_curves(out: Path, tacos: list[str]) -> list[RDCurve]:
    """The reference codecs and both taco models with their own captions, as curves; their
    JSON goes into curves/ under those labels."""
    sources = {codec: out / "reference" / f"{codec}.json" for codec in REFERENCE_QUALITIES}
    sources.update({label: out / label / "own-caption" / "taco.json" for label in tacos})
    curves = []
    for label, path in sources.items():
        data = json.loads(path.read_text(encoding="utf-8"))
        write(out / "curves" / f"{label}.json", json.dumps({**data, "name": label}, indent=2) + "\n")
        curves.append(load_curve(path, label))
    return curves


def read_results(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))["results"]


def load_curve(path: Path, label: str, qualities: list | None = None) -> RDCurve:
    """A bench's CompressAI JSON as a curve for tcodec's BD-rate and plotting code (only
    the points at ``qualities`` when given)."""
    results = read_results(path)
    if qualities is not None:
        keep = [i for i, q in enumerate(results["quality"]) if q in qualities]
        results = {key: [values[i] for i in keep] if isinstance(values, list) and len(values) == len(
            results["quality"]) else values for key, values in results.items()}
    others = {key: tuple(results[key]) for key in METRICS if key in results and key not in ("psnr-rgb", "ms-ssim-rgb")}
    return RDCurve(label, tuple(results["bpp"]), tuple(results["psnr-rgb"]), tuple(results["ms-ssim-rgb"]),
                   others=others)


def bd_rates(curve: RDCurve, reference: RDCurve, metric_keys: list[str]) -> dict[str, float | str]:
    """BD-rate (%) of ``curve`` against ``reference`` at equal value of each metric, or why
    there is none; tcodec bench's own computation (MS-SSIM in dB, a metric where lower is
    better compared as its negative)."""
    (row,) = bd_table([curve], reference, BD_METHOD, BD_MAX_BPP)
    values = {"psnr-rgb": row.bd_rate_psnr, "ms-ssim-rgb": row.bd_rate_ms_ssim, **dict(row.others)}
    return {key: values.get(key, "not measured") for key in metric_keys}


def metric_label(key: str) -> tuple[str, str]:
    """(title, "higher" or "lower" is better)."""
    if key == "bpp":
        return "bpp (mean difference in %)", "lower"
    metric = METRICS[key]
    return metric.title, "higher" if metric.higher_is_better else "lower"


def shown(value: float | str | None, form: str = "+.1f") -> str:
    if value is None:
        return "-"
    return format(value, form) if isinstance(value, float) else f"n/a ({value})"


def bd_against_avif(curves: list[RDCurve], metric_keys: list[str]) -> str:
    """The BD-rate table: one row per metric, one column per codec."""
    reference = next(curve for curve in curves if curve.label == REFERENCE)
    others = sorted((curve for curve in curves if curve is not reference),
                    key=lambda curve: not curve.label.startswith("taco"))  # the taco models first
    rates = {curve.label: bd_rates(curve, reference, metric_keys) for curve in others}
    rows = [(*metric_label(key), *(shown(rates[curve.label][key]) for curve in others)) for key in metric_keys]
    return (f"## BD-rate against {REFERENCE.upper()} (%)\n\n"
            f"Bits needed for the same value of each metric, relative to {REFERENCE}: negative is fewer. "
            f"PCHIP on log-rate, points up to {BD_MAX_BPP:g} bpp, over the range where both curves are defined; "
            "MS-SSIM in dB. Taco with each image's own caption."
            + "".join(f" {label}: {FINE_TUNED_FOR[label]}." for label in rates if label in FINE_TUNED_FOR)
            + "\n\n" + markdown_table(("metric", "better", *(curve.label for curve in others)), rows))


def perceptual_against_v4(curves: list[RDCurve], labels: list[str], metric_keys: list[str]) -> str:
    """BD-rate of each perceptual model against taco v4 on each metric, and its BD-PSNR."""
    by_label = {curve.label: curve for curve in curves}
    v4 = by_label["taco-v4"]
    rates = {label: bd_rates(by_label[label], v4, metric_keys) for label in labels}
    rows = [(*metric_label(key), *(shown(rates[label][key]) for label in labels)) for key in metric_keys]
    rows.append(("BD-PSNR (dB)", "higher", *(shown(bd_table([by_label[label]], v4, BD_METHOD, BD_MAX_BPP)[0].bd_psnr,
                                                  "+.2f") for label in labels)))
    return ("## The perceptual models against taco v4\n\nBD-rate (%) as above, against taco v4, and BD-PSNR "
            "(the mean PSNR difference at equal rate).\n\n"
            + markdown_table(("metric", "better", *(f"{label} vs taco-v4" for label in labels)), rows))


def caption_effect(out: Path, tacos: list[str], metric_keys: list[str]) -> str:
    """Empty text and another image's caption against each image's own caption, per model."""
    variants = [variant for variant in CAPTION_VARIANTS if variant != "own-caption"]
    columns = ("metric", "better", *(f"{CAPTION_VARIANTS[v]}: {what}" for v in variants
                                     for what in ("BD-rate (%)", "mean difference")))
    intro = ("## What the caption does\n\nEach variant against the same model with each image's own caption, "
             "at the same qualities (the own-caption curve through the variant's qualities only): BD-rate "
             "(%; negative: fewer bits for the same metric value) and the mean difference (variant - own) "
             "over images and qualities at equal quality setting; for bpp, the mean relative difference in %.\n")
    sections = [intro]
    for label in tacos:
        own = out / label / "own-caption" / "taco.json"
        cells = {v: caption_cells(out / label / v / "taco.json", own, metric_keys) for v in variants}
        rows = [(*metric_label(key), *(cell for v in variants for cell in cells[v][key]))
                for key in ("bpp", *metric_keys)]
        sections.append(f"### {label}\n\n" + markdown_table(columns, rows))
    return "\n".join(sections)


def caption_cells(path: Path, own_path: Path, metric_keys: list[str]) -> dict[str, tuple[str, str]]:
    """Per metric (and bpp): the BD-rate of a caption variant against the own caption, and
    the mean difference at equal quality setting."""
    variant, own = read_results(path), read_results(own_path)
    # the own-caption curve at the variant's qualities only: curves through different
    # points would differ by their interpolation alone
    rates = bd_rates(load_curve(path, "variant"), load_curve(own_path, "own-caption", variant["quality"]), metric_keys)
    cells = {"bpp": ("-", shown(mean_difference(variant, own, "bpp"), "+.3f"))}
    cells.update({key: (shown(rates[key]), shown(mean_difference(variant, own, key), "+.4f")) for key in metric_keys})
    return cells


def mean_difference(variant: dict, own: dict, key: str) -> float | None:
    """Mean over the variant's qualities of variant - own (each point averages the same
    images, so this is the mean per-image difference); for bpp the mean relative difference
    in %."""
    if key not in variant or key not in own:
        return None
    own_at = dict(zip(own["quality"], own[key]))
    pairs = [(v, own_at[q]) for q, v in zip(variant["quality"], variant[key])
             if q in own_at and v is not None and own_at[q] is not None]
    if not pairs:
        return None
    return fmean(100 * (v / o - 1) if key == "bpp" else v - o for v, o in pairs)


def plot(curves: list[RDCurve], out: Path) -> None:
    from tcodec.bench.plots import plot_rd

    images = len(json.loads((out / "reference" / "run.json").read_text(encoding="utf-8"))["images"])
    plot_rd(curves, out, f"{images} images from Kodak")


def crop_picture(out: Path, crops: list[Crop], target_bpp: float, tacos: dict[str, str]) -> str:
    """crops.png, one row per crop; returns a note on what it shows. The bench keeps no
    decoded pixels, so each chosen point is encoded again (every codec here is deterministic,
    which the file size checks) with the codec objects tcodec bench measured it with."""
    from tcodec.bench.codecs import get_codec
    from tcodec.images import load_image

    # (tile title, bench codec, its options, the bench run that measured it)
    sources = [("AVIF", "avif", (), out / "reference")]
    sources += [(label, "taco", taco_options(option), out / label / "own-caption")
                for label, option in tacos.items()]
    points = {folder: list(csv.DictReader((folder / "per_image.csv").open(encoding="utf-8"))) for *_, folder in sources}
    captions = read_jsonl(CAPTIONS)
    rows, notes = [], []
    for crop in crops:
        if not any(point["image"] == crop.image for point in points[out / "reference"]):
            notes.append(f"{crop.image} skipped: not measured in this run")
            continue
        original = load_image(KODAK / crop.image).image.convert("RGB")
        tiles = [tile(original, crop, [f"{crop.image} original", f"crop at {crop.left},{crop.top}"])]
        for title, codec_name, options, folder in sources:
            point = min((p for p in points[folder] if p["image"] == crop.image and p["codec"] == codec_name),
                        key=lambda p: abs(float(p["bpp"]) - target_bpp))
            codec = get_codec(codec_name, "auto", options)
            data = codec.encode(original, float(point["quality"]), captions.get(crop.image))
            if len(data) != int(point["size_bytes"]):
                notes.append(f"{crop.image} {title}: encoded again to {len(data)} bytes, the bench measured "
                             f"{point['size_bytes']}")
            lines = [f"{title} q{point['quality']}, {float(point['bpp']):.3f} bpp",
                     f"PSNR {value(point, 'psnr-rgb', 2)} dB, ST-LPIPS {value(point, 'st-lpips-alex', 3)}",
                     f"SSIMULACRA 2 {value(point, 'ssimulacra2', 1)}"]
            tiles.append(tile(codec.decode(data).convert("RGB"), crop, lines))
        rows.append(tiles)
    if not rows:
        return "## Crops\n\ncrops.png not written: " + "; ".join(notes) + "\n"
    save_grid(rows, out / "crops.png")
    return ("## Crops\n\n![crops](crops.png)\n\n"
            f"{CROP_SIDE}x{CROP_SIDE} crops, {ZOOM}x nearest neighbour; each codec at its point closest to "
            f"{target_bpp:g} bpp on that image; bpp and the metrics are the whole image's.\n"
            + "".join(f"\n- {note}" for note in notes) + ("\n" if notes else ""))


def value(point: dict, key: str, digits: int) -> str:
    """A per_image.csv value (empty where not measured)."""
    return f"{float(point[key]):.{digits}f}" if point.get(key) else "-"


def tile(image: Image.Image, crop: Crop, lines: list[str]) -> Image.Image:
    side = CROP_SIDE * ZOOM
    region = image.crop((crop.left, crop.top, crop.left + CROP_SIDE, crop.top + CROP_SIDE))
    canvas = Image.new("RGB", (side, side + LABEL_HEIGHT), "white")
    canvas.paste(region.resize((side, side), Image.Resampling.NEAREST))  # nearest: artefacts stay visible
    ImageDraw.Draw(canvas).multiline_text((8, side + 6), "\n".join(lines), fill="black",
                                          font=ImageFont.load_default(size=18))
    return canvas


def save_grid(rows: list[list[Image.Image]], path: Path, gap: int = 8) -> None:
    width, height = rows[0][0].size
    grid = Image.new("RGB", (len(rows[0]) * (width + gap) - gap, len(rows) * (height + gap) - gap), "white")
    for r, tiles in enumerate(rows):
        for c, image in enumerate(tiles):
            grid.paste(image, (c * (width + gap), r * (height + gap)))
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(path, optimize=True)


def steps_table(steps: list[Step]) -> str:
    rows = [(step.name, f"{step.seconds:.1f}", step.metric_cost.partition(": ")[2] or "-") for step in steps]
    return ("## Steps\n\n" + markdown_table(("step", "wall time (s)", "metric cost per decoded image (tcodec bench)"),
                                            rows))


def summary(out: Path, args: argparse.Namespace, tacos: dict[str, str], tables: list[str], steps: list[Step]) -> str:
    run = json.loads((out / "reference" / "run.json").read_text(encoding="utf-8"))
    qualities = [(codec, quality_list(values, args.points)) for codec, values in REFERENCE_QUALITIES.items()]
    qualities += [(f"{label} (-O taco.{option})", quality_list(TACO_QUALITIES, args.points))
                  for label, option in tacos.items()]
    header = (f"# Perceptual quality on Kodak\n\n{len(run['images'])} images, {run['date']}, "
              f"{run['machine']['processor']} ({run['machine']['cpu_count']} CPUs), {args.jobs} job(s); "
              f"made by benchmarks/bench_perceptual_kodak.py. Curves: curves/*.json; plots: rd-*.png.\n\n"
              + markdown_table(("codec", "qualities"), qualities))
    return "\n".join((header, *tables, steps_table(steps)))


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
