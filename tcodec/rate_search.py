"""Pick the quality that fills a byte budget: ``--max-bytes N`` and ``--target-bpp X``.

Both are ceilings: the answer is the highest quality whose whole ``.tcz`` file (header,
caption and payload, the bytes on disk) fits. File size grows roughly exponentially with
quality, so the search guesses by interpolating log size between the bracket's ends
(regula falsi, Illinois variant) and falls back to bisection whenever a guess fails to halve
the bracket: a handful of encodes instead of one per quality. Sizes need not be monotonic; the result is always a file that
was actually made and fits.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from tcodec.errors import InputError


def byte_budget(max_bytes: int | None, target_bpp: float | None, width: int, height: int,
                quality: float | None = None) -> int | None:
    """The file-size ceiling in bytes asked for, or None when no budget was given."""
    if max_bytes is not None and target_bpp is not None:
        raise InputError("give --max-bytes or --target-bpp, not both")
    if quality is not None and (max_bytes is not None or target_bpp is not None):
        raise InputError("give a quality (-q) or a size budget (--max-bytes, --target-bpp), not both")
    if max_bytes is not None:
        if max_bytes < 1:
            raise InputError(f"--max-bytes must be a positive number of bytes, not {max_bytes}")
        return max_bytes
    if target_bpp is not None:
        if not target_bpp > 0 or math.isinf(target_bpp):
            raise InputError(f"--target-bpp must be a positive number of bits per pixel, not {target_bpp:g}")
        return math.floor(target_bpp * width * height / 8)
    return None


def highest_fitting(qualities: Sequence[float], file_at: Callable[[float], bytes], budget: int) -> tuple[float, bytes]:
    """The highest quality in ``qualities`` (ascending) whose file is at most ``budget`` bytes."""
    top = file_at(qualities[-1])
    if len(top) <= budget:
        return qualities[-1], top
    best = file_at(qualities[0])
    if len(best) > budget:
        raise InputError(f"cannot fit in {budget} bytes: the smallest file, at quality {qualities[0]:g}, "
                         f"takes {len(best)}")
    low, high = 0, len(qualities) - 1
    # Regula falsi on log size, Illinois variant: an end kept twice in a row has its
    # distance to the budget halved, so guesses cross the answer instead of creeping up
    # on it; a bisection step whenever the bracket fails to halve keeps the worst case.
    low_gap, high_gap = math.log(len(best) / budget), math.log(len(top) / budget)  # <= 0 < ...
    kept = None
    bisect = False
    while high - low > 1:
        width = high - low
        if bisect or high_gap <= low_gap:
            guess = (low + high) // 2
        else:
            guess = low + round(width * -low_gap / (high_gap - low_gap))
        guess = min(max(guess, low + 1), high - 1)
        data = file_at(qualities[guess])
        gap = math.log(len(data) / budget)
        if gap <= 0:
            low, low_gap, best = guess, gap, data
            if kept == "low":
                high_gap /= 2
            kept = "low"
        else:
            high, high_gap = guess, gap
            if kept == "high":
                low_gap /= 2
            kept = "high"
        bisect = (high - low) * 2 > width and not bisect
    return qualities[low], best
