"""Caption coder 1: short English captions in a few bytes (see docs/captions.md).

A caption is split into tokens, each an optional leading space plus a *core*: a
run of ASCII letters, a run of digits, a run of non-ASCII characters, or one
other character. Per token the coder codes, with one range-coded stream:

1. the core's word symbol under a word 4-gram model (interpolated modified
   Kneser-Ney, trained on COCO captions); a core outside the vocabulary is an
   escape symbol followed by its UTF-8 bytes under a byte 5-gram spelling model;
2. a *shape* symbol: the leading space and, for letters, the letter case
   (lower, Capitalized, UPPER, or mIxed, which is always spelled verbatim).

An end-of-caption word symbol closes the stream. Any text therefore codes, and
English captions cost about 9 bytes instead of about 50 with deflate.

All model probabilities are exact integer arithmetic on the stored counts, so
encoder and decoder compute bit-identical tables on every platform. The model
file is pinned by its SHA-256; a changed model needs a new CAPTION_CODER_ID.

Importing this module is cheap: numpy, the model and ``tcodec.coding.entropy`` (the
only user of constriction) are loaded on first use.
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import json
import re
import struct
import zlib
from pathlib import Path

from tcodec.format.container import CAPTION_CODER_CODES
from tcodec.errors import FormatError, InputError, ModelError, ModelMismatchError, ModelNotFoundError

CAPTION_UTF8 = CAPTION_CODER_CODES["utf-8"]
CAPTION_CODER_ID = CAPTION_CODER_CODES["tcodec-caption-v1"]
MAX_CAPTION_BYTES = 4096  # UTF-8 bytes of a caption's text
MODEL_PATH = Path(__file__).resolve().parent.parent / "data" / "caption_model_v1.bin"
MODEL_SHA256 = "835fe9475dca2a6223974457b54a82ada599881d8d9f61337179fb54330018fa"
MODEL_MAGIC = b"TCAPMDL1"

# Every symbol costs at most 24 bits (constriction's precision), and a caption of
# MAX_CAPTION_BYTES codes at most 4 symbols per byte plus one; longer input is junk.
MAX_STREAM_BYTES = 3 * (4 * MAX_CAPTION_BYTES + 1) + 64  # + range-coder rounding

_TOKEN = re.compile(r"( ?)([A-Za-z]+|[0-9]+|[^\x00-\x7f]+|.)", re.DOTALL)
PUNCTUATION = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"
KIND_LETTERS, KIND_DIGITS, KIND_NON_ASCII, KIND_SPACE, KIND_CONTROL = range(5)
NUM_KINDS = 5 + len(PUNCTUATION)
KIND_START = NUM_KINDS  # the "previous kind" of the first token
CASE_LOWER, CASE_CAPITALIZED, CASE_UPPER, CASE_MIXED = range(4)
NO_CASE = 4  # case context before the first letter token, and for non-letter tokens
SHAPE_TABLE_DIMS = (NUM_KINDS + 1, NUM_KINDS, NO_CASE + 1, 8)  # shape count table dimensions

EOS, ESC = 0, 1  # word symbols; vocabulary entry i is word symbol i + 2
# Spelling symbols: 0 ends the word, byte b is b + 1 (so zero padding ends words).
END_OF_SPELLING, SPELLING_ALPHABET = 0, 257
PROBABILITY_BITS = 32  # n-gram probabilities are integers scaled by 2**32
DISCOUNT_SCALE = 256  # discounts are stored in units of 1/256
MIXING_BITS = 30  # fixed-point bits of the interpolation multipliers


def split_tokens(text: str) -> list[tuple[int, str]]:
    """(leading space 0/1, core) pairs whose concatenation is ``text``."""
    return [(len(m.group(1)), m.group(2)) for m in _TOKEN.finditer(text)]


def core_kind(core: str) -> int:
    """Coarse class of a core, from its first character (context for the shape)."""
    first = core[0]
    if not first.isascii():
        return KIND_NON_ASCII
    if first.isalpha():
        return KIND_LETTERS
    if first.isdigit():
        return KIND_DIGITS
    if first == " ":
        return KIND_SPACE
    position = PUNCTUATION.find(first)
    return KIND_CONTROL if position < 0 else 5 + position


def case_class(letters: str) -> int:
    if letters.islower():
        return CASE_LOWER
    if letters.isupper() and len(letters) > 1:
        return CASE_UPPER
    if letters[0].isupper() and (len(letters) == 1 or letters[1:].islower()):
        return CASE_CAPITALIZED
    return CASE_MIXED


def describe_core(core: str) -> tuple[int, int, str]:
    """(kind, case, key) of a core; the key is what the vocabulary holds or what is spelled.

    Letters are keyed in lower case (the case is coded in the shape) unless their
    case is mixed; those are always spelled verbatim.
    """
    kind = core_kind(core)
    case = case_class(core) if kind == KIND_LETTERS else CASE_LOWER
    key = core.lower() if kind == KIND_LETTERS and case != CASE_MIXED else core
    return kind, case, key


def utf8_pending(pending: int, byte: int) -> int:
    """Continuation bytes still due after ``byte`` in a UTF-8 sequence."""
    if pending:
        return pending - 1
    return 1 if 0xC0 <= byte < 0xE0 else 2 if 0xE0 <= byte < 0xF0 else 3 if 0xF0 <= byte < 0xF8 else 0


def utf8_weights():
    """Spelling weights inside a non-ASCII run: [at a character boundary, inside one]."""
    import numpy as np

    boundary = np.zeros(SPELLING_ALPHABET, dtype=np.int64)
    boundary[END_OF_SPELLING] = 13
    boundary[0xC2 + 1: 0xF4 + 2] = 1
    inside = np.zeros(SPELLING_ALPHABET, dtype=np.int64)
    inside[0x80 + 1: 0xBF + 2] = 1
    return boundary, inside


def apply_case(lower: str, case: int) -> str:
    if case == CASE_CAPITALIZED:
        return lower[:1].upper() + lower[1:]
    return lower.upper() if case == CASE_UPPER else lower


class NgramModel:
    """Interpolated modified Kneser-Ney n-gram model in exact integer arithmetic.

    Built from a count trie: ``counts[k-1]`` holds the Kneser-Ney counts of the
    k-grams, ``symbols[k-1]`` their last symbols (for k = 1 the k-gram is just
    symbol 0..alphabet, where symbol ``alphabet`` is the begin marker), and
    ``children[k-1]`` how many (k+1)-grams extend each k-gram. Within a parent,
    children are sorted by symbol.
    """

    def __init__(self, alphabet: int, discounts, counts, symbols, children) -> None:
        import numpy as np

        self.alphabet = alphabet
        self.begin = alphabet
        self.order = len(counts)
        self._radix = alphabet + 1
        if self._radix ** max(self.order - 1, 1) >= 1 << 63:
            raise ModelError("caption model n-gram keys do not fit in 64 bits")
        self._check(discounts, counts, symbols, children)
        keys = np.arange(alphabet + 1, dtype=np.int64)
        self._levels = {}
        for k in range(2, self.order + 1):
            per_parent = np.asarray(children[k - 2], dtype=np.int64)
            child_symbols = np.asarray(symbols[k - 1], dtype=np.int64)
            child_keys = np.repeat(keys, per_parent) * self._radix + child_symbols
            self._levels[k] = self._level(keys, per_parent, child_symbols, counts[k - 1], discounts[k - 1])
            keys = child_keys
        root = self._level(np.zeros(1, np.int64), np.array([alphabet + 1]), np.arange(alphabet + 1),
                           counts[0], discounts[0])
        uniform = np.full(alphabet + 1, (1 << PROBABILITY_BITS) // alphabet, dtype=np.int64)
        uniform[alphabet] = 0  # the begin marker is never predicted
        mixed = uniform * int(root["gamma"][0]) + (root["numerator"] << PROBABILITY_BITS)
        self._unigram = (mixed // int(root["denominator"][0]))[:alphabet]

    def _check(self, discounts, counts, symbols, children) -> None:
        """Refuse tables the integer arithmetic below is not proven for."""
        import numpy as np

        scale = DISCOUNT_SCALE
        if np.shape(discounts) != (self.order, 3) or any(
            not 1 <= d <= scale * c for row in discounts for c, d in zip((1, 2, 3), row)
        ):
            raise ModelError("caption model has discounts outside 1/256 .. c")
        if len(counts[0]) != self.alphabet + 1 or counts[0][self.alphabet] != 0:
            raise ModelError("caption model has a malformed unigram table")
        for k in range(2, self.order + 1):
            parents = len(counts[k - 2])
            if len(children[k - 2]) != parents or int(np.sum(children[k - 2])) != len(symbols[k - 1]):
                raise ModelError(f"caption model has a malformed {k}-gram table")
            if len(counts[k - 1]) != len(symbols[k - 1]) or int(np.max(symbols[k - 1], initial=0)) >= self.alphabet:
                raise ModelError(f"caption model has a malformed {k}-gram table")

    @staticmethod
    def _level(parent_keys, per_parent, child_symbols, counts, discounts) -> dict:
        """Per-context normalisers and per-gram discounted counts for one order."""
        import numpy as np

        counts = np.asarray(counts, dtype=np.int64)
        by_class = np.array([0, *discounts], dtype=np.int64)
        discount = by_class[np.minimum(counts, 3)]
        bounds = np.concatenate(([0], np.cumsum(per_parent)))
        count_sums = np.concatenate(([0], np.cumsum(counts)))
        discount_sums = np.concatenate(([0], np.cumsum(discount)))
        total = count_sums[bounds[1:]] - count_sums[bounds[:-1]]
        used = (per_parent > 0) & (total > 0)
        if int(total.max(initial=0)) >= 1 << 22:  # keeps every product below 2**62
            raise ModelError("caption model counts are too large for exact int64 arithmetic")
        return {
            "keys": parent_keys[used].tolist(),  # sorted; bisect on a list beats numpy per lookup
            "start": bounds[:-1][used], "end": bounds[1:][used],
            "gamma": (discount_sums[bounds[1:]] - discount_sums[bounds[:-1]])[used],
            "denominator": DISCOUNT_SCALE * total[used],
            "symbols": child_symbols,
            "numerator": np.maximum(DISCOUNT_SCALE * counts - discount, 0),
        }

    def _contexts(self, history: list[int]) -> list[tuple[dict, int]]:
        """(level, row) of every seen context of the next symbol, shortest first."""
        found = []
        for k in range(2, min(self.order, len(history) + 1) + 1):
            key = 0
            for symbol in history[len(history) - k + 1:]:
                key = key * self._radix + symbol
            level = self._levels[k]
            keys = level["keys"]
            row = bisect.bisect_left(keys, key)
            if row == len(keys) or keys[row] != key:
                break  # no longer context was seen either
            found.append((level, row))
        return found

    def table(self, history: list[int]):
        """Integer weights (int64, summing to at most 2**32) of the next symbol.

        ``history`` starts with the begin marker and holds every earlier symbol.
        Interpolated Kneser-Ney: with the contexts of lengths 1..K-1 seen,
        q_k(w) = (n_k(w) * 2**32 + g_k * q_{k-1}(w)) / d_k over q_1, the unigram.
        Unrolled with exact integer multipliers (G_k, D_k: products of g_j, d_j
        over j = k+1..K)

            m_1 = (G_1 << 30) // D_1,   m_k = (G_k << 62) // (d_k * D_k),
            weights(w) = (q_1(w) * m_1 + sum_k n_k(w) * m_k) >> 30,

        so one dense multiply and one shift serve all orders. Every term is at
        most 2**62 because n_k <= d_k and g_k <= d_k.
        """
        contexts = self._contexts(history)
        if not contexts:
            return self._unigram
        upper, lower = 1, 1  # product of g_j and of d_j over the orders above k
        multipliers = []
        for level, row in reversed(contexts):  # Python ints: exact, no overflow
            denominator = int(level["denominator"][row])
            multipliers.append((upper << (MIXING_BITS + PROBABILITY_BITS)) // (denominator * lower))
            upper *= int(level["gamma"][row])
            lower *= denominator
        weights = self._unigram * ((upper << MIXING_BITS) // lower)
        for (level, row), multiplier in zip(reversed(contexts), multipliers):
            start, end = int(level["start"][row]), int(level["end"][row])
            weights[level["symbols"][start:end]] += level["numerator"][start:end] * multiplier
        return weights >> MIXING_BITS


class CaptionModel:
    """The trained caption model: vocabulary, word and spelling n-grams, shape counts."""

    def __init__(self, header: dict, arrays: dict) -> None:
        self.header = header
        self.vocabulary = list(header["vocabulary"])
        if not all(isinstance(word, str) and word for word in self.vocabulary):
            raise ModelError("caption model vocabulary holds an empty or non-text word")
        self.word_ids = {word: index + 2 for index, word in enumerate(self.vocabulary)}
        self.words = self._ngram("word", len(self.vocabulary) + 2, arrays)
        self.spelling = self._ngram("spell", SPELLING_ALPHABET, arrays)
        self._shape_weights = 2 * arrays["shape.counts"].astype("int64") + 1  # add-1/2 smoothing
        self._utf8_weights = utf8_weights()
        if self._shape_weights.shape != SHAPE_TABLE_DIMS:
            raise ModelError("caption model has a shape table of the wrong size")

    @staticmethod
    def _ngram(name: str, alphabet: int, arrays: dict) -> NgramModel:
        order = int(arrays[f"{name}.discounts"].shape[0])
        return NgramModel(
            alphabet,
            arrays[f"{name}.discounts"].tolist(),
            [arrays[f"{name}.count.{k}"] for k in range(1, order + 1)],
            [None] + [arrays[f"{name}.symbol.{k}"] for k in range(2, order + 1)],
            [arrays[f"{name}.children.{k}"] for k in range(1, order)],
        )

    @classmethod
    def from_bytes(cls, blob: bytes) -> CaptionModel:
        try:
            header, arrays = parse_model_file(blob)
            return cls(header, arrays)
        except (KeyError, ValueError, TypeError, IndexError, zlib.error, struct.error) as exc:
            raise ModelError(f"caption model file is damaged ({exc}); reinstall tcodec") from None

    def shape_table(self, previous_kind: int, kind: int, previous_case: int):
        size = 8 if kind == KIND_LETTERS else 2
        case_context = previous_case if kind == KIND_LETTERS else NO_CASE
        return self._shape_weights[previous_kind, kind, case_context, :size]

    def events(self, text: str, with_tables: bool = True) -> tuple[list[int], list]:
        """The symbols that code ``text`` and (if asked) the float64 table of each."""
        symbols, tables = [], []

        def emit(symbol, make_table, *context):
            symbols.append(symbol)
            if with_tables:
                tables.append(make_table(*context).astype("float64"))

        history, previous_kind, previous_case = [self.words.begin], KIND_START, NO_CASE
        for space, core in split_tokens(text):
            kind, case, key = describe_core(core)
            symbol = self.word_ids.get(key, ESC) if case != CASE_MIXED else ESC
            emit(symbol, self.words.table, history)
            if symbol == ESC:
                self._spell(key.encode("utf-8"), emit)
            emit(2 * case + space, self.shape_table, previous_kind, kind, previous_case)
            history.append(symbol)
            previous_kind = kind
            previous_case = case if kind == KIND_LETTERS else previous_case
        emit(EOS, self.words.table, history)
        return symbols, tables

    def _spell(self, data: bytes, emit) -> None:
        history, pending = [self.spelling.begin], 0
        for byte in data:
            emit(byte + 1, self._spelling_weights, history, pending)
            history.append(byte + 1)
            pending = utf8_pending(pending, byte)
        emit(END_OF_SPELLING, self._spelling_weights, history, pending)

    def _spelling_weights(self, history: list[int], pending: int):
        """Weights of the next spelling symbol. A non-ASCII run (COCO has none) is
        spelled under fixed UTF-8 structure after its first byte: uniform over the
        64 continuation bytes while a character is incomplete, else over the 51
        lead bytes C2..F4 plus the end (weight 13)."""
        if len(history) > 1 and history[1] > 0x80:
            return self._utf8_weights[min(pending, 1)]
        return self.spelling.table(history)

    def encode(self, text: str) -> bytes:
        from tcodec.coding import entropy

        return entropy.encode_categorical(*self.events(text))

    def decode(self, data: bytes) -> str:
        """Text of a stream; FormatError if it is not one ``encode`` can make."""
        from tcodec.coding import entropy

        if len(data) > MAX_STREAM_BYTES:
            raise FormatError(f"coded caption is {len(data)} bytes, more than any caption needs")
        decoder = entropy.CategoricalDecoder(bytes(data))
        symbols = []

        def read(weights) -> int:
            symbols.append(decoder.decode(weights.astype("float64")))
            return symbols[-1]

        history, previous_kind, previous_case = [self.words.begin], KIND_START, NO_CASE
        pieces, size = [], 0
        while (symbol := read(self.words.table(history))) != EOS:
            core = self._read_spelling(read) if symbol == ESC else self.vocabulary[symbol - 2]
            kind = core_kind(core)
            shape = read(self.shape_table(previous_kind, kind, previous_case))
            space, case = shape % 2, shape // 2
            if case == CASE_MIXED and symbol != ESC:
                raise FormatError("coded caption is corrupt (mixed case on a vocabulary word)")
            text = apply_case(core, case) if kind == KIND_LETTERS and case != CASE_MIXED else core
            size += space + len(text.encode("utf-8"))
            if size > MAX_CAPTION_BYTES:
                raise FormatError(f"coded caption decodes to more than {MAX_CAPTION_BYTES} bytes")
            pieces.append(" " * space + text)
            history.append(symbol)
            previous_kind = kind
            previous_case = case if kind == KIND_LETTERS else previous_case
        text = "".join(pieces)
        # Only the one stream that encode makes for this text is valid. Equal symbols
        # mean equal tables, so this and check_canonical amount to a full re-encode.
        if self.events(text, with_tables=False)[0] != symbols:
            raise FormatError("coded caption is corrupt (not the canonical coding of its text)")
        decoder.check_canonical()
        return text

    def _read_spelling(self, read) -> str:
        history, spelled, pending = [self.spelling.begin], bytearray(), 0
        while (symbol := read(self._spelling_weights(history, pending))) != END_OF_SPELLING:
            if len(spelled) == MAX_CAPTION_BYTES:
                raise FormatError(f"coded caption spells a word longer than {MAX_CAPTION_BYTES} bytes")
            spelled.append(symbol - 1)
            history.append(symbol)
            pending = utf8_pending(pending, symbol - 1)
        try:
            core = spelled.decode("utf-8")
        except UnicodeDecodeError:
            raise FormatError("coded caption is corrupt (spells invalid UTF-8)") from None
        if not core:
            raise FormatError("coded caption is corrupt (spells an empty word)")
        return core


def write_model_file(header: dict, arrays: dict) -> bytes:
    """Serialise a model: magic, then zlib of (u32 header size, JSON header, arrays)."""
    header = dict(header, arrays=[[name, a.dtype.str, list(a.shape)] for name, a in arrays.items()])
    text = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()
    body = struct.pack("<I", len(text)) + text + b"".join(a.tobytes() for a in arrays.values())
    return MODEL_MAGIC + zlib.compress(body, 9)


def parse_model_file(blob: bytes) -> tuple[dict, dict]:
    """Inverse of :func:`write_model_file`; arrays are read-only little-endian views."""
    import numpy as np

    if blob[: len(MODEL_MAGIC)] != MODEL_MAGIC:
        raise ValueError("not a tcodec caption model")
    body = zlib.decompress(blob[len(MODEL_MAGIC):])
    (size,) = struct.unpack_from("<I", body)
    header = json.loads(body[4: 4 + size].decode())
    arrays, offset = {}, 4 + size
    for name, dtype, shape in header.pop("arrays"):
        if dtype[0] not in "<|":
            raise ValueError(f"array {name} is not little-endian")
        count = int(np.prod(shape, dtype=np.int64))
        arrays[name] = np.frombuffer(body, dtype=dtype, count=count, offset=offset).reshape(shape)
        offset += count * arrays[name].itemsize
    if offset != len(body):
        raise ValueError("trailing bytes after the arrays")
    return header, arrays


@functools.lru_cache(maxsize=1)
def load_model() -> CaptionModel:
    """The shipped model, checked against MODEL_SHA256 (loaded once, then cached)."""
    try:
        blob = MODEL_PATH.read_bytes()
    except OSError as exc:
        raise ModelNotFoundError(f"caption model {MODEL_PATH} is missing ({exc.strerror}); reinstall tcodec") from None
    digest = hashlib.sha256(blob).hexdigest()
    if digest != MODEL_SHA256:
        raise ModelMismatchError(
            f"caption model {MODEL_PATH.name} has SHA-256 {digest[:16]}..., expected "
            f"{MODEL_SHA256[:16]}...; reinstall tcodec (a new model needs a new CAPTION_CODER_ID)"
        )
    return CaptionModel.from_bytes(blob)


def encode(text: str) -> tuple[int, bytes]:
    """``text`` coded for a ``.tcz`` file: (caption coder code, bytes), by the learned
    coder or as plain UTF-8, whichever is shorter, so a stored caption is never larger
    than its text. The one place a caption's text is checked.

    Raises:
        InputError: not text, not valid Unicode, or longer than MAX_CAPTION_BYTES.
    """
    raw = check(text)
    if raw:
        coded = load_model().encode(text)
        if len(coded) < len(raw):
            return CAPTION_CODER_ID, coded
    return CAPTION_UTF8, raw


def decode(caption_coder: int, data: bytes) -> str:
    """Inverse of :func:`encode`. Raises FormatError for anything :func:`encode` cannot make."""
    if caption_coder == CAPTION_UTF8:
        if len(data) > MAX_CAPTION_BYTES:
            raise FormatError(f"caption is longer than {MAX_CAPTION_BYTES} bytes; the file is corrupt")
        try:
            return bytes(data).decode("utf-8")
        except UnicodeDecodeError:
            raise FormatError("caption is not valid UTF-8; the file is corrupt") from None
    if caption_coder == CAPTION_CODER_ID:
        return decode_caption(data)
    raise FormatError(f"unknown caption coder {caption_coder} (written by a newer tcodec?)")


def check(text: str) -> bytes:
    """``text``'s UTF-8 bytes, if it is a caption tcodec can code.

    Raises:
        InputError: not text, not valid Unicode, or longer than MAX_CAPTION_BYTES.
    """
    if not isinstance(text, str):
        raise InputError(f"a caption must be text, not {type(text).__name__}")
    try:
        raw = text.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError("caption is not valid Unicode (it holds a lone surrogate); fix the text") from None
    if len(raw) > MAX_CAPTION_BYTES:
        raise InputError(f"caption is {len(raw)} bytes of UTF-8; the limit is {MAX_CAPTION_BYTES}")
    return raw


def encode_caption(text: str) -> bytes:
    """The stream of caption coder 1 for ``text`` (its length is stored by the container)."""
    check(text)
    return load_model().encode(text)


def decode_caption(data: bytes) -> str:
    """Inverse of :func:`encode_caption`; FormatError for any stream it cannot have made."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise FormatError(f"a coded caption must be bytes, not {type(data).__name__}")
    return load_model().decode(bytes(data))
