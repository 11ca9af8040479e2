"""The ``taco`` backend: TACO's learned codec, guided by the caption at the encoder.

Quality selects the rate: for a variable-rate model (tcodec's own weights), any value
from 1 to its number of rates, fractional ones included; for the official single-rate
checkpoints, ``-O model=taco-official`` with quality 1 to 6 picks the checkpoint
(λ = 0.0004 ... 0.015). The caption guides the encoder only, so it is stored only when
asked (``--store-caption``). The payload is one stream per tile (z, then y, range coded):
one tile, the whole image, up to ``WHOLE_PIXELS``; beyond, tiles of ``TILE`` x ``TILE``
pixels coded independently, which bounds memory (formats/tcz.md, "The taco payload").
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache

from PIL import Image

from tcodec.backends.base import Backend, ImageEncoder, Payload, quality_grid
from tcodec.console import progress_bar
from tcodec.format.container import Container
from tcodec.errors import FormatError, InputError

DEFAULT_MODEL = "tcodec-taco-v4"
# -O tune=NAME picks the model trained for that kind of quality
TUNINGS = {"psnr": DEFAULT_MODEL, "perceptual": "tcodec-taco-p5", "ssimulacra2": "tcodec-taco-p4"}
OFFICIAL_FAMILY = "taco-official"
OFFICIAL_RATES = 6
# Memory grows with the coded area (benchmarks/bench_taco_large.py measures it). Larger
# images are cut into tiles, each coded alone (a tile edge can show at low rates; below
# this size, where whole images fit, there is none).
WHOLE_PIXELS = 16 * 2**20
TILE = 2048  # a multiple of the model's downsampling (64); 4 megapixels
MAX_TILES = 64  # the container's stream limit: 64 tiles cover about 268 megapixels
# -O effort=N: steps of latent refinement (tcodec.models.refine), each costing about a
# decode and its gradient; N = 0, today's encoder, is the default, "max" the last level
EFFORT_STEPS = (0, 8, 16, 32, 64, 128)


def effort_of(options: Mapping[str, str]) -> int:
    """The effort level ``-O effort`` asks for (0 without it)."""
    value = options.get("effort", "0")
    top = len(EFFORT_STEPS) - 1
    if value == "max":
        return top
    if not value.isdigit() or int(value) > top:
        raise InputError(f"-O effort={value}: choose 0 to {top}, or max")
    return int(value)


def model_name(options: Mapping[str, str]) -> str:
    """The model an encode uses: ``-O model``, or the one ``-O tune`` picks, or the default."""
    if "tune" not in options:
        return options.get("model", DEFAULT_MODEL)
    if options["tune"] not in TUNINGS:
        raise InputError(f"-O tune={options['tune']}: choose {', '.join(TUNINGS)}")
    if "model" in options:
        raise InputError("-O tune picks the model: give -O model or -O tune, not both")
    return TUNINGS[options["tune"]]


class TacoBackend(Backend):
    name = "taco"
    quality_range = (1, 8)
    default_quality = 3
    options = {"model": f"a model from `tcodec models list`, {OFFICIAL_FAMILY} (quality picks the checkpoint), "
                        f"or a model folder; default {DEFAULT_MODEL}",
               "tune": "psnr (default: fidelity to the pixels) or perceptual (experimental: "
                       f"{TUNINGS['perceptual']}, fine-tuned with ST-LPIPS and SSIMULACRA 2 in its loss; it wins "
                       "most on ST-LPIPS, also on SSIMULACRA 2 and ColorVideoVDP, and loses on PSNR) or ssimulacra2 "
                       f"({TUNINGS['ssimulacra2']}: v4 fine-tuned with SSIMULACRA 2 in its loss, encoder and "
                       "decoder; it wins on SSIMULACRA 2, ColorVideoVDP and ST-LPIPS and loses a little on PSNR); "
                       "see training/MODEL_CARD.md",
               "effort": f"0 (default: the analysis transform's latents) to {len(EFFORT_STEPS) - 1} or max: refine "
                         "this image's latents for its own rate and distortion, "
                         f"{', '.join(map(str, EFFORT_STEPS[1:]))} steps (each about a decode and its gradient); "
                         "smaller files at the same quality, read by any decoder of the model"}
    decode_options = {"model": "the model (name or folder) to decode with; default: the installed model "
                               "whose hash the file carries"}
    caption_use = "encoder"

    def settings(self, options: Mapping[str, str]) -> dict[str, object]:
        # -O tune is only a way to name the model: the same settings as -O model=<that model>
        settings = {**{k: v for k, v in options.items() if k != "tune"}, "model": model_name(options)}
        if "effort" in options:
            settings["effort"] = effort_of(options)
        return settings

    def model_hash(self, options: Mapping[str, str]) -> str | None:
        """The hash of ``-O model``'s weights; for taco-official (one checkpoint per quality)
        a hash over the six checkpoints' hashes."""
        import hashlib

        from tcodec.weights import installed_model_hash

        name = model_name(options)
        if name != OFFICIAL_FAMILY:
            return installed_model_hash(name)
        hashes = [installed_model_hash(f"{OFFICIAL_FAMILY}-{q}") for q in range(1, OFFICIAL_RATES + 1)]
        return hashlib.sha256("".join(hashes).encode()).hexdigest()

    def encode(self, image, *, quality, caption, device, options: Mapping[str, str]) -> Payload:
        return self.encoder(image, caption=caption, device=device, options=options).encode(quality)

    def encoder(self, image, *, caption, device, options: Mapping[str, str]) -> ImageEncoder:
        """Runs the text encoder and the analysis transform once; each quality then costs only
        the rate gains, the hyperprior and the entropy coding (what a rate search repeats)."""
        import torch

        from tcodec.models import image_to_tensor, pad_to_multiple, resolve_device
        from tcodec.models.taco import TacoModel, rate_lambda

        tiles = tiles_of(image.width, image.height, InputError)
        name = model_name(options)
        effort = effort_of(options)
        torch_device = resolve_device(device)
        rgb = image.convert("RGB")

        def tile(i: int):  # made when needed: 64 float tiles at once would take gigabytes
            return pad_to_multiple(image_to_tensor(rgb.crop(tiles[i])).to(torch_device), TacoModel.downsampling)

        def payload(loaded, code) -> Payload:
            """``code(coder, i)`` writes tile i; each tile gets its own stream."""
            from tcodec.models.coding import TensorCoder

            streams = []
            for i in range(len(tiles)):
                coder = TensorCoder.writer()
                with torch.inference_mode():
                    code(coder, i)
                streams.append(coder.to_bytes())
            return Payload(streams=tuple(streams), mode=image.mode, width=image.width,
                           height=image.height, entropy_coder="constriction-range", model_hash=loaded.hash8)

        if name == OFFICIAL_FAMILY:  # one checkpoint per quality: nothing to share
            if effort:
                raise InputError(f"-O effort refines tcodec's own variable-rate models, not {OFFICIAL_FAMILY}")
            def official(quality: float) -> Payload:
                if quality != int(quality) or not 1 <= quality <= OFFICIAL_RATES:
                    raise InputError(f"{OFFICIAL_FAMILY} has qualities 1 to {OFFICIAL_RATES} (one checkpoint each)")
                loaded = _load(f"{OFFICIAL_FAMILY}-{int(quality)}", torch_device)
                text = _text(loaded, caption, torch_device)
                return payload(loaded, lambda coder, i: loaded.model.compress(tile(i), text, coder))
            return ImageEncoder(range(1, OFFICIAL_RATES + 1), official)

        loaded = _load(name, torch_device)
        lambdas = _refinement_lambdas(loaded) if effort else None  # refused before any image work
        rates = loaded.model.config.rates
        text = _text(loaded, caption, torch_device)
        with torch.inference_mode():
            ys = [loaded.model.analyse(tile(i), text) for i in range(len(tiles))]

        def checked(quality: float) -> float | None:
            if rates and not 1 <= quality <= rates:
                raise InputError(f"model {loaded.name} has qualities 1 to {rates}, not {quality:g}")
            return quality if rates else None

        def variable_rate(quality: float) -> Payload:
            rate = checked(quality)
            return payload(loaded, lambda coder, i: loaded.model.compress_analysed(ys[i], coder, quality=rate))

        def refined(quality: float) -> Payload:
            from tcodec.models.refine import window_count

            rate = checked(quality)
            lam = rate_lambda(rate, lambdas, rates)
            gains = loaded.model.gains(rate)
            steps = EFFORT_STEPS[effort]
            refiner = _refiner(name, torch_device)

            def code(coder, i: int) -> None:
                left, top, right, bottom = tiles[i]
                with torch.inference_mode(False), torch.enable_grad():  # payload() codes in inference mode
                    y, z = refiner.refine(tile(i), loaded.model.scaled(ys[i].clone(), rate), gains[1], lam, steps,
                                          size=(bottom - top, right - left), progress=advance)
                loaded.model.code_scaled(y, coder, z)
            count = sum(window_count(bottom - top, right - left) for left, top, right, bottom in tiles)
            with progress_bar(steps * count, f"refining (effort {effort})") as advance:
                return payload(loaded, code)
        qualities = quality_grid(1, rates, integer=False) if rates else self.qualities()
        return ImageEncoder(qualities, variable_rate, refined if effort else None)

    def decode(self, container: Container, *, device, options: Mapping[str, str]) -> Image.Image:
        tiles = _check_payload(container)  # before torch is imported: a bad file costs nothing

        import torch

        from tcodec.models import resolve_device, tensor_to_image
        from tcodec.models.coding import TensorCoder
        from tcodec.weights import check_hash, find_model

        torch_device = resolve_device(device)
        if "model" in options:
            loaded = _load(options["model"], torch_device)
            check_hash(loaded, container.model_hash)
        else:
            loaded = _load(str(find_model(container.model_hash, self.name)), torch_device)
        rates = loaded.model.config.rates
        if rates and not 1 <= container.quality <= rates:
            raise FormatError(f"quality {container.quality:g} is outside 1..{rates} of model {loaded.name}")
        rate = container.quality if rates else None
        step = loaded.model.downsampling
        z_sizes = [(-(-(bottom - top) // step), -(-(right - left) // step))
                   for left, top, right, bottom in tiles]
        # every stream checked to be long enough for its tile before any pixel is allocated
        coders = [TensorCoder.reader(stream, loaded.model.coded_symbols(z_size))
                  for stream, z_size in zip(container.streams, z_sizes)]
        image = Image.new("RGB", (container.width, container.height))
        for (left, top, right, bottom), coder, z_size in zip(tiles, coders, z_sizes):
            with torch.inference_mode():
                x_hat = loaded.model.decompress(coder, z_size, quality=rate)
            coder.stream.check_exhausted()
            image.paste(tensor_to_image(x_hat[..., : bottom - top, : right - left]), (left, top))
        return image.convert("L") if container.mode == "L" else image


@lru_cache(maxsize=4)
def _load(name_or_path: str, device):
    from tcodec.weights import load_model

    return load_model(name_or_path, device)


@lru_cache(maxsize=4)
def _refiner(name: str, device):
    """The Refiner of ``_load(name, device)``'s model (a copy of its networks: made once)."""
    from tcodec.models.refine import Refiner

    return Refiner(_load(name, device).model)


def _refinement_lambdas(loaded) -> tuple[float, float]:
    """The λ of quality 1 and of the top quality that a variable-rate model was trained
    for: from its config.json (models exported since), else from models.lock."""
    from tcodec.weights import read_lock

    entry = read_lock().get(loaded.name)
    lambdas = loaded.config.get("lambdas") or (entry.lambdas if entry else ())
    if len(lambdas) != 2 or not loaded.model.config.rates:
        known = ", ".join(name for name, e in read_lock().items() if len(e.lambdas) == 2)
        raise InputError(f"-O effort refines for the rate-distortion trade-off a model was trained with, and "
                         f"neither models.lock nor its config.json gives one for {loaded.name} "
                         f"(tcodec's own MSE models do: {known})")
    return float(lambdas[0]), float(lambdas[1])


def _text(loaded, caption: str | None, device):
    from tcodec.models.text import text_encoder

    return text_encoder(loaded.config["text_encoder"]).encode([caption or ""], device)


def tiles_of(width: int, height: int, error: type[Exception] = InputError) -> list[tuple[int, int, int, int]]:
    """The boxes (left, top, right, bottom) coded one stream each, in stream order: the
    whole image up to WHOLE_PIXELS, else TILE x TILE tiles row by row (the last row and
    column smaller)."""
    if width * height <= WHOLE_PIXELS:
        return [(0, 0, width, height)]
    tiles = [(left, top, min(left + TILE, width), min(top + TILE, height))
             for top in range(0, height, TILE) for left in range(0, width, TILE)]
    if len(tiles) > MAX_TILES:
        raise error(f"taco codes images up to {MAX_TILES} tiles of {TILE}x{TILE} pixels; "
                    f"{width}x{height} needs {len(tiles)}")
    return tiles


def _check_payload(container: Container) -> list[tuple[int, int, int, int]]:
    """What the header promises must be what a taco decoder reads, before any model work."""
    tiles = tiles_of(container.width, container.height, FormatError)
    if len(container.streams) != len(tiles) or container.entropy_coder != "constriction-range":
        raise FormatError(f"a {container.width}x{container.height} taco file holds {len(tiles)} range-coded "
                          f"stream(s), this one {len(container.streams)} ({container.entropy_coder}); "
                          "the file is corrupt")
    if container.model_hash is None:
        raise FormatError("this taco file carries no model hash; it was not written by tcodec")
    # Every tile codes symbols, and a range coder seals any symbols in at least one 32-bit
    # word: refused here, before torch is imported or a model loaded. How short a stream
    # may be for its tile's size is checked once the model's tables are known.
    for i, stream in enumerate(container.streams):
        if len(stream) < 4 or len(stream) % 4:
            raise FormatError(f"taco stream {i} is {len(stream)} bytes, not a whole number of 32-bit words "
                              "(at least one); the file is corrupt")
    return tiles
