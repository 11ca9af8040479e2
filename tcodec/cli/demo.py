"""``tcodec demo``: the main job end to end on the photograph that ships in the package
(``data/demo-photo.png``, CC0; see ``data/demo-photo.md``), compared with JPEG and WebP at
the same file size; nothing is downloaded."""

from __future__ import annotations

import io
import os
import time
from importlib import resources
from pathlib import Path

from PIL import Image, features

from tcodec import api
from tcodec.errors import InputError, OutputExistsError
from tcodec.fileio import write_atomic
from tcodec.images import load_image

PHOTO = "demo-photo.png"
CAPTION = "a close-up of a tabby cat with green eyes"
DESCRIPTION = "photo of Chelsea the cat (CC0, Stefan van der Walt, via scikit-image)"
WEBP_METHOD = 6  # libwebp's slowest, smallest setting


def psnr(a: Image.Image, b: Image.Image) -> float:
    """PSNR in dB over all channels of two 8-bit images (data range 255)."""
    import numpy as np

    from tcodec.bench.metrics import psnr_rgb

    return psnr_rgb(np.asarray(a), np.asarray(b))


def default_backend() -> str:
    """The learned codec when its extra is installed, else the classic one."""
    from tcodec.backends import is_installed

    return "taco" if is_installed("taco") else "jpeg"


def photo_bytes() -> bytes:
    """The shipped photograph's PNG file (read through importlib.resources, so it works
    from an installed package too)."""
    return (resources.files("tcodec") / "data" / PHOTO).read_bytes()


def webp_within(image: Image.Image, max_bytes: int) -> tuple[int, bytes] | None:
    """The highest WebP quality (0-100, method 6) whose file is at most ``max_bytes``, and
    that file; None when even quality 0 is larger. A bisection: libwebp's file size grows
    with quality."""
    def encoded(quality: int) -> bytes:
        buffer = io.BytesIO()
        image.save(buffer, "WEBP", quality=quality, method=WEBP_METHOD)
        return buffer.getvalue()

    best = None
    low, high = 0, 100
    while low <= high:
        middle = (low + high) // 2
        data = encoded(middle)
        if len(data) <= max_bytes:
            best, low = (middle, data), middle + 1
        else:
            high = middle - 1
    return best


def run_demo(folder: Path, backend: str | None, quality: float | None, force: bool = False) -> list[str]:
    """Encode and decode the shipped photo into ``folder``, then JPEG and WebP at the same
    size or smaller for comparison; return lines to print. A file there with other contents
    is replaced only with ``force``."""
    backend = backend or default_backend()
    original = photo_bytes()
    loaded = load_image(original, PHOTO)
    image = loaded.image
    pixels = image.width * image.height
    started = time.perf_counter()
    data = api.encode(loaded, backend, quality, caption=CAPTION, store_caption=True)
    encode_s = time.perf_counter() - started
    started = time.perf_counter()
    decoded = api.decode(data)
    decode_s = time.perf_counter() - started
    quality = api.read_info(data).quality
    written = {"photo.png": (original, "the original"), "photo.tcz": (data, f"{backend}'s file"),
               "photo.decoded.png": (_png(decoded), f"{backend}'s file decoded")}
    lines = [
        f"photo: {image.width}x{image.height} ({pixels:,} pixels, {len(original):,} bytes as PNG), "
        f"{DESCRIPTION}",
        f"{backend} quality {quality:g}, caption {CAPTION!r}: {len(data):,} bytes, "
        f"{8 * len(data) / pixels:.3f} bpp, PSNR {psnr(image, decoded.convert('RGB')):.2f} dB",
        f"  encode {encode_s * 1000:.0f} ms{' (loading the model included)' if backend != 'jpeg' else ''}, "
        f"decode {decode_s * 1000:.0f} ms",
    ]
    if backend != "jpeg":
        try:
            jpeg = api.encode(loaded, "jpeg", max_bytes=len(data), caption=CAPTION)
        except InputError:
            lines.append(f"jpeg: cannot make a file this small ({len(data):,} bytes)")
        else:
            native = api.native_bytes(api.read_info(jpeg))
            written["photo.jpg"] = (native[1], "the JPEG, for any viewer")
            lines.append(f"jpeg at most as large (--max-bytes {len(data)}): quality "
                         f"{api.read_info(jpeg).quality:g}, {len(jpeg):,} bytes, "
                         f"{8 * len(jpeg) / pixels:.3f} bpp, "
                         f"PSNR {psnr(image, api.decode(jpeg).convert('RGB')):.2f} dB")
    if not features.check("webp"):
        lines.append("webp: this Pillow has no WebP support")
    elif (webp := webp_within(image, len(data))) is None:
        lines.append(f"webp: cannot make a file this small ({len(data):,} bytes)")
    else:
        webp_quality, webp_data = webp
        written["photo.webp"] = (webp_data, "the WebP")
        with Image.open(io.BytesIO(webp_data)) as webp_image:
            webp_psnr = psnr(image, webp_image.convert("RGB"))
        lines.append(f"webp at most as large (method {WEBP_METHOD}): quality {webp_quality}, "
                     f"{len(webp_data):,} bytes, {8 * len(webp_data) / pixels:.3f} bpp, PSNR {webp_psnr:.2f} dB")
    # a file a user put there is not replaced by surprise: only the same bytes (an earlier
    # demo's), or anything with --force
    for name, (content, _) in written.items():
        path = folder / name
        if not force and os.path.lexists(path) and not (path.is_file() and path.read_bytes() == content):
            raise OutputExistsError(f"{path}: already exists with other contents (use --force to replace it)")
    lines.append(f"files in {folder}:")
    width = max(map(len, written))
    for name, (content, what) in written.items():
        write_atomic(folder / name, content, overwrite=True)
        lines.append(f"  {name:<{width}}  {what}")
    return lines


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()
