"""Running a bench: find the images, plan every image x codec x quality, measure what
the cache does not have yet (in parallel with ``jobs`` > 1), and collect the results
in a fixed order: codecs as given, qualities ascending, images sorted by path. Then the
dataset-scope metrics (FID, KID, CMMD): per codec and quality, over all images of the run,
from the features each measurement stored."""

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
from tcodec.bench.cache import FeatureStore, ResultCache, result_key
from tcodec.caption_files import CaptionSource
from tcodec.bench.codecs import BenchCodec, get_codec
from tcodec.bench.metrics import METRICS, DatasetScore, Metric, MetricUnavailable, embeddings, split_metrics
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
    # dataset-scope metrics by (codec, quality): their scores, and why one is missing
    dataset_scores: dict[tuple[str, float], dict[str, DatasetScore]] = field(default_factory=dict)
    dataset_unavailable: dict[tuple[str, float], dict[str, str]] = field(default_factory=dict)
    dataset_seconds: float = 0.0  # comparing the stored features, all points together


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
    """Measure every planned task that the cache lacks, collect all results in order, then
    score the dataset-scope metrics."""
    usable, _ = split_metrics(list(run.config.metrics) if run.config.metrics else None)
    metric_keys = tuple(metric.key for metric in usable)
    stores = feature_folders(usable, cache.path)
    tasks = plan(run)
    missing = [task for task in tasks if not _is_complete(cache.get(task.key), usable, task, stores)]
    todo = list({task.key: task for task in missing}.values())  # identical images are measured once
    # measured image by image, so each image is read once
    order = {image.name: index for index, image in enumerate(run.images)}
    todo.sort(key=lambda task: order[task.image.name])
    run.reused = len(tasks) - len(missing)
    for _ in range(len(tasks) - len(todo)):
        advance()
    work_dir = run.config.keep_encoded or Path(tempfile.mkdtemp(prefix="tcodec-bench-"))
    try:
        for task, outcome in _outcomes(todo, run.config, metric_keys, work_dir, stores):
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
    score_datasets(run, tasks, cache, [metric for metric in usable if metric.scope == "dataset"], stores)
    return run


def feature_folders(metrics: list[Metric], cache_path: Path) -> dict[str, str]:
    """Where each embedding of the dataset-scope ``metrics`` keeps its features: a folder
    beside the cache named by the embedding and the hash of its weights, so that other
    weights never reuse them."""
    from tcodec import weights

    folders = {}
    for name, (embedding, _) in embeddings(metrics).items():
        model_hash = weights.status(embedding.weights)["hash"] or "unknown"
        folders[name] = str(FeatureStore.beside(cache_path) / f"{name}-{model_hash[:16]}")
    return folders


def _is_complete(record: dict[str, Any] | None, metrics: list[Metric], task: Task, stores: dict[str, str]) -> bool:
    """A cached result is reused if it has every metric that can be measured now: a value
    or the reason there is none; for a dataset-scope metric, its stored features; for one
    that reads the caption, measured with the image's caption of this run."""
    if record is None:
        return False
    known = set(record.get("metrics", {})) | set(record.get("unavailable", {}))
    if not all(metric.key in known for metric in metrics if metric.scope == "image"):
        return False
    if any(metric.uses_caption for metric in metrics) and record.get("metric_caption") != task.image.caption:
        return False
    for name, (_, keys) in embeddings(metrics).items():
        if all(key in record.get("unavailable", {}) for key in keys):
            continue
        store = FeatureStore(Path(stores[name]))
        if name not in record.get("features", {}) or not (store.has(task.key)
                                                          and store.has(reference_features(task.image))):
            return False
    return True


def reference_features(image: BenchImage) -> str:
    """The stored name of a reference image's features (by content: any codec reuses it)."""
    return f"reference-{image.sha256}"


def score_datasets(run: BenchRun, tasks: list[Task], cache: ResultCache, metrics: list[Metric],
                   stores: dict[str, str]) -> None:
    """Each dataset-scope metric at each codec and quality, over the images measured there:
    their reference features against their decoded features. Too few samples (e.g. no
    patch fits in small images) give a reason instead of a number."""
    import time

    import numpy as np

    started = time.perf_counter()
    points: dict[tuple[str, float], list[Task]] = {}
    for task in tasks:
        points.setdefault((task.codec, task.quality), []).append(task)
    for point, group in points.items():
        for metric in metrics:
            store = FeatureStore(Path(stores[metric.embedding.name]))
            references, decoded, images, left_out = [], [], 0, []
            for task in group:
                record = cache.get(task.key)
                if record is None:
                    continue  # the measurement failed (reported)
                if metric.key in record.get("unavailable", {}):
                    left_out.append(record["unavailable"][metric.key])
                    continue
                rows = store.load(task.key)
                references.append(store.load(reference_features(task.image)))
                decoded.append(rows)
                images += bool(len(rows))
            where = f"{images} of {len(group)} images"
            try:
                if not decoded:
                    raise MetricUnavailable("no image had its features measured"
                                            + (f" ({left_out[0]})" if left_out else ""))
                value, details = metric.compute(np.concatenate(references), np.concatenate(decoded))
            except MetricUnavailable as reason:
                run.dataset_unavailable.setdefault(point, {})[metric.key] = f"{reason}; from {where}"
                continue
            if left_out:
                details = {**details, "images_left_out": len(left_out), "why_left_out": left_out[0]}
            samples = sum(len(rows) for rows in decoded)
            run.dataset_scores.setdefault(point, {})[metric.key] = DatasetScore(value, samples, images, details)
    run.dataset_seconds = time.perf_counter() - started


def _outcomes(todo: list[Task], config: BenchConfig, metric_keys: tuple[str, ...], work_dir: Path,
              stores: dict[str, str]):
    """(task, record or TcodecError) as each task finishes."""
    def arguments(task: Task) -> tuple:
        file = work_dir / task.codec / f"q{format_quality(task.quality)}" / task.image.name
        codec = (task.codec, config.device, config.codec_options(task.codec))
        return (task.image, codec, task.quality, metric_keys, file, config.keep_encoded is not None, task.key, stores)

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
                 file: Path, keep_file: bool, key: str = "", stores: dict[str, str] | None = None) -> dict[str, Any]:
    """Measure one image x codec x quality (in this process or a worker); ``codec_spec``
    is what :func:`get_codec` takes: name, device, options. The features of dataset-scope
    metrics go into ``stores`` (embedding name -> folder), named by ``key``."""
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
    metrics = [METRICS[name] for name in metric_keys]
    reference_pixels, decoded_pixels = np.asarray(reference.convert("RGB")), np.asarray(result.decoded.convert("RGB"))
    values, reasons = measure_image(metrics, reference_pixels, decoded_pixels, seconds, image.caption)
    features, feature_reasons = _store_features(metrics, image, reference_pixels, decoded_pixels, key, stores or {},
                                                seconds)
    record = {
        "image": image.name, "image_sha256": image.sha256, "width": image.width, "height": image.height,
        "codec": codec.name, "quality": quality, "size_bytes": result.size_bytes,
        "bpp": 8 * result.size_bytes / (image.width * image.height),
        "encoding_time": result.encoding_time, "decoding_time": result.decoding_time,
        "peak_memory_mib": result.peak_memory_mib, "peak_gpu_memory_mib": result.peak_gpu_memory_mib,
        "model_hash": result.model_hash, "metrics": values, "unavailable": {**reasons, **feature_reasons},
        "metric_seconds": seconds,
    }
    if features:
        record["features"] = features
    if any(metric.uses_caption for metric in metrics):
        record["metric_caption"] = image.caption
    return record


def _store_features(metrics: list[Metric], image: BenchImage, reference, decoded, key: str, stores: dict[str, str],
                    seconds: dict[str, float]) -> tuple[dict[str, int], dict[str, str]]:
    """Store each embedding's rows for the decoded image (and for the reference, once per
    image); returns the number of rows per embedding, and the reason for each dataset-scope
    metric whose features could not be taken. The time goes into ``seconds`` under the keys
    of the metrics sharing the embedding ("fid+kid")."""
    import time

    from tcodec.bench.metrics import embed_image

    counts, reasons = {}, {}
    for name, (embedding, keys) in embeddings(metrics).items():
        if name not in stores:
            reasons.update({metric_key: "its features have nowhere to go (no feature store)" for metric_key in keys})
            continue
        store = FeatureStore(Path(stores[name]))
        started = time.perf_counter()
        try:
            if not store.has(reference_features(image)):
                store.save(reference_features(image), embed_image(embedding, reference))
            rows = embed_image(embedding, decoded)
            store.save(key, rows)
            counts[name] = len(rows)
        except MetricUnavailable as reason:
            reasons.update({metric_key: str(reason) for metric_key in keys})
        seconds["+".join(keys)] = time.perf_counter() - started
    return counts, reasons


@lru_cache(maxsize=4)
def _reference_image(path: Path, sha256: str):
    """The image as tcodec codes it (L or RGB); kept for the next tasks on it
    (``sha256`` in the key: a file changed in between is read again)."""
    return load_image(path).image
