"""Reading input images as users have them, and bringing them to L or RGB.

Every backend codes 8-bit grayscale (``L``) or 8-bit ``RGB``. What is changed on the
way, and whether the change loses anything, is decided here once (README, "Inputs"):

- EXIF orientation is applied; other metadata (EXIF, ICC profile, XMP) is not kept.
- ``1`` becomes ``L``; ``P`` (palette), ``YCbCr``, ``LAB``, ``HSV`` become ``RGB``: lossless.
- An alpha channel is flattened onto white, with a note, unless it is fully opaque.
- 16-bit images (``I;16*``, ``I``) are reduced to 8 bits with rounding, with a note.
- ``CMYK`` becomes ``RGB`` without colour management, with a note.
- 32-bit float (``F``) images are refused.
- Animated or multi-page files: the first frame is coded, with a note.
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass, field

from PIL import Image, ImageOps, UnidentifiedImageError

from tcodec.errors import InputError, TcodecWarning
from tcodec.fileio import read_input
from tcodec.limits import DEFAULT_LIMITS, Limits

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp"})  # taken from folders
_LOSSLESS_TO_RGB = {"P", "YCbCr", "LAB", "HSV", "RGBX"}
_WITH_ALPHA = {"RGBA", "LA", "PA", "RGBa", "La"}
_SIXTEEN_BIT = {"I;16", "I;16L", "I;16B", "I;16N", "I"}


@dataclass
class LoadedImage:
    """An image ready for a backend, and what was changed to make it so."""

    image: Image.Image
    notes: list[str] = field(default_factory=list)


def load_image(source: str | os.PathLike | bytes | Image.Image, name: str | None = None,
               limits: Limits = DEFAULT_LIMITS) -> LoadedImage:
    """Open a path, encoded bytes or a PIL image and normalise it to L or RGB.

    The image's declared size is checked against ``limits.max_pixels`` before its
    pixels are decoded, so a small file that claims a huge image costs nothing.

    Raises:
        InputError: the file is missing, not a regular file, unreadable, not an image,
            over a limit, or in a mode tcodec refuses.
    """
    if isinstance(source, Image.Image):
        limits.check_pixels(source.width, source.height, name or "the image", InputError)
        return normalise(source)
    label = name or (str(source) if not isinstance(source, bytes) else "input")
    data = source if isinstance(source, bytes) else read_input(source, limits.max_input_bytes)
    try:
        with Image.open(io.BytesIO(data)) as image:
            limits.check_pixels(image.width, image.height, label, InputError)
            n_frames = getattr(image, "n_frames", 1)
            image.load()
            loaded = normalise(image)
    except UnidentifiedImageError:
        raise InputError(f"{label}: not an image format tcodec can read") from None
    except Image.DecompressionBombError:
        # only when a library caller raised the limit beyond Pillow's own (the CLI lifts Pillow's)
        raise InputError(f"{label}: larger than Pillow allows (raise PIL.Image.MAX_IMAGE_PIXELS too)") from None
    except (OSError, SyntaxError, ValueError) as error:
        # Pillow reports truncated and corrupt files as OSError (sometimes SyntaxError).
        raise InputError(f"{label}: cannot read image ({error})") from None
    if n_frames > 1:
        loaded.notes.append(f"{n_frames} frames; only the first is coded")
    return loaded


def normalise(image: Image.Image) -> LoadedImage:
    """Bring any Pillow image to L or RGB following the module's rules."""
    notes: list[str] = []
    image = ImageOps.exif_transpose(image)
    if image.mode == "P":
        # a palette may carry transparency; take it through RGBA to see
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    mode = image.mode
    if mode in ("L", "RGB"):
        return LoadedImage(image, notes)
    if mode == "1":
        return LoadedImage(image.convert("L"), notes)
    if mode in _LOSSLESS_TO_RGB:
        return LoadedImage(image.convert("RGB"), notes)
    if mode in _WITH_ALPHA:
        return LoadedImage(_flatten_alpha(image, notes), notes)
    if mode in _SIXTEEN_BIT:
        notes.append(f"{mode} image reduced to 8 bits")
        return LoadedImage(_to_8bit(image), notes)
    if mode == "CMYK":
        notes.append("CMYK converted to RGB without colour management")
        return LoadedImage(image.convert("RGB"), notes)
    raise InputError(f"images in Pillow mode {mode!r} are not supported; convert to 8-bit RGB first")


def _flatten_alpha(image: Image.Image, notes: list[str]) -> Image.Image:
    target = "L" if image.mode in ("LA", "La") else "RGB"
    rgba = image.convert("LA" if target == "L" else "RGBA")
    alpha = rgba.getchannel("A")
    if alpha.getextrema() != (255, 255):
        notes.append("alpha channel flattened onto white")
    background = Image.new(target, image.size, 255 if target == "L" else (255, 255, 255))
    background.paste(rgba.convert(target), mask=alpha)
    return background


def _to_8bit(image: Image.Image) -> Image.Image:
    # 65535 / 257 == 255 exactly, so round(x / 257) maps the 16-bit range onto 8 bits;
    # point() truncates towards zero, hence the + 0.5; convert("L") clips to 0..255.
    return image.convert("I").point(lambda value: value * (1 / 257) + 0.5).convert("L")


def warn_notes(loaded: LoadedImage, label: str) -> None:
    """Library callers see conversions as TcodecWarning (the CLI prints them itself)."""
    for note in loaded.notes:
        warnings.warn(f"{label}: {note}", TcodecWarning, stacklevel=3)
