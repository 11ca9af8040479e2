"""``tcodec demo``: the main job end to end on the built-in test card, no download."""

from __future__ import annotations

import io
import math
import time
from pathlib import Path

from PIL import Image, ImageChops, ImageStat

from tcodec import api
from tcodec.errors import InputError
from tcodec.fileio import write_atomic
from tcodec.images import LoadedImage
from tcodec.sample import sample_image

CAPTION = "a colourful test card"


def psnr(a: Image.Image, b: Image.Image) -> float:
    """PSNR in dB over all channels of two 8-bit images (data range 255)."""
    squares = ImageStat.Stat(ImageChops.difference(a, b)).sum2
    mse = sum(squares) / (a.width * a.height * len(squares))
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


def default_backend() -> str:
    """The learned codec when its extra is installed, else the classic one."""
    from tcodec.backends import is_installed

    return "taco" if is_installed("taco") else "jpeg"


def run_demo(folder: Path, backend: str | None, quality: float | None) -> list[str]:
    """Encode and decode the test card into ``folder``, then JPEG at the same size for
    comparison; return lines to print."""
    backend = backend or default_backend()
    image = sample_image()
    started = time.perf_counter()
    data = api.encode(LoadedImage(image), backend, quality, caption=CAPTION, store_caption=True)
    encode_s = time.perf_counter() - started
    started = time.perf_counter()
    decoded = api.decode(data)
    decode_s = time.perf_counter() - started
    quality = api.read_info(data).quality
    write_atomic(folder / "sample.png", _png(image), overwrite=True)
    write_atomic(folder / "sample.tcz", data, overwrite=True)
    write_atomic(folder / "sample.decoded.png", _png(decoded), overwrite=True)
    pixels = image.width * image.height
    lines = [
        f"backend {backend}, quality {quality:g}, {image.width}x{image.height} test card, caption {CAPTION!r}",
        f"wrote {folder / 'sample.tcz'}: {len(data)} bytes, {8 * len(data) / pixels:.3f} bpp",
        f"decoded {folder / 'sample.decoded.png'}: PSNR {psnr(image, decoded.convert('RGB')):.2f} dB",
        f"encode {encode_s * 1000:.1f} ms{' (loading the model included)' if backend != 'jpeg' else ''}, "
        f"decode {decode_s * 1000:.1f} ms",
    ]
    if backend != "jpeg":
        try:
            jpeg = api.encode(LoadedImage(image), "jpeg", max_bytes=len(data), caption=CAPTION)
        except InputError:
            lines.append(f"jpeg: cannot make a file this small ({len(data)} bytes)")
        else:
            lines.append(f"jpeg at most as large (--max-bytes {len(data)}): quality "
                         f"{api.read_info(jpeg).quality:g}, {len(jpeg)} bytes, "
                         f"PSNR {psnr(image, api.decode(jpeg).convert('RGB')):.2f} dB")
    return lines


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()
