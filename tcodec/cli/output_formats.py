"""The image formats ``tcodec decode`` writes, and how."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

from tcodec import api
from tcodec.format.container import Container
from tcodec.errors import InputError, OutputError
from tcodec.limits import DEFAULT_LIMITS, Limits


@dataclass(frozen=True)
class OutputFormat:
    pillow_name: str
    suffix: str
    save_options: dict = field(default_factory=dict)


# Lossless unless the user asks for JPEG; JPEG from a non-jpeg .tcz is re-encoded at q95 4:4:4.
FORMATS = {
    "png": OutputFormat("PNG", ".png"),
    "jpg": OutputFormat("JPEG", ".jpg", {"quality": 95, "subsampling": 0}),
    "webp": OutputFormat("WEBP", ".webp", {"lossless": True}),
    "bmp": OutputFormat("BMP", ".bmp"),
    "tiff": OutputFormat("TIFF", ".tiff"),
    "ppm": OutputFormat("PPM", ".ppm"),
}
ALIASES = {"jpeg": "jpg", "tif": "tiff", "pgm": "ppm", "pnm": "ppm"}


def resolve_format(name: str | None, output: str | None, output_is_folder: bool = False) -> OutputFormat:
    """``--format`` if given, else the output file's extension, else PNG."""
    if name is None and output not in (None, "-") and not output_is_folder and Path(output).suffix:
        name = Path(output).suffix[1:]
    if name is None:
        return FORMATS["png"]
    key = ALIASES.get(name.lower(), name.lower())
    if key not in FORMATS:
        raise InputError(f"cannot write {name!r} images (choose from {', '.join(FORMATS)})")
    return FORMATS[key]


def image_bytes(container: Container, fmt: OutputFormat, device: str = "auto", options=None,
                limits: Limits = DEFAULT_LIMITS) -> bytes:
    """The file to write for a decoded container: the original JPEG when there is one
    (checked to be one JPEG that matches the header).

    Raises:
        OutputError: the format cannot hold this image (e.g. WebP beyond 16383 pixels a side).
    """
    limits.check_pixels(container.width, container.height, "the file's image", InputError)
    native = api.native_bytes(container)
    if native is not None and native[0] == fmt.pillow_name:
        return native[1]
    image = api.decode_container(container, device=device, options=options, limits=limits)
    buffer = io.BytesIO()
    try:
        image.save(buffer, fmt.pillow_name, **fmt.save_options)
    except (OSError, ValueError) as error:  # Pillow's encoders refuse sizes beyond their format's
        raise OutputError(f"cannot write a {image.width}x{image.height} image as {fmt.suffix[1:]} ({error}); "
                          "choose another --format") from None
    return buffer.getvalue()
