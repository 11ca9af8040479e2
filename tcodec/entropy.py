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
This saves 2 to 3 bytes per stream over the untrimmed words, which matters for
streams of about ten bytes. A stream that codes nothing is empty.

Determinism: encoder and decoder must pass bit-identical float64 tables;
constriction's quantisation of a table is deterministic, so identical tables
give identical coding intervals.
"""

from __future__ import annotations

from collections.abc import Sequence

import constriction
import numpy as np

from tcodec.errors import FormatError

_WORD_BYTES = 4


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
    for symbol, model in zip(symbols, models):
        if decoder.decode(model) != symbol:
            return False
    return True


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
    models = _models(tables)
    encoder = constriction.stream.queue.RangeEncoder()
    for symbol, model, table in zip(symbols, models, tables):
        if not 0 <= symbol < len(table):
            raise ValueError(f"symbol {symbol} is outside its table of {len(table)} entries")
        encoder.encode(symbol, model)
    full = encoder.get_compressed().astype(">u4").tobytes()
    return _shortest_stream(full, symbols, models)


class CategoricalDecoder:
    """Decodes, one symbol at a time, a stream made by :func:`encode_categorical`.

    The caller supplies the same table the encoder used for each symbol, which
    is what lets autoregressive models compute a table from earlier symbols.
    Any bytes decode to *some* symbols, so callers must bound how many symbols
    they read and validate what they get.
    """

    def __init__(self, data: bytes) -> None:
        self._decoder = constriction.stream.queue.RangeDecoder(bytes_to_words(data))
        self._categorical = constriction.stream.model.Categorical

    def decode(self, table: np.ndarray) -> int:
        """The next symbol, an index into ``table``."""
        model = self._categorical(np.asarray(table, dtype=np.float64), perfect=False)
        try:
            return int(self._decoder.decode(model))
        except (ValueError, KeyError, RuntimeError) as exc:
            raise FormatError(f"entropy-coded stream is corrupt ({exc}); re-create the file") from None

    def maybe_exhausted(self) -> bool:
        """False if the stream certainly holds data that has not been decoded yet."""
        return bool(self._decoder.maybe_exhausted())
