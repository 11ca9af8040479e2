"""How much work one input may ask for: the limits every read and decode checks first.

A 17 KB PNG can declare 144 megapixels and a 30-byte ``.tcz`` a 4096x4096 image; both
are refused from their declared size, before any pixel is allocated or any model runs.
The defaults suit photographs; ``--max-pixels`` and ``--max-input-bytes`` (or
``TCODEC_MAX_PIXELS`` / ``TCODEC_MAX_INPUT_BYTES``, or :class:`Limits` in the API) raise
them. The ``.tcz`` format's own limits (``tcodec.format.container``) bound what any setting allows.
"""

from __future__ import annotations

from dataclasses import dataclass

from tcodec.errors import InputError, TcodecError

DEFAULT_MAX_PIXELS = 1 << 26  # 67 megapixels, e.g. 8192x8192; Pillow warns above 89
DEFAULT_MAX_INPUT_BYTES = 1 << 28  # 256 MiB: an uncompressed 67-megapixel 8-bit RGB image is 192 MiB


@dataclass(frozen=True)
class Limits:
    """The most pixels an image (encoded or decoded) and the most bytes an input file may have."""

    max_pixels: int = DEFAULT_MAX_PIXELS
    max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES

    def __post_init__(self) -> None:
        for name in ("max_pixels", "max_input_bytes"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InputError(f"{name} must be a positive whole number, not {value!r}")

    def check_pixels(self, width: int, height: int, what: str, error: type[TcodecError]) -> None:
        """``error`` unless a ``width`` x ``height`` image is within the pixel limit."""
        if width * height > self.max_pixels:
            raise error(f"{what}: {width}x{height} is {width * height:,} pixels, more than the limit of "
                        f"{self.max_pixels:,} (--max-pixels raises it)")


DEFAULT_LIMITS = Limits()
