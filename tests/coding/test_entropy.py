"""The generic constriction wrapper: categorical symbols with a table per symbol."""

import contextlib
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tcodec.coding import entropy
from tcodec.errors import FormatError


def random_message(seed: int, count: int, max_alphabet: int = 60):
    rng = np.random.default_rng(seed)
    tables = [rng.dirichlet(np.full(int(rng.integers(2, max_alphabet)), 0.3)) for _ in range(count)]
    symbols = [int(rng.choice(len(t), p=t)) for t in tables]
    return symbols, tables


def decode_all(data: bytes, tables) -> list[int]:
    decoder = entropy.CategoricalDecoder(data)
    symbols = [decoder.decode(t) for t in tables]
    decoder.check_canonical()
    return symbols


@pytest.mark.parametrize("seed", range(20))
def test_round_trip(seed):
    symbols, tables = random_message(seed, count=seed * 3)
    assert decode_all(entropy.encode_categorical(symbols, tables), tables) == symbols


def test_nothing_codes_to_nothing():
    assert entropy.encode_categorical([], []) == b""
    decode_all(b"", [])


def test_a_first_symbol_at_index_zero_needs_no_bytes():
    # the zero-padded empty stream is the point 0, which decodes to symbol 0
    assert entropy.encode_categorical([0], [np.array([9.0, 1.0])]) == b""


def test_large_alphabets_and_zero_probabilities():
    table = np.zeros(5000)
    table[:3] = [5, 3, 1]  # symbols with probability 0 still get the smallest one
    symbols = [0, 4999, 2, 1234]
    data = entropy.encode_categorical(symbols, [table] * 4)
    assert decode_all(data, [table] * 4) == symbols


def test_size_is_close_to_the_information_content():
    total_bytes = total_bits = 0.0
    for seed in range(40):
        symbols, tables = random_message(1000 + seed, count=20)
        total_bits += -sum(math.log2(t[s] / t.sum()) for s, t in zip(symbols, tables))
        total_bytes += len(entropy.encode_categorical(symbols, tables))
    # measured: about 0.3 bytes per stream over the ideal; untrimmed 32-bit words cost ~2.5
    assert total_bytes / 40 <= total_bits / 8 / 40 + 1.0


def test_streams_are_minimal_and_deterministic():
    for seed in range(30):
        symbols, tables = random_message(2000 + seed, count=12)
        data = entropy.encode_categorical(symbols, tables)
        assert data == entropy.encode_categorical(symbols, tables)
        assert not data.endswith(b"\0")  # a trailing zero byte could always be dropped
        if data:  # and no shorter stream decodes to the same symbols
            decoder = entropy.CategoricalDecoder(data[:-1])
            with contextlib.suppress(FormatError):
                assert [decoder.decode(t) for t in tables] != symbols


def test_golden_stream():
    # Pins constriction's quantisation and the trimming rule: a change here breaks old files.
    tables = [
        np.array([1.0, 2, 3, 4]), np.array([5.0, 1, 1, 1]), np.array([1.0, 1]),
        np.arange(1.0, 300), np.arange(4000.0, 0, -1), np.array([0.0, 1, 1e-9]),
    ]
    symbols = [3, 0, 1, 250, 3999, 2]
    assert entropy.encode_categorical(symbols, tables).hex() == "d02a35dad1c2b2"
    assert decode_all(bytes.fromhex("d02a35dad1c2b2"), tables) == symbols


def test_extra_or_changed_bytes_are_caught():
    symbols, tables = random_message(7, count=15)
    data = entropy.encode_categorical(symbols, tables)
    for bad in (data + b"\x01", data + b"\0\0\0\0\x01", data[:-1] + bytes([data[-1] ^ 1])):
        decoder = entropy.CategoricalDecoder(bad)
        try:
            decoded = [decoder.decode(t) for t in tables]
            decoder.check_canonical()
        except FormatError:
            continue
        pytest.fail(f"{bad.hex()} decoded to {decoded} without complaint")


@given(st.binary(max_size=40), st.integers(0, 2**16))
def test_any_bytes_decode_or_raise_format_error(data, seed):
    _, tables = random_message(seed, count=25)
    decoder = entropy.CategoricalDecoder(data)
    try:
        symbols = [decoder.decode(t) for t in tables]
        decoder.check_canonical()
    except FormatError:
        return
    assert entropy.encode_categorical(symbols, tables) == data


def test_bad_arguments_are_value_errors():
    with pytest.raises(ValueError):
        entropy.encode_categorical([2], [np.array([1.0, 1.0])])
    with pytest.raises(ValueError):
        entropy.encode_categorical([0, 0], [np.array([1.0, 1.0])])
    with pytest.raises(ValueError):
        entropy.encode_categorical([0], [np.array([np.nan, 1.0])])


def test_bytes_to_words_is_big_endian_and_zero_padded():
    assert entropy.bytes_to_words(b"\x01\x02\x03\x04\x05").tolist() == [0x01020304, 0x05000000]
    assert entropy.bytes_to_words(b"").tolist() == []


@settings(max_examples=60, deadline=None)
@given(alphabet=st.integers(1, 9000), data=st.data())
def test_uniform_indices_of_any_alphabet_round_trip_trimmed(alphabet, data):
    from tcodec.coding.entropy import decode_uniform, encode_uniform

    symbols = data.draw(st.lists(st.integers(0, alphabet - 1), max_size=300))
    stream = encode_uniform(symbols, alphabet)
    assert decode_uniform(stream, len(symbols), alphabet) == symbols
    ideal_bytes = len(symbols) * math.log2(alphabet) / 8
    assert len(stream) <= ideal_bytes + 5  # trimmed: within a few bytes of the information


def test_uniform_streams_that_encode_uniform_cannot_make_are_refused():
    from tcodec.coding.entropy import MAX_UNIFORM_COUNT, decode_uniform, encode_uniform

    stream = encode_uniform([5, 0, 8195, 17] * 20, 8196)
    with pytest.raises(FormatError, match="do not account for"):
        decode_uniform(stream + b"\x01", 80, 8196)
    # (a truncated stream is another valid one: the container's CRC catches truncation)
    with pytest.raises(FormatError, match="more than any stream holds"):
        decode_uniform(b"", MAX_UNIFORM_COUNT + 1, 2)


def test_a_run_of_zero_indices_trims_to_few_bytes_and_still_decodes():
    from tcodec.coding.entropy import decode_uniform, encode_uniform

    symbols = [7, 3] + [0] * 60
    stream = encode_uniform(symbols, 256)
    assert len(stream) <= 8  # 62 untrimmed: the zeros are what the decoder reads past the end
    assert decode_uniform(stream, len(symbols), 256) == symbols
    assert decode_uniform(b"", 40, 256) == [0] * 40
    with pytest.raises(ValueError, match="outside 0..255"):
        encode_uniform([256], 256)
