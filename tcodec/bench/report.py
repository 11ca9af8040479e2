"""What a bench shows and writes: the summary and BD-rate tables (terminal and
Markdown), the per-image CSV, one CompressAI JSON per codec, and ``run.json`` with
everything needed to reproduce the run."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

from tcodec.bench.bdrate import METHODS
from tcodec.bench.curves import BdRow, Point, compressai_results
from tcodec.bench.measure import __doc__ as MEASURE_NOTES
from tcodec.bench.metrics import METRICS, metric_versions, split_metrics
from tcodec.bench.qualities import format_quality
from tcodec.bench.runner import BenchRun
from tcodec.fileio import write_atomic

AVERAGING = ("bpp (8 x file bytes / pixels) and every metric are computed per image, then averaged over "
             "the images (as CompressAI's eval_model); PSNR and MS-SSIM on RGB, 8 bits, data range 255; "
             "the dataset-scope metrics (FID, KID, CMMD) are computed once per codec and quality over all its "
             "images, with the number of samples behind each in brackets")
DATASET_METHOD = ("FID and KID on 256x256 patches of every reference and decoded image, as HiFiC's FID/256: the "
                  "grid of non-overlapping patches from the top-left corner, then the same grid shifted by 128 px "
                  "down and right (8 patches from a 768x512 image); pytorch-fid's Inception-v3 pool features "
                  "(2048-d); FID from fewer samples than 2048 is strongly biased upwards: compare it only within "
                  "one run. KID: unbiased MMD^2 with the cubic polynomial kernel, mean over 100 subsets of "
                  "min(1000, patches) patches (one estimate on all of them where there are at most 1000). CMMD: CLIP ViT-L/14-336 embeddings of the whole images (centre "
                  "square, 336x336), MMD^2 with a Gaussian RBF kernel (sigma 10) x 1000.")
SUMMARY_COLUMNS = ("codec", "quality", "images", "bpp", "PSNR-RGB (dB)", "MS-SSIM-RGB", "enc (ms)", "dec (ms)",
                   "peak mem (MiB)")
BD_COLUMNS = ("curve", "BD-rate PSNR (%)", "BD-PSNR (dB)", "BD-rate MS-SSIM (%)")
CSV_COLUMNS = ("image", "width", "height", "codec", "quality", "size_bytes", "bpp", "psnr-rgb", "ms-ssim-rgb",
               "encoding_time_s", "decoding_time_s", "peak_memory_mib", "model_hash", "notes")  # + other metrics


def _number(value: float | None, digits: int) -> str:
    if value is None:
        return "-"
    return "inf" if math.isinf(value) else f"{value:.{digits}f}"


def summary_columns(others: tuple[str, ...] = ()) -> tuple[str, ...]:
    """SUMMARY_COLUMNS with a column for each other metric (``others``: keys) before the times."""
    return SUMMARY_COLUMNS[:6] + tuple(METRICS[key].title for key in others) + SUMMARY_COLUMNS[6:]


def bd_columns(others: tuple[str, ...] = ()) -> tuple[str, ...]:
    return BD_COLUMNS + tuple(f"BD-rate {METRICS[key].title} (%)" for key in others)


def summary_rows(summary: dict[str, list[Point]], others: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    rows = []
    for points in summary.values():
        for p in points:
            ms_ssim = _number(p.ms_ssim, 4) + ("" if p.ms_ssim_images in (0, p.images) else f" ({p.ms_ssim_images})")
            values, samples = dict(p.others), dict(p.samples)
            rows.append((p.codec, format_quality(p.quality), str(p.images), _number(p.bpp, 3), _number(p.psnr, 2),
                         ms_ssim, *(_number(values.get(key), 4) + (f" ({samples[key]})" if key in samples else "")
                                    for key in others),
                         _number(1000 * p.encoding_time, 1), _number(1000 * p.decoding_time, 1),
                         _number(p.peak_memory_mib, 1)))
    return rows


def bd_rows(rows: list[BdRow], others: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    def shown(value: float | str, digits: int) -> str:
        return f"{value:+.{digits}f}" if isinstance(value, float) else f"n/a ({value})"

    return [(r.label, shown(r.bd_rate_psnr, 1), shown(r.bd_psnr, 2), shown(r.bd_rate_ms_ssim, 1),
             *(shown(dict(r.others).get(key, "not measured"), 1) for key in others)) for r in rows]


def bd_caption(reference: str, method: str, max_bpp: float | None) -> str:
    fit = {"pchip": "piecewise cubic (PCHIP) interpolation of log-rate, as in current VCEG/JVET practice",
           "cubic": "cubic polynomial fit of log-rate (VCEG-M33)"}[method]
    limit = f"points up to {max_bpp:g} bpp" if max_bpp else "all points"
    return (f"Bjontegaard deltas against {reference} ({fit}; {limit}; over the interval where both curves "
            "are defined). Negative BD-rate: fewer bits for the same quality. MS-SSIM in dB: -10 log10(1 - MS-SSIM); "
            "a metric where lower is better (ST-LPIPS) is compared at equal value, as the negative of it.")


def bd_markdown(caption: str, rows: list[tuple[str, ...]], same_codec: list[tuple[str, ...]],
                others: tuple[str, ...] = ()) -> str:
    text = f"# BD-rates\n\n{caption}\n\n" + markdown_table(bd_columns(others), rows)
    if same_codec:
        text += ("\n## Against the published curve of the same codec\n\nEach curve of this run against "
                 "the anchor of the same file name, which is the reference here.\n\n"
                 + markdown_table(bd_columns(others), same_codec))
    return text


def print_tables(summary_table: list[tuple[str, ...]], bd_table: list[tuple[str, ...]], caption: str,
                 same_codec: list[tuple[str, ...]] = (), others: tuple[str, ...] = ()) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(width=None if sys.stdout.isatty() else 120)
    for title, columns, rows in (("tcodec bench", summary_columns(others), summary_table),
                                 ("BD-rate", bd_columns(others), bd_table),
                                 ("Against the published curve of the same codec", bd_columns(others), same_codec)):
        if not rows:
            continue
        table = Table(title=title, caption=Text(caption) if title == "BD-rate" else None)
        for index, column in enumerate(columns):
            table.add_column(column, justify="left" if index == 0 else "right")
        for row in rows:
            table.add_row(*(Text(cell) for cell in row))  # Text: "[...]" in a label is not markup
        console.print(table)


def metric_cost(records: list[dict[str, Any]]) -> str:
    """"metric cost per decoded image: psnr-rgb 0.002 s, ..." (means over the records measured
    now or cached with their times), or "" when none has times."""
    times: dict[str, list[float]] = {}
    for record in records:
        for key, seconds in record.get("metric_seconds", {}).items():
            times.setdefault(key, []).append(seconds)
    if not times:
        return ""
    parts = [f"{key} {sum(values) / len(values):.3f} s" for key, values in times.items()]
    total = sum(sum(values) / len(values) for values in times.values())
    return f"metric cost per decoded image (mean): {', '.join(parts)}; together {total:.2f} s"


def markdown_table(columns: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    alignment = ["---"] + ["---:"] * (len(columns) - 1)  # labels left, numbers right
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join(alignment) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def per_image_csv(records: list[dict[str, Any]]) -> str:
    """One row per image, codec and quality; a column for PSNR, MS-SSIM and every other
    metric some record has (after MS-SSIM, in the registry's order)."""
    others = [key for key in METRICS if key not in ("psnr-rgb", "ms-ssim-rgb")
              and any(key in r["metrics"] for r in records)]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS[:9] + tuple(others) + CSV_COLUMNS[9:])
    for r in records:
        metrics = r["metrics"]
        notes = "; ".join(f"{key}: {reason}" for key, reason in sorted(r["unavailable"].items()))
        writer.writerow([
            r["image"], r["width"], r["height"], r["codec"], format_quality(r["quality"]), r["size_bytes"],
            f"{r['bpp']:.6f}", _csv_number(metrics.get("psnr-rgb"), 4), _csv_number(metrics.get("ms-ssim-rgb"), 6),
            *(_csv_number(metrics.get(key), 6) for key in others),
            f"{r['encoding_time']:.5f}", f"{r['decoding_time']:.5f}", _csv_number(r.get("peak_memory_mib"), 1),
            r.get("model_hash") or "", notes,
        ])
    return buffer.getvalue()


def _csv_number(value: float | None, digits: int) -> str:
    return "" if value is None else _number(value, digits)


def run_metadata(run: BenchRun, reference: str, method: str, max_bpp: float | None) -> dict[str, Any]:
    """Everything that decides the numbers: machine, versions, settings, images."""
    config = run.config
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "dataset": str(config.dataset),
        "images": [{"name": i.name, "sha256": i.sha256, "width": i.width, "height": i.height, "mode": i.mode}
                   for i in run.images],
        "codecs": {name: {"description": codec.description(), "settings": codec.settings(),
                          "versions": codec.versions(), "quality": codec.quality_meaning,
                          "qualities": list(run.qualities[name]), "model_hash": run.model_hashes[name]}
                   for name, codec in run.codecs.items()},
        "averaging": AVERAGING,
        "metrics_not_measured": run.unavailable_metrics,
        "dataset_metrics": dataset_metadata(run),
        "metric_versions": metric_versions(split_metrics(list(config.metrics) if config.metrics else None)[0]),
        "timing_and_memory": " ".join(MEASURE_NOTES.split()),
        "jobs": config.jobs,
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "processor": _cpu_name(), "cpu_count": os.cpu_count()},
        "bd": {"reference": reference, "method": method, "methods": list(METHODS), "max_bpp": max_bpp},
    }


def dataset_metadata(run: BenchRun) -> dict[str, Any]:
    """The dataset-scope metrics: how they are computed, each score with its samples, and
    why one is missing at a point."""
    scores = [{"codec": codec, "quality": quality, "metric": key, "value": _finite_or_none(score.value),
               "samples": score.samples, "images": score.images, **score.details}
              for (codec, quality), found in run.dataset_scores.items() for key, score in found.items()]
    missing = [{"codec": codec, "quality": quality, "metric": key, "reason": reason}
               for (codec, quality), found in run.dataset_unavailable.items() for key, reason in found.items()]
    return {"method": DATASET_METHOD, "scores": scores, "not_measured": missing}


def dataset_reasons(run: BenchRun) -> list[str]:
    """"fid at jpeg q10: only 0 patches ..." for every dataset-scope metric missing at a point."""
    return [f"{key} at {codec} q{format_quality(quality)}: {reason}"
            for (codec, quality), found in run.dataset_unavailable.items() for key, reason in found.items()]


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def write_outputs(folder: Path, run: BenchRun, summary: dict[str, list[Point]], metadata: dict[str, Any],
                  bd_markdown: str) -> list[Path]:
    """Write the CSV, per-codec JSONs, Markdown and run.json into ``folder``."""
    written = {folder / "per_image.csv": per_image_csv(run.records), folder / "run.json": _json(metadata)}
    for name, points in summary.items():
        results = compressai_results(name, run.codecs[name].description(), points)
        written[folder / f"{name}.json"] = _json(results)
    written[folder / "summary.md"] = summary_markdown(run, summary, metadata)
    written[folder / "bd-rate.md"] = bd_markdown
    for path, text in written.items():
        write_atomic(path, text.encode("utf-8"), overwrite=True)
    return list(written)


def _json(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def summary_markdown(run: BenchRun, summary: dict[str, list[Point]], metadata: dict[str, Any]) -> str:
    lines = [f"# tcodec bench: {len(run.images)} images from {run.config.dataset}", "",
             f"Run {metadata['date']} on {metadata['machine']['processor']} "
             f"({metadata['machine']['cpu_count']} CPUs), {run.config.jobs} job(s) at a time.", "",
             f"Averaging: {AVERAGING}.", "", "## Codecs", ""]
    for name, info in metadata["codecs"].items():
        lines.append(f"- `{name}` (quality = {info['quality']}): {info['description']}")
    lines += ["", "## Results", "", markdown_table(SUMMARY_COLUMNS, summary_rows(summary))]
    if run.unavailable_metrics or run.dataset_unavailable:
        lines += ["## Metrics not measured", ""]
        lines += [f"- {key}: {reason}" for key, reason in run.unavailable_metrics.items()]
        lines += [f"- {line}" for line in dataset_reasons(run)]
        lines.append("")
    if run.dataset_scores:
        lines += ["## Dataset-scope metrics", "", DATASET_METHOD, ""]
        lines += [f"- {key} at {codec} q{format_quality(quality)}: {_number(score.value, 4)} "
                  f"({score.samples} samples from {score.images} images)"
                  for (codec, quality), found in run.dataset_scores.items() for key, score in found.items()]
        lines.append("")
    lines += ["## Timing and memory", "", metadata["timing_and_memory"], "",
              "BD-rates: see bd-rate.md; plots: rd-psnr.png, rd-ms-ssim.png and rd-<metric>.png for the others.", ""]
    return "\n".join(lines)
