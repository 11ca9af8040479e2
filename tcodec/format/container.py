"""The ``.tcz`` container, format 1: pack and unpack, standard library only.

The byte layout is specified in ``formats/tcz.md``; this module follows it field by
field. The reader treats every file as untrusted: each length is checked against
the bytes that are really there, every size against a limit, before anything is
sliced or allocated, and the CRC-32 covers the whole file.

A caption is carried as its coder's code and coded bytes (``coded_caption``); turning
text into those bytes and back is :mod:`tcodec.coding.captions`'s job (the API calls it), so
this module needs nothing beyond the standard library.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

from tcodec.errors import FormatError, InputError

MAGIC = b"TCZ"
FORMAT_MAJOR = 1
FORMAT_MINOR = 0

# Frozen, append-only code tables (formats/tcz.md). A code is never reused or moved:
# files written today must decode with the same meaning forever.
BACKEND_CODES = {"jpeg": 1, "taco": 2, "perco": 3}
MODE_CODES = {"L": 1, "RGB": 2}
ENTROPY_CODER_CODES = {"none": 0, "constriction-range": 1, "constriction-ans": 2}
CAPTION_CODER_CODES = {"utf-8": 0, "tcodec-caption-v1": 1}  # what each code means: tcodec.coding.captions

FLAG_MODEL_HASH = 0x01
FLAG_CAPTION = 0x02
KNOWN_FLAGS = FLAG_MODEL_HASH | FLAG_CAPTION

MODEL_HASH_BYTES = 8
MAX_SIDE = 65535  # JPEG's own limit, and far beyond any learned codec's use
MAX_PIXELS = 1 << 28  # ~268 megapixels, ~800 MB as 8-bit RGB
MAX_CODED_CAPTION_BYTES = 8192
MAX_STREAMS = 64
MAX_QUALITY = 0xFFFF / 100
MAX_VARINT_BYTES = 5  # enough for 2**35 - 1; longer varints are refused
CRC_BYTES = 4

_BY_CODE = {
    "backend": {code: name for name, code in BACKEND_CODES.items()},
    "mode": {code: name for name, code in MODE_CODES.items()},
    "entropy coder": {code: name for name, code in ENTROPY_CODER_CODES.items()},
    "caption coder": {code: name for name, code in CAPTION_CODER_CODES.items()},
}


@dataclass(frozen=True)
class Container:
    """Everything a ``.tcz`` file holds, decoded.

    Attributes:
        backend: stable backend name (``"jpeg"``, ``"taco"``, ``"perco"``).
        quality: the quality the file was encoded at (stored in hundredths).
        width, height: size of the decoded image in pixels.
        mode: Pillow mode of the decoded image, ``"L"`` or ``"RGB"``.
        streams: the payload, one or more byte strings whose meaning the backend defines.
        entropy_coder: how the streams were entropy coded (``"none"`` for a native
            bitstream such as JPEG).
        model_hash: the first 8 bytes of the model-version hash, or None for backends
            without learned weights.
        coded_caption: what the file stores of the caption, (caption coder code, coded
            bytes), or None for no caption.
        caption: the caption's text, filled in by :func:`tcodec.api.read_info` (this
            module reads and writes ``coded_caption`` only).
        layout: byte counts of each part, filled in by :func:`unpack` (for ``info``).
    """

    backend: str
    quality: float
    width: int
    height: int
    mode: str
    streams: tuple[bytes, ...] = field(repr=False)
    entropy_coder: str = "none"
    model_hash: bytes | None = None
    caption: str | None = None
    coded_caption: tuple[int, bytes] | None = field(default=None, repr=False)
    layout: dict[str, int] | None = field(default=None, compare=False)

# --- writing -------------------------------------------------------------------


def pack(container: Container) -> bytes:
    """Serialize a container. Raises InputError for values the format cannot hold."""
    c = container
    check_image_size(c.width, c.height, InputError)
    quality_code = round(c.quality * 100)
    if not 0 < quality_code <= 0xFFFF:
        raise InputError(f"quality {c.quality} cannot be stored (0 < quality <= {MAX_QUALITY})")
    if not 1 <= len(c.streams) <= MAX_STREAMS:
        raise InputError(f"a container holds 1 to {MAX_STREAMS} streams, not {len(c.streams)}")
    flags = 0
    if c.model_hash is not None:
        if len(c.model_hash) != MODEL_HASH_BYTES:
            raise InputError(f"model hash must be {MODEL_HASH_BYTES} bytes")
        flags |= FLAG_MODEL_HASH
    if c.caption is not None and c.coded_caption is None:
        raise InputError("the caption must be coded before packing (tcodec.coding.captions.encode)")
    if c.coded_caption is not None:
        flags |= FLAG_CAPTION
        caption_coder, coded = c.coded_caption
        _lookup("caption coder", caption_coder, InputError)
        if len(coded) > MAX_CODED_CAPTION_BYTES:
            raise InputError(f"a coded caption holds at most {MAX_CODED_CAPTION_BYTES} bytes, not {len(coded)}")

    out = bytearray(MAGIC)
    out.append(FORMAT_MAJOR << 4 | FORMAT_MINOR)
    out.append(flags)
    out.append(_code("backend", BACKEND_CODES, c.backend))
    out += struct.pack("<H", quality_code)
    out += varint(c.width - 1) + varint(c.height - 1)
    out.append(_code("mode", MODE_CODES, c.mode))
    out.append(_code("entropy coder", ENTROPY_CODER_CODES, c.entropy_coder))
    if c.model_hash is not None:
        out += c.model_hash
    if c.coded_caption is not None:
        out.append(caption_coder)
        out += varint(len(coded)) + coded
    out += varint(len(c.streams))
    for stream in c.streams:
        out += varint(len(stream)) + stream
    out += struct.pack("<I", zlib.crc32(out))
    return bytes(out)


def _code(what: str, table: dict[str, int], name: str) -> int:
    try:
        return table[name]
    except KeyError:
        raise InputError(f"unknown {what} {name!r} (known: {', '.join(table)})") from None


def varint(value: int) -> bytes:
    """Unsigned LEB128: 7 bits per byte, least significant group first (the header's
    sizes and lengths; a backend's payload may use it too)."""
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


# --- reading -------------------------------------------------------------------


def unpack(data: bytes) -> Container:
    """Parse and verify a ``.tcz`` file. Raises FormatError for anything invalid."""
    data = bytes(data)
    check_magic(data)
    reader = _Reader(data)
    reader.take(len(MAGIC) + 1)  # magic and version, checked above
    flags = reader.byte("flags")
    if flags & ~KNOWN_FLAGS:
        raise FormatError(f"unknown header flags 0x{flags:02x}; the file is corrupt or from a newer tcodec")
    backend = _lookup("backend", reader.byte("backend"))
    quality_code = struct.unpack("<H", reader.take(2, "quality"))[0]
    if quality_code == 0:
        raise FormatError("quality 0 is not a valid quality; the file is corrupt")
    quality = quality_code / 100
    width = reader.varint("width") + 1
    height = reader.varint("height") + 1
    check_image_size(width, height, FormatError)
    mode = _lookup("mode", reader.byte("mode"))
    entropy_coder = _lookup("entropy coder", reader.byte("entropy coder"))
    model_hash = reader.take(MODEL_HASH_BYTES, "model hash") if flags & FLAG_MODEL_HASH else None
    header_end = reader.pos
    coded_caption = None
    if flags & FLAG_CAPTION:
        caption_coder = reader.byte("caption coder")
        _lookup("caption coder", caption_coder)
        coded_caption = (caption_coder, reader.sized(MAX_CODED_CAPTION_BYTES, "caption"))
    caption_end = reader.pos
    n_streams = reader.varint("stream count")
    if not 1 <= n_streams <= MAX_STREAMS:
        raise FormatError(f"stream count {n_streams} is outside 1..{MAX_STREAMS}; the file is corrupt")
    streams = tuple(reader.sized(None, f"stream {i}") for i in range(n_streams))
    body_end = reader.pos
    crc = reader.take(CRC_BYTES, "checksum")
    if reader.pos != len(data):
        raise FormatError(f"{len(data) - reader.pos} unexpected bytes after the end of the file")
    if struct.unpack("<I", crc)[0] != zlib.crc32(data[:body_end]):
        raise FormatError("checksum mismatch: the file is corrupted")
    layout = {
        "file": len(data),
        "header": header_end,
        "caption": caption_end - header_end,
        "streams": sum(len(s) for s in streams),
        "framing": body_end - caption_end - sum(len(s) for s in streams) + CRC_BYTES,
    }
    return Container(backend, quality, width, height, mode, streams, entropy_coder, model_hash,
                     coded_caption=coded_caption, layout=layout)


def check_magic(data: bytes) -> None:
    """Refuse foreign files and unsupported major versions with a clear message."""
    if not data or not MAGIC.startswith(data[: len(MAGIC)]):
        raise FormatError("not a .tcz file (wrong magic bytes)")
    if len(data) <= len(MAGIC):
        raise FormatError("truncated .tcz file: it ends inside the header")
    major, minor = data[len(MAGIC)] >> 4, data[len(MAGIC)] & 0x0F
    if major != FORMAT_MAJOR:
        raise FormatError(
            f".tcz format version {major}.{minor} is not supported; "
            f"this tcodec reads {FORMAT_MAJOR}.x (a newer tcodec may read it)"
        )


def _lookup(what: str, code: int, error: type[Exception] = FormatError) -> str:
    try:
        return _BY_CODE[what][code]
    except KeyError:
        raise error(f"unknown {what} code {code} (corrupt file, or written by a newer tcodec)") from None


def check_image_size(width: int, height: int, error: type[Exception]) -> None:
    """``error`` unless the format can hold a ``width`` x ``height`` image."""
    if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE) or width * height > MAX_PIXELS:
        raise error(
            f"image size {width}x{height} is outside the format's limits "
            f"(sides 1..{MAX_SIDE}, at most {MAX_PIXELS} pixels)"
        )


class _Reader:
    """A cursor over untrusted bytes; every read is bounds-checked."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int, what: str = "header") -> bytes:
        if n > len(self.data) - self.pos:
            raise FormatError(
                f"truncated .tcz file: {what} needs {n} bytes, only {len(self.data) - self.pos} left"
            )
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def byte(self, what: str) -> int:
        return self.take(1, what)[0]

    def varint(self, what: str) -> int:
        value = 0
        for i in range(MAX_VARINT_BYTES):
            b = self.byte(what)
            value |= (b & 0x7F) << (7 * i)
            if not b & 0x80:
                if b == 0 and i > 0:
                    raise FormatError(f"{what} is not minimally encoded; the file is corrupt")
                return value
        raise FormatError(f"{what} is longer than {MAX_VARINT_BYTES} bytes; the file is corrupt")

    def sized(self, limit: int | None, what: str) -> bytes:
        """A varint length, then that many bytes; lengths above ``limit`` are refused."""
        n = self.varint(f"{what} length")
        if limit is not None and n > limit:
            raise FormatError(f"{what} claims {n} bytes, more than the limit of {limit}")
        return self.take(n, what)
