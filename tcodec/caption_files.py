"""Where captions for images come from on the command line.

In order of precedence: ``--caption TEXT`` (every image), a ``--captions FILE.jsonl``
mapping, and ``<image>.txt`` sidecar files (with ``--sidecar-captions``).

A JSON Lines file has one object per line, ``{"file": "a/b.png", "caption": "..."}`` or
``{"file": ..., "captions": ["...", ...]}`` (the first is used). ``file`` is the path
relative to the input folder, or just the file name.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from tcodec.errors import InputError


@dataclass
class CaptionSource:
    text: str | None = None
    by_path: dict[str, str] = field(default_factory=dict)
    sidecars: bool = False

    def for_image(self, path: Path, root: Path | None = None) -> str | None:
        """The caption for the image at ``path`` (``root``: the folder being converted)."""
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
                try:
                    return sidecar.read_text(encoding="utf-8").strip()
                except (OSError, UnicodeDecodeError) as error:
                    raise InputError(f"{sidecar}: cannot read caption ({error})") from None
        return None


def read_jsonl(path: Path) -> dict[str, str]:
    """Read a captions file into {file: caption}. Raises InputError on any bad line."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: cannot read captions ({error})") from None
    captions: dict[str, str] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            caption = entry["caption"] if "caption" in entry else entry["captions"][0]
            if not isinstance(entry["file"], str) or not isinstance(caption, str):
                raise TypeError("file and caption must be strings")
        except (ValueError, KeyError, IndexError, TypeError) as error:
            raise InputError(f"{path}:{number}: not a caption entry ({error})") from None
        captions[entry["file"]] = caption
    return captions
