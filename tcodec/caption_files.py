"""Where captions for images come from on the command line.

In order of precedence: ``--caption TEXT`` (every image), a ``--captions FILE.jsonl``
mapping, and ``<image>.txt`` sidecar files (with ``--sidecar-captions``). ``--caption auto``
instead asks for a caption made from the image (:mod:`tcodec.captioner`) for every image
that the file and the sidecars leave without one.

A JSON Lines file has one object per line, ``{"file": "a/b.png", "caption": "..."}`` or
``{"file": ..., "captions": ["...", ...]}`` (the first is used). ``file`` is the path
relative to the input folder, or just the file name.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from tcodec.errors import InputError
from tcodec.fileio import read_input
from tcodec.limits import DEFAULT_LIMITS

MAX_SIDECAR_BYTES = 1 << 16  # a caption is at most 4096 bytes; leave room for whitespace


@dataclass
class CaptionSource:
    text: str | None = None
    by_path: dict[str, str] = field(default_factory=dict)
    sidecars: bool = False
    generate: bool = False  # --caption auto: images given no caption here get one made from their pixels

    def for_image(self, path: Path, root: Path | None = None) -> str | None:
        """The caption for the image at ``path`` (``root``: the folder being converted);
        None: none given (with :attr:`generate`, one is to be made from the image)."""
        if self.text is not None:
            return self.text
        if self.by_path:
            relative = path.relative_to(root).as_posix() if root else path.name
            caption = self.by_path.get(relative, self.by_path.get(path.name))
            if caption is not None:
                return caption
        if self.sidecars:
            sidecar = path.with_suffix(".txt")
            if sidecar.is_file():
                return _text(read_input(sidecar, MAX_SIDECAR_BYTES, raised_by=None), sidecar).strip()
        return None


def read_jsonl(path: Path) -> dict[str, str]:
    """Read a captions file into {file: caption}. Raises InputError on any bad line."""
    lines = _text(read_input(path, DEFAULT_LIMITS.max_input_bytes, raised_by=None), path).splitlines()
    captions: dict[str, str] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            caption = entry["caption"] if "caption" in entry else entry["captions"][0]
            if not isinstance(entry["file"], str) or not isinstance(caption, str):
                raise TypeError("file and caption must be strings")
        except (ValueError, KeyError, IndexError, TypeError, RecursionError) as error:
            raise InputError(f"{path}:{number}: not a caption entry ({error})") from None
        captions[entry["file"]] = caption
    return captions


def _text(data: bytes, path: Path) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InputError(f"{path}: cannot read captions ({error})") from None
