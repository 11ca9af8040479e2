"""Running a bench: find the images, plan every image x codec x quality, measure what
the cache does not have yet (in parallel with ``jobs`` > 1), and collect the results
in a fixed order: codecs as given, qualities ascending, images sorted by path."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from tcodec.images import IMAGE_SUFFIXES
from tcodec.bench.cache import ResultCache, result_key
from tcodec.caption_files import CaptionSource
from tcodec.bench.codecs import BenchCodec, get_codec
from tcodec.bench.metrics import METRICS, split_metrics
from tcodec.bench.qualities import format_quality
from tcodec.errors import InputError, TcodecError
from tcodec.fileio import read_input
from tcodec.images import load_image
from tcodec.limits import DEFAULT_LIMITS


@dataclass(frozen=True)
class BenchConfig:
    dataset: Path
    codecs: tuple[str, ...]
    qualities: dict[str, tuple[float, ...] | None]  # None: the codec's defaults
    output: Path
    metrics: tuple[str, ...] | None = None  # None: every registered metric
    cache: Path | None = None  # None: output / "cache.jsonl"
    jobs: int = 1
    limit: int | None = None
    device: str = "auto"
    keep_encoded: Path | None = None  # keep the encoded files here
    options: dict[str, dict[str, str]] = field(default_factory=dict)  # codec -> option -> value
    captions: dict[str, str] = field(default_factory=dict)  # image path or file name -> caption

    def codec_options(self, codec: str) -> tuple[tuple[str, str], ...]:
        return tuple(sorted(self.options.get(codec, {}).items()))


@dataclass(frozen=True)
class BenchImage:
    path: Path
    name: str  # path relative to the dataset, with /
    sha256: str
    width: int
    height: int
    mode: str
    notes: tuple[str, ...] = ()
    caption: str | None = None


@dataclass(frozen=True)
class Task:
    image: BenchImage
    codec: str
    quality: float
    key: str


@dataclass
class BenchRun:
    config: BenchConfig
    images: list[BenchImage]
    codecs: dict[str, BenchCodec]
    qualities: dict[str, tuple[float, ...]]
    model_hashes: dict[str, str | None]
    unavailable_metrics: dict[str, str]  # metric -> why it was not measured at all
    records: list[dict[str, Any]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    measured: int = 0
    reused: int = 0


def find_images(dataset: Path, limit: int | None = None) -> list[Path]:
    """Image files under ``dataset`` (or the file itself), sorted, hidden ones skipped.

    Raises:
        InputError: no such path, unreadable folder, or no images in it.
    """
    if dataset.is_file():
        return [dataset]
    if not dataset.is_dir():
        raise InputError(f"{dataset}: no such file or folder")
    found = []

    def fail(error: OSError) -> None:
        raise InputError(f"{error.filename}: cannot list folder ({error.strerror})")

    for root, dirs, files in os.walk(dataset, onerror=fail):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found += [Path(root) / name for name in files
                  if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_SUFFIXES]
    if not found:
        raise InputError(f"{dataset}: no images (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    found.sort(key=lambda path: path.relative_to(dataset).as_posix())
    return found[:limit] if limit else found


def read_image(path: Path, dataset: Path, captions: dict[str, str] | None = None) -> BenchImage:
    """Hash an image file, check that it decodes, and find its caption.

    Raises:
        InputError: unreadable or not an image.
    """
    data = read_input(path, DEFAULT_LIMITS.max_input_bytes)
    name = path.name if dataset.is_file() else path.relative_to(dataset).as_posix()
    loaded = load_image(data, name=str(path))
    image = loaded.image
    caption = CaptionSource(by_path=captions or {}).for_image(path, None if dataset.is_file() else dataset)
    return BenchImage(path, name, hashlib.sha256(data).hexdigest(), image.width, image.height, image.mode,
                      tuple(loaded.notes), caption)


def prepare(config: BenchConfig) -> BenchRun:
    """Everything a run needs before measuring: images, codecs, qualities, metrics.

    Raises:
        InputError, BackendError: bad dataset, codec, quality or metric.
    """
    unknown = [key for key in config.metrics or () if key not in METRICS]
    if unknown:
        raise InputError(f"unknown metric {unknown[0]!r} (known: {', '.join(METRICS)})")
    codecs = {name: get_codec(name, config.device, config.codec_options(name)) for name in config.codecs}
    qualities = {}
    for name, codec in codecs.items():
        qualities[name] = config.qualities.get(name) or codec.default_qualities
        for quality in qualities[name]:
            codec.check_quality(quality)
    images = [read_image(path, config.dataset, config.captions)
              for path in find_images(config.dataset, config.limit)]
    _, reasons = split_metrics(list(config.metrics) if config.metrics else None)
    hashes = {name: codec.current_model_hash() for name, codec in codecs.items()}
    return BenchRun(config, images, codecs, qualities, hashes, reasons)


def codec_identity(run: BenchRun, name: str) -> dict[str, Any]:
    codec = run.codecs[name]
    return {"name": name, "settings": codec.settings(), "versions": codec.versions(),
            "model_hash": run.model_hashes[name]}


def plan(run: BenchRun) -> list[Task]:
    """Every image x codec x quality, codecs in the order given, then qualities, images."""
    tasks = []
    for name in run.codecs:
        identity = codec_identity(run, name)
        for quality in run.qualities[name]:
            for image in run.images:
                caption = image.caption if run.codecs[name].uses_caption else None
                tasks.append(Task(image, name, quality, result_key(image.sha256, identity, quality, caption)))
    return tasks


def execute(run: BenchRun, cache: ResultCache, advance: Callable[[], None] = lambda: None) -> BenchRun:
    """Measure every planned task that the cache lacks, then collect all results in order."""
    usable, _ = split_metrics(list(run.config.metrics) if run.config.metrics else None)
    metric_keys = tuple(metric.key for metric in usable)
    tasks = plan(run)
    missing = [task for task in tasks if not _is_complete(cache.get(task.key), metric_keys)]
    todo = list({task.key: task for task in missing}.values())  # identical images are measured once
    # measured image by image, so each image is read once
    order = {image.name: index for index, image in enumerate(run.images)}
    todo.sort(key=lambda task: order[task.image.name])
    run.reused = len(tasks) - len(missing)
    for _ in range(len(tasks) - len(todo)):
        advance()
    work_dir = run.config.keep_encoded or Path(tempfile.mkdtemp(prefix="tcodec-bench-"))
    try:
        for task, outcome in _outcomes(todo, run.config, metric_keys, work_dir):
            if isinstance(outcome, TcodecError):
                run.failures.append(f"{task.image.name}, {task.codec} q{format_quality(task.quality)}: {outcome}")
            else:
                cache.add({"key": task.key, **outcome})
                run.measured += 1
            advance()
    finally:
        if run.config.keep_encoded is None:
            shutil.rmtree(work_dir, ignore_errors=True)
    # the name is this run's: the key is the image's content, which may have moved
    run.records = [{**cache.get(task.key), "image": task.image.name} for task in tasks if cache.get(task.key)]
    return run


def _is_complete(record: dict[str, Any] | None, metric_keys: tuple[str, ...]) -> bool:
    """A cached result is reused if it has every metric that can be measured now."""
    if record is None:
        return False
    known = set(record.get("metrics", {})) | set(record.get("unavailable", {}))
    return all(key in known for key in metric_keys)


def _outcomes(todo: list[Task], config: BenchConfig, metric_keys: tuple[str, ...], work_dir: Path):
    """(task, record or TcodecError) as each task finishes."""
    def arguments(task: Task) -> tuple:
        file = work_dir / task.codec / f"q{format_quality(task.quality)}" / task.image.name
        codec = (task.codec, config.device, config.codec_options(task.codec))
        return (task.image, codec, task.quality, metric_keys, file, config.keep_encoded is not None)

    if config.jobs <= 1 or len(todo) <= 1:
        for task in todo:
            yield task, _guarded(*arguments(task))
        return
    import multiprocessing

    # spawn: fresh workers, never a fork of a process that may hold torch threads
    with ProcessPoolExecutor(max_workers=config.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(_guarded, *arguments(task)): task for task in todo}
        try:
            for future in as_completed(futures):
                yield futures[future], future.result()
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise


def _guarded(*arguments) -> dict[str, Any] | TcodecError:
    try:
        return measure_task(*arguments)
    except TcodecError as error:
        return error


def measure_task(image: BenchImage, codec_spec: tuple, quality: float, metric_keys: tuple[str, ...],
                 file: Path, keep_file: bool) -> dict[str, Any]:
    """Measure one image x codec x quality (in this process or a worker); ``codec_spec``
    is what :func:`get_codec` takes: name, device, options."""
    import numpy as np

    from tcodec.bench.measure import measure
    from tcodec.bench.metrics import measure_image

    codec = get_codec(*codec_spec)
    reference = _reference_image(image.path, image.sha256)
    file = file.with_name(file.name + codec.suffix)  # a.png.webp: a.png and a.jpg never collide
    result = measure(codec, reference, quality, file, image.caption)
    if not keep_file:
        file.unlink(missing_ok=True)
    seconds: dict[str, float] = {}
    values, reasons = measure_image([METRICS[key] for key in metric_keys],
                                    np.asarray(reference.convert("RGB")), np.asarray(result.decoded.convert("RGB")),
                                    seconds)
    return {
        "image": image.name, "image_sha256": image.sha256, "width": image.width, "height": image.height,
        "codec": codec.name, "quality": quality, "size_bytes": result.size_bytes,
        "bpp": 8 * result.size_bytes / (image.width * image.height),
        "encoding_time": result.encoding_time, "decoding_time": result.decoding_time,
        "peak_memory_mib": result.peak_memory_mib, "peak_gpu_memory_mib": result.peak_gpu_memory_mib,
        "model_hash": result.model_hash, "metrics": values, "unavailable": reasons, "metric_seconds": seconds,
    }


@lru_cache(maxsize=4)
def _reference_image(path: Path, sha256: str):
    """The image as tcodec codes it (L or RGB); kept for the next tasks on it
    (``sha256`` in the key: a file changed in between is read again)."""
    return load_image(path).image
