"""Benchmark caption coder 1 against zlib on captions it was not trained on.

Run from the repository root:

    PYTHONPATH=. .venv/bin/python benchmarks/bench_captions.py

Sets: the held-out COCO images (the split of tools/train_caption_model.py), and the
Kodak captions in ../shared/data/kodak (captions.jsonl, human-written, and
captions_ofa.json, from the OFA captioning model). For each set it prints the mean
bytes per caption of tcodec's coder, of zlib.compress(level=9) and of raw deflate
(wbits=-15), tcodec's size as a fraction of raw deflate's, tcodec's bits per
character, and the mean encode and decode times per caption (decode includes its
canonical re-encode check). Every caption is checked to round-trip.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import zlib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
sys.path.insert(0, str(REPO / "tools"))

from train_caption_model import DEFAULT_DATA, load_split  # noqa: E402

from tcodec.coding import captions  # noqa: E402


def raw_deflate(data: bytes) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    return packer.compress(data) + packer.flush()


def load_sets(shared: Path) -> dict[str, list[str]]:
    sets = {"COCO held-out": load_split(shared / "captions" / DEFAULT_DATA.name, dev=False)[1]}
    kodak = shared / "kodak" / "captions.jsonl"
    if kodak.exists():
        lines = kodak.read_text(encoding="utf-8").splitlines()
        sets["Kodak (human)"] = [c for line in lines if line.strip() for c in json.loads(line)["captions"]]
    ofa = shared / "kodak" / "captions_ofa.json"
    if ofa.exists():
        sets["Kodak (OFA)"] = list(json.loads(ofa.read_text(encoding="utf-8")).values())
    return sets


def measure(texts: list[str]) -> dict[str, float]:
    coded, encode_ms, decode_ms = [], [], []
    for text in texts:
        started = time.perf_counter()
        stream = captions.encode_caption(text)
        middle = time.perf_counter()
        back = captions.decode_caption(stream)
        encode_ms.append(1000 * (middle - started))
        decode_ms.append(1000 * (time.perf_counter() - middle))
        if back != text:
            raise SystemExit(f"round trip failed for {text!r}")
        coded.append(len(stream))
    raw = [t.encode("utf-8") for t in texts]
    deflate = statistics.fmean(len(raw_deflate(r)) for r in raw)
    return {
        "n": len(texts),
        "utf8": statistics.fmean(len(r) for r in raw),
        "zlib": statistics.fmean(len(zlib.compress(r, 9)) for r in raw),
        "deflate": deflate,
        "tcodec": statistics.fmean(coded),
        "ratio": statistics.fmean(coded) / deflate,
        "bpc": 8 * sum(coded) / sum(len(t) for t in texts),
        "enc_ms": statistics.fmean(encode_ms),
        "dec_ms": statistics.fmean(decode_ms),
        "max_ms": max(e + d for e, d in zip(encode_ms, decode_ms)),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=SHARED, help="the shared data folder")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    captions.load_model()
    load_ms = 1000 * (time.perf_counter() - started)
    print(f"caption coder {captions.CAPTION_CODER_ID}, model {captions.MODEL_PATH.name} "
          f"({captions.MODEL_PATH.stat().st_size} bytes, sha256 {captions.MODEL_SHA256[:16]}...), "
          f"loaded in {load_ms:.0f} ms")
    columns = ("set", "n", "utf8 B", "zlib B", "deflate B", "tcodec B", "/deflate", "bits/char",
               "enc ms", "dec ms", "max e+d ms")
    print(" | ".join(f"{c:>10}" if i else f"{c:<14}" for i, c in enumerate(columns)))
    for name, texts in load_sets(args.shared).items():
        r = measure(texts)
        cells = [f"{r['n']:>10d}"] + [f"{r[k]:>10.2f}" for k in ("utf8", "zlib", "deflate", "tcodec")]
        cells += [f"{r['ratio']:>10.1%}", f"{r['bpc']:>10.3f}"]
        cells += [f"{r[k]:>10.2f}" for k in ("enc_ms", "dec_ms", "max_ms")]
        print(" | ".join([f"{name:<14}", *cells]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
