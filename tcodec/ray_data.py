"""tcodec on Ray Data: encode a Dataset of images to ``.tcz`` bytes and back, on actors
that each load a model once; and what ``tcodec encode --engine ray`` shares with it
(joining a cluster, sizing the actor pool).

>>> import ray, tcodec.ray_data  # doctest: +SKIP
>>> files = ray.data.read_binary_files("s3://bucket/photos/", include_paths=True)  # doctest: +SKIP
>>> tcz = tcodec.ray_data.encode_dataset(files, column="bytes", backend="taco", quality=3)  # doctest: +SKIP
>>> images = tcodec.ray_data.decode_dataset(tcz)  # column "image": HxWxC uint8 arrays  # doctest: +SKIP

Ray, Ray Data and pyarrow are imported only here and in :mod:`tcodec.cli.ray_batch`, when
called (``pip install 'tcodec[ray]'``); importing this module costs nothing.

Sizing the pool (:func:`actor_plan`) is where a small cluster can deadlock: actors that
reserve every CPU leave none for Ray Data's read tasks, and the job waits forever (measured
on 2 CPUs: two actors of 1 CPU each behind a read stalled for over 10 minutes; two of 0.75
CPU stall as well, since a read asks for a whole CPU). Actors therefore reserve fractions
of a CPU that leave one whole CPU per node free, and the threads each actor's model may
use are set apart from that reservation (on two cores: two actors of one thread, or one
of two threads).
"""

from __future__ import annotations

import logging
import math
import os
import signal
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

from tcodec.errors import BackendError, InputError, TcodecError, one_line
from tcodec.limits import DEFAULT_LIMITS, Limits

INSTALL_HINT = "pip install 'tcodec[ray]'"
TASK_CPUS = 1.0  # what a Ray Data task (a read, a map) asks by default: kept free on every node


def require_ray():
    """The ``ray`` module, with Ray Data and pyarrow's filesystems imported.

    Raises:
        BackendError: they are not installed (one line saying what to install).
    """
    try:
        import pyarrow.fs  # noqa: F401
        import ray
        import ray.data  # noqa: F401
    except ImportError as error:
        raise BackendError(f"the Ray engine needs ray[data] and pyarrow ({error.name or error} is missing): "
                           f"{INSTALL_HINT}") from None
    return ray


# --- the cluster -----------------------------------------------------------------------


@contextmanager
def connected(address: str | None = None, *, env: Mapping[str, str] | None = None) -> Iterator[bool]:
    """Ray, initialised for the block: the session this process already has, else the
    cluster at ``address`` (``"auto"``, ``"host:port"``, ``"ray://..."``; without one,
    ``RAY_ADDRESS``'s, as under ``ray job submit``), else a new local instance with this
    machine's CPUs, stopped at the end. ``env`` is passed to the job's workers. Yields
    whether the instance was started here.

    Raises:
        BackendError: Ray is not installed.
        InputError: the cluster cannot be reached.
    """
    ray = require_ray()
    if ray.is_initialized():
        yield False
        return
    address = address or os.environ.get("RAY_ADDRESS") or "local"  # not a cluster `ray start` left running
    options = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    if env:
        options["runtime_env"] = {"env_vars": dict(env)}
    notices = logging.getLogger("ray._private.authentication.authentication_token_setup")
    notices.addFilter(_secure_default_notice)
    on_sigterm = signal.getsignal(signal.SIGTERM)
    try:
        ray.init(address=address, **options)
    except (ConnectionError, RuntimeError, ValueError) as error:
        raise InputError(f"cannot join the Ray cluster at {address}: {one_line(error)}") from None
    finally:
        notices.removeFilter(_secure_default_notice)
    if callable(on_sigterm) and threading.current_thread() is threading.main_thread():
        # Ray's core installs a handler that prints a stack and dies; the CLI's ends the job
        # as Ctrl-C does (exit 143, the instance stopped, no partial output)
        signal.signal(signal.SIGTERM, on_sigterm)
    _quiet_ray_data()
    try:
        yield address == "local"
    finally:
        ray.shutdown()


def _secure_default_notice(record: logging.LogRecord) -> bool:
    """Ray announces, on every local start, that it secured the instance as it should;
    a warning that it is *not* secured still shows."""
    return not record.getMessage().startswith("Token authentication is enabled for this Ray cluster")


def _quiet_ray_data() -> None:
    """Ray Data's progress bars and per-run log lines would mix with tcodec's own
    messages on stderr; its errors still show."""
    import ray.data

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)


def tcodec_environment() -> dict[str, str]:
    """This process's ``TCODEC_*`` variables (where models live, the limits' defaults),
    for a cluster's workers, which do not inherit the driver's environment."""
    return {key: value for key, value in os.environ.items() if key.startswith("TCODEC_")}


# --- sizing the actor pool -------------------------------------------------------------


@dataclass(frozen=True)
class ActorPlan:
    """How many actors convert, and what each one asks of the cluster."""

    size: int  # actors
    num_cpus: float  # CPUs each reserves: a scheduling claim, fractional (0 on 1-CPU nodes)
    num_gpus: float  # GPUs each reserves (0 on CPUs)
    threads: int  # threads each actor's model may run (torch's intra-op threads)


def actor_plan(node_cpus: list[float], gpus: float, *, workers: int | None = None, device: str = "auto") -> ActorPlan:
    """The actor pool for a cluster whose nodes have ``node_cpus`` CPUs (and ``gpus`` GPUs
    in all): ``workers`` actors (default one per CPU, or per GPU with ``device="cuda"``),
    each reserving a share of a CPU small enough that the actors fit beside one free CPU
    per node, however Ray places them: a Ray Data task (a read) can always start. The
    claim only steers scheduling; how much CPU an actor uses is its ``threads``.

    Raises:
        InputError: ``device`` asks for CUDA and the cluster has no GPU; no CPUs at all.
    """
    total = sum(node_cpus)
    if total <= 0:
        raise InputError("the Ray cluster has no CPUs to convert on")
    on_gpu = device.startswith("cuda")
    if on_gpu and gpus < 1:
        raise InputError(f"--device {device}: the Ray cluster has no GPU (leave out --device, or use cpu)")
    size = workers or (int(gpus) if on_gpu else max(1, int(total)))
    threads = 1 if on_gpu else max(1, min(int(max(node_cpus)), int(total // size)))
    # if the free CPUs add up to one per node, some node has a whole one, wherever the actors went
    spare = TASK_CPUS * sum(cpus >= TASK_CPUS for cpus in node_cpus)
    claim = max(0.0, min(1.0, (total - spare) / size))
    while claim > 0 and not _fits(node_cpus, claim, size):
        claim *= 0.9  # rounding down node by node can leave an actor out
    num_gpus = 0.0 if not on_gpu else (1.0 if size <= gpus else math.floor(1e4 * gpus / size) / 1e4)
    return ActorPlan(size, math.floor(1e4 * claim) / 1e4, num_gpus, threads)  # Ray counts in 1e-4 units


def _fits(node_cpus: list[float], claim: float, size: int) -> bool:
    """Whether ``size`` actors of ``claim`` CPUs fit on the nodes, each keeping a task's CPU."""
    return sum(math.floor(max(0.0, cpus - TASK_CPUS) / claim + 1e-9) for cpus in node_cpus) >= size


def cluster_plan(workers: int | None, device: str) -> ActorPlan:
    """:func:`actor_plan` for the cluster this process is connected to."""
    ray = require_ray()
    node_cpus = [node["Resources"].get("CPU", 0.0) for node in ray.nodes() if node.get("Alive")]
    return actor_plan(node_cpus, ray.cluster_resources().get("GPU", 0.0), workers=workers, device=device)


def limit_threads(threads: int) -> None:
    """Keep this process's numeric libraries to ``threads`` threads; called first in each
    actor, before torch is imported (its pool reads the variables when it starts)."""
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[name] = str(threads)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(threads)


# --- the Dataset API -------------------------------------------------------------------


def encode_dataset(
    dataset,
    *,
    column: str = "image",
    output_column: str = "tcz",
    backend: str = "jpeg",
    quality: float | None = None,
    caption_column: str | None = None,
    store_caption: bool | None = None,
    device: str = "auto",
    options: Mapping[str, str] | None = None,
    max_bytes: int | None = None,
    target_bpp: float | None = None,
    limits: Limits = DEFAULT_LIMITS,
    workers: int | None = None,
    on_error: str = "raise",
):
    """A Ray Dataset with ``output_column`` added: each row's image as ``.tcz`` bytes.

    ``column`` holds encoded image files (``bytes``, as ``ray.data.read_binary_files``
    gives them: the result is then byte for byte ``tcodec.encode`` of those bytes, and
    what ``tcodec encode`` writes), paths or URIs (``str``), or pixel arrays (HxW or HxWxC
    ``uint8``, as ``ray.data.read_images`` gives them; such a reader has already dropped
    EXIF orientation). Other arguments are :func:`tcodec.encode`'s; ``caption_column``
    names a column of captions (None or text per row). ``workers`` actors convert
    (default: one per CPU, or per GPU with ``device="cuda"``), each loading the model once.
    ``on_error="record"`` keeps failing rows, with None in ``output_column`` and the
    message in ``tcodec_error``; ``"raise"`` fails the dataset on the first.

    Raises:
        BackendError: Ray is not installed. InputError: bad settings, checked here
        before any row is read; failures of rows are raised when the dataset runs.
    """
    from tcodec import api

    api.check_quality(backend, quality)
    api.check_device(device)
    settings = dict(backend=backend, quality=quality, store_caption=store_caption, device=device,
                    options=dict(options or {}), max_bytes=max_bytes, target_bpp=target_bpp, limits=limits)
    work = _Rows("encode", column, output_column, caption_column, settings, on_error)
    return _map(dataset, work, workers, device)


def decode_dataset(
    dataset,
    *,
    column: str = "tcz",
    output_column: str = "image",
    device: str = "auto",
    options: Mapping[str, str] | None = None,
    limits: Limits = DEFAULT_LIMITS,
    workers: int | None = None,
    on_error: str = "raise",
):
    """A Ray Dataset with ``output_column`` added: each row's ``.tcz`` (bytes, path or
    URI) decoded to a ``uint8`` array (HxW for grayscale, HxWx3), the pixels of
    :func:`tcodec.decode` (``Dataset.write_images`` writes them out).
    ``workers`` and ``on_error`` as in :func:`encode_dataset`.

    Raises:
        BackendError: Ray is not installed. InputError: bad settings.
    """
    from tcodec import api

    api.check_device(device)
    settings = dict(device=device, options=dict(options or {}), limits=limits)
    work = _Rows("decode", column, output_column, None, settings, on_error)
    return _map(dataset, work, workers, device)


def _map(dataset, work: "_Rows", workers: int | None, device: str):
    ray = require_ray()
    if work.on_error not in ("raise", "record"):
        raise InputError(f"on_error must be 'raise' or 'record', not {work.on_error!r}")
    if not ray.is_initialized():
        ray.init(include_dashboard=False, logging_level=logging.WARNING)
    plan = cluster_plan(workers, device)
    return dataset.map_batches(
        _RowActor, fn_constructor_kwargs={"work": work, "threads": plan.threads}, batch_size=1,
        batch_format="pyarrow", compute=ray.data.ActorPoolStrategy(size=plan.size),
        num_cpus=plan.num_cpus, num_gpus=plan.num_gpus or None)


@dataclass(frozen=True)
class _Rows:
    """What each row's conversion needs; pickled to the actors."""

    direction: str  # "encode" or "decode"
    column: str
    output_column: str
    caption_column: str | None
    settings: dict
    on_error: str

    def convert(self, value, caption: str | None):
        from tcodec import api

        limits = self.settings["limits"]
        source = _source(value, limits)
        if self.direction == "encode":
            return api.encode(source, caption=caption, **self.settings)
        import numpy as np

        return np.asarray(api.decode(source, **self.settings))


def _source(value, limits: Limits):
    """A row's value as what :func:`tcodec.encode` / :func:`tcodec.decode` take."""
    import numpy as np

    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        return read_location(value, limits.max_input_bytes) if "://" in value else value
    if isinstance(value, np.ndarray):
        from PIL import Image

        try:
            return Image.fromarray(value)
        except (TypeError, ValueError) as error:
            raise InputError(f"a {value.dtype} array of shape {value.shape} is not an image ({error})") from None
    raise InputError(f"cannot convert a {type(value).__name__}: give bytes, a path or an image array")


def read_location(uri: str, max_bytes: int) -> bytes:
    """The bytes of the file at ``uri`` (any scheme pyarrow's filesystems open), at most
    ``max_bytes``.

    Raises:
        InputError: it cannot be opened or read, or is longer.
    """
    require_ray()
    from pyarrow import fs

    try:
        filesystem, path = fs.FileSystem.from_uri(uri)
    except Exception as error:  # pyarrow raises ArrowInvalid, OSError, ... for unknown schemes or credentials
        raise InputError(f"{uri}: cannot open ({_arrow_reason(error)})") from None
    return read_bounded(filesystem, path, uri, max_bytes)


def read_bounded(filesystem, path: str, label: str, max_bytes: int,
                 raised_by: str | None = "--max-input-bytes") -> bytes:
    """``path`` on a pyarrow ``filesystem``, refused past ``max_bytes`` as local reads are."""
    hint = f" ({raised_by} raises it)" if raised_by else ""
    too_big = InputError(f"{label}: larger than the input limit of {max_bytes:,} bytes{hint}")
    try:
        with filesystem.open_input_stream(path) as stream:
            data = stream.read(max_bytes + 1)
    except FileNotFoundError:
        raise InputError(f"{label}: no such file") from None
    except Exception as error:  # pyarrow's OSError subclasses and ArrowException alike
        raise InputError(f"{label}: cannot read ({_arrow_reason(error)})") from None
    if len(data) > max_bytes:
        raise too_big
    return data


def _arrow_reason(error: Exception) -> str:
    return str(error).splitlines()[0] if str(error) else type(error).__name__


class _RowActor:
    """One per actor: converts a batch of rows; the model stays loaded between batches
    (the backends cache it per process)."""

    def __init__(self, work: _Rows, threads: int):
        limit_threads(threads)
        self.work = work

    def __call__(self, table):
        """``table``: a pyarrow batch (numpy batches turn a missing caption into NaN)."""
        work = self.work
        outputs, errors = [], []
        values = _values(table, work.column)
        captions = table.column(work.caption_column).to_pylist() if work.caption_column else [None] * len(values)
        for value, caption in zip(values, captions):
            try:
                outputs.append(work.convert(value, caption))
                errors.append(None)
            except TcodecError as error:
                if work.on_error == "raise":
                    raise
                outputs.append(None)
                errors.append(str(error))
        table = table.append_column(work.output_column, _arrow_column(outputs))
        if work.on_error == "record":
            import pyarrow as pa

            table = table.append_column("tcodec_error", pa.array(errors, pa.string()))
        return table


def _values(table, name: str) -> list:
    """A column's values as Python objects; Ray's tensor columns (``read_images``) as arrays."""
    import pyarrow as pa

    column = table.column(name)
    if isinstance(column.type, pa.ExtensionType):
        return list(column.combine_chunks().to_numpy(zero_copy_only=False))
    return column.to_pylist()


def _arrow_column(values: list):
    """``.tcz`` bytes as a binary column, decoded images as one of Ray's tensor columns
    (shapes may differ from row to row)."""
    import numpy as np
    import pyarrow as pa

    if not any(isinstance(value, np.ndarray) for value in values):
        return pa.array(values, pa.binary())
    if any(value is None for value in values):
        return pa.nulls(len(values))  # a failed row (kept by on_error="record"): batches hold one row
    from ray.data.extensions import ArrowTensorArray

    return ArrowTensorArray.from_numpy(values)
