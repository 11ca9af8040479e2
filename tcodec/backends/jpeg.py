"""The classic pipeline: baseline JPEG by libjpeg-turbo, through Pillow.

The ``.tcz`` payload is the JPEG file itself (one stream), so the original JPEG bytes
can always be handed back unchanged, and a decode gives exactly the pixels Pillow
decodes from those bytes.
"""

from __future__ import annotations

import io
from collections.abc import Mapping

from PIL import Image

from tcodec.backends.base import Backend, Payload
from tcodec.container import Container
from tcodec.errors import FormatError, InputError

# Pillow's subsampling argument: 0 = 4:4:4, 1 = 4:2:2, 2 = 4:2:0.
SUBSAMPLING = {"4:2:0": 2, "4:2:2": 1, "4:4:4": 0}


class JpegBackend(Backend):
    name = "jpeg"
    quality_range = (1, 100)
    default_quality = 75
    integer_quality = True
    options = {"subsampling": "chroma subsampling of colour images: 4:2:0 (default), 4:2:2 or 4:4:4"}
    native_format = "JPEG"

    def encode(self, image, *, quality, caption, device, options: Mapping[str, str]) -> Payload:
        subsampling = options.get("subsampling", "4:2:0")
        if subsampling not in SUBSAMPLING:
            raise InputError(f"subsampling must be one of {', '.join(SUBSAMPLING)}, not {subsampling!r}")
        buffer = io.BytesIO()
        # optimize=True: Huffman tables fitted to the image (smaller, same pixels)
        image.save(buffer, "JPEG", quality=int(quality), optimize=True, subsampling=SUBSAMPLING[subsampling])
        return Payload(streams=(buffer.getvalue(),), mode=image.mode, width=image.width, height=image.height)

    def decode(self, container: Container, *, device, options: Mapping[str, str]) -> Image.Image:
        if len(container.streams) != 1:
            raise FormatError(f"a jpeg .tcz holds 1 stream, this one {len(container.streams)}")
        try:
            image = Image.open(io.BytesIO(container.streams[0]), formats=["JPEG"])
            # Checked before decoding, so a JPEG claiming a huge size allocates nothing.
            if image.size != (container.width, container.height) or image.mode != container.mode:
                raise FormatError(
                    f"JPEG stream is {image.width}x{image.height} {image.mode}, the header says "
                    f"{container.width}x{container.height} {container.mode}"
                )
            image.load()
        except FormatError:
            raise
        except Exception as error:  # Pillow raises OSError, SyntaxError, ValueError, ...
            raise FormatError(f"the JPEG stream is corrupt ({error})") from None
        return image
