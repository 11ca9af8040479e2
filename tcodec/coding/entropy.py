"""Entropy coding for tcodec: a thin, byte-exact wrapper around ``constriction``.

This is the only module of tcodec that imports ``constriction``. Callers hand in
integer symbols together with one probability table per symbol and get bytes
back (and the reverse), so models stay free of entropy-coder details.

Stream format
-------------
Symbols are coded with constriction's range coder (``stream.queue``, 32-bit
words, 64-bit state) under ``model.Categorical(table, perfect=False)``, whose
fixed-point precision is 24 bits. The range coder's output is one big number,
most significant word first, so its words are written **big-endian**: a prefix
of the bytes is then a truncation of that number. The encoder stores the
shortest prefix ``p`` such that ``p`` (or ``p`` plus one in its last byte)
followed by zero bytes still decodes to the same symbols; it checks this by
decoding. The decoder appends zero bytes up to a whole word, and constriction
reads zero words past the end, so the trimmed bytes are restored implicitly.
On COCO captions this takes 8.6 bytes where the untrimmed words take 10.4 and
the information content is 8.3 (docs/captions.md), which matters for streams of
about ten bytes. A stream that codes nothing is empty. Decoders should end with
:meth:`CategoricalDecoder.check_canonical`, which refuses any other bytes.

Determinism: encoder and decoder must pass bit-identical float64 tables;
constriction's quantisation of a table is deterministic, so identical tables
give identical coding intervals.
"""

from __future__ import annotations

from collections.abc import Sequence

import constriction
import numpy as np

from tcodec.errors import FormatError, ModelError

_WORD_BYTES = 4
_PROBABILITY_STEP = 2.0**-24  # constriction's Categorical: 24-bit fixed-point probabilities
# A range decoder holds up to 64 bits it has read but not yet used, and the encoder's
# last word may be padded: information that a valid stream can still supply after
# its last word has been read. Twice that, to be safe.
_STATE_BITS = 128
MAX_UNIFORM_COUNT = 1 << 24  # indices one uniform stream may hold (a 4096x4096 grid)
# constriction raises AssertionError when the code point falls in the sliver of
# the range that no symbol maps to, which only invalid data can do.
_INVALID_DATA = (AssertionError, ValueError, KeyError, RuntimeError)


def _models(tables: Sequence[np.ndarray]) -> list:
    """One constriction categorical model per table (a float64 vector)."""
    categorical = constriction.stream.model.Categorical
    try:
        return [categorical(np.asarray(t, dtype=np.float64), perfect=False) for t in tables]
    except ValueError as exc:
        raise ValueError(f"probability table is not normalizable: {exc}") from None


def bytes_to_words(data: bytes) -> np.ndarray:
    """Big-endian bytes, zero-padded to whole words, as native uint32 words."""
    padding = -len(data) % _WORD_BYTES
    words = np.frombuffer(bytes(data) + b"\0" * padding, dtype=">u4")
    return words.astype(np.uint32)


def _decodes_to(data: bytes, symbols: Sequence[int], models: list) -> bool:
    decoder = constriction.stream.queue.RangeDecoder(bytes_to_words(data))
    try:
        return all(decoder.decode(model) == symbol for symbol, model in zip(symbols, models))
    except _INVALID_DATA:
        return False


def _valid_prefix(full: bytes, length: int, symbols, models) -> bytes | None:
    """The length-byte truncation of ``full``, or that plus one, if it decodes."""
    prefix = full[:length]
    if _decodes_to(prefix, symbols, models):
        return prefix
    if length == 0:
        return None
    bumped = int.from_bytes(prefix, "big") + 1
    if bumped >= 1 << (8 * length):
        return None
    candidate = bumped.to_bytes(length, "big")
    return candidate if _decodes_to(candidate, symbols, models) else None


def _shortest_stream(full: bytes, symbols, models) -> bytes:
    """Binary search for the shortest decodable truncation of ``full``.

    If a truncation to L bytes decodes, so does one to L + 1 bytes (the coding
    interval that contains a short number also contains a longer one), so the
    valid lengths form a suffix of 0..len(full) and binary search finds the
    shortest. ``full`` itself always decodes.
    """
    best, low, high = full, 0, len(full) - 1
    while low <= high:
        middle = (low + high) // 2
        candidate = _valid_prefix(full, middle, symbols, models)
        if candidate is None:
            low = middle + 1
        else:
            best, high = candidate, middle - 1
    return best


def encode_categorical(symbols: Sequence[int], tables: Sequence[np.ndarray]) -> bytes:
    """Code ``symbols[i]`` under probability table ``tables[i]``; return the bytes.

    Tables may differ in length from symbol to symbol. Entries need not sum to
    one; zero entries still get the smallest representable probability. Raises
    ValueError for a symbol outside its table or a table that is not
    normalizable.
    """
    symbols = [int(s) for s in symbols]
    if len(symbols) != len(tables):
        raise ValueError("need exactly one probability table per symbol")
    for symbol, table in zip(symbols, tables):
        if not 0 <= symbol < len(table):
            raise ValueError(f"symbol {symbol} is outside its table of {len(table)} entries")
    return _encode_with_models(symbols, _models(tables))


def _encode_with_models(symbols: list[int], models: list) -> bytes:
    encoder = constriction.stream.queue.RangeEncoder()
    for symbol, model in zip(symbols, models):
        encoder.encode(symbol, model)
    full = encoder.get_compressed().astype(">u4").tobytes()
    return _shortest_stream(full, symbols, models)


def encode_uniform(symbols: Sequence[int], alphabet_size: int) -> bytes:
    """Code ``symbols``, each an index in ``range(alphabet_size)`` (any size from 1 to
    2^24, not only powers of two), under a uniform model; the stream is trimmed like
    :func:`encode_categorical`'s (vector-quantiser indices, for instance).

    Raises:
        ValueError: an index outside the alphabet, or an alphabet size out of range.
    """
    symbols = [int(s) for s in symbols]
    if not 1 <= alphabet_size <= 1 << 24:
        raise ValueError(f"alphabet size {alphabet_size} is outside 1..2^24")
    if len(symbols) > MAX_UNIFORM_COUNT:
        raise ValueError(f"{len(symbols)} indices are more than one stream holds ({MAX_UNIFORM_COUNT})")
    if any(not 0 <= s < alphabet_size for s in symbols):
        raise ValueError(f"an index is outside 0..{alphabet_size - 1}")
    if alphabet_size == 1:  # nothing to tell apart: no bits
        return b""
    return _encode_with_models(symbols, [_uniform(alphabet_size)] * len(symbols))


def decode_uniform(data: bytes, count: int, alphabet_size: int) -> list[int]:
    """The ``count`` indices :func:`encode_uniform` coded into ``data``.

    Raises:
        FormatError: ``data`` is not exactly what encode_uniform makes for some indices.
    """
    if not 1 <= alphabet_size <= 1 << 24:
        raise FormatError(f"alphabet size {alphabet_size} is outside 1..2^24; the file is corrupt")
    # no lower bound on the length: the trimmed stream of a run of zero indices can be
    # empty (the decoder reads zero words past the end), so only the count is bounded
    if count > MAX_UNIFORM_COUNT:
        raise FormatError(f"{count} indices are more than any stream holds ({MAX_UNIFORM_COUNT})")
    if alphabet_size == 1:
        if data:
            raise FormatError("a stream of indices from an alphabet of one holds no bytes; the file is corrupt")
        return [0] * count
    model = _uniform(alphabet_size)
    decoder = constriction.stream.queue.RangeDecoder(bytes_to_words(data))
    try:
        symbols = [int(decoder.decode(model)) for _ in range(count)]
    except _INVALID_DATA as exc:
        raise FormatError(f"uniform-coded stream is corrupt ({exc})") from None
    if _encode_with_models(symbols, [model] * count) != bytes(data):
        raise FormatError("uniform-coded stream has bytes its indices do not account for; the file is corrupt")
    return symbols


def _uniform(alphabet_size: int):
    return constriction.stream.model.Uniform(alphabet_size)


class CategoricalDecoder:
    """Decodes, one symbol at a time, a stream made by :func:`encode_categorical`.

    The caller supplies the same table the encoder used for each symbol, which
    is what lets autoregressive models compute a table from earlier symbols.
    Any bytes decode to *some* symbols, so callers must bound how many symbols
    they read, validate what they get, and call :meth:`check_canonical` at the end.
    """

    def __init__(self, data: bytes) -> None:
        self._data = bytes(data)
        self._decoder = constriction.stream.queue.RangeDecoder(bytes_to_words(self._data))
        self._categorical = constriction.stream.model.Categorical
        self._symbols: list[int] = []
        self._models: list = []

    def decode(self, table: np.ndarray) -> int:
        """The next symbol, an index into ``table``."""
        model = self._categorical(np.asarray(table, dtype=np.float64), perfect=False)
        try:
            symbol = int(self._decoder.decode(model))
        except _INVALID_DATA as exc:
            raise FormatError(f"entropy-coded stream is corrupt ({exc}); re-create the file") from None
        self._symbols.append(symbol)
        self._models.append(model)
        return symbol

    def check_canonical(self) -> None:
        """FormatError unless the data is exactly what encode_categorical makes for
        the symbols decoded so far (so trailing junk or a changed tail is caught)."""
        if _encode_with_models(self._symbols, self._models) != self._data:
            raise FormatError("entropy-coded stream has bytes its symbols do not account for; the file is corrupt")


# --- learned image codecs: latents under frozen integer CDF tables -------------------
#
# A table is CompressAI's layout, frozen into the model when it is exported: row i of
# ``_quantized_cdf`` is an integer CDF over ``_cdf_length[i] - 1`` symbols whose last one
# is an escape; symbol values start at ``_offset[i]``. Rows are picked by an index per
# symbol: the channel for the factorized prior of z, the scale index for the Gaussian
# conditional of y. The integer frequencies become float64 probabilities exactly, so
# encoder and decoder hand constriction identical tables on every machine.
#
# Symbols are coded in groups that share a row, rows in increasing order, each group in
# the order it was given; an escaped value v is sent after its group as Elias-gamma bits
# of its distance beyond the table (n = bit length - 1 under Uniform(32), then n bits in
# chunks of at most 16).

_ESCAPE_LENGTH_MODEL_SIZE = 32


class CdfTables:
    """Categorical models for the rows of a frozen CDF table."""

    def __init__(self, quantized_cdf: np.ndarray, cdf_length: np.ndarray, offset: np.ndarray) -> None:
        self.offset = np.asarray(offset, dtype=np.int64).reshape(-1)
        lengths = np.asarray(cdf_length, dtype=np.int64).reshape(-1)
        cdf = np.asarray(quantized_cdf, dtype=np.int64)
        if cdf.ndim != 2 or len(lengths) != len(cdf) or len(self.offset) != len(cdf) or (lengths < 2).any():
            raise ModelError("model's CDF tables are malformed; re-export or re-fetch the model")
        n_symbols = lengths - 1
        self.escape = n_symbols - 1  # the last symbol of each row
        self._frequencies = [np.diff(cdf[i, : lengths[i]]).astype(np.float64) for i in range(len(cdf))]
        # -log2 P of every (row, symbol), rows end to end: the ideal size in one gather
        self._row_start = np.r_[0, np.cumsum(n_symbols)[:-1]]
        self._information = np.concatenate([-np.log2(f / f.sum()) for f in self._frequencies])
        self._models: dict[int, object] = {}
        # The fewest bits any symbol can cost: constriction quantises a row to 24-bit
        # probabilities, each symbol at least 2^-24, which can raise the largest
        # probability by at most one step per symbol of the row.
        self.min_symbol_bits = min(
            -np.log2(min(1.0, f.max() / f.sum() + len(f) * _PROBABILITY_STEP)) for f in self._frequencies)

    def model(self, row: int):
        if row not in self._models:
            self._models[row] = constriction.stream.model.Categorical(self._frequencies[row], perfect=False)
        return self._models[row]

    def ideal_bits(self, rows: np.ndarray, symbols: np.ndarray) -> float:
        """-log2 P of coded symbols under their rows (escapes counted at the escape symbol)."""
        return float(self._information[self._row_start[rows] + symbols].sum())


class _Groups:
    """Symbols sorted into runs that share a row, rows ascending, each run in given order."""

    def __init__(self, rows: np.ndarray) -> None:
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        # a stable sort of 16-bit keys is a radix sort in numpy: several times faster
        keys = rows.astype(np.int16) if len(rows) and 0 <= rows.min() and rows.max() < 2**15 else rows
        self.order = np.argsort(keys, kind="stable")
        self.rows = rows[self.order]
        self.starts = np.flatnonzero(np.r_[True, self.rows[1:] != self.rows[:-1]]) if len(rows) else np.zeros(0, np.int64)
        self.ends = np.r_[self.starts[1:], len(rows)]

    def __iter__(self):
        """(row, start, end) of each run, in coding order."""
        return zip(self.rows[self.starts].tolist(), self.starts.tolist(), self.ends.tolist())


class LatentEncoder:
    """Collects latent symbols in coding order; :meth:`to_bytes` gives the stream."""

    def __init__(self) -> None:
        self._encoder = constriction.stream.queue.RangeEncoder()
        self.ideal_bits = 0.0  # -log2 P of everything coded: tables and escape codes

    def encode(self, values: np.ndarray, rows: np.ndarray, tables: CdfTables) -> None:
        groups = _Groups(rows)
        escape = tables.escape[groups.rows]
        symbols = np.asarray(values, dtype=np.int64).reshape(-1)[groups.order] - tables.offset[groups.rows]
        escaped = (symbols < 0) | (symbols >= escape)
        coded = np.where(escaped, escape, symbols).astype(np.int32)
        self.ideal_bits += tables.ideal_bits(groups.rows, coded)
        # below the table: odd distances, above: even ones (CompressAI's convention)
        distances = np.where(symbols < 0, -2 * symbols - 1, 2 * (symbols - escape))
        escapes_before = np.r_[0, np.cumsum(escaped)]
        for row, start, end in groups:
            self._encoder.encode(coded[start:end], tables.model(row))
            if escapes_before[end] > escapes_before[start]:
                for distance in distances[start:end][escaped[start:end]]:
                    self._encode_escape(int(distance))

    def _encode_escape(self, distance: int) -> None:
        n = (distance + 1).bit_length() - 1
        if n >= _ESCAPE_LENGTH_MODEL_SIZE:
            raise ValueError(f"latent value {distance} is too large to code")
        self._encoder.encode(n, constriction.stream.model.Uniform(_ESCAPE_LENGTH_MODEL_SIZE))
        self.ideal_bits += np.log2(_ESCAPE_LENGTH_MODEL_SIZE) + n
        low = distance + 1 - (1 << n)
        for bits in _chunks(n):  # constriction's Uniform takes at most 2**24 values
            self._encoder.encode(low & ((1 << bits) - 1), constriction.stream.model.Uniform(1 << bits))
            low >>= bits

    def to_bytes(self) -> bytes:
        return self._encoder.get_compressed().astype("<u4").tobytes()


class LatentDecoder:
    """Reads back, in the same order and with the same rows, what LatentEncoder wrote.

    :meth:`expect` takes a lower bound on the information in everything the caller will
    read (symbol counts times their tables' ``min_symbol_bits``). A stream shorter than
    that is refused at once, and one whose words run out while the symbols still to
    come must carry more than a decoder's state can hold is refused when that happens:
    decoding work stays proportional to the bytes that are really there.
    """

    def __init__(self, data: bytes) -> None:
        if len(data) % _WORD_BYTES:
            raise FormatError("latent stream is not a whole number of 32-bit words; the file is corrupt")
        self._bytes = len(data)
        words = np.frombuffer(data, dtype="<u4").astype(np.uint32)
        self._decoder = constriction.stream.queue.RangeDecoder(words)
        self._min_bits_left = 0.0

    def expect(self, min_bits: float) -> None:
        """Say how many bits, at least, everything still to be read carries (see the class)."""
        if 8 * self._bytes + _STATE_BITS < min_bits:
            raise FormatError(f"latent stream of {self._bytes} bytes is too short for the image the header "
                              f"claims (it needs at least {int(min_bits - _STATE_BITS) // 8} bytes); "
                              "the file is corrupt")
        self._min_bits_left = min_bits

    def decode(self, rows: np.ndarray, tables: CdfTables) -> np.ndarray:
        groups = _Groups(rows)
        symbols = np.empty(len(groups.rows), dtype=np.int64)
        try:
            for row, start, end in groups:
                run = self._decoder.decode(tables.model(row), end - start)
                symbols[start:end] = run
                escape = tables.escape[row]
                for position in np.flatnonzero(run == escape):
                    distance = self._decode_escape()
                    symbols[start + position] = -(distance + 1) // 2 if distance % 2 else distance // 2 + escape
        except _INVALID_DATA as exc:
            raise FormatError(f"latent stream is corrupt ({exc}); the file is damaged") from None
        self._min_bits_left -= len(symbols) * tables.min_symbol_bits
        if self._min_bits_left > _STATE_BITS and self._decoder.maybe_exhausted():
            raise FormatError("latent stream ends before the symbols the header implies; the file is truncated "
                              "or corrupt")
        values = np.empty_like(symbols)
        values[groups.order] = symbols + tables.offset[groups.rows]
        return values

    def check_exhausted(self) -> None:
        """Data left over after the last symbol means the stream is not what we decoded."""
        if not self._decoder.maybe_exhausted():
            raise FormatError("latent stream has data beyond its last symbol; the file is damaged")

    def _decode_escape(self) -> int:
        n = int(self._decoder.decode(constriction.stream.model.Uniform(_ESCAPE_LENGTH_MODEL_SIZE)))
        low, shift = 0, 0
        for bits in _chunks(n):
            low |= int(self._decoder.decode(constriction.stream.model.Uniform(1 << bits))) << shift
            shift += bits
        return (1 << n) + low - 1


def _chunks(n_bits: int) -> list[int]:
    return [min(16, n_bits - start) for start in range(0, n_bits, 16)]
