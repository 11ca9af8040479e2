"""Quality lists as users write them: ``10,30,50``, ``1-6``, ``0-90:10``, ``0.1,0.25``.

A ``--qualities`` value applies to every codec, or to one when written ``codec=SPEC``
(``webp=0-90:10``). Each codec says what its numbers mean (see docs/bench.md).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from tcodec.errors import InputError

_NUMBER = r"\d+(?:\.\d+)?"
_RANGE = re.compile(rf"({_NUMBER})-({_NUMBER})(?::({_NUMBER}))?")
_MAX_POINTS = 1000


def parse_qualities(spec: str) -> tuple[float, ...]:
    """The qualities a spec names, ascending and without repeats.

    ``a-b`` is every integer step from a to b (both included), ``a-b:step`` steps by
    ``step``; items are separated by commas.

    Raises:
        InputError: the spec is empty or malformed.
    """
    values: set[float] = set()
    for item in spec.split(","):
        item = item.strip()
        if not item:
            raise InputError(f"quality list {spec!r} has an empty item")
        values.update(_parse_item(item, spec))
    return tuple(sorted(values))


def _parse_item(item: str, spec: str) -> list[float]:
    if re.fullmatch(_NUMBER, item):
        return [float(item)]
    match = _RANGE.fullmatch(item)
    if not match:
        raise InputError(f"bad quality {item!r} in {spec!r} (write e.g. 10,30,50 or 1-6 or 0-90:10)")
    start, stop = float(match[1]), float(match[2])
    step = float(match[3]) if match[3] else 1.0
    if stop < start or step <= 0:
        raise InputError(f"bad quality range {item!r}: it must go up, by a positive step")
    count = int((stop - start) / step + 1e-9) + 1
    if count > _MAX_POINTS:
        raise InputError(f"quality range {item!r} has {count} points (at most {_MAX_POINTS})")
    # rounded so that 0.1-0.5:0.1 gives 0.3, not 0.30000000000000004
    return [round(start + i * step, 9) for i in range(count)]


def qualities_per_codec(specs: Iterable[str], codecs: list[str]) -> dict[str, tuple[float, ...] | None]:
    """Map each codec to its qualities from ``--qualities`` values; None: its defaults.

    A plain spec applies to every codec that has no ``codec=SPEC`` of its own.

    Raises:
        InputError: a spec is malformed or names a codec not being run.
    """
    shared: tuple[float, ...] | None = None
    own: dict[str, tuple[float, ...]] = {}
    for spec in specs:
        name, sep, values = spec.partition("=")
        if sep:
            name = name.strip()
            if name not in codecs:
                raise InputError(f"--qualities {spec!r} names {name!r}, which is not in -m {','.join(codecs)}")
            own[name] = parse_qualities(values)
        else:
            shared = parse_qualities(spec)
    return {codec: own.get(codec, shared) for codec in codecs}


def format_quality(quality: float) -> str:
    """``50`` rather than ``50.0``; ``0.25`` as is."""
    return f"{quality:g}"
