"""How this process's C allocator treats freed memory: glibc's malloc on Linux, nothing
elsewhere. Light on purpose (ctypes only): the CLI calls it before anything heavy loads."""

from __future__ import annotations

import ctypes
import gc
import sys

# mallopt parameters, from glibc's malloc.h
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_LARGEST_HEAP_BLOCK = 32 << 20  # glibc refuses a higher mmap threshold on 64-bit systems
_NEVER_TRIM = 1 << 30


def _load_glibc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (e.g. musl)
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


_GLIBC = _load_glibc()


def keep_freed_memory() -> bool:
    """Let glibc reuse what the process frees instead of handing it back at once; True if set.

    By default glibc maps blocks above a threshold (128 KiB, rising to 32 MiB as such blocks
    are freed) straight from the system and unmaps them when freed, and trims the heap's free
    top; every new image-sized tensor is then fresh memory that the kernel hands over one
    page fault at a time. With blocks up to 32 MiB taken from the heap and the heap never
    trimmed, the process reuses its pages: a fresh process's first taco encode faults in far
    fewer pages (``benchmarks/bench_fresh_process.py`` measures it; the model card has the
    numbers). The cost: memory freed at the peak stays with
    the process until it exits. The CLI sets it; a program that imports tcodec decides for
    itself.
    """
    if _GLIBC is None:
        return False
    return bool(_GLIBC.mallopt(_M_MMAP_THRESHOLD, _LARGEST_HEAP_BLOCK)) and bool(
        _GLIBC.mallopt(_M_TRIM_THRESHOLD, _NEVER_TRIM))


def release_free_memory() -> None:
    """Hand freed memory back to the system (gc, then glibc's malloc_trim where there is one),
    so that what runs next starts from fresh pages, as a new process would."""
    gc.collect()
    if _GLIBC is not None:
        _GLIBC.malloc_trim(0)
