"""The ``tcodec bench`` command. Imports only Typer here, so ``tcodec --help`` stays fast;
the work happens in the modules it imports when it runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from tcodec.console import EXIT_SOME_FAILED, parse_options, progress_bar, say


def bench(
    dataset: Annotated[Path, typer.Argument(help="Folder of images (searched recursively), or one image.")],
    codecs: Annotated[str, typer.Option(
        "--codecs", "-m", help="Comma-separated: tcodec backends (jpeg, taco, perco) and reference codecs "
        "(webp, avif, jxl, jpeg2000, pillow-jpeg).")] = "jpeg,webp",
    qualities: Annotated[Optional[list[str]], typer.Option(
        "--qualities", "-q", metavar="[CODEC=]SPEC",
        help="Qualities: 10,30,50 or 1-6 or 0-90:10; CODEC=SPEC for one codec (repeatable). "
        "Default: per codec, about 0.1-2 bpp.")] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for every output.")] = Path("tcodec-bench"),
    option: Annotated[Optional[list[str]], typer.Option(
        "--option", "-O", metavar="CODEC.KEY=VALUE",
        help="A codec's option or setting, e.g. -O taco.model=taco-official, -O webp.method=4 (repeatable).")] = None,
    captions: Annotated[Optional[Path], typer.Option(
        help="JSON Lines captions ({\"file\": ..., \"caption\": ...}) for backends whose encoder or "
        "decoder uses them (taco, perco).")] = None,
    metrics: Annotated[Optional[str], typer.Option(
        help="Comma-separated metrics (default all: psnr-rgb, ms-ssim-rgb, st-lpips-alex, ssimulacra2, cvvdp, vmaf, flip, butteraugli, lpips, fid, kid, clip-score, cmmd); "
        "those that cannot run are reported with the reason.")] = None,
    reference: Annotated[Optional[str], typer.Option(
        help="Curve the BD-rates are against: a codec of the run or an anchor's name (default: jpeg, "
        "else the first codec).")] = None,
    anchors: Annotated[Optional[Path], typer.Option(
        help="Folder of published curves (CompressAI results JSON) to plot and compare.")] = None,
    bd_method: Annotated[str, typer.Option(help="Bjontegaard interpolation: pchip or cubic.")] = "pchip",
    bd_max_bpp: Annotated[float, typer.Option(
        help="Use points up to this bpp for BD-rates (0: all points).", min=0)] = 2.0,
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, help="Measurements in parallel (processes).")] = 1,
    limit: Annotated[Optional[int], typer.Option(min=1, help="Only the first N images, in sorted order.")] = None,
    cache: Annotated[Optional[Path], typer.Option(
        help="Results cache (JSON Lines) that makes runs resumable; default OUTPUT/cache.jsonl.")] = None,
    keep_encoded: Annotated[Optional[Path], typer.Option(
        help="Keep the encoded files in this folder (default: a temporary folder, deleted).")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda (learned backends).")] = "auto",
    plots: Annotated[bool, typer.Option("--plots/--no-plots", help="Write RD plots (PNG).")] = True,
) -> None:
    """Compare codecs and qualities on a folder of images: real files, real decoded pixels."""
    from tcodec.api import check_device
    from tcodec.bench.bdrate import METHODS
    from tcodec.caption_files import read_jsonl
    from tcodec.bench.qualities import qualities_per_codec
    from tcodec.bench.runner import BenchConfig
    from tcodec.errors import InputError

    names = [name.strip() for name in codecs.split(",") if name.strip()]
    if not names:
        raise InputError("--codecs names no codec")
    if len(set(names)) != len(names):
        raise InputError(f"--codecs {codecs!r} names a codec twice")
    if bd_method not in METHODS:
        raise InputError(f"--bd-method must be one of {', '.join(METHODS)}, not {bd_method!r}")
    check_device(device)
    config = BenchConfig(
        dataset=dataset, codecs=tuple(names), qualities=qualities_per_codec(qualities or [], names),
        output=output, metrics=tuple(m.strip() for m in metrics.split(",")) if metrics else None,
        cache=cache, jobs=jobs, limit=limit, device=device, keep_encoded=keep_encoded,
        options=parse_codec_options(option or [], names), captions=read_jsonl(captions) if captions else {},
    )
    failures = run_bench(config, reference, anchors, bd_method, bd_max_bpp or None, plots)
    if failures:
        raise typer.Exit(EXIT_SOME_FAILED)


def parse_codec_options(items: list[str], codecs: list[str]) -> dict[str, dict[str, str]]:
    """``["webp.method=4"]`` -> ``{"webp": {"method": "4"}}``.

    Raises:
        InputError: not CODEC.KEY=VALUE, or a codec that is not being run.
    """
    from tcodec.errors import InputError

    options: dict[str, dict[str, str]] = {}
    form = "CODEC.KEY=VALUE (e.g. webp.method=4)"
    for item in items:
        ((target, value),) = parse_options([item], form).items()
        codec, dot, key = target.partition(".")
        if not (dot and codec and key):
            raise InputError(f"option {item!r} is not {form}")
        if codec not in codecs:
            raise InputError(f"option {item!r} is for {codec!r}, which is not in -m {','.join(codecs)}")
        options.setdefault(codec, {})[key] = value
    return options


def run_bench(config, reference: str | None, anchors: Path | None, method: str, max_bpp: float | None,
              plots: bool) -> int:
    """Measure, write every output, print the tables; returns the number of failures."""
    from tcodec.bench.cache import ResultCache
    from tcodec.bench.curves import RDCurve, find_curve, load_anchors
    from tcodec.bench.runner import execute, plan, prepare
    from tcodec.errors import OutputError

    if config.output.exists() and not config.output.is_dir():
        raise OutputError(f"{config.output}: is a file; give a folder for the outputs")
    anchor_curves = load_anchors(anchors) if anchors else []
    reference = reference or ("jpeg" if "jpeg" in config.codecs else config.codecs[0])
    find_curve([RDCurve(name, (), (), ()) for name in config.codecs] + anchor_curves, reference)
    run = prepare(config)  # every check above and here comes before the long part
    for image in run.images:
        for note in image.notes:
            say("warning", f"{image.name}: {note}")
    cache = ResultCache(config.cache or config.output / "cache.jsonl")
    with progress_bar(len(plan(run)), "bench") as advance:
        execute(run, cache, advance)
    for failure in run.failures:
        say("error", failure)
    _report(run, anchor_curves, reference, method, max_bpp, plots)
    print(f"measured {run.measured}, reused {run.reused} from {cache.path}; "
          f"outputs in {config.output}")
    return len(run.failures)


def _report(run, anchor_curves, reference: str, method: str, max_bpp: float | None, plots: bool) -> None:
    from tcodec.bench import report
    from tcodec.bench.curves import (against_same_name, bd_table, curve_from_points, find_curve,
                                     other_metric_keys, summarize)

    summary = summarize(run.records, list(run.codecs), run.dataset_scores)
    others = other_metric_keys(summary)  # ST-LPIPS and the like: columns, BD-rates and plots for each
    measured = [curve_from_points(name, points) for name, points in summary.items() if points]
    curves = measured + anchor_curves
    # with nothing measured (every task failed) there is nothing to compare
    bd_rows = (report.bd_rows(bd_table(curves, find_curve(curves, reference), method, max_bpp), others)
               if measured else [])
    same_codec = report.bd_rows(against_same_name(curves, method, max_bpp), others)
    caption = report.bd_caption(reference, method, max_bpp)
    metadata = report.run_metadata(run, reference, method, max_bpp)
    report.write_outputs(run.config.output, run, summary, metadata,
                         report.bd_markdown(caption, bd_rows, same_codec, others))
    if plots:
        _plot(curves, run.config.output, f"{len(run.images)} images from {run.config.dataset.name}")
    report.print_tables(report.summary_rows(summary, others), bd_rows, caption, same_codec, others)
    cost = report.metric_cost(run.records)
    if cost:
        print(cost)
    if run.dataset_scores:
        print(f"dataset-scope metrics (FID, KID, CMMD) from the stored features: {run.dataset_seconds:.2f} s")
    for key, reason in run.unavailable_metrics.items():
        print(f"not measured: {key}: {reason}")
    for line in report.dataset_reasons(run):
        print(f"not measured: {line}")


def _plot(curves, folder: Path, title: str) -> None:
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        say("warning", "RD plots not written: they need matplotlib (pip install 'tcodec[bench]')")
        return
    from tcodec.bench.plots import plot_rd

    plot_rd(curves, folder, title)
