"""The Python API: encode an image to ``.tcz`` bytes, decode them back, read a header.

>>> import tcodec
>>> from PIL import Image
>>> data = tcodec.encode(Image.new("RGB", (64, 48), "teal"), backend="jpeg", quality=90)
>>> tcodec.read_info(data).backend, tcodec.decode(data).size
('jpeg', (64, 48))
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping

from PIL import Image

from tcodec.coding import captions
from tcodec.backends import get_backend
from tcodec.backends.base import check_quality_range
from tcodec.format.container import Container, check_image_size, pack, unpack
from tcodec.errors import FormatError, InputError
from tcodec.fileio import read_input
from tcodec.images import LoadedImage, load_image, warn_notes
from tcodec.limits import DEFAULT_LIMITS, Limits
from tcodec.rate_search import byte_budget, highest_fitting

DEFAULT_BACKEND = "jpeg"
_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")

ImageSource = str | os.PathLike | bytes | Image.Image
TczSource = str | os.PathLike | bytes


def encode(
    image: ImageSource | LoadedImage,
    backend: str = DEFAULT_BACKEND,
    quality: float | None = None,
    *,
    caption: str | None = None,
    store_caption: bool | None = None,
    device: str = "auto",
    options: Mapping[str, str] | None = None,
    max_bytes: int | None = None,
    target_bpp: float | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> bytes:
    """Encode an image (path, encoded bytes or PIL image) to the bytes of a ``.tcz`` file.

    Args:
        image: what to encode; converted to L or RGB as the README's "Inputs" says
            (conversions that lose something are reported as ``TcodecWarning``). A
            :class:`tcodec.images.LoadedImage` is taken as it is, its notes left to the caller.
        backend: ``"jpeg"``, ``"taco"`` or ``"perco"``; see ``tcodec backends``.
        quality: in the backend's range; None takes its default.
        caption: text describing the image.
        store_caption: keep the caption in the file; None follows the backend
            (jpeg: stored when given; taco: guides the encoder, not stored; perco: stored).
        device: ``"auto"``, ``"cpu"`` or ``"cuda"`` (learned backends only).
        options: backend-specific settings, e.g. ``{"subsampling": "4:4:4"}`` for jpeg.
        max_bytes: instead of ``quality``: the highest quality whose whole file is at most
            this many bytes (found by search, see :mod:`tcodec.rate_search`).
        target_bpp: the same ceiling given in bits per pixel.
        limits: the most pixels and input bytes accepted, checked before any decoding.

    Raises:
        InputError: unreadable image, over a limit, bad quality, option or device; a budget
            no quality fits.
        BackendError: unknown backend, or its dependencies are missing.
        ModelError: a learned backend's weights are missing.
    """
    if isinstance(image, LoadedImage):
        loaded = image
    else:
        loaded = load_image(image, limits=limits)
        warn_notes(loaded, "input" if not isinstance(image, (str, os.PathLike)) else str(image))
    width, height = loaded.image.size
    limits.check_pixels(width, height, "the image", InputError)
    check_image_size(width, height, InputError)  # what a .tcz can hold, before any coding
    codec = get_backend(backend)
    budget = byte_budget(max_bytes, target_bpp, loaded.image.width, loaded.image.height, quality)
    quality = check_quality(backend, quality)
    options = checked_options(options, codec.options, backend)
    check_device(device)
    if caption is not None:
        captions.check(caption)  # before any work, whether or not the file keeps it
    coded_caption = captions.encode(caption) if _caption_to_store(codec, caption, store_caption) else None
    encoder = codec.encoder(loaded.image, caption=caption, device=device, options=options)

    def file_at(quality: float, encode=encoder.encode) -> bytes:
        payload = encode(quality)
        return pack(Container(
            backend=backend,
            quality=quality,
            width=payload.width,
            height=payload.height,
            mode=payload.mode,
            streams=payload.streams,
            entropy_coder=payload.entropy_coder,
            model_hash=payload.model_hash,
            coded_caption=coded_caption,
        ))

    final = encoder.final or encoder.encode
    if budget is None:
        return file_at(quality, final)
    quality, data = highest_fitting(encoder.qualities, file_at, budget)
    if encoder.final is None:
        return data
    # the search ran on the fast encode; the final one (refined) must fit the budget too
    refined = file_at(quality, final)
    return refined if len(refined) <= budget else data


def decode(source: TczSource, *, device: str = "auto", options: Mapping[str, str] | None = None,
           limits: Limits = DEFAULT_LIMITS) -> Image.Image:
    """Decode a ``.tcz`` file (path or bytes) to a PIL image (mode L or RGB).

    Raises:
        FormatError: not a valid ``.tcz`` file.
        InputError: the path cannot be read, the image is over ``limits``, or an unknown option.
        BackendError: the file's backend is not available here.
        ModelError: a learned backend's weights for this file are not installed.
    """
    check_device(device)
    return decode_container(read_info(source, limits), device=device, options=options, limits=limits)


def decode_container(container: Container, *, device: str = "auto",
                     options: Mapping[str, str] | None = None, limits: Limits = DEFAULT_LIMITS) -> Image.Image:
    """Decode a parsed container; ``options`` as the backend's ``decode_options`` allow.
    The header's image size is checked against ``limits`` before the backend runs."""
    limits.check_pixels(container.width, container.height, "the file's image", InputError)
    codec = get_backend(container.backend)
    image = codec.decode(container, device=device,
                         options=checked_options(options, codec.decode_options, container.backend))
    if image.size != (container.width, container.height) or image.mode != container.mode:
        raise FormatError(f"decoded image is {image.size} {image.mode}, the header says "
                          f"{(container.width, container.height)} {container.mode}")
    return image


def read_info(source: TczSource, limits: Limits = DEFAULT_LIMITS) -> Container:
    """Parse and verify a ``.tcz`` file, caption included, without decoding its image
    (no torch needed).

    Raises:
        FormatError: not a valid ``.tcz`` file (its caption included).
        InputError: the path cannot be read, or is over ``limits.max_input_bytes``.
    """
    container = unpack(source if isinstance(source, bytes) else read_input(source, limits.max_input_bytes))
    if container.coded_caption is None:
        return container
    # decoded only after unpack checked the CRC: the caption decoder sees only vouched-for bytes
    return dataclasses.replace(container, caption=captions.decode(*container.coded_caption))


def native_bytes(container: Container) -> tuple[str, bytes] | None:
    """The original standard file inside a container (e.g. the JPEG), if it has one,
    checked by the backend to be one such file that matches the header.

    Raises:
        FormatError: the stream is not the file the header describes.
    """
    codec = get_backend(container.backend)
    return (codec.native_format, codec.native_stream(container)) if codec.native_format else None


def check_quality(backend: str, quality: float | None) -> float:
    codec = get_backend(backend)
    if quality is None:
        return codec.default_quality
    check_quality_range(backend, quality, *codec.quality_range, integer=codec.integer_quality)
    # the header keeps hundredths: the encoder must use the quality the decoder will read
    return int(quality) if codec.integer_quality else round(float(quality), 2)


def checked_options(options: Mapping[str, str] | None, known: Mapping[str, str], backend: str) -> dict:
    """``options`` as a dict, if every key is one of ``known``; else InputError."""
    options = dict(options or {})
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise InputError(f"unknown option {unknown[0]!r} for {backend} (known: {', '.join(known) or 'none'})")
    return options


def check_device(device: str) -> None:
    if not _DEVICE.fullmatch(device):
        raise InputError(f"device must be auto, cpu or cuda[:N], not {device!r}")


def _caption_to_store(codec, caption: str | None, store_caption: bool | None) -> bool:
    if codec.caption_use == "decoder":
        if caption is None:
            raise InputError(f"{codec.name} needs a caption: its decoder is conditioned on it")
        if store_caption is False:
            raise InputError(f"{codec.name} always stores the caption: its decoder needs it")
        return True
    if store_caption is None:
        store_caption = codec.caption_use == "store"
    return caption is not None and store_caption
