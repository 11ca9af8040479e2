"""The ``perco`` backend: PerCo (SD), a caption plus a few dozen bytes of vector-quantised
indices, decoded into a realistic image by latent diffusion.

Quality 1 (lowest rate) to 7 picks one of PerCo (SD)'s seven rate settings (a grid of
indices and a codebook size, :data:`RATE_SETTINGS`); each needs a model trained for it
(released: quality 1, 4 and 7). The caption is the decoder's input, so every file keeps it.
An image is coded at its working size (:func:`working_size`: aspect kept, about 512x512
pixels) and decoded back to its own size. The payload (formats/tcz.md, "The perco
payload") is one stream: which sampling settings differ from the defaults, those
settings, then the indices, range coded under a uniform model. Importing this module
does not import torch: a file is checked, its indices decoded, before any model loads.
"""

from __future__ import annotations

import math
import threading
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

from PIL import Image

from tcodec.backends.base import Backend, ImageEncoder, Payload
from tcodec.console import progress_bar
from tcodec.errors import FormatError, InputError, ModelError, TcodecWarning
from tcodec.format.container import Container, varint


@dataclass(frozen=True)
class RateSetting:
    """One of PerCo (SD)'s rate settings: a grid of ``grid`` x ``grid`` indices for a
    512x512 image, each one of ``codebook`` codebook vectors (``bpp``, its nominal rate
    there: grid² · log2(codebook) / 512², rounded as PerCo (SD) names it)."""

    bpp: float
    grid: int
    codebook: int

    @property
    def cell(self) -> int:
        """Image pixels per grid cell, along each side."""
        return WORKING_SIDE // self.grid

    @property
    def default_steps(self) -> int:
        """PerCo (SD)'s sampling steps: 20 below 0.05 bpp, 5 above."""
        return 20 if self.bpp < 0.05 else 5


# quality 1 to 7: PerCo (SD)'s settings (its config.py, after Table 2 of Careil et al.),
# in rising rate; 8196 is PerCo (SD)'s own number
RATE_SETTINGS = (
    RateSetting(0.0019, 8, 256),
    RateSetting(0.0024, 8, 1024),
    RateSetting(0.0098, 16, 1024),
    RateSetting(0.0313, 32, 256),
    RateSetting(0.0507, 32, 8196),
    RateSetting(0.0937, 64, 64),
    RateSetting(0.1250, 64, 256),
)
# the released PerCo (SD) models (models.lock), by quality
RELEASED_MODELS = {1: "perco-sd-0.0019", 4: "perco-sd-0.0313", 7: "perco-sd-0.1250"}
WORKING_SIDE = 512  # PerCo (SD) trains on 512x512 images
SIDE_MULTIPLE = 64  # the coarsest grid's cell: the VAE's 8 times the hyper-encoder's 8
MAX_WORKING_SIDE = WORKING_SIDE**2 // SIDE_MULTIPLE  # a strip 64 pixels high of the same area
LATENT_DOWNSAMPLING = 8  # the VAE's
DEFAULT_SEED = 3868512668962463  # PerCo (SD)'s fixed sampling seed
DEFAULT_GUIDANCE = 3.0
MAX_STEPS = 250
MAX_SEED = 2**64 - 1
# the payload's first byte: which sampling settings follow (the rest take their defaults)
HAS_SEED, HAS_STEPS, HAS_GUIDANCE = 0x01, 0x02, 0x04
MAX_SEED_BYTES = 10  # a 64-bit LEB128 varint


def working_size(width: int, height: int) -> tuple[int, int]:
    """The size an image is coded at: its aspect ratio kept, its area brought to about
    512x512 pixels (what PerCo (SD) was trained on, and what fixes its byte count), each
    side a multiple of 64 from 64 to 4096 (so that every grid divides it)."""
    scale = WORKING_SIDE / math.sqrt(width * height)

    def side(length: int) -> int:
        return min(max(round(length * scale / SIDE_MULTIPLE), 1) * SIDE_MULTIPLE, MAX_WORKING_SIDE)

    return side(width), side(height)


def grid_shape(width: int, height: int, setting: RateSetting) -> tuple[int, int]:
    """(rows, columns) of indices for an image of ``width`` x ``height``."""
    working_width, working_height = working_size(width, height)
    return working_height // setting.cell, working_width // setting.cell


@dataclass(frozen=True)
class Sampling:
    """How the decoder samples: DDIM steps, classifier-free guidance scale, noise seed."""

    steps: int
    guidance: float
    seed: int


def sampling_options(options: Mapping[str, str], base: Sampling) -> Sampling:
    """``base`` with ``-O steps/guidance/seed`` applied. Raises InputError for a bad value."""
    steps, guidance, seed = base.steps, base.guidance, base.seed
    if "steps" in options:
        if not options["steps"].isdecimal() or not 1 <= int(options["steps"]) <= MAX_STEPS:
            raise InputError(f"-O steps={options['steps']}: choose a whole number from 1 to {MAX_STEPS}")
        steps = int(options["steps"])
    if "guidance" in options:
        try:
            guidance = float(options["guidance"])
        except ValueError:
            guidance = -1.0
        if not 0 <= guidance <= 0xFFFF / 100 or round(guidance * 100) / 100 != guidance:
            raise InputError(f"-O guidance={options['guidance']}: choose a number from 0 to 655.35 in "
                             "hundredths (1 or less: no classifier-free guidance)")
    if "seed" in options:
        if not options["seed"].isdecimal() or int(options["seed"]) > MAX_SEED:
            raise InputError(f"-O seed={options['seed']}: choose a whole number from 0 to 2^64 - 1")
        seed = int(options["seed"])
    return Sampling(steps, guidance, seed)


def default_sampling(setting: RateSetting) -> Sampling:
    return Sampling(setting.default_steps, DEFAULT_GUIDANCE, DEFAULT_SEED)


# --- the payload ---------------------------------------------------------------------------


def pack_payload(sampling: Sampling, setting: RateSetting, indices: Sequence[int]) -> bytes:
    """The perco stream: the flags byte, the settings that differ from the defaults, the
    indices (row by row) range coded under a uniform model of the codebook's size."""
    from tcodec.coding.entropy import encode_uniform

    default = default_sampling(setting)
    flags, fields = 0, bytearray()
    if sampling.seed != default.seed:
        flags |= HAS_SEED
        fields += varint(sampling.seed)
    if sampling.steps != default.steps:
        flags |= HAS_STEPS
        fields.append(sampling.steps)
    if sampling.guidance != default.guidance:
        flags |= HAS_GUIDANCE
        fields += round(sampling.guidance * 100).to_bytes(2, "little")
    return bytes([flags]) + bytes(fields) + encode_uniform(indices, setting.codebook)


def unpack_payload(stream: bytes, setting: RateSetting, count: int) -> tuple[Sampling, list[int]]:
    """The sampling settings and the ``count`` indices of a perco stream.

    Raises:
        FormatError: anything but what :func:`pack_payload` writes.
    """
    from tcodec.coding.entropy import decode_uniform

    if not stream:
        raise FormatError("the perco stream is empty; the file is corrupt")
    flags, position = stream[0], 1
    if flags & ~(HAS_SEED | HAS_STEPS | HAS_GUIDANCE):
        raise FormatError(f"unknown perco flags 0x{flags:02x}; the file is corrupt or from a newer tcodec")
    default = default_sampling(setting)
    seed, steps, guidance = default.seed, default.steps, default.guidance
    if flags & HAS_SEED:
        seed, position = _read_varint(stream, position)
    if flags & HAS_STEPS:
        if position >= len(stream) or not 1 <= stream[position] <= MAX_STEPS:
            raise FormatError("the perco stream's step count is missing or out of range; the file is corrupt")
        steps, position = stream[position], position + 1
    if flags & HAS_GUIDANCE:
        if position + 2 > len(stream):
            raise FormatError("the perco stream ends inside its guidance scale; the file is corrupt")
        guidance, position = int.from_bytes(stream[position:position + 2], "little") / 100, position + 2
    indices = decode_uniform(stream[position:], count, setting.codebook)
    return Sampling(steps, guidance, seed), indices


def _read_varint(data: bytes, position: int) -> tuple[int, int]:
    value = 0
    for i in range(MAX_SEED_BYTES):
        if position + i >= len(data):
            break
        byte = data[position + i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            if (byte == 0 and i > 0) or value > MAX_SEED:
                break
            return value, position + i + 1
    raise FormatError("the perco stream's seed is truncated or not a valid 64-bit varint; the file is corrupt")


# --- the backend -----------------------------------------------------------------------------


def setting_of_model(hyper_config: Mapping[str, int]) -> int:
    """The quality whose rate setting a model's hyper-encoder codes (0: none of them)."""
    for quality, setting in enumerate(RATE_SETTINGS, 1):
        if (setting.grid, setting.codebook) == (hyper_config["cfg_ss"], hyper_config["cfg_cs"]):
            return quality
    return 0


def _describe(quality: int) -> str:
    setting = RATE_SETTINGS[quality - 1]
    return f"quality {quality} ({setting.bpp:.4f} bpp: grid {setting.grid}, {setting.codebook} codes)"


class PercoBackend(Backend):
    name = "perco"
    quality_range = (1, 7)
    default_quality = 1
    integer_quality = True
    caption_use = "decoder"
    bench_qualities = tuple(RELEASED_MODELS)
    options = {
        "model": "a model from `tcodec models list` or a model folder; default: the released PerCo (SD) model of "
                 f"the quality ({', '.join(f'q{q} {n}' for q, n in RELEASED_MODELS.items())})",
        "steps": f"DDIM sampling steps the decoder takes, 1 to {MAX_STEPS}; default 20 below 0.05 bpp "
                 "(quality 1-4), 5 above (stored in the file)",
        "guidance": f"classifier-free guidance scale; default {DEFAULT_GUIDANCE:g} (stored in the file)",
        "seed": f"the decoder's noise seed; default PerCo (SD)'s {DEFAULT_SEED} (stored in the file)",
    }
    decode_options = {
        "model": "the model (name or folder) to decode with; default: the installed model whose hash the file carries",
        "steps": "override the file's sampling steps",
        "guidance": "override the file's guidance scale",
        "seed": "override the file's noise seed (another seed: another plausible image)",
    }

    def bench_qualities_with(self, options: Mapping[str, str]) -> tuple[float, ...] | None:
        if "model" in options:  # a model codes one rate setting
            return (float(_model_quality(_load(options["model"], "cpu"))),)
        return self.bench_qualities

    def settings(self, options: Mapping[str, str]) -> dict[str, object]:
        settings = dict(options)
        for key in ("steps", "guidance", "seed"):
            if key in options:
                settings[key] = getattr(sampling_options(options, Sampling(1, 0.0, 0)), key)
        return settings

    def versions(self) -> dict[str, str]:
        from importlib.metadata import version

        return {package: version(package) for package in ("torch", "diffusers", "transformers")}

    def model_hash(self, options: Mapping[str, str]) -> str | None:
        """The hash of ``-O model``'s weights; without it (a model per quality) a hash over
        the released models' hashes."""
        import hashlib

        from tcodec.weights import installed_model_hash

        if "model" in options:
            return installed_model_hash(options["model"])
        hashes = [installed_model_hash(name) for name in RELEASED_MODELS.values()]
        return hashlib.sha256("".join(hashes).encode()).hexdigest()

    def qualities(self) -> Sequence[float]:
        return range(1, len(RATE_SETTINGS) + 1)

    def encode(self, image, *, quality, caption, device, options: Mapping[str, str]) -> Payload:
        return self.encoder(image, caption=caption, device=device, options=options).encode(quality)

    def encoder(self, image, *, caption, device, options: Mapping[str, str]) -> ImageEncoder:
        """Each quality needs its own model: with ``-O model`` only that model's quality is
        offered (a rate search stays within it), else those of the released models installed."""
        if caption is None:
            raise InputError("perco needs a caption: its decoder is conditioned on it")
        sampling_options(options, Sampling(1, 0.0, 0))  # bad values refused before any work
        if "model" in options:
            loaded = _load(options["model"], device)
            qualities: Sequence[int] = [_model_quality(loaded)]
        else:  # a rate search tries the installed ones (with none, quality 1 says what to get)
            from tcodec.weights import status

            qualities = [q for q, name in sorted(RELEASED_MODELS.items()) if status(name)["installed"]] or [1]

        def encode(quality: float) -> Payload:
            import torch

            from tcodec.models import image_to_tensor

            quality = int(quality)
            loaded = _load(options.get("model") or _released(quality), device)
            if _model_quality(loaded) != quality:
                raise InputError(f"model {loaded.name} codes {_describe(_model_quality(loaded))}, "
                                 f"not {_describe(quality)}; use -q {_model_quality(loaded)}")
            setting = RATE_SETTINGS[quality - 1]
            sampling = sampling_options(options, default_sampling(setting))
            _warn_if_truncated(loaded.model, caption)
            working = image.convert("RGB").resize(working_size(image.width, image.height), Image.Resampling.BICUBIC)
            with torch.inference_mode():
                indices = loaded.model.indices(image_to_tensor(working))
            stream = pack_payload(sampling, setting, indices.flatten().tolist())
            return Payload(streams=(stream,), mode=image.mode, width=image.width, height=image.height,
                           entropy_coder="constriction-range", model_hash=loaded.hash8)

        return ImageEncoder(qualities, encode)

    def payload_info(self, container: Container) -> dict[str, object]:
        setting, rows, columns, sampling, _ = _checked_payload(container)
        width, height = working_size(container.width, container.height)
        return {"working_size": f"{width}x{height}", "grid": f"{rows}x{columns}", "codebook": setting.codebook,
                "steps": sampling.steps, "guidance": sampling.guidance, "seed": sampling.seed}

    def decode(self, container: Container, *, device, options: Mapping[str, str]) -> Image.Image:
        setting, rows, columns, stored, indices = _checked_payload(container)  # before torch is imported
        quality = int(container.quality)
        sampling = sampling_options(options, stored)

        import torch

        from tcodec.models import tensor_to_image
        from tcodec.weights import check_hash, find_model

        if "model" in options:
            loaded = _load(options["model"], device)
            check_hash(loaded, container.model_hash)
        else:
            loaded = _load(str(find_model(container.model_hash, self.name)), device)
        if _model_quality(loaded) != quality:
            raise FormatError(f"the file says {_describe(quality)}, but its model {loaded.name} codes "
                              f"{_describe(_model_quality(loaded))}; the file is corrupt")
        width, height = working_size(container.width, container.height)
        grid = torch.tensor(indices, dtype=torch.int64).view(rows, columns)
        with torch.inference_mode(), progress_bar(sampling.steps, "sampling") as advance:
            latent = loaded.model.denoise(grid, container.caption, (height // LATENT_DOWNSAMPLING,
                                                                    width // LATENT_DOWNSAMPLING),
                                          sampling, on_step=lambda *_: advance())
            pixels = loaded.model.pixels(latent)
        image = tensor_to_image(pixels)
        if image.size != (container.width, container.height):
            image = image.resize((container.width, container.height), Image.Resampling.BICUBIC)
        return image.convert("L") if container.mode == "L" else image


def _checked_payload(container: Container) -> tuple[RateSetting, int, int, Sampling, list[int]]:
    """Everything a perco decoder reads from a file before any model: the rate setting,
    the grid, the stored sampling settings and the indices.

    Raises:
        FormatError: the file is not what a perco encoder writes.
    """
    quality = int(container.quality)
    if container.quality != quality or not 1 <= quality <= len(RATE_SETTINGS):
        raise FormatError(f"perco quality {container.quality:g} is not one of 1..{len(RATE_SETTINGS)}; "
                          "the file is corrupt")
    if len(container.streams) != 1 or container.entropy_coder != "constriction-range":
        raise FormatError("a perco file holds one range-coded stream; this one does not (the file is corrupt)")
    if container.model_hash is None:
        raise FormatError("this perco file carries no model hash; it was not written by tcodec")
    if container.caption is None:
        raise FormatError("this perco file carries no caption, which its decoder needs; the file is corrupt")
    setting = RATE_SETTINGS[quality - 1]
    rows, columns = grid_shape(container.width, container.height, setting)
    # every index decoded and checked before torch is imported: a bad file costs nothing
    stored, indices = unpack_payload(container.streams[0], setting, rows * columns)
    return setting, rows, columns, stored, indices


def _released(quality: int) -> str:
    if quality not in RELEASED_MODELS:
        raise InputError(f"no PerCo (SD) model was released for {_describe(quality)} (released: "
                         f"{', '.join(f'quality {q}' for q in RELEASED_MODELS)}); give -O model=FOLDER "
                         "with a model trained for it")
    return RELEASED_MODELS[quality]


def _model_quality(loaded) -> int:
    quality = setting_of_model(loaded.model.hyper_config)
    if not quality:
        config = loaded.model.hyper_config
        raise ModelError(f"model {loaded.name} has a hyper-encoder of grid {config['cfg_ss']} and "
                         f"{config['cfg_cs']} codes, none of PerCo (SD)'s rate settings")
    return quality


def _warn_if_truncated(model, caption: str) -> None:
    tokenizer = model.component("tokenizer")
    tokens = len(tokenizer(caption).input_ids)
    if tokens > tokenizer.model_max_length:
        warnings.warn(f"the caption is {tokens} tokens; the text encoder reads the first "
                      f"{tokenizer.model_max_length} (the file keeps it whole)", TcodecWarning, stacklevel=2)


def _load(name_or_path: str, device: str):
    with _loading:  # the threads of a folder conversion share one model (gigabytes each)
        return _load_once(name_or_path, device)


_loading = threading.Lock()


@lru_cache(maxsize=4)
def _load_once(name_or_path: str, device: str):
    from tcodec.models import resolve_device
    from tcodec.weights import load_model

    loaded = load_model(name_or_path)
    if loaded.config.get("architecture") != "perco":
        raise ModelError(f"model {loaded.name} is not a PerCo model")
    loaded.model.to(resolve_device(device))
    return loaded
