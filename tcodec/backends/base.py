"""The one interface every backend implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

from PIL import Image

from tcodec.format.container import Container
from tcodec.errors import InputError


@dataclass(frozen=True)
class Payload:
    """What a backend's encoder produces; the API adds backend, quality and caption."""

    streams: tuple[bytes, ...]
    mode: str
    width: int
    height: int
    entropy_coder: str = "none"
    model_hash: bytes | None = None


@dataclass(frozen=True)
class ImageEncoder:
    """One image, ready to be coded at any of ``qualities`` (ascending): what a rate
    search calls several times, so a backend can do the quality-independent work once.
    ``final``, where given, is the slower encode that makes the file itself (a higher
    effort); ``encode`` then only guides a rate search to its quality."""

    qualities: Sequence[float]
    encode: Callable[[float], Payload]
    final: Callable[[float], Payload] | None = None


def check_quality_range(name: str, quality: float, low: float, high: float, *, integer: bool,
                        meaning: str = "") -> None:
    """InputError unless ``quality`` is in [low, high] (and whole, for ``integer``);
    ``meaning`` says what the number means, for the message."""
    if not low <= quality <= high or (integer and quality != int(quality)):
        kind = "an integer" if integer else "a number"
        raise InputError(f"quality for {name} must be {kind} from {low:g} to {high:g}"
                         f"{f' ({meaning})' if meaning else ''}, not {quality:g}")


def quality_grid(low: float, high: float, *, integer: bool) -> Sequence[float]:
    """The qualities from low to high: integers, or hundredths (what the header keeps)."""
    if integer:
        return range(int(low), int(high) + 1)
    return [round(low + i / 100, 2) for i in range(round((high - low) * 100) + 1)]


class Backend(ABC):
    """A codec behind tcodec's CLI and API.

    A backend takes typed arguments and raises :class:`tcodec.errors.TcodecError`s; it
    never sees CLI objects. Class attributes describe it to the CLI (``tcodec backends``)
    and to the generic checks in :mod:`tcodec.api`.
    """

    name: ClassVar[str]  # stable; its code in tcodec.format.container.BACKEND_CODES goes in every file
    quality_range: ClassVar[tuple[float, float]]
    default_quality: ClassVar[float]
    integer_quality: ClassVar[bool] = False
    options: ClassVar[Mapping[str, str]] = {}  # encoder option name -> help text
    decode_options: ClassVar[Mapping[str, str]] = {}
    # How a caption is used: only stored ("store"), guides the encoder ("encoder", stored
    # only when asked), or needed by the decoder ("decoder", always stored).
    caption_use: ClassVar[Literal["store", "encoder", "decoder"]] = "store"
    # When stream 0 is a complete file in a standard format (e.g. "JPEG"), decoders can
    # hand it out unchanged.
    native_format: ClassVar[str | None] = None

    @abstractmethod
    def encode(
        self,
        image: Image.Image,
        *,
        quality: float,
        caption: str | None,
        device: str,
        options: Mapping[str, str],
    ) -> Payload:
        """Code an L or RGB image."""

    @abstractmethod
    def decode(self, container: Container, *, device: str, options: Mapping[str, str]) -> Image.Image:
        """Decode a container written by this backend to an L or RGB image."""

    def native_stream(self, container: Container) -> bytes:
        """Stream 0 as the standard file ``native_format`` names, after checking that it is
        one such file and agrees with the header (size, mode); only for backends that set
        ``native_format``.

        Raises:
            FormatError: it is not.
        """
        raise NotImplementedError(f"{self.name} has no native format")

    def payload_info(self, container: Container) -> dict[str, object]:
        """What the payload holds beyond the header, for ``tcodec info`` (read without
        decoding the image, without torch). Raises FormatError for a bad payload."""
        return {}

    # Qualities a bench measures by default: a handful across the useful range.
    bench_qualities: ClassVar[tuple[float, ...] | None] = None

    def bench_qualities_with(self, options: Mapping[str, str]) -> tuple[float, ...] | None:
        """The qualities a bench measures by default with these options (a model that
        codes one quality only, say); ``bench_qualities`` unless a backend knows better."""
        return self.bench_qualities

    def settings(self, options: Mapping[str, str]) -> dict[str, object]:
        """What the encoder does with ``options`` besides the quality, defaults spelt out
        (the bench records it, and a change means measuring again)."""
        return dict(options)

    def versions(self) -> dict[str, str]:
        """Versions of the libraries that decide this backend's output, beyond tcodec's."""
        return {}

    def model_hash(self, options: Mapping[str, str]) -> str | None:
        """The model-version hash (hex) of the weights an encode with ``options`` uses
        (None: no learned weights)."""
        return None

    def qualities(self) -> Sequence[float]:
        """Every quality this backend accepts, ascending."""
        return quality_grid(*self.quality_range, integer=self.integer_quality)

    def encoder(self, image: Image.Image, *, caption: str | None, device: str,
                options: Mapping[str, str]) -> ImageEncoder:
        """``image`` ready to be coded at several qualities; override to share work between them."""
        return ImageEncoder(self.qualities(), lambda quality: self.encode(
            image, quality=quality, caption=caption, device=device, options=options))
