"""Caption coder 1: exact round trips of any text, compact English, strict decoding.

Needs only the shipped model (tcodec/data), not the training data in ../shared.
"""

import hashlib
import os
import subprocess
import sys
import time
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tcodec.coding import captions
from tcodec.errors import FormatError, InputError, ModelError, ModelMismatchError, ModelNotFoundError

# Written for these tests in COCO's style; none is a COCO caption.
ENGLISH = [
    "a man riding a wave on top of a surfboard",
    "A man riding a wave on top of a surfboard.",
    "Two dogs playing with a red frisbee in a grassy park.",
    "A plate of food with broccoli, rice and a fork next to it.",
    "An old clock tower stands above the rooftops of a small town",
    "A woman in a yellow raincoat waits for the bus on a rainy street.",
    "Three giraffes eating leaves from the top of a tall tree.",
    "A kitchen with white cabinets, a stainless steel fridge and a window over the sink.",
    "a cat sleeping on the keyboard of a laptop computer",
    "Several people flying kites on a windy beach at sunset.",
]

UNUSUAL = [
    "",
    " ",
    "   leading and trailing spaces   ",
    "double  space and\ttab and\nnewline and\r\nCRLF",
    "\x00\x01\x02\x7f control characters \x1b[0m",
    "CAPS LOCK CAPTION OF A BUS",
    "iPhone, McDonald's and eBay in MiXeD case",
    "Numbers 1 2 3 10 2024 and 3.14159, 50% off!",
    "日本語のキャプション: 犬が公園で遊んでいる",
    "Собака бежит по траве",
    "Ein Hund läuft über die Wiese — café, naïve, façade",
    "emoji 🐶🐱🎉 and flags 🇫🇷 and ZWJ 👩‍👩‍👧",
    "\u200b\ufeff\u00a0 odd spaces \u2028\u2029",
    "x",
    "A",
    "...",
    "supercalifragilisticexpialidocious",
]

MAX = captions.MAX_CAPTION_BYTES
LONGEST = [
    "a" * MAX,
    "a dog " * (MAX // 6) + "a" * (MAX % 6),
    "é" * (MAX // 2),
    "🐶" * (MAX // 4),
    "\x00" * MAX,
    "".join(chr(32 + i % 95) for i in range(MAX)),
]


def raw_deflate(data: bytes) -> int:
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    return len(packer.compress(data) + packer.flush())


def round_trip(text: str) -> bytes:
    data = captions.encode_caption(text)
    assert captions.decode_caption(data) == text
    return data


def test_public_constants():
    assert captions.CAPTION_CODER_ID == 1
    assert captions.MAX_CAPTION_BYTES == 4096


@pytest.mark.parametrize("text", ENGLISH + UNUSUAL)
def test_round_trip(text):
    round_trip(text)


@pytest.mark.parametrize("text", LONGEST, ids=["ascii-word", "words", "2-byte", "4-byte", "nul", "printable"])
def test_round_trip_at_the_limit(text):
    assert len(text.encode("utf-8")) == MAX
    round_trip(text)


def test_empty_caption_is_empty_stream():
    assert captions.encode_caption("") == b""
    assert captions.decode_caption(b"") == ""


@given(st.text(max_size=MAX // 4))  # at most 4 UTF-8 bytes per character: always within the limit
def test_any_text_round_trips(text):
    round_trip(text)


WORDS = ["a", "A", "man", "dog", "on", "the", "of", "with", "table", "zxqv", "Frisbee", ".", ",", "2", "é", "🐶"]


@given(st.lists(st.tuples(st.sampled_from(["", " ", "  "]), st.sampled_from(WORDS)), max_size=40))
def test_any_word_sequence_round_trips(tokens):
    round_trip("".join(space + word for space, word in tokens))


@pytest.mark.parametrize("text", ["a" * (MAX + 1), "é" * (MAX // 2 + 1), "🐶" * 1025])
def test_over_the_limit_is_input_error(text):
    with pytest.raises(InputError):
        captions.encode_caption(text)


@pytest.mark.parametrize("text", ["lone surrogate \ud800", b"bytes", None, 42])
def test_unencodable_input_is_input_error(text):
    with pytest.raises(InputError):
        captions.encode_caption(text)


def test_english_is_much_smaller_than_raw_deflate():
    # measured with the shipped model: 4 bytes vs 42 for raw deflate
    data = round_trip("a man riding a wave on top of a surfboard")
    assert len(data) <= 8
    coded = sum(len(round_trip(t)) for t in ENGLISH)
    deflated = sum(raw_deflate(t.encode()) for t in ENGLISH)
    assert coded <= 0.3 * deflated  # measured: 0.13 here, 0.175 on held-out COCO


def test_deterministic_and_pinned():
    # Golden streams: a change of the model, numpy or constriction must not change them.
    for text, golden in GOLDEN.items():
        assert captions.encode_caption(text).hex() == golden
        assert captions.encode_caption(text).hex() == golden
        assert captions.decode_caption(bytes.fromhex(golden)) == text


GOLDEN = {
    "a man riding a wave on top of a surfboard": "03b3be87",
    "Two dogs playing with a red frisbee in a grassy park.": "cae09c3a500f5e",
    "emoji 🐶 and iPhone": "006f6842ff2da217239dbb5b2f68f912cf7a",
}


def test_truncated_streams_raise_format_error_or_decode_canonically():
    for text in ENGLISH + UNUSUAL[:8]:
        data = captions.encode_caption(text)
        for cut in range(len(data)):
            assert_strict(data[:cut])


def test_flipped_bits_raise_format_error_or_decode_canonically():
    for text in ENGLISH:
        data = captions.encode_caption(text)
        for position in range(len(data) * 8):
            corrupt = bytearray(data)
            corrupt[position // 8] ^= 1 << (position % 8)
            assert_strict(bytes(corrupt))


def assert_strict(data: bytes) -> None:
    """decode_caption either refuses the data or returns the one text that codes to it."""
    try:
        text = captions.decode_caption(data)
    except FormatError:
        return
    assert captions.encode_caption(text) == data


@settings(max_examples=200)
@given(st.binary(max_size=64))
def test_random_bytes_raise_only_format_error(data):
    assert_strict(data)


def test_trailing_junk_is_format_error():
    data = captions.encode_caption(ENGLISH[2])
    for junk in (b"\x00", b"\x01", b"\xff" * 3, data):
        with pytest.raises(FormatError):
            captions.decode_caption(data + junk)


def test_junk_never_hangs_or_grows_past_the_limit():
    started = time.perf_counter()
    for seed in range(20):
        junk = hashlib.shake_256(str(seed).encode()).digest(2000 + 300 * seed)
        assert_strict(junk)
    for junk in (b"\xff" * 5000, b"\x00" * 5000, b"\x80" + b"\0" * 100, b"\xff" * (captions.MAX_STREAM_BYTES + 1)):
        assert_strict(junk)
    assert time.perf_counter() - started < 10


def test_decoder_refuses_more_than_the_limit():
    model = captions.load_model()
    too_long = model.encode("a dog " * (MAX // 6 + 1))  # the model itself does not check the limit
    with pytest.raises(FormatError, match="more than"):
        captions.decode_caption(too_long)


def test_non_bytes_to_decode_is_format_error():
    with pytest.raises(FormatError):
        captions.decode_caption("text")


@pytest.fixture
def fresh_model_cache():
    captions.load_model.cache_clear()
    yield
    captions.load_model.cache_clear()


def test_model_file_is_pinned_by_hash(fresh_model_cache, monkeypatch):
    assert hashlib.sha256(captions.MODEL_PATH.read_bytes()).hexdigest() == captions.MODEL_SHA256
    monkeypatch.setattr(captions, "MODEL_SHA256", "0" * 64)
    with pytest.raises(ModelMismatchError):
        captions.encode_caption("a dog")


def test_changed_model_file_is_detected(fresh_model_cache, monkeypatch, tmp_path):
    blob = bytearray(captions.MODEL_PATH.read_bytes())
    blob[len(blob) // 2] ^= 0x10
    changed = tmp_path / "caption_model_v1.bin"
    changed.write_bytes(bytes(blob))
    monkeypatch.setattr(captions, "MODEL_PATH", changed)
    with pytest.raises(ModelMismatchError):
        captions.decode_caption(b"\x12")


def test_missing_model_file(fresh_model_cache, monkeypatch, tmp_path):
    monkeypatch.setattr(captions, "MODEL_PATH", tmp_path / "absent.bin")
    with pytest.raises(ModelNotFoundError):
        captions.encode_caption("a dog")


@pytest.mark.parametrize("blob", [b"", b"TCAPMDL1", b"TCAPMDL1" + zlib.compress(b"\x05\0\0\0{}"), os.urandom(64)])
def test_damaged_model_bytes_are_model_errors(blob):
    with pytest.raises(ModelError):
        captions.CaptionModel.from_bytes(blob)


def test_model_file_is_small():
    assert captions.MODEL_PATH.stat().st_size < 2_000_000


def test_import_is_cheap():
    # what importing tcodec.coding.captions adds to whatever the package imports anyway
    code = (
        "import sys, tcodec; before = set(sys.modules); import tcodec.coding.captions as c; "
        "added = set(sys.modules) - before; "
        "heavy = [m for m in added if m.split('.')[0] in ('numpy', 'constriction') or m == 'tcodec.coding.entropy']; "
        "assert not heavy, heavy; "
        "assert c.load_model.cache_info().currsize == 0"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=captions.MODEL_PATH.parents[2])


def test_tokens_reassemble_any_text():
    for text in ENGLISH + UNUSUAL + LONGEST:
        assert "".join(" " * space + core for space, core in captions.split_tokens(text)) == text


def test_encode_picks_the_shorter_coding_and_decode_inverts_it():
    english = captions.encode("a dog on a beach")
    assert english[0] == captions.CAPTION_CODER_ID and len(english[1]) < len("a dog on a beach")
    assert captions.decode(*english) == "a dog on a beach"
    assert captions.encode("") == (captions.CAPTION_UTF8, b"")
    assert captions.decode(captions.CAPTION_UTF8, b"") == ""
    limit = "é" * (MAX // 2)
    assert captions.decode(*captions.encode(limit)) == limit


@pytest.mark.parametrize("text, message", [
    ("caf\udce9", "not valid Unicode"), ("a\ud800b", "not valid Unicode"),
    ("x" * (MAX + 1), "caption is 4097 bytes"), (b"bytes", "must be text"),
])
def test_encode_checks_the_text_once_for_every_coder(text, message):
    with pytest.raises(InputError, match=message):
        captions.encode(text)


@pytest.mark.parametrize("coder, data, message", [
    (0, b"\xff\xfe", "not valid UTF-8"), (0, b"a" * (MAX + 1), "longer than 4096"), (7, b"", "unknown caption coder 7"),
])
def test_decode_refuses_what_encode_cannot_make(coder, data, message):
    with pytest.raises(FormatError, match=message):
        captions.decode(coder, data)
