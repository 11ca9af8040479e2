"""PerCo (SD) through tcodec's CLI: what each part of a file costs at every rate setting,
against PerCo (SD)'s own file for the same content; with real weights, times and quality;
and the memory and time of a CPU decode at Stable Diffusion 2.1's real shapes.

    python benchmarks/bench_perco.py --tiny [--keep DIR] [--image PNG] [--caption TEXT]
    python benchmarks/bench_perco.py --model DIR [--model DIR ...] [--images N]
    python benchmarks/bench_perco.py --full-random DIR [--steps N]

``--tiny`` writes tiny random models, one per rate setting (``--keep DIR``: into
DIR/q1 ... DIR/q7, model folders that ``tcodec encode -m perco -q N -O model=DIR/qN`` and
``tcodec decode -O model=DIR/qN`` accept), and codes a Kodak image (kodim23 from
../shared/data/kodak when there, else a 768x512 test image) at each setting with
``tcodec encode`` and ``tcodec decode``. Random weights make random pictures: the bytes are
real (every part of the file is what the real weights would write, except that real
indices may compress differently under a learned prior), the pixels mean nothing.

PerCo (SD)'s own file (``compression_utils.write_compressed_data_to_file``) is a pickle of
``{0: pickle(zlib caption), 1: pickle(hyper-latent bytes), 2: pickle((H, W))}``. It is
built here in memory with pickle protocol 4 (its Python 3.10's default), never loaded; its
hyper-latent bytes are torchac's uniform arithmetic code, which is not installed here: the
script counts ceil(n·log2 K / 8) bytes for it, the information content, which torchac
cannot beat, so PerCo (SD)'s size is if anything under-stated.

``--model DIR`` (a real PerCo model folder, e.g. an imported perco-sd-0.0019) codes Kodak
images and prints encode and decode times, bytes, PSNR, MS-SSIM and ST-LPIPS (alex).
``--full-random DIR`` writes random weights of SD 2.1's shapes (about 5 GB) once and
measures a whole ``tcodec decode`` process on the CPU: peak resident memory and time.
"""

from __future__ import annotations

import argparse
import math
import os
import pickle
import resource
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

from PIL import Image

from tcodec import api
from tcodec.coding import captions
from tcodec.backends.perco import RATE_SETTINGS, grid_shape
from tcodec.models.perco_weights import COMPONENTS, write_random

ROOT = Path(__file__).resolve().parent.parent
KODAK = ROOT.parent / "shared" / "data" / "kodak"
# PerCo (SD)'s README: BLIP-2's caption of kodim23
DEFAULT_CAPTION = "two parrots standing next to each other with leaves in the background"
TCODEC = [sys.executable, "-m", "tcodec"]


def perco_sd_file_bytes(caption: str, indices: int, codebook: int, size: tuple[int, int]) -> int:
    """The size of PerCo (SD)'s file for this caption, this many indices and this (H, W)."""
    index_bytes = math.ceil(indices * math.log2(codebook) / 8)
    parts = {0: pickle.dumps(zlib.compress(caption.encode(), zlib.Z_BEST_COMPRESSION), protocol=4),
             1: pickle.dumps(bytes(index_bytes), protocol=4), 2: pickle.dumps(size, protocol=4)}
    return len(pickle.dumps(parts, protocol=4))


def test_image(path: Path | None) -> Path:
    if path is not None:
        return path
    if (KODAK / "kodim23.png").is_file():
        return KODAK / "kodim23.png"
    target = Path(tempfile.gettempdir()) / "bench-perco-768x512.png"
    gradient = Image.linear_gradient("L").resize((768, 512))
    Image.merge("RGB", (gradient, gradient.rotate(90).resize((768, 512)), gradient.transpose(0))).save(target)
    return target


def write_tiny_models(folder: Path) -> dict[int, Path]:
    """DIR/q1 ... DIR/q7: each a whole tiny model; the components that do not depend on
    the rate setting (all but hyper_enc/) are written once and hard-linked into each."""
    shared = folder / ".shared"
    write_random(shared, "tiny", components=tuple(c for c in COMPONENTS if c != "hyper_enc"))
    models = {}
    for quality, setting in enumerate(RATE_SETTINGS, 1):
        model = folder / f"q{quality}"
        write_random(model, "tiny", grid=setting.grid, codebook=setting.codebook, seed=quality,
                     components=("hyper_enc",))
        for component in COMPONENTS:
            if component == "hyper_enc":
                continue
            for source in (shared / component).rglob("*"):
                target = model / source.relative_to(shared)
                if source.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                elif not target.exists():
                    target.parent.mkdir(parents=True, exist_ok=True)
                    os.link(source, target)
        models[quality] = model
    return models


def run(command: list[str]) -> float:
    """Seconds a CLI command takes; its error, if it fails."""
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{' '.join(command)} failed ({done.returncode}): {done.stderr.strip()}")
    return time.perf_counter() - start


def tiny(args) -> None:
    image = test_image(args.image)
    width, height = Image.open(image).size
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.keep or Path(scratch) / "models"
        models = write_tiny_models(folder)
        print(f"image {image} ({width}x{height}), caption {args.caption!r}, tiny random models in {folder}")
        coded = captions.encode(args.caption)[1]
        deflated = zlib.compress(args.caption.encode(), zlib.Z_BEST_COMPRESSION)
        print(f"the caption: {len(args.caption.encode())} bytes of UTF-8, {len(coded)} coded by tcodec's caption "
              f"coder, {len(deflated)} with zlib as PerCo (SD) stores it")
        print("\n| q | setting | grid | file B | header B | caption B | indices B | other B | bpp | "
              "PerCo (SD) file B | ratio | encode s | decode s |")
        print("|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for quality, model in models.items():
            setting = RATE_SETTINGS[quality - 1]
            coded = Path(scratch) / f"q{quality}.tcz"
            encode_s = run([*TCODEC, "encode", str(image), "-m", "perco", "-q", str(quality),
                            "-O", f"model={model}", "--caption", args.caption, "-o", str(coded), "-f"])
            decode_s = run([*TCODEC, "decode", str(coded), "-O", f"model={model}", "-o",
                            str(Path(scratch) / f"q{quality}.png"), "-f"])
            data = coded.read_bytes()
            layout = api.read_info(data).layout
            rows, columns = grid_shape(width, height, setting)
            stream = layout["streams"]
            index_bytes = stream - 1  # the flags byte: default sampling settings
            other = layout["file"] - layout["header"] - layout["caption"] - index_bytes
            theirs = perco_sd_file_bytes(args.caption, rows * columns, setting.codebook, (height, width))
            print(f"| {quality} | {setting.bpp:.4f} ({setting.grid}, {setting.codebook}) | {rows}x{columns} | "
                  f"{layout['file']} | {layout['header']} | {layout['caption']} | {index_bytes} | {other} | "
                  f"{8 * layout['file'] / (width * height):.4f} | {theirs} | {layout['file'] / theirs:.2f} | "
                  f"{encode_s:.2f} | {decode_s:.2f} |")
        print("\nother B: stream count and length, the stream's flags byte, the CRC. Times: whole CLI processes "
              "with tiny random models (imports dominate).")
        if args.keep:
            print(f"kept: tcodec encode IMAGE -m perco -q N -O model={folder}/qN --caption TEXT -o F.tcz; "
                  f"tcodec decode F.tcz -O model={folder}/qN -o F.png")


def real(args) -> None:
    import numpy as np

    from tcodec.bench.metrics import ms_ssim_rgb, psnr_rgb, st_lpips_alex

    images = sorted(KODAK.glob("*.png"))[: args.images]
    if not images:
        sys.exit(f"no Kodak images in {KODAK}")
    captions = _captions()
    with tempfile.TemporaryDirectory() as scratch:
        print("| model | image | bytes | bpp | encode s | decode s | PSNR dB | MS-SSIM | ST-LPIPS (alex) |")
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
        for model in args.model:
            for image in images:
                caption = captions.get(image.name, DEFAULT_CAPTION)
                coded, decoded = Path(scratch) / "x.tcz", Path(scratch) / "x.png"
                encode_s = run([*TCODEC, "encode", str(image), "-m", "perco", "-O", f"model={model}",
                                "-q", str(_quality(model)), "--caption", caption,
                                "-o", str(coded), "-f"])
                decode_s = run([*TCODEC, "decode", str(coded), "-O", f"model={model}", "-o", str(decoded), "-f"])
                reference = np.asarray(Image.open(image).convert("RGB"))
                result = np.asarray(Image.open(decoded).convert("RGB"))
                size = coded.stat().st_size
                print(f"| {Path(model).name} | {image.stem} | {size} | {8 * size / (reference.shape[0] * reference.shape[1]):.4f} | "
                      f"{encode_s:.1f} | {decode_s:.1f} | {psnr_rgb(reference, result):.2f} | "
                      f"{ms_ssim_rgb(reference, result):.4f} | {st_lpips_alex(reference, result):.4f} |")


def _quality(model: str) -> int:
    from tcodec.backends.perco import setting_of_model
    from tcodec.models.perco_weights import hyper_encoder_config

    return setting_of_model(hyper_encoder_config(Path(model) / "hyper_enc"))


def _captions() -> dict[str, str]:
    """Kodak's captions (../shared/data/kodak/captions.jsonl): file name -> caption."""
    from tcodec.caption_files import read_jsonl

    path = KODAK / "captions.jsonl"
    return read_jsonl(path) if path.is_file() else {}


def full_random(args) -> None:
    folder = args.full_random
    if not (folder / "unet" / "diffusion_pytorch_model.safetensors").is_file():
        print(f"writing random weights of Stable Diffusion 2.1's shapes into {folder} ...", flush=True)
        start = time.perf_counter()
        write_random(folder, "full")
        print(f"written in {time.perf_counter() - start:.0f} s")
    sizes = {c: sum(f.stat().st_size for f in (folder / c).rglob("*") if f.is_file()) for c in COMPONENTS}
    print("component bytes: " + ", ".join(f"{c} {n / 1e9:.2f} GB" for c, n in sizes.items()))
    counts = {c: sum(_parameters(f) for f in (folder / c).glob("*.safetensors")) for c in COMPONENTS}
    print("component parameters: " + ", ".join(f"{c} {n / 1e6:.1f}M" for c, n in counts.items() if n))
    image = test_image(args.image)
    with tempfile.TemporaryDirectory() as scratch:
        coded, decoded = Path(scratch) / "x.tcz", Path(scratch) / "x.png"
        for what, command in (
            ("encode", [*TCODEC, "encode", str(image), "-m", "perco", "-O", f"model={folder}",
                        "--caption", DEFAULT_CAPTION, "-o", str(coded), "-f"]),
            ("decode", [*TCODEC, "decode", str(coded), "-O", f"model={folder}", "-O", f"steps={args.steps}",
                        "-o", str(decoded), "-f"]),
        ):
            before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            seconds = run(command)
            peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            note = "" if peak > before else " (no higher than an earlier child's: the figure is that child's)"
            print(f"{what}: {seconds:.1f} s, peak resident memory {peak / 2**20:.2f} GiB{note}"
                  + (f", {args.steps} steps" if what == "decode" else ""), flush=True)


def _parameters(path: Path) -> int:
    """The number of values a safetensors file holds (from its header: nothing is loaded)."""
    from safetensors import safe_open

    with safe_open(path, "np") as file:
        return sum(math.prod(file.get_slice(name).get_shape()) for name in file.keys())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="tiny random models, every rate setting")
    parser.add_argument("--keep", type=Path, help="with --tiny: write the models here and keep them")
    parser.add_argument("--model", action="append", default=[], help="a real PerCo model folder (repeatable)")
    parser.add_argument("--images", type=int, default=24, help="with --model: this many Kodak images")
    parser.add_argument("--full-random", type=Path, help="random weights of SD 2.1's shapes in this folder")
    parser.add_argument("--steps", type=int, default=20, help="with --full-random: sampling steps of the decode")
    parser.add_argument("--image", type=Path, help="the image for --tiny and --full-random")
    parser.add_argument("--caption", default=DEFAULT_CAPTION)
    args = parser.parse_args()
    if not (args.tiny or args.model or args.full_random):
        parser.error("give --tiny, --model DIR or --full-random DIR")
    if args.tiny:
        tiny(args)
    if args.model:
        real(args)
    if args.full_random:
        full_random(args)


if __name__ == "__main__":
    main()
