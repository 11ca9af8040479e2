import io

import pytest
from PIL import Image, JpegImagePlugin

import tcodec
from tcodec.api import native_bytes
from tcodec.container import Container, pack, unpack
from tcodec.errors import FormatError, InputError


def stream_of(data: bytes) -> bytes:
    return unpack(data).streams[0]


def test_payload_is_the_jpeg_pillow_writes(card):
    data = tcodec.encode(card, "jpeg", 80)
    buffer = io.BytesIO()
    card.save(buffer, "JPEG", quality=80, optimize=True, subsampling=2)
    assert stream_of(data) == buffer.getvalue()
    assert len(data) - len(buffer.getvalue()) <= 32


def test_decode_gives_exactly_the_pixels_pillow_decodes(card):
    data = tcodec.encode(card, "jpeg", 60)
    reference = Image.open(io.BytesIO(stream_of(data)))
    assert tcodec.decode(data).tobytes() == reference.convert("RGB").tobytes()


def test_native_bytes_are_the_original_jpeg(card):
    data = tcodec.encode(card, "jpeg", 60)
    assert native_bytes(unpack(data)) == ("JPEG", stream_of(data))


@pytest.mark.parametrize("name, sampling", [("4:2:0", 2), ("4:2:2", 1), ("4:4:4", 0)])
def test_subsampling_option(card, name, sampling):
    data = tcodec.encode(card, "jpeg", 90, options={"subsampling": name})
    assert JpegImagePlugin.get_sampling(Image.open(io.BytesIO(stream_of(data)))) == sampling


def test_default_subsampling_is_420(card):
    jpeg = Image.open(io.BytesIO(stream_of(tcodec.encode(card, "jpeg", 90))))
    assert JpegImagePlugin.get_sampling(jpeg) == 2


def test_huffman_tables_are_optimised(card):
    plain = io.BytesIO()
    card.save(plain, "JPEG", quality=75, subsampling=2)
    assert len(stream_of(tcodec.encode(card, "jpeg", 75))) < len(plain.getvalue())


def test_quality_changes_size_monotonically(card):
    sizes = [len(tcodec.encode(card, "jpeg", q)) for q in (5, 30, 60, 90, 100)]
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1] / 3


def test_grayscale_stays_one_channel(card):
    gray = card.convert("L")
    data = tcodec.encode(gray, "jpeg", 75)
    assert unpack(data).mode == "L"
    assert tcodec.decode(data).mode == "L"


def test_bad_subsampling_is_an_input_error(card):
    with pytest.raises(InputError, match="subsampling must be one of"):
        tcodec.encode(card, "jpeg", 75, options={"subsampling": "4:1:1"})


@pytest.mark.parametrize("quality", [0, 101, 50.5, -3, float("nan")])
def test_bad_quality_is_an_input_error(card, quality):
    with pytest.raises(InputError, match="quality for jpeg must be an integer from 1 to 100"):
        tcodec.encode(card, "jpeg", quality)


def _repacked(data: bytes, **change) -> bytes:
    fields = {**unpack(data).__dict__, **change}
    fields.pop("layout")
    return pack(Container(**fields))


def test_corrupt_jpeg_with_a_valid_checksum_is_a_format_error(card):
    data = tcodec.encode(card, "jpeg", 75)
    stream = stream_of(data)
    broken = _repacked(data, streams=(stream[: len(stream) // 3],))
    with pytest.raises(FormatError, match="JPEG stream is corrupt"):
        tcodec.decode(broken)
    with pytest.raises(FormatError, match="JPEG stream is corrupt"):
        tcodec.decode(_repacked(data, streams=(b"\xff\xd8 not a jpeg",)))


def test_header_size_must_match_the_jpeg(card):
    data = tcodec.encode(card, "jpeg", 75)
    with pytest.raises(FormatError, match="the header says 97x64"):
        tcodec.decode(_repacked(data, width=97))
    with pytest.raises(FormatError, match="the header says 96x64 L"):
        tcodec.decode(_repacked(data, mode="L"))


def test_a_jpeg_claiming_a_huge_size_allocates_nothing(card):
    data = tcodec.encode(card, "jpeg", 75)
    stream = bytearray(stream_of(data))
    sof = stream.index(b"\xff\xc0")
    stream[sof + 5 : sof + 9] = (60000).to_bytes(2, "big") + (60000).to_bytes(2, "big")
    with pytest.raises(FormatError):
        tcodec.decode(_repacked(data, streams=(bytes(stream),)))


def test_more_than_one_stream_is_refused(card):
    data = tcodec.encode(card, "jpeg", 75)
    with pytest.raises(FormatError, match="holds 1 stream"):
        tcodec.decode(_repacked(data, streams=(stream_of(data), b"")))
