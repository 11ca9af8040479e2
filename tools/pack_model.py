"""Store a packaged model's weights file in pieces: the tensors whose bytes another
packaged model's file already holds are read from there (tcodec/weights.py, "files
stored in pieces"); the rest stays in ``model.safetensors.own``, or, with ``--xz``,
xz-compressed in ``model.safetensors.own.xz`` (for old models: smaller, slower to load).
With ``--differences`` a tensor that the base has under the same name and size, with
other values (a fine-tuned model's), is stored as its difference from the base's
(16-bit words): with ``--xz``, about half the room of the tensor itself.

    python tools/pack_model.py tcodec-taco-v3 --base tcodec-taco-v4
    python tools/pack_model.py tcodec-taco-p4 --base tcodec-taco-v4 --differences --xz
    python tools/pack_model.py tcodec-taco-v1 --xz      # no base: all its bytes its own

The assembled file is checked byte for byte against the original before the original is
removed, so the model's files, sha256 in models.lock and model-version hash stay the same.
"""

import argparse
import hashlib
import json
import lzma
import struct
import tempfile
from pathlib import Path

import numpy as np

from tcodec.weights import OWN_SUFFIX, PIECES_SUFFIX, XZ_SUFFIX, read_model_file

PACKAGE = Path(__file__).resolve().parent.parent / "tcodec" / "data" / "models"
WEIGHTS = "model.safetensors"
MIN_SHARED = 4096  # smaller tensors stay in the own bytes: not worth tying two models together
# xz for weights: LZMA2 with 2-byte positions and no literal context suits float16 tensors
XZ_FILTERS = [{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME, "pb": 1, "lp": 1, "lc": 0}]


def tensor_ranges(data: bytes) -> tuple[int, dict[str, tuple[int, int]]]:
    """Where a safetensors file's data starts, and each tensor's (begin, end) in the file
    by name, in the order of the data."""
    (header_size,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + header_size])
    start = 8 + header_size
    ranges = sorted((v["data_offsets"], k) for k, v in header.items() if k != "__metadata__")
    return start, {name: (start + begin, start + end) for (begin, end), name in ranges}


def difference(data: bytes, base: bytes) -> bytes:
    """The 16-bit words that added to ``base``'s (modulo 2**16) make ``data``'s."""
    return (np.frombuffer(data, "<u2") - np.frombuffer(base, "<u2")).astype("<u2").tobytes()


def pieces_of(data: bytes, base_name: str, base: bytes, *, differences: bool = False) -> tuple[list[list], bytes]:
    """The pieces list and the own bytes of ``data``, sharing what ``base`` holds, and
    with ``differences`` storing same-named tensors of the same size as differences."""
    base_file = f"{base_name}/{WEIGHTS}"
    _, base_ranges = tensor_ranges(base)
    shared = {hashlib.sha256(base[b:e]).digest(): b for b, e in base_ranges.values()}
    start, ranges = tensor_ranges(data)
    pieces, own = [], bytearray()

    def add(source: str, offset: int, length: int) -> None:
        if pieces and len(pieces[-1]) == 3 and pieces[-1][0] == source and pieces[-1][1] + pieces[-1][2] == offset:
            pieces[-1][2] += length  # contiguous with the previous piece
        else:
            pieces.append([source, offset, length])

    def add_own(chunk: bytes) -> None:
        add("", len(own), len(chunk))
        own.extend(chunk)

    add_own(data[:start])
    position = start
    for name, (begin, end) in ranges.items():
        if begin > position:  # padding between tensors
            add_own(data[position:begin])
        length = end - begin
        found = shared.get(hashlib.sha256(data[begin:end]).digest()) if length >= MIN_SHARED else None
        counterpart = base_ranges.get(name)
        if found is not None:
            add(base_file, found, length)
        elif (differences and length >= MIN_SHARED and length % 2 == 0 and counterpart is not None
              and counterpart[1] - counterpart[0] == length):
            pieces.append(["", len(own), length, base_file, counterpart[0]])
            own.extend(difference(data[begin:end], base[counterpart[0]:counterpart[1]]))
        else:
            add_own(data[begin:end])
        position = end
    add_own(data[position:])
    return pieces, bytes(own)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--base", help="the packaged model whose file holds the shared tensors (default: none)")
    parser.add_argument("--differences", action="store_true",
                        help="store tensors that the base has with other values as differences from it")
    parser.add_argument("--xz", action="store_true", help="store the own bytes xz-compressed")
    args = parser.parse_args()
    folder = PACKAGE / args.model
    data = read_model_file(folder, WEIGHTS)
    if args.base:
        base_folder = PACKAGE / args.base
        if (base_folder / (WEIGHTS + PIECES_SUFFIX)).exists():
            raise SystemExit(f"{args.base} is itself stored in pieces; pick a base stored whole")
        pieces, own = pieces_of(data, args.base, (base_folder / WEIGHTS).read_bytes(), differences=args.differences)
    elif args.differences:
        raise SystemExit("--differences needs a --base")
    else:
        pieces, own = [["", 0, len(data)]], data
    own_name = WEIGHTS + OWN_SUFFIX + (XZ_SUFFIX if args.xz else "")
    stored_own = lzma.compress(own, format=lzma.FORMAT_XZ, filters=XZ_FILTERS) if args.xz else own
    recipe = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "pieces": pieces}
    # assembled and checked in a scratch copy of the folder first: the model's own folder
    # changes only once the pieces are known to make the file
    with tempfile.TemporaryDirectory(dir=PACKAGE, prefix=".pack-") as scratch:
        check = Path(scratch) / args.model
        check.mkdir()
        (check / own_name).write_bytes(stored_own)
        (check / (WEIGHTS + PIECES_SUFFIX)).write_text(json.dumps(recipe, indent=1) + "\n", encoding="utf-8")
        if args.base:  # pieces name their base as MODEL/FILE beside the folder: a sibling here too
            (Path(scratch) / args.base).symlink_to(base_folder)
        if read_model_file(check, WEIGHTS) != data:
            raise SystemExit(f"{args.model}: the pieces do not make the file; nothing changed")
        whole = folder / WEIGHTS
        backup = folder / f".{WEIGHTS}.whole"  # hidden: not a model file while both forms exist
        if whole.exists():
            whole.replace(backup)
        for name in (own_name, WEIGHTS + PIECES_SUFFIX):
            (check / name).replace(folder / name)
        backup.unlink(missing_ok=True)
        for stale in {WEIGHTS + OWN_SUFFIX, WEIGHTS + OWN_SUFFIX + XZ_SUFFIX} - {own_name}:
            (folder / stale).unlink(missing_ok=True)  # the own bytes' other form, from an earlier packing
    differences = sum(piece[2] for piece in pieces if len(piece) == 5)
    noted = f", {differences:,} of them differences from {args.base}'s" if differences else ""
    print(f"{args.model}: {len(data):,} bytes stored as {len(own):,} own bytes ({len(stored_own):,} on disk{noted}) + "
          f"{len(data) - len(own):,} read from {args.base or 'no other model'} ({len(pieces)} pieces)")


if __name__ == "__main__":
    main()
