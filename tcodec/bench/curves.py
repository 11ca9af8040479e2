"""From per-image results to rate-distortion curves: averages per codec and quality,
CompressAI's results JSON, published anchors, and the BD-rate table.

Averaging follows CompressAI's ``eval_model``: each metric and the bpp are computed per
image, then averaged (arithmetic mean) over the images. A point's MS-SSIM averages the
images large enough for it (the same images for every codec, as it depends on size only).
A dataset-scope metric (FID, KID, CMMD) is one number per point, computed over all its
images at once; the point keeps how many samples stood behind it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from statistics import fmean
from typing import Any

from tcodec.bench.bdrate import BjontegaardError, Curve, bd_quality, bd_rate
from tcodec.bench.metrics import METRICS
from tcodec.errors import InputError

# keys in CompressAI's results JSON; older files say "psnr" and "ms-ssim"
PSNR_KEYS = ("psnr-rgb", "psnr")
MS_SSIM_KEYS = ("ms-ssim-rgb", "ms-ssim")
MS_SSIM_DB_KEY = "ms-ssim-db-rgb"  # -10 log10(1 - MS-SSIM), in some paper curves


@dataclass(frozen=True)
class Point:
    """One codec at one quality, averaged over the images."""

    codec: str
    quality: float
    images: int
    bpp: float
    psnr: float | None
    ms_ssim: float | None
    ms_ssim_images: int
    encoding_time: float
    decoding_time: float
    peak_memory_mib: float | None  # the largest over the images
    others: tuple[tuple[str, float], ...] = ()  # every other metric's mean, by key (e.g. st-lpips-alex)
    samples: tuple[tuple[str, int], ...] = ()  # dataset-scope metrics: the samples (patches, images) behind each


@dataclass(frozen=True)
class RDCurve:
    """A curve to plot and compare: one of ours, or an anchor read from a JSON file."""

    label: str
    bpp: tuple[float, ...]
    psnr: tuple[float | None, ...]
    ms_ssim: tuple[float | None, ...]
    anchor: bool = False
    name: str = ""  # an anchor's own name, e.g. "JPEG"
    others: dict[str, tuple[float | None, ...]] = field(default_factory=dict, compare=False)  # by metric key


def summarize(records: list[dict[str, Any]], codecs: list[str],
              dataset_scores: dict[tuple[str, float], dict[str, Any]] | None = None) -> dict[str, list[Point]]:
    """Points per codec, qualities ascending; ``dataset_scores``: the dataset-scope
    metrics' :class:`~tcodec.bench.metrics.DatasetScore` by (codec, quality) and key."""
    groups: dict[tuple[str, float], list[dict[str, Any]]] = {}
    for record in records:
        groups.setdefault((record["codec"], record["quality"]), []).append(record)
    summary: dict[str, list[Point]] = {codec: [] for codec in codecs}
    for (codec, quality), group in sorted(groups.items(), key=lambda item: (codecs.index(item[0][0]), item[0][1])):
        point = _point(codec, quality, group)
        scores = (dataset_scores or {}).get((codec, quality), {})
        if scores:
            others = dict(point.others) | {key: score.value for key, score in scores.items()}
            point = replace(point, others=tuple(sorted(others.items())),
                            samples=tuple(sorted((key, score.samples) for key, score in scores.items())))
        summary[codec].append(point)
    return summary


def _point(codec: str, quality: float, group: list[dict[str, Any]]) -> Point:
    def mean_of(key: str) -> tuple[float | None, int]:
        values = [r["metrics"][key] for r in group if key in r["metrics"]]
        return (fmean(values) if values else None), len(values)

    memory = [r["peak_memory_mib"] for r in group if r.get("peak_memory_mib") is not None]
    ms_ssim, ms_ssim_images = mean_of("ms-ssim-rgb")
    other_keys = sorted({key for r in group for key in r["metrics"]} - {"psnr-rgb", "ms-ssim-rgb"})
    return Point(codec, quality, len(group), fmean(r["bpp"] for r in group), mean_of("psnr-rgb")[0],
                 ms_ssim, ms_ssim_images, fmean(r["encoding_time"] for r in group),
                 fmean(r["decoding_time"] for r in group), max(memory) if memory else None,
                 tuple((key, mean_of(key)[0]) for key in other_keys))


def compressai_results(name: str, description: str, points: list[Point]) -> dict[str, Any]:
    """A codec's curve in CompressAI's results format (plus quality and peak memory)."""
    results = {
        "quality": [int(p.quality) if float(p.quality).is_integer() else p.quality for p in points],
        "bpp": [p.bpp for p in points],
        "psnr-rgb": [_finite(p.psnr) for p in points],
        "ms-ssim-rgb": [_finite(p.ms_ssim) for p in points],
        **{key: [_finite(dict(p.others).get(key)) for p in points]
           for key in sorted({key for p in points for key, _ in p.others})},
        **{f"{key}-samples": [dict(p.samples).get(key) for p in points]
           for key in sorted({key for p in points for key, _ in p.samples})},
        "encoding_time": [p.encoding_time for p in points],
        "decoding_time": [p.decoding_time for p in points],
        "peak_memory_mib": [p.peak_memory_mib for p in points],
    }
    return {"name": name, "description": description, "results": results}


def _finite(value: float | None) -> float | None:
    """JSON has no infinity (a lossless PSNR); such a value is written as null."""
    return value if value is not None and math.isfinite(value) else None


def curve_from_points(label: str, points: list[Point]) -> RDCurve:
    others = {key: tuple(dict(p.others).get(key) for p in points) for key in other_metric_keys({label: points})}
    return RDCurve(label, tuple(p.bpp for p in points), tuple(p.psnr for p in points),
                   tuple(p.ms_ssim for p in points), others=others)


def other_metric_keys(summary: dict[str, list[Point]]) -> tuple[str, ...]:
    """The metrics besides PSNR and MS-SSIM that some point has, in the registry's order."""
    present = {key for points in summary.values() for p in points for key, _ in p.others}
    return tuple(key for key in METRICS if key in present)


def load_anchors(folder: Path) -> list[RDCurve]:
    """Every ``*.json`` in ``folder`` in CompressAI's results format, sorted by file name.

    Raises:
        InputError: no such folder, no JSON in it, or a JSON in another format.
    """
    if not folder.is_dir():
        raise InputError(f"{folder}: no such folder of anchor curves")
    files = sorted(folder.glob("*.json"))
    if not files:
        raise InputError(f"{folder}: no anchor curves (*.json in CompressAI's results format)")
    return [_read_anchor(file) for file in files]


def _read_anchor(file: Path) -> RDCurve:
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
        results = data["results"]
        bpp = tuple(float(v) for v in results["bpp"])
        psnr = _first_present(results, PSNR_KEYS, len(bpp))
        ms_ssim = _first_present(results, MS_SSIM_KEYS, len(bpp))
        if all(v is None for v in ms_ssim) and MS_SSIM_DB_KEY in results:
            in_db = _first_present(results, (MS_SSIM_DB_KEY,), len(bpp))
            ms_ssim = tuple(None if v is None else 1 - 10 ** (-v / 10) for v in in_db)
        name = str(data.get("name") or "")
        others = {key: _first_present(results, (key,), len(bpp)) for key in _OTHER_KEYS if key in results}
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise InputError(f"{file}: not a CompressAI results file ({error})") from None
    # the file name tells apart anchors of one name (CompressAI's two bmshj2018-hyperprior)
    return RDCurve(f"{file.parent.name}/{file.stem}", bpp, psnr, ms_ssim, anchor=True, name=name, others=others)


def _first_present(results: dict[str, Any], keys: tuple[str, ...], length: int) -> tuple[float | None, ...]:
    for key in keys:
        if key in results:
            values = tuple(None if v is None else float(v) for v in results[key])
            if len(values) != length:
                raise ValueError(f"{key} has {len(values)} values for {length} rates")
            return values
    return (None,) * length


_OTHER_KEYS = tuple(key for key in METRICS if key not in ("psnr-rgb", "ms-ssim-rgb"))  # registry order


def ms_ssim_db(value: float | None) -> float | None:
    """MS-SSIM on a dB scale, -10 log10(1 - MS-SSIM), as learned-compression papers plot it."""
    if value is None or value >= 1:
        return None
    return -10 * math.log10(1 - value)


@dataclass(frozen=True)
class BdRow:
    label: str
    bd_rate_psnr: float | str  # % or the reason it is not defined
    bd_psnr: float | str  # dB
    bd_rate_ms_ssim: float | str  # % at equal MS-SSIM (in dB)
    others: tuple[tuple[str, float | str], ...] = ()  # BD-rate (%) at equal value of each other metric


def bd_table(curves: list[RDCurve], reference: RDCurve, method: str, max_bpp: float | None) -> list[BdRow]:
    """BD-rate and BD-PSNR of every curve but the reference, against the reference."""
    def psnr(curve: RDCurve) -> Curve | None:
        return _bd_curve(curve.bpp, curve.psnr, max_bpp)

    def ms_ssim(curve: RDCurve) -> Curve | None:
        return _bd_curve(curve.bpp, [ms_ssim_db(v) for v in curve.ms_ssim], max_bpp)

    def delta(function, curve: RDCurve, points_of) -> float | str:
        ours, theirs = points_of(reference), points_of(curve)
        what = "PSNR" if points_of is psnr else "MS-SSIM"
        if ours is None:
            return f"the reference has no {what}"
        if theirs is None:
            return f"no {what} values"
        try:
            return function(ours, theirs, method)
        except BjontegaardError as error:
            return str(error)

    def other(key: str):
        """A quality axis for BD-rate: the metric itself, or its negative where lower is better."""
        sign = 1 if METRICS[key].higher_is_better else -1

        def points_of(curve: RDCurve) -> Curve | None:
            values = curve.others.get(key)
            return None if values is None else _bd_curve(curve.bpp, [None if v is None else sign * v for v in values],
                                                         max_bpp)
        return points_of

    def other_delta(curve: RDCurve, key: str) -> float | str:
        points_of = other(key)
        ours, theirs = points_of(reference), points_of(curve)
        if ours is None or theirs is None:
            return f"{'the reference has' if ours is None else 'it has'} no {key} values"
        try:
            return bd_rate(ours, theirs, method)
        except BjontegaardError as error:
            return str(error)

    keys = [key for key in _OTHER_KEYS if any(key in curve.others for curve in curves)]
    return [BdRow(curve.label, delta(bd_rate, curve, psnr), delta(bd_quality, curve, psnr),
                  delta(bd_rate, curve, ms_ssim), tuple((key, other_delta(curve, key)) for key in keys))
            for curve in curves if curve is not reference]


def against_same_name(curves: list[RDCurve], method: str, max_bpp: float | None) -> list[BdRow]:
    """Each curve of the run against the anchor of its name (``webp`` vs ``.../webp``)."""
    ours = {curve.label: curve for curve in curves if not curve.anchor}
    rows = []
    for anchor in curves:
        mine = ours.get(anchor.label.rsplit("/", 1)[-1]) if anchor.anchor else None
        if mine is not None:
            row = bd_table([mine], anchor, method, max_bpp)[0]
            rows.append(replace(row, label=f"{mine.label} vs {anchor.label}"))
    return rows


def _bd_curve(bpp, values, max_bpp: float | None) -> Curve | None:
    """The points a BD computation uses; None if the curve has no such values at all."""
    if all(v is None for v in values):
        return None
    pairs = [(r, q) for r, q in zip(bpp, values)
             if q is not None and math.isfinite(q) and (max_bpp is None or r <= max_bpp)]
    return Curve([r for r, _ in pairs], [q for _, q in pairs])


def find_curve(curves: list[RDCurve], wanted: str) -> RDCurve:
    """The curve a ``--reference`` names: a codec of the run first, else an anchor by its
    label, file name or own name.

    Raises:
        InputError: none matches.
    """
    for matches in (lambda c: c.label == wanted, lambda c: c.anchor and c.label.rsplit("/", 1)[-1] == wanted,
                    lambda c: c.anchor and c.name == wanted):
        found = [curve for curve in curves if matches(curve)]
        if found:
            return found[0]
    raise InputError(f"--reference {wanted!r} names no curve (have: {', '.join(c.label for c in curves)})")
