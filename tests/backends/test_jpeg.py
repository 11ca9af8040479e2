import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, JpegImagePlugin

import tcodec
from tcodec.api import native_bytes
from tcodec.format.container import Container, pack, unpack
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
    with pytest.raises(FormatError, match="JPEG stream"):
        tcodec.decode(broken)
    with pytest.raises(FormatError, match="JPEG stream"):
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


def _jpeg(card, **save) -> bytes:
    buffer = io.BytesIO()
    card.save(buffer, "JPEG", **save)
    return buffer.getvalue()


@pytest.mark.parametrize("stream, message", [
    (b"<html><script>alert(1)</script></html>", "not a JPEG file"),
    (None, "bytes after its end"),  # a real JPEG with an HTML page behind it
])
def test_only_a_jpeg_is_handed_out_as_jpg(card, stream, message):
    data = tcodec.encode(card, "jpeg", 75)
    stream = stream if stream is not None else stream_of(data) + b"<html><script>alert(1)</script></html>"
    smuggler = unpack(_repacked(data, streams=(stream,)))
    with pytest.raises(FormatError, match=message):
        native_bytes(smuggler)
    with pytest.raises(FormatError, match=message):
        tcodec.decode(_repacked(data, streams=(stream,)))
    two = unpack(_repacked(data, streams=(stream_of(data), stream_of(data))))
    with pytest.raises(FormatError, match="holds 1 stream"):
        native_bytes(two)
    assert native_bytes(unpack(data)) == ("JPEG", stream_of(data))


@pytest.mark.parametrize("save, message", [
    ({"progressive": True}, "more than one|scans are not one scan|0xFFC2"),
    ({"comment": b"<html>"}, "0xFFFE segment"),
])
def test_jpegs_tcodec_does_not_write_are_refused(card, save, message):
    data = tcodec.encode(card, "jpeg", 75)
    with pytest.raises(FormatError, match=message):
        tcodec.decode(_repacked(data, streams=(_jpeg(card, **save),)))


def test_every_jpeg_tcodec_writes_passes_the_check(card):
    from tcodec.backends.jpeg import check_jpeg

    for image in (card, card.convert("L"), card.crop((0, 0, 1, 1)), card.crop((0, 0, 17, 9))):
        for quality in (1, 50, 100):
            for subsampling in ("4:2:0", "4:2:2", "4:4:4"):
                stream = stream_of(tcodec.encode(image, "jpeg", quality, options={"subsampling": subsampling}))
                check_jpeg(stream, image.width, image.height, image.mode)


def test_a_jpeg_too_short_for_its_frame_is_refused_before_decoding(card, monkeypatch):
    data = tcodec.encode(card, "jpeg", 75)
    stream = bytearray(stream_of(data))
    sof = stream.index(b"\xff\xc0")
    stream[sof + 5 : sof + 9] = (12800).to_bytes(2, "big") * 2
    bomb = _repacked(data, streams=(bytes(stream),), width=12800, height=12800)
    loads = []
    monkeypatch.setattr(Image.Image, "load", lambda self: loads.append(self.size))
    from tcodec.limits import Limits

    with pytest.raises(FormatError, match="too short for 12800x12800 pixels"):
        tcodec.decode(bomb, limits=Limits(max_pixels=1 << 28))
    assert loads == []


def test_an_image_jpeg_cannot_hold_is_an_input_error():
    with pytest.raises(InputError, match="sides up to 65500"):
        tcodec.encode(Image.new("L", (65501, 1)), "jpeg", 75)


@settings(max_examples=200, deadline=None)
@given(width=st.integers(1, 65535), height=st.integers(1, 65535), cut=st.integers(0, 400),
       junk=st.binary(max_size=64))
def test_no_accepted_jpeg_stream_describes_more_than_256_pixels_per_byte(width, height, cut, junk):
    """What check_jpeg lets through is all a decode allocates: at most 256 pixels (3 bytes
    each) per byte of stream, whatever the frame header claims."""
    from tcodec.backends.jpeg import check_jpeg

    stream = bytearray(_VALID)
    sof = stream.index(b"\xff\xc0")
    stream[sof + 5 : sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    sos_end = stream.index(b"\xff\xda") + 2 + int.from_bytes(stream[stream.index(b"\xff\xda") + 2 :][:2], "big")
    forged = bytes(stream[:sos_end]) + junk + bytes(stream[sos_end:])[cut:]
    try:
        check_jpeg(forged, width, height, "RGB")
    except FormatError:
        return
    assert width * height <= 256 * len(forged)


_VALID = _jpeg(Image.new("RGB", (64, 48), "teal"), quality=75, optimize=True)


@pytest.mark.parametrize("change", [{"entropy_coder": "constriction-range"}, {"model_hash": bytes(8)}])
def test_a_jpeg_tcz_has_no_entropy_coder_and_no_model(card, change):
    with pytest.raises(FormatError, match="entropy coder 'none' and no model hash"):
        tcodec.decode(_repacked(tcodec.encode(card, "jpeg", 75), **change))
