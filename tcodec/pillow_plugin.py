"""Lets Pillow open ``.tcz`` files: after ``import tcodec``, ``Image.open("x.tcz")`` works.

Opening reads only the header (no torch); the image is decoded on ``load()``.
"""

from __future__ import annotations

from PIL import Image, ImageFile

from tcodec.api import read_info
from tcodec.format.container import MAGIC
from tcodec.limits import DEFAULT_LIMITS


def _accept(prefix: bytes) -> bool:
    return prefix[: len(MAGIC)] == MAGIC


class TczImageFile(ImageFile.ImageFile):
    format = "TCZ"
    format_description = "tcodec compressed image"

    def _open(self) -> None:
        data = self.fp.read(DEFAULT_LIMITS.max_input_bytes + 1)
        if len(data) > DEFAULT_LIMITS.max_input_bytes:
            raise SyntaxError(f"a .tcz file larger than {DEFAULT_LIMITS.max_input_bytes:,} bytes is refused")
        self._container = read_info(data)
        self._size = (self._container.width, self._container.height)
        self._mode = self._container.mode
        self.info["backend"] = self._container.backend
        self.info["quality"] = self._container.quality
        if self._container.caption is not None:
            self.info["caption"] = self._container.caption
        self.tile = []

    def load(self):
        if self._container is not None:
            from tcodec.api import decode_container  # deferred: opening needs no backend

            self.im = decode_container(self._container).im
            self._container = None
        return Image.Image.load(self)


Image.register_open(TczImageFile.format, TczImageFile, _accept)
Image.register_extension(TczImageFile.format, ".tcz")
Image.register_mime(TczImageFile.format, "image/x-tcz")
