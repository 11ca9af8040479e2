"""One measured encode and decode: a real file, wall-clock times and peak memory.

Times are ``time.perf_counter`` wall clock around the codec's encode (pixels in memory
to the file's bytes) and decode (the file's bytes to loaded pixels); writing and
reading the file are not timed. The first call of each codec in a process is a
warm-up that is not timed, so one-off costs (imports, loading weights) do not land
on the first image.

Peak memory is the resident-set high-water mark during encode and decode, above the
resident memory just before: Linux's ``VmHWM``, reset through ``/proc/self/clear_refs``.
It counts every allocation (C libraries, numpy, torch on CPU), which tracemalloc would
not, including the decoded image. Freed memory is first handed back to the system
(``gc.collect`` and glibc's ``malloc_trim``); otherwise reusing memory that earlier work
freed would not show as new. Where the reset is not possible, peak memory is reported
as unavailable. GPU memory, when a learned backend uses CUDA, is torch's own peak count.
"""

from __future__ import annotations

import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tcodec.bench.codecs import BenchCodec
from tcodec.memory import release_free_memory

_PROC = Path("/proc/self")
_WARMED: set[str] = set()


@dataclass(frozen=True)
class Measurement:
    size_bytes: int
    encoding_time: float  # seconds
    decoding_time: float  # seconds
    peak_memory_mib: float | None
    peak_gpu_memory_mib: float | None
    model_hash: str | None
    decoded: object  # the decoded PIL image


def measure(codec: BenchCodec, image, quality: float, file: Path, caption: str | None = None) -> Measurement:
    """Encode ``image`` to ``file``, decode what is on disk, and time both."""
    warm_up(codec)
    with PeakMemory() as peak:
        started = time.perf_counter()
        data = codec.encode(image, quality, caption)
        encoding_time = time.perf_counter() - started
        _write(file, data)
        on_disk = file.read_bytes()
        started = time.perf_counter()
        decoded = codec.decode(on_disk)
        decoding_time = time.perf_counter() - started
    return Measurement(
        size_bytes=file.stat().st_size,
        encoding_time=encoding_time,
        decoding_time=decoding_time,
        peak_memory_mib=peak.peak_mib,
        peak_gpu_memory_mib=peak.peak_gpu_mib,
        model_hash=codec.model_hash(on_disk),
        decoded=decoded,
    )


def warm_up(codec: BenchCodec) -> None:
    """Run the codec once, untimed, on a small image (once per process and codec)."""
    if codec.name in _WARMED:
        return
    from tcodec.sample import sample_image

    caption = "a test card" if codec.uses_caption else None
    codec.decode(codec.encode(sample_image(64, 64), codec.default_qualities[0], caption))
    _WARMED.add(codec.name)


def _write(file: Path, data: bytes) -> None:
    file.parent.mkdir(parents=True, exist_ok=True)
    with open(file, "wb") as handle:
        handle.write(data)


class PeakMemory:
    """Peak resident memory (and CUDA memory, if torch uses a GPU) inside a ``with``."""

    def __init__(self) -> None:
        self.peak_mib: float | None = None
        self.peak_gpu_mib: float | None = None

    def __enter__(self) -> PeakMemory:
        release_free_memory()
        self._tracks_rss = _reset_high_water_mark()
        self._start_kib = _status_kib("VmRSS") if self._tracks_rss else 0
        self._cuda = _cuda_in_use()
        if self._cuda:
            self._cuda.reset_peak_memory_stats()
        return self

    def __exit__(self, *exc) -> None:
        if self._tracks_rss:
            self.peak_mib = max(0, _status_kib("VmHWM") - self._start_kib) / 1024
        if self._cuda:
            self.peak_gpu_mib = self._cuda.max_memory_allocated() / 2**20


def _reset_high_water_mark() -> bool:
    try:
        (_PROC / "clear_refs").write_text("5")  # 5: reset the peak RSS (Linux >= 4.0)
        return _status_kib("VmHWM") is not None
    except OSError:
        return False


def _status_kib(field: str) -> int | None:
    match = re.search(rf"^{field}:\s+(\d+) kB", (_PROC / "status").read_text(), re.MULTILINE)
    return int(match[1]) if match else None


def _cuda_in_use():
    """torch.cuda if torch is already loaded (by a learned backend) and has a GPU."""
    torch = sys.modules.get("torch")
    if torch is None or os.environ.get("CUDA_VISIBLE_DEVICES") == "":
        return None
    return torch.cuda if torch.cuda.is_available() and torch.cuda.is_initialized() else None
