import struct
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tcodec.api import read_info
from tcodec.coding.captions import MAX_CAPTION_BYTES
from tcodec.format.container import (
    MAX_PIXELS,
    Container,
    varint,
    check_magic,
    pack,
    unpack,
)
from tcodec.errors import FormatError, InputError

BASIC = Container(backend="jpeg", quality=75, width=640, height=480, mode="RGB", streams=(b"\xff\xd8payload\xff\xd9",))
FULL = Container(
    backend="taco", quality=3.25, width=65535, height=4096, mode="L",
    streams=(b"a" * 300, b"", b"xyz"), entropy_coder="constriction-ans",
    model_hash=bytes(range(8)), coded_caption=(0, "two dogs 🐕 on a beach".encode()),
)


def with_crc(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


def header(flags=0, backend=1, quality=7500, width=b"\x0f", height=b"\x07", mode=1, coder=0, rest=b"") -> bytes:
    """A file built field by field, so each test can break exactly one field."""
    return b"TCZ\x10" + bytes([flags, backend]) + struct.pack("<H", quality) + width + height + bytes([mode, coder]) + rest


def test_round_trip_keeps_every_field():
    for container in (BASIC, FULL):
        assert unpack(pack(container)) == container


def test_packing_is_deterministic():
    assert pack(FULL) == pack(FULL)


def test_layout_counts_every_byte():
    data = pack(FULL)
    layout = unpack(data).layout
    assert layout["header"] + layout["caption"] + layout["streams"] + layout["framing"] == len(data)
    assert layout["header"] == 3 + 1 + 1 + 1 + 2 + 3 + 2 + 1 + 1 + 8


def test_overhead_over_a_jpeg_payload_is_small():
    stream = bytes(2_000_000)  # a 2 MB JPEG needs a 3-byte length
    container = Container("jpeg", 100, 16384, 16384, "RGB", (stream,))
    overhead = len(pack(container)) - len(stream)
    assert overhead <= 32
    assert overhead == 22  # 3 magic, 1 version, 1 flags, 1 backend, 2 quality, 2+2 size,
    # 1 mode, 1 coder, 1 stream count, 3 stream length, 4 CRC


def test_quality_is_stored_in_hundredths():
    assert unpack(pack(Container("taco", 1.006, 8, 8, "RGB", (b"",)))).quality == 1.01


@pytest.mark.parametrize("value, n_bytes", [(0, 1), (1, 1), (127, 1), (128, 2), (16383, 2), (16384, 3), (65534, 3)])
def test_varint_round_trip(value, n_bytes):
    assert len(varint(value)) == n_bytes
    assert unpack(with_crc(header(width=varint(value), rest=b"\x01\x00"))).width == value + 1


def test_largest_varint_is_read_then_refused_as_a_size():
    data = with_crc(header(width=varint(2**35 - 1), rest=b"\x01\x00"))
    with pytest.raises(FormatError, match="34359738368x8 is outside the format's limits"):
        unpack(data)


def test_foreign_files_are_refused():
    for data in (b"", b"\x89PNG\r\n\x1a\n", b"GIF89a", b"hello world"):
        with pytest.raises(FormatError, match="not a .tcz file"):
            unpack(data)


def test_future_major_version_is_refused_with_its_number():
    data = bytearray(pack(BASIC))
    data[3] = 0x21
    with pytest.raises(FormatError, match=r"version 2\.1 is not supported; this tcodec reads 1\.x"):
        unpack(bytes(data))


def test_newer_minor_version_is_read():
    data = bytearray(pack(BASIC))
    data[3] = 0x13
    body = bytes(data[:-4])
    assert unpack(with_crc(body)).width == 640


def test_every_truncation_is_reported():
    data = pack(FULL)
    for end in range(len(data)):
        with pytest.raises(FormatError, match="truncated|not a .tcz|checksum"):
            unpack(data[:end])


def test_truncated_stream_names_what_is_missing():
    data = pack(BASIC)
    with pytest.raises(FormatError, match="truncated .tcz file: stream 0 needs"):
        unpack(data[:-10])


def test_every_single_bit_flip_is_detected():
    data = pack(BASIC)
    for i in range(len(data)):
        for bit in range(8):
            damaged = bytearray(data)
            damaged[i] ^= 1 << bit
            with pytest.raises(FormatError):
                unpack(bytes(damaged))


def test_trailing_bytes_are_refused():
    with pytest.raises(FormatError, match="unexpected bytes after the end"):
        unpack(pack(BASIC) + b"\x00")


def test_absurd_image_size_is_refused_before_anything_else():
    million = varint(10**6 - 1)
    data = with_crc(header(width=million, height=million, rest=b"\x01\x00"))
    with pytest.raises(FormatError, match="1000000x1000000 is outside the format's limits"):
        unpack(data)


def test_too_many_pixels_is_refused():
    side = varint(40000 - 1)  # each side valid, the product is not
    with pytest.raises(FormatError, match="outside the format's limits"):
        unpack(with_crc(header(width=side, height=side, rest=b"\x01\x00")))


@pytest.mark.parametrize("varint", [b"\x80\x00", b"\xff\xff\xff\xff\xff\x01", b"\x80\x80\x80\x80\x80"])
def test_malformed_varints_are_refused(varint):
    with pytest.raises(FormatError, match="minimally|longer than"):
        unpack(with_crc(header(width=varint, rest=b"\x01\x00")))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"flags": 0x80}, "unknown header flags"),
        ({"backend": 0}, "unknown backend code 0"),
        ({"backend": 200}, "unknown backend code 200"),
        ({"mode": 9}, "unknown mode code 9"),
        ({"coder": 7}, "unknown entropy coder code 7"),
    ],
)
def test_unknown_codes_are_refused(kwargs, message):
    with pytest.raises(FormatError, match=message):
        unpack(with_crc(header(**kwargs, rest=b"\x01\x00")))


@pytest.mark.parametrize("count", [b"\x00", b"\x41"])
def test_stream_count_is_bounded(count):
    with pytest.raises(FormatError, match="stream count"):
        unpack(with_crc(header(rest=count)))


def test_oversize_caption_is_refused_when_read():
    caption = b"a" * (MAX_CAPTION_BYTES + 1)
    rest = b"\x00" + varint(len(caption)) + caption + b"\x01\x00"
    assert unpack(with_crc(header(flags=0x02, rest=rest))).coded_caption == (0, caption)  # the container's part
    with pytest.raises(FormatError, match="caption is longer than"):
        read_info(with_crc(header(flags=0x02, rest=rest)))


def test_caption_length_beyond_the_limit_is_refused_before_reading():
    rest = b"\x00" + varint(10**9)
    with pytest.raises(FormatError, match="caption claims 1000000000 bytes"):
        unpack(with_crc(header(flags=0x02, rest=rest)))


def test_invalid_utf8_caption_is_a_format_error():
    rest = b"\x00\x02\xff\xfe\x01\x00"
    with pytest.raises(FormatError, match="not valid UTF-8"):
        read_info(with_crc(header(flags=0x02, rest=rest)))


def test_unknown_caption_coder_is_refused():
    rest = b"\xee\x02ab\x01\x00"
    with pytest.raises(FormatError, match="unknown caption coder code 238"):
        unpack(with_crc(header(flags=0x02, rest=rest)))


def test_check_magic_on_short_prefixes():
    with pytest.raises(FormatError, match="truncated"):
        check_magic(b"TC")
    with pytest.raises(FormatError, match="not a .tcz"):
        check_magic(b"TX")


@pytest.mark.parametrize(
    "change, message",
    [
        ({"width": 0}, "outside the format's limits"),
        ({"height": 70000}, "outside the format's limits"),
        ({"quality": 0}, "cannot be stored"),
        ({"quality": 1000}, "cannot be stored"),
        ({"streams": ()}, "1 to 64 streams"),
        ({"streams": (b"",) * 65}, "1 to 64 streams"),
        ({"model_hash": b"short"}, "must be 8 bytes"),
        ({"backend": "gif"}, "unknown backend 'gif'"),
        ({"mode": "CMYK"}, "unknown mode 'CMYK'"),
        ({"entropy_coder": "huffman"}, "unknown entropy coder"),
        ({"coded_caption": (9, b"")}, "unknown caption coder code 9"),
        ({"coded_caption": (0, bytes(8193))}, "at most 8192 bytes"),
        ({"caption": "text only"}, "must be coded before packing"),
    ],
)
def test_pack_refuses_values_the_format_cannot_hold(change, message):
    fields = {**BASIC.__dict__, **change}
    fields.pop("layout")
    with pytest.raises(InputError, match=message):
        pack(Container(**fields))


def test_empty_caption_is_kept_apart_from_no_caption():
    assert unpack(pack(Container("jpeg", 50, 4, 4, "L", (b"x",), coded_caption=(0, b"")))).coded_caption == (0, b"")
    assert unpack(pack(Container("jpeg", 50, 4, 4, "L", (b"x",)))).coded_caption is None


# --- property-based: damaged files only ever raise FormatError, quickly -------------

SAMPLES = [pack(BASIC), pack(FULL)]
FAST = settings(max_examples=300, deadline=200, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def mutated(draw, fix_crc: bool) -> bytes:
    data = bytearray(draw(st.sampled_from(SAMPLES)))
    for _ in range(draw(st.integers(1, 8))):
        action = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        position = draw(st.integers(0, max(len(data) - 1, 0)))
        if action == "flip" and data:
            data[position] ^= 1 << draw(st.integers(0, 7))
        elif action == "set" and data:
            data[position] = draw(st.integers(0, 255))
        elif action == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=8))
        elif action == "delete" and data:
            del data[position : position + draw(st.integers(1, 8))]
        elif action == "truncate":
            del data[position:]
    if fix_crc and len(data) >= 4:
        # keep the checksum valid, so the parser's own checks are what is tested
        data[-4:] = struct.pack("<I", zlib.crc32(bytes(data[:-4])))
    return bytes(data)


def read_or_format_error(data: bytes) -> None:
    try:
        container = unpack(data)
    except FormatError:
        return
    # If it parsed, it is within the limits and packs back to the same values.
    assert container.width * container.height <= MAX_PIXELS
    assert unpack(pack(container)) == container


@FAST
@given(mutated(fix_crc=False))
def test_mutated_files_raise_only_format_error(data):
    read_or_format_error(data)


@FAST
@given(mutated(fix_crc=True))
def test_mutated_files_with_a_valid_checksum_raise_only_format_error(data):
    read_or_format_error(data)


@FAST
@given(st.binary(max_size=64))
def test_random_bytes_after_the_magic_raise_only_format_error(tail):
    read_or_format_error(b"TCZ\x10" + tail)


def test_quality_zero_is_refused_by_the_reader():
    with pytest.raises(FormatError, match="quality 0 is not a valid quality"):
        unpack(with_crc(header(quality=0, rest=b"\x01\x00")))


def test_the_container_module_needs_no_caption_model():
    """Reading and writing captions as coded bytes: nothing but the standard library."""
    import ast
    from pathlib import Path

    import tcodec.format.container

    tree = ast.parse(Path(tcodec.format.container.__file__).read_text(encoding="utf-8"))
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert imported <= {"__future__", "struct", "zlib", "dataclasses", "tcodec.errors"}
