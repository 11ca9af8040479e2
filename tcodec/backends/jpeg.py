"""The classic pipeline: baseline JPEG by libjpeg-turbo, through Pillow.

The ``.tcz`` payload is the JPEG file itself (one stream), so the original JPEG bytes
can always be handed back unchanged, and a decode gives exactly the pixels Pillow
decodes from those bytes. Either way the stream is first checked to be what this
backend writes (:func:`check_jpeg`): one sequential Huffman-coded JPEG whose frame
matches the ``.tcz`` header and whose coded data can hold that many blocks, so a file
can neither smuggle other content out under a ``.jpg`` name nor make the decoder work
on a canvas its bytes cannot describe.
"""

from __future__ import annotations

import io
from collections.abc import Mapping

from PIL import Image

from tcodec.backends.base import Backend, Payload
from tcodec.format.container import Container
from tcodec.errors import FormatError, InputError

# Pillow's subsampling argument: 0 = 4:4:4, 1 = 4:2:2, 2 = 4:2:0.
SUBSAMPLING = {"4:2:0": 2, "4:2:2": 1, "4:4:4": 0}
MAX_SIDE = 65500  # libjpeg's JPEG_MAX_DIMENSION


class JpegBackend(Backend):
    name = "jpeg"
    quality_range = (1, 100)
    default_quality = 75
    integer_quality = True
    options = {"subsampling": "chroma subsampling of colour images: 4:2:0 (default), 4:2:2 or 4:4:4"}
    native_format = "JPEG"
    bench_qualities = (5, 10, 20, 30, 40, 50, 60, 70, 80, 90)  # about 0.1-2 bpp on Kodak (docs/bench.md)

    def settings(self, options: Mapping[str, str]) -> dict[str, object]:
        return {"optimize": True, "subsampling": "4:2:0", **options}

    def versions(self) -> dict[str, str]:
        from PIL import features

        return {"libjpeg-turbo": features.version("libjpeg_turbo") or "unknown"}

    def encode(self, image, *, quality, caption, device, options: Mapping[str, str]) -> Payload:
        subsampling = options.get("subsampling", "4:2:0")
        if subsampling not in SUBSAMPLING:
            raise InputError(f"subsampling must be one of {', '.join(SUBSAMPLING)}, not {subsampling!r}")
        if max(image.size) > MAX_SIDE:
            raise InputError(f"JPEG images have sides up to {MAX_SIDE} pixels; this one is {image.width}x{image.height}")
        buffer = io.BytesIO()
        try:
            # optimize=True: Huffman tables fitted to the image (smaller, same pixels)
            image.save(buffer, "JPEG", quality=int(quality), optimize=True, subsampling=SUBSAMPLING[subsampling])
        except (OSError, ValueError) as error:
            raise InputError(f"the JPEG encoder refused the image ({error})") from None
        return Payload(streams=(buffer.getvalue(),), mode=image.mode, width=image.width, height=image.height)

    def native_stream(self, container: Container) -> bytes:
        if len(container.streams) != 1:
            raise FormatError(f"a jpeg .tcz holds 1 stream, this one {len(container.streams)}")
        if container.entropy_coder != "none" or container.model_hash is not None:
            raise FormatError("a jpeg .tcz has entropy coder 'none' and no model hash; the file is corrupt")
        check_jpeg(container.streams[0], container.width, container.height, container.mode)
        return container.streams[0]

    def decode(self, container: Container, *, device, options: Mapping[str, str]) -> Image.Image:
        stream = self.native_stream(container)  # before decoding: a wrong frame allocates nothing
        try:
            image = Image.open(io.BytesIO(stream), formats=["JPEG"])
            image.load()
        except (OSError, SyntaxError, ValueError) as error:  # what Pillow raises for bad data
            raise FormatError(f"the JPEG stream is corrupt ({error})") from None
        return image


_SOF_SEQUENTIAL = (0xC0, 0xC1)  # baseline and extended sequential, Huffman coded
_TABLE_SEGMENTS = frozenset({0xC4, 0xDB, 0xDD})  # DHT, DQT, DRI


def check_jpeg(data: bytes, width: int, height: int, mode: str) -> None:
    """FormatError unless ``data`` is exactly one JPEG as this backend writes it.

    That is: SOI; a JFIF APP0, quantisation and Huffman tables, restart interval; one
    sequential Huffman frame (SOF0/SOF1) of ``width`` x ``height`` with 1 (``L``) or 3
    (``RGB``) components of 8 bits; one scan of all components, whose entropy-coded data
    has at least 2 bits per 8x8 luma block (the shortest Huffman codes of a block's DC
    difference and its end-of-block); EOI as the last two bytes. Nothing before, between
    or after.
    """
    if data[:2] != b"\xff\xd8":
        raise FormatError("the JPEG stream is not a JPEG file (it does not start with SOI)")
    pos, frame, scanned = 2, None, False
    while True:
        if pos >= len(data) or data[pos] != 0xFF:
            raise FormatError("the JPEG stream is corrupt (a marker was expected)")
        while pos < len(data) and data[pos] == 0xFF:  # fill bytes
            pos += 1
        if pos >= len(data):
            raise FormatError("the JPEG stream is truncated")
        marker = data[pos]
        pos += 1
        if marker == 0xD9:  # EOI
            if not scanned:
                raise FormatError("the JPEG stream ends before its image data")
            if pos != len(data):
                raise FormatError(f"the JPEG stream has {len(data) - pos} bytes after its end")
            return
        if pos + 2 > len(data):
            raise FormatError("the JPEG stream is truncated")
        length = int.from_bytes(data[pos : pos + 2], "big")
        body = data[pos + 2 : pos + length]
        if length < 2 or len(body) != length - 2:
            raise FormatError("the JPEG stream is truncated or has a bad segment length")
        pos += length
        if marker in _SOF_SEQUENTIAL:
            if frame is not None:
                raise FormatError("the JPEG stream has more than one frame")
            frame = _check_frame(body, width, height, mode)
        elif marker == 0xDA:
            if frame is None or scanned:
                raise FormatError("the JPEG stream's scans are not one scan after one frame")
            _check_scan_header(body, frame)
            end = _end_of_entropy_coded_data(data, pos)
            blocks = -(-width // 8) * -(-height // 8)
            if 8 * (end - pos) < 2 * blocks:
                raise FormatError(f"the JPEG stream's image data ({end - pos} bytes) is too short for "
                                  f"{width}x{height} pixels (at least {-(-2 * blocks // 8)} bytes)")
            pos, scanned = end, True
        elif marker == 0xE0 and body.startswith(b"JFIF\0") and frame is None:
            continue
        elif marker not in _TABLE_SEGMENTS or scanned:
            raise FormatError(f"the JPEG stream has a 0xFF{marker:02X} segment where tcodec writes none")


def _check_frame(body: bytes, width: int, height: int, mode: str) -> int:
    """The number of components of a SOF segment that must match the header."""
    if len(body) < 6 or body[0] != 8 or len(body) != 6 + 3 * body[5]:
        raise FormatError("the JPEG stream's frame header is malformed (or not 8-bit)")
    frame_height, frame_width, components = int.from_bytes(body[1:3], "big"), int.from_bytes(body[3:5], "big"), body[5]
    expected = {"L": 1, "RGB": 3}.get(mode)
    if (frame_width, frame_height, components) != (width, height, expected):
        raise FormatError(f"the JPEG frame is {frame_width}x{frame_height} with {components} components, the "
                          f"header says {width}x{height} {mode}")
    return components


def _check_scan_header(body: bytes, components: int) -> None:
    # Ns components, 2 bytes each, then Ss = 0, Se = 63, Ah/Al = 0: a sequential scan of all
    if len(body) != 4 + 2 * components or body[0] != components or body[-3:] != b"\x00\x3f\x00":
        raise FormatError("the JPEG scan is not one sequential scan of all components")


def _end_of_entropy_coded_data(data: bytes, pos: int) -> int:
    """Where the marker after a scan's data starts (0xFF00 is a stuffed byte, 0xFFD0-D7 restarts)."""
    while True:
        pos = data.find(b"\xff", pos)
        if pos < 0 or pos + 1 >= len(data):
            raise FormatError("the JPEG stream is truncated inside its image data")
        following = data[pos + 1]
        if following == 0x00 or 0xD0 <= following <= 0xD7:
            pos += 2
            continue
        return pos
