"""``tcodec demo``: the main job end to end on the built-in test card, no download."""

from __future__ import annotations

import io
import math
import time
from pathlib import Path

from PIL import Image, ImageChops, ImageStat

from tcodec import api
from tcodec.fileio import write_atomic
from tcodec.images import LoadedImage
from tcodec.sample import sample_image


def psnr(a: Image.Image, b: Image.Image) -> float:
    """PSNR in dB over all channels of two 8-bit images (data range 255)."""
    squares = ImageStat.Stat(ImageChops.difference(a, b)).sum2
    mse = sum(squares) / (a.width * a.height * len(squares))
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


def run_demo(folder: Path, backend: str, quality: float | None) -> list[str]:
    """Encode and decode the test card into ``folder``; return lines to print."""
    image = sample_image()
    started = time.perf_counter()
    data = api.encode(LoadedImage(image), backend, quality, caption="a colourful test card")
    encode_s = time.perf_counter() - started
    started = time.perf_counter()
    decoded = api.decode(data)
    decode_s = time.perf_counter() - started
    quality = api.read_info(data).quality
    write_atomic(folder / "sample.png", _png(image), overwrite=True)
    write_atomic(folder / "sample.tcz", data, overwrite=True)
    write_atomic(folder / "sample.decoded.png", _png(decoded), overwrite=True)
    return [
        f"backend {backend}, quality {quality:g}, {image.width}x{image.height} test card",
        f"wrote {folder / 'sample.tcz'}: {len(data)} bytes, {8 * len(data) / (image.width * image.height):.3f} bpp",
        f"decoded {folder / 'sample.decoded.png'}: PSNR {psnr(image, decoded.convert('RGB')):.2f} dB",
        f"encode {encode_s * 1000:.1f} ms, decode {decode_s * 1000:.1f} ms",
    ]


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()
