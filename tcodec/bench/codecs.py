"""The codecs a bench compares, behind one interface.

- tcodec backends (``jpeg``, later ``taco``, ``perco``) go through the real ``.tcz`` path:
  :func:`tcodec.api.encode` gives the file's bytes, :func:`tcodec.api.decode`
  decodes them.
- Reference codecs a user would pick instead run through Pillow, each as a real file:
  ``webp``, ``avif``, ``jpeg2000``, ``jxl`` (pillow-jxl-plugin) and ``pillow-jpeg``.

Every codec states its exact settings and library versions; both go into the outputs
and into the cache key, so a new library version is measured again.
"""

from __future__ import annotations

import importlib.metadata
import io
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from functools import cache
from typing import Any

from PIL import Image, features

from tcodec import api
from tcodec.backends import REGISTRY, get_backend
from tcodec.backends.jpeg import SUBSAMPLING as JPEG_SUBSAMPLING
from tcodec.backends.base import check_quality_range
from tcodec.backends.jpeg import JpegBackend
from tcodec.errors import BackendError, InputError
from tcodec.images import LoadedImage

class BenchCodec(ABC):
    """One codec as the bench sees it: image in, file bytes out, and back."""

    name: str
    suffix: str  # of the files it writes
    default_qualities: tuple[float, ...]
    quality_meaning: str  # what a quality number means for this codec
    uses_caption: bool = False  # the caption changes the file (so it is part of the cache key)

    @abstractmethod
    def check_quality(self, quality: float) -> None:
        """Raise InputError if this codec has no such quality."""

    @abstractmethod
    def settings(self) -> dict[str, Any]:
        """Exact encoder settings besides the quality."""

    @abstractmethod
    def versions(self) -> dict[str, str]:
        """Library versions that decide the output."""

    @abstractmethod
    def encode(self, image: Image.Image, quality: float, caption: str | None = None) -> bytes:
        """The bytes of the file this codec writes for an L or RGB image."""

    @abstractmethod
    def decode(self, data: bytes) -> Image.Image:
        """Pixels decoded from a file's bytes (loaded, any mode)."""

    def model_hash(self, data: bytes) -> str | None:
        """The weights' identity recorded in a file, for learned codecs."""
        return None

    def current_model_hash(self) -> str | None:
        """The model hash this codec's files carry now (None: no model)."""
        return None

    def description(self) -> str:
        versions = ", ".join(f"{k} {v}" for k, v in self.versions().items())
        options = ", ".join(f"{k}={v}" for k, v in self.settings().items())
        return f"{self.name}: {options} ({versions})"


class TcodecCodec(BenchCodec):
    """A tcodec backend, measured through the ``.tcz`` files it writes."""

    suffix = ".tcz"

    def __init__(self, backend: str, device: str = "auto", options: dict[str, str] | None = None) -> None:
        self.name = backend
        self.device = device
        self.backend = get_backend(backend)
        self.options = api.checked_options(options, {**self.backend.options, **self.backend.decode_options}, backend)
        low, high = self.backend.quality_range
        self.quality_meaning = f"tcodec quality {low:g}-{high:g}"
        self.default_qualities = _backend_default_qualities(backend, self.options)
        # A caption that a backend only stores would measure the container, not the codec.
        self.uses_caption = self.backend.caption_use != "store"

    def check_quality(self, quality: float) -> None:
        api.check_quality(self.name, quality)

    def settings(self) -> dict[str, Any]:
        settings: dict[str, Any] = {"container": "tcz", "device": self.device, **self.backend.settings(self.options)}
        if self.uses_caption:
            settings["caption"] = "from --captions" if self.backend.caption_use == "encoder" else "stored"
        return settings

    def versions(self) -> dict[str, str]:
        from tcodec import __version__

        versions = {"tcodec": __version__, "Pillow": Image.__version__, **self.backend.versions()}
        for module in REGISTRY[self.name].requires:  # torch, compressai, ... for learned backends
            versions[module] = _distribution_version(module) or "unknown"
        return versions

    def encode(self, image: Image.Image, quality: float, caption: str | None = None) -> bytes:
        return api.encode(LoadedImage(image), self.name, quality, device=self.device, options=self.options,
                                 caption=caption if self.uses_caption else None)

    def decode(self, data: bytes) -> Image.Image:
        # the options a decoder also takes (taco's model) apply to both sides
        shared = {k: v for k, v in self.options.items() if k in self.backend.decode_options}
        return api.decode(data, device=self.device, options=shared)

    def model_hash(self, data: bytes) -> str | None:
        found = api.read_info(data).model_hash
        return found.hex() if found else None

    def current_model_hash(self) -> str | None:
        """The hash of the weights this backend encodes with now (its full hex; a file
        records the first 16 digits)."""
        full = self.backend.model_hash(self.options)
        return full[:16] if full else None


def _backend_default_qualities(name: str, options: dict[str, str]) -> tuple[float, ...]:
    backend = get_backend(name)
    chosen = backend.bench_qualities_with(options)
    if chosen:
        return tuple(float(q) for q in chosen)
    low, high = backend.quality_range
    if backend.integer_quality and high - low <= 12:
        return tuple(float(q) for q in range(int(low), int(high) + 1))
    return tuple(round(low + (high - low) * i / 5, 3) for i in range(6))


@dataclass
class PillowCodec(BenchCodec):
    """A reference codec written and read by Pillow (or a Pillow plugin)."""

    name: str
    pillow_format: str
    suffix: str
    default_qualities: tuple[float, ...]
    quality_meaning: str
    quality_range: tuple[float, float]
    fixed_settings: dict[str, Any]
    library_features: tuple[str, ...] = ()  # PIL.features names whose versions matter
    plugin: str | None = None  # distribution that registers the format with Pillow
    integer_quality: bool = True
    rgb_only: bool = False  # the format has no grayscale mode: give it RGB
    _plugin_loaded: bool = field(default=False, repr=False)

    def check_quality(self, quality: float) -> None:
        check_quality_range(self.name, quality, *self.quality_range, integer=self.integer_quality,
                            meaning=self.quality_meaning)

    def settings(self) -> dict[str, Any]:
        return dict(self.fixed_settings)

    def with_options(self, options: dict[str, str]) -> PillowCodec:
        """A copy with some settings changed, e.g. ``{"method": "4"}`` for WebP.

        Raises:
            InputError: a setting this codec does not have, or a value of the wrong type.
        """
        changed = dict(self.fixed_settings)
        for key, text in options.items():
            if key not in changed or key == "grayscale":
                known = ", ".join(k for k in self.fixed_settings if k != "grayscale")
                raise InputError(f"unknown option {key!r} for {self.name} (known: {known})")
            changed[key] = _typed_like(changed[key], text, f"{self.name}.{key}")
        if self.pillow_format == "JPEG" and changed["subsampling"] not in JPEG_SUBSAMPLING:
            raise InputError(f"{self.name}.subsampling must be one of {', '.join(JPEG_SUBSAMPLING)}")
        return replace(self, fixed_settings=changed)

    def versions(self) -> dict[str, str]:
        versions = {"Pillow": Image.__version__}
        for name in self.library_features:
            versions[_LIBRARY_NAMES.get(name, name)] = features.version(name) or "unknown"
        if self.name == "avif":
            from PIL import _avif  # which AV1 encoder and decoder libavif was built with

            versions["avif codecs"] = _avif.codec_versions()
        if self.plugin:
            versions[self.plugin] = importlib.metadata.version(self.plugin)
        return versions

    def encode(self, image: Image.Image, quality: float, caption: str | None = None) -> bytes:
        self._load_plugin()
        if self.rgb_only and image.mode != "RGB":
            image = image.convert("RGB")
        buffer = io.BytesIO()
        try:
            image.save(buffer, self.pillow_format, **self.save_arguments(image, quality))
        except (OSError, ValueError) as error:
            raise InputError(f"{self.name} cannot encode this image at quality {quality:g}: {error}") from None
        return buffer.getvalue()

    def save_arguments(self, image: Image.Image, quality: float) -> dict[str, Any]:
        arguments = {k: v for k, v in self.fixed_settings.items() if k != "grayscale"}
        if image.mode == "L":
            arguments.update(self.fixed_settings.get("grayscale", {}))
        if self.pillow_format == "JPEG2000":
            # quality is the target bits per pixel; OpenJPEG takes a ratio to the raw size
            raw_bits = 8 * len(image.getbands())
            arguments["quality_layers"] = [raw_bits / quality]
        else:
            arguments["quality"] = int(quality)
        if self.pillow_format == "JPEG":
            arguments["subsampling"] = JPEG_SUBSAMPLING[arguments["subsampling"]]
        return arguments

    def decode(self, data: bytes) -> Image.Image:
        self._load_plugin()
        image = Image.open(io.BytesIO(data), formats=[self.pillow_format])
        image.load()
        return image

    def _load_plugin(self) -> None:
        if self.plugin == "pillow-jxl-plugin" and not self._plugin_loaded:
            import pillow_jxl  # noqa: F401  registers JXL with Pillow

            self._plugin_loaded = True


_LIBRARY_NAMES = {"webp": "libwebp", "avif": "libavif", "jpg_2000": "openjpeg", "libjpeg_turbo": "libjpeg-turbo"}

def _steps(start: int, stop: int, step: int) -> tuple[float, ...]:
    return tuple(float(q) for q in range(start, stop + 1, step))


REFERENCE_CODECS: dict[str, PillowCodec] = {
    "webp": PillowCodec(
        name="webp", pillow_format="WEBP", suffix=".webp", default_qualities=_steps(0, 90, 10),
        quality_meaning="libwebp quality 0-100", quality_range=(0, 100),
        fixed_settings={"method": 6, "lossless": False}, library_features=("webp",), rgb_only=True),
    "avif": PillowCodec(
        name="avif", pillow_format="AVIF", suffix=".avif", default_qualities=_steps(20, 90, 10),
        quality_meaning="libavif quality 0-100", quality_range=(0, 100),
        fixed_settings={"speed": 6, "subsampling": "4:2:0", "codec": "aom", "range": "full", "max_threads": 1,
                        "grayscale": {"subsampling": "4:0:0"}},
        library_features=("avif",)),
    "jxl": PillowCodec(
        name="jxl", pillow_format="JXL", suffix=".jxl", default_qualities=_steps(10, 90, 10),
        quality_meaning="libjxl quality 0-100", quality_range=(0, 100),
        fixed_settings={"effort": 7, "lossless": False, "num_threads": 1}, plugin="pillow-jxl-plugin"),
    "jpeg2000": PillowCodec(
        name="jpeg2000", pillow_format="JPEG2000", suffix=".jp2",
        default_qualities=(0.1, 0.15, 0.25, 0.4, 0.6, 0.8, 1.0, 1.5, 2.0),
        quality_meaning="target bits per pixel (OpenJPEG rate mode)", quality_range=(0.01, 24),
        # mct=1: the colour transform, off in Pillow by default (+4.4 dB at 1 bpp on kodim01)
        fixed_settings={"irreversible": True, "mct": 1, "quality_mode": "rates", "grayscale": {"mct": 0}},
        library_features=("jpg_2000",), integer_quality=False),
    "pillow-jpeg": PillowCodec(
        name="pillow-jpeg", pillow_format="JPEG", suffix=".jpg", default_qualities=tuple(map(float, JpegBackend.bench_qualities)),
        quality_meaning="libjpeg quality 1-100", quality_range=(1, 100),
        fixed_settings={"optimize": True, "subsampling": "4:2:0"}, library_features=("libjpeg_turbo",)),
}
_REQUIRED_FEATURE = {"webp": "webp", "avif": "avif", "jpeg2000": "jpg_2000", "pillow-jpeg": "jpg"}


def _typed_like(current: Any, text: str, name: str) -> Any:
    """``text`` as a value of the type of ``current`` (bool, int, float or str)."""
    try:
        if isinstance(current, bool):
            return {"true": True, "1": True, "false": False, "0": False}[text.lower()]
        return type(current)(text)
    except (KeyError, ValueError):
        raise InputError(f"option {name}={text!r}: expected {type(current).__name__} like {current!r}") from None


def _distribution_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def codec_names() -> list[str]:
    return [*REGISTRY, *REFERENCE_CODECS]


@cache
def get_codec(name: str, device: str = "auto", options: tuple[tuple[str, str], ...] = ()) -> BenchCodec:
    """The codec called ``name``: a tcodec backend or a reference codec, with ``options``
    (a backend's ``-O`` options, or a reference codec's settings).

    Raises:
        BackendError: unknown, or its library is not installed.
        InputError: an unknown option or a bad value.
    """
    if name in REGISTRY:
        return TcodecCodec(name, device, dict(options))
    codec = REFERENCE_CODECS.get(name)
    if codec is None:
        raise BackendError(f"unknown codec {name!r} (available: {', '.join(codec_names())})")
    feature = _REQUIRED_FEATURE.get(name)
    if feature and not features.check(feature):
        raise BackendError(f"{name} is not available: this Pillow was built without {feature} support")
    if codec.plugin and _distribution_version(codec.plugin) is None:
        raise BackendError(f"{name} needs {codec.plugin}: pip install 'tcodec[bench]'")
    return codec.with_options(dict(options)) if options else codec
