"""Train the caption model that tcodec ships (caption coder 1, tcodec/data/caption_model_v1.bin).

Rebuild the shipped file (same bytes on every rerun), from the repository root:

    PYTHONPATH=. .venv/bin/python tools/train_caption_model.py

then paste the printed SHA-256 into MODEL_SHA256 in tcodec/coding/captions.py. The data is
COCO 2017 val captions (CC BY 4.0), ../shared/data/captions/coco_captions_val2017.json
by default. Captions of images whose residue is 0 are held out and never trained on
(residue: the first 8 bytes of sha256(str(image_id)) as a big-endian integer, mod 10);
the script ends by coding them with the new model and printing the real coded sizes.
``--dev`` trains without the images with residue 1 and evaluates on those instead: use
it to compare settings (``--order`` etc.) without touching the held-out set.
``--no-write`` evaluates without writing the model file.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
import zlib
from collections import Counter
from pathlib import Path

import numpy as np

from tcodec.coding import captions as cap

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "captions" / "coco_captions_val2017.json"
HELDOUT_RESIDUE, DEV_RESIDUE = 0, 1


def image_residue(image_id: int) -> int:
    """Deterministic bucket 0..9 of an image, independent of id order and parity."""
    return int.from_bytes(hashlib.sha256(str(image_id).encode()).digest()[:8], "big") % 10


def load_split(path: Path, dev: bool) -> tuple[list[str], list[str]]:
    """(training captions, evaluation captions), split by image, in annotation-id order."""
    annotations = json.loads(path.read_text(encoding="utf-8"))["annotations"]
    evaluate_on = DEV_RESIDUE if dev else HELDOUT_RESIDUE
    train, evaluate = [], []
    for note in sorted(annotations, key=lambda a: a["id"]):
        residue = image_residue(note["image_id"])
        if residue == evaluate_on:
            evaluate.append(note["caption"])
        elif residue != HELDOUT_RESIDUE:
            train.append(note["caption"])
    return train, evaluate


def kneser_ney_counts(sequences, order: int, begin: int) -> list[dict]:
    """Kneser-Ney counts per order: raw counts for the top order and for grams that
    start with the begin marker, else the number of distinct left neighbours."""
    raw = [Counter() for _ in range(order)]
    for sequence in sequences:
        padded = [begin, *sequence]
        for end in range(1, len(padded)):
            for k in range(1, min(order, end + 1) + 1):
                raw[k - 1][tuple(padded[end - k + 1: end + 1])] += 1
    counts = [Counter() for _ in range(order - 1)] + [raw[order - 1]]
    for k in range(1, order):
        for gram in raw[k]:
            counts[k - 1][gram[1:]] += 1
        for gram, count in raw[k - 1].items():
            if gram[0] == begin:
                counts[k - 1][gram] = count
    return counts


def modified_discounts(counts: dict) -> list[int]:
    """Chen & Goodman's D1, D2, D3+ from counts of counts, in units of 1/256."""
    of = Counter(c for c in counts.values() if c <= 4)
    n1, n2, n3, n4 = (of[i] for i in (1, 2, 3, 4))
    if min(n1, n2, n3, n4) == 0:
        return [128, 256, 384]
    y = n1 / (n1 + 2 * n2)
    real = [1 - 2 * y * n2 / n1, 2 - 3 * y * n3 / n2, 3 - 4 * y * n4 / n3]
    scale = cap.DISCOUNT_SCALE
    return [min(max(round(d * scale), 1), c * scale) for c, d in zip((1, 2, 3), real)]


def ngram_arrays(name: str, sequences, order: int, alphabet: int, prune: int = 0) -> dict:
    """The count trie of one n-gram model, as the arrays NgramModel reads."""
    counts = kneser_ney_counts(sequences, order, begin=alphabet)
    arrays = {f"{name}.discounts": np.array([modified_discounts(c) for c in counts], dtype="<u2")}
    if prune:  # after the discounts, which describe the full counts
        counts[-1] = Counter({g: c for g, c in counts[-1].items() if c > prune})
    grams = [sorted(level) for level in counts]
    unigram = np.zeros(alphabet + 1, dtype="<u4")
    for (symbol,), count in counts[0].items():
        unigram[symbol] = count
    arrays[f"{name}.count.1"] = unigram
    for k in range(2, order + 1):
        arrays[f"{name}.symbol.{k}"] = np.array([g[-1] for g in grams[k - 1]], dtype="<u2")
        arrays[f"{name}.count.{k}"] = np.array([counts[k - 1][g] for g in grams[k - 1]], dtype="<u4")
    for k in range(1, order):
        parents = [(s,) for s in range(alphabet + 1)] if k == 1 else grams[k - 1]
        per_parent = Counter(g[:-1] for g in grams[k])
        assert set(per_parent) <= set(parents), "every gram's prefix must be a gram"
        arrays[f"{name}.children.{k}"] = np.array([per_parent.get(p, 0) for p in parents], dtype="<u4")
    return arrays


def shape_counts(captions) -> np.ndarray:
    """How often each shape (space, case) follows each (previous kind, kind, previous case)."""
    table = np.zeros(cap.SHAPE_TABLE_DIMS, dtype="<u4")
    for text in captions:
        previous_kind, previous_case = cap.KIND_START, cap.NO_CASE
        for space, core in cap.split_tokens(text):
            kind, case, _ = cap.describe_core(core)
            case_context = previous_case if kind == cap.KIND_LETTERS else cap.NO_CASE
            table[previous_kind, kind, case_context, 2 * case + space] += 1
            previous_kind = kind
            previous_case = case if kind == cap.KIND_LETTERS else previous_case
    return table


def build_model(train, order: int, spell_order: int, min_count: int, prune: int) -> bytes:
    described = [[cap.describe_core(core) for _, core in cap.split_tokens(t)] for t in train]
    frequency = Counter(key for tokens in described for _, case, key in tokens if case != cap.CASE_MIXED)
    vocabulary = sorted((k for k, c in frequency.items() if c >= min_count), key=lambda k: (-frequency[k], k))
    ids = {key: index + 2 for index, key in enumerate(vocabulary)}
    words = [
        [cap.ESC if case == cap.CASE_MIXED else ids.get(key, cap.ESC) for _, case, key in tokens] + [cap.EOS]
        for tokens in described
    ]
    spelled = sorted({key for tokens in described for _, _, key in tokens})
    spellings = [[*(byte + 1 for byte in key.encode("utf-8")), cap.END_OF_SPELLING] for key in spelled]
    arrays = ngram_arrays("word", words, order, len(vocabulary) + 2, prune)
    arrays |= ngram_arrays("spell", spellings, spell_order, cap.SPELLING_ALPHABET)
    arrays["shape.counts"] = shape_counts(train)
    header = {
        "format": 1, "coder_id": cap.CAPTION_CODER_ID, "vocabulary": vocabulary,
        "settings": {"order": order, "spell_order": spell_order, "min_count": min_count, "prune": prune},
        "training": {"data": "COCO 2017 val captions (CC BY 4.0)", "captions": len(train),
                     "held_out": "images whose sha256(str(image_id))[:8] (big-endian) % 10 == 0"},
    }
    return cap.write_model_file(header, arrays)


def raw_deflate_size(data: bytes) -> int:
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    return len(packer.compress(data) + packer.flush())


def evaluate(model: cap.CaptionModel, texts) -> dict:
    """Real coded sizes (and a decode check) of every caption in ``texts``."""
    coded = deflated = characters = 0
    started = time.perf_counter()
    for text in texts:
        stream = model.encode(text)
        if model.decode(stream) != text:
            raise SystemExit(f"round trip failed for {text!r}")
        coded += len(stream)
        deflated += raw_deflate_size(text.encode("utf-8"))
        characters += len(text)
    seconds = time.perf_counter() - started
    n = len(texts)
    return {"captions": n, "bytes": coded / n, "raw_deflate": deflated / n, "ratio": coded / deflated,
            "bits_per_char": 8 * coded / characters, "ms_encode_decode": 1000 * seconds / n}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="COCO captions JSON")
    parser.add_argument("--output", type=Path, default=cap.MODEL_PATH, help="model file to write")
    parser.add_argument("--order", type=int, default=4, help="word n-gram order")
    parser.add_argument("--spell-order", type=int, default=5, help="spelling byte n-gram order")
    parser.add_argument("--min-count", type=int, default=2, help="training count a word needs to be in the vocabulary")
    parser.add_argument("--prune", type=int, default=0, help="drop top-order word n-grams seen at most this often")
    parser.add_argument("--dev", action="store_true", help="evaluate on the dev images, not the held-out ones")
    parser.add_argument("--no-write", action="store_true", help="only evaluate")
    args = parser.parse_args(argv)

    train, evaluation = load_split(args.data, args.dev)
    blob = build_model(train, args.order, args.spell_order, args.min_count, args.prune)
    model = cap.CaptionModel.from_bytes(blob)
    split = "dev" if args.dev else "held-out"
    print(f"trained on {len(train)} captions; model {len(blob)} bytes, sha256 {hashlib.sha256(blob).hexdigest()}")
    result = evaluate(model, evaluation)
    print(f"{split} COCO: {result['captions']} captions, {result['bytes']:.2f} bytes/caption "
          f"(raw deflate {result['raw_deflate']:.2f}, ratio {result['ratio']:.3f}), "
          f"{result['bits_per_char']:.3f} bits/char, {result['ms_encode_decode']:.2f} ms encode+decode")
    if not args.no_write:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_bytes(blob)
        print(f"wrote {args.output}; set MODEL_SHA256 in tcodec/coding/captions.py to the sha256 above")
    return 0


if __name__ == "__main__":
    sys.exit(main())
