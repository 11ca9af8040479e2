"""Latent coding under frozen integer CDF tables (tcodec.coding.entropy, image part)."""

import numpy as np
import pytest

from tcodec.coding.entropy import CdfTables, LatentDecoder, LatentEncoder
from tcodec.errors import FormatError, ModelError


def gaussian_tables(n_rows: int = 8) -> CdfTables:
    """Integer CDFs of discretised Gaussians with growing scales, 16-bit precision,
    the last symbol an escape (CompressAI's layout, built here without torch)."""
    from math import erf, sqrt

    rows, lengths, offsets = [], [], []
    for i in range(n_rows):
        scale = 0.2 * 2**i
        half = int(np.ceil(4 * scale)) + 1
        values = np.arange(-half, half + 1)
        cdf_at = [0.5 * (1 + erf((v + 0.5) / (scale * sqrt(2)))) for v in values]
        pmf = np.diff(np.r_[0.0, cdf_at])
        pmf = np.r_[pmf, 1e-4]  # escape mass
        frequencies = np.maximum(1, np.round(pmf / pmf.sum() * (1 << 16) * 0.999)).astype(np.int64)
        frequencies[np.argmax(frequencies)] += (1 << 16) - frequencies.sum()
        rows.append(np.r_[0, np.cumsum(frequencies)])
        lengths.append(len(frequencies) + 1)
        offsets.append(-half)
    width = max(lengths)
    table = np.zeros((n_rows, width), dtype=np.int64)
    for i, row in enumerate(rows):
        table[i, : len(row)] = row
    return CdfTables(table, np.array(lengths), np.array(offsets))


@pytest.fixture(scope="module")
def tables():
    return gaussian_tables()


def sample(tables, n=20000, seed=0):
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, 8, n)
    values = np.round(rng.normal(0, 0.2 * 2.0**rows)).astype(np.int64)
    return values, rows


def round_trip(values, rows, tables):
    encoder = LatentEncoder()
    encoder.encode(values, rows, tables)
    data = encoder.to_bytes()
    decoder = LatentDecoder(data)
    decoded = decoder.decode(rows, tables)
    decoder.check_exhausted()
    return data, decoded, encoder


def test_round_trip(tables):
    values, rows = sample(tables)
    _, decoded, _ = round_trip(values, rows, tables)
    assert np.array_equal(decoded, values)


def test_escapes_far_outside_the_tables(tables):
    values = np.array([0, 10**6, -(10**6), 2**30, -3, 40, -41, 0])
    rows = np.array([0, 0, 1, 2, 7, 3, 4, 5])
    _, decoded, _ = round_trip(values, rows, tables)
    assert np.array_equal(decoded, values)


def test_several_calls_decode_in_order(tables):
    first, rows1 = sample(tables, 500, seed=1)
    second, rows2 = sample(tables, 700, seed=2)
    encoder = LatentEncoder()
    encoder.encode(first, rows1, tables)
    encoder.encode(second, rows2, tables)
    decoder = LatentDecoder(encoder.to_bytes())
    assert np.array_equal(decoder.decode(rows1, tables), first)
    assert np.array_equal(decoder.decode(rows2, tables), second)


def test_coded_size_is_within_one_percent_of_the_ideal(tables):
    values, rows = sample(tables, 100000)
    data, _, encoder = round_trip(values, rows, tables)
    ideal_bytes = encoder.ideal_bits / 8
    assert ideal_bytes <= len(data) <= ideal_bytes * 1.01 + 8


def test_same_input_same_bytes(tables):
    values, rows = sample(tables)
    assert round_trip(values, rows, tables)[0] == round_trip(values, rows, tables)[0]


def test_stream_must_be_whole_words():
    with pytest.raises(FormatError, match="whole number of 32-bit words"):
        LatentDecoder(b"abc")


def test_leftover_data_is_detected(tables):
    values, rows = sample(tables, 1000)
    data, _, _ = round_trip(values, rows, tables)
    decoder = LatentDecoder(data + bytes(range(1, 41)))
    decoder.decode(rows, tables)
    with pytest.raises(FormatError, match="beyond its last symbol"):
        decoder.check_exhausted()


def test_garbage_raises_only_format_error(tables):
    rng = np.random.default_rng(5)
    rows = rng.integers(0, 8, 3000)
    for seed in range(20):
        data = np.random.default_rng(seed).integers(0, 2**32, 50, dtype=np.uint64).astype("<u4").tobytes()
        decoder = LatentDecoder(data)
        try:
            decoder.decode(rows, tables)
            decoder.check_exhausted()
        except FormatError:
            pass


def test_malformed_tables_are_a_model_error():
    with pytest.raises(ModelError, match="malformed"):
        CdfTables(np.zeros((2, 4)), np.array([4]), np.array([0, 0]))


def test_row_indexes_beyond_sixteen_bits():
    """Rows are sorted as 16-bit keys when they fit; wider ones take the general path."""
    n_rows = 2**15 + 3
    cdf = np.tile(np.array([0, 100, 200, 300, 301]), (n_rows, 1))  # 3 symbols and an escape
    tables = CdfTables(cdf, np.full(n_rows, 5), np.full(n_rows, -1))
    rows = np.array([n_rows - 1, 0, 2**15, n_rows - 1, 5, 0])
    values = np.array([1, -1, 0, 7, -9, 0])
    _, decoded, _ = round_trip(values, rows, tables)
    assert np.array_equal(decoded, values)
