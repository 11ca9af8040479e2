"""Results already measured, in a JSON Lines file, so a bench can stop and go on.

A result's key is a hash of everything that decides it: the image's content (sha256
of its file), the codec's name, settings and library versions, the model hash its
files carry (learned backends), the quality, and the caption for codecs that use one. Anything else changed means a new
key, so a stale result is never reused; adding a codec or a quality reuses the rest.
Each result is appended and flushed as soon as it is measured; a line cut short by an
interruption is ignored when the file is read back.

Dataset-scope metrics (FID, KID, CMMD) need every image's features, not one number per
image: :class:`FeatureStore` keeps them beside the cache, one ``.npy`` file per image (the
reference's, by the image's sha256) or per result (the decoded image's, by its key), in a
folder per embedding and weights, so that a rerun reuses them as it reuses results.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

from tcodec.errors import OutputError

CACHE_FORMAT = 1  # bump when the meaning of a cached field changes


def result_key(image_sha256: str, codec_identity: dict[str, Any], quality: float, caption: str | None = None) -> str:
    """``caption``: only for codecs whose files depend on it (None for the others)."""
    identity = {"format": CACHE_FORMAT, "image": image_sha256, "codec": codec_identity, "quality": quality}
    if caption is not None:
        identity["caption"] = caption
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


class ResultCache:
    """Measured results by key, backed by an append-only JSON Lines file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.results: dict[str, dict[str, Any]] = {}
        if path.exists():
            self._read()

    def _read(self) -> None:
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except OSError as error:
            raise OutputError(f"{self.path}: cannot read the cache ({error.strerror or error})") from None
        for line in lines:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # the last line of an interrupted run
            if isinstance(record, dict) and "key" in record:
                self.results[record["key"]] = record

    def get(self, key: str) -> dict[str, Any] | None:
        return self.results.get(key)

    @staticmethod
    def _ends_with_newline(file) -> bool:
        file.seek(-1, 2)
        ends = file.read(1) == b"\n"
        file.seek(0, 2)
        return ends

    def add(self, record: dict[str, Any]) -> None:
        self.results[record["key"]] = record
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a+b") as file:
                file.seek(0, 2)
                if file.tell() and not self._ends_with_newline(file):
                    file.write(b"\n")  # after a line cut short by an interruption
                file.write((json.dumps(record, sort_keys=True) + "\n").encode())
        except OSError as error:
            raise OutputError(f"{self.path}: cannot write the cache ({error.strerror or error})") from None


class FeatureStore:
    """Rows of features by name (``reference-SHA256`` or a result's key), in ``folder``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    @staticmethod
    def beside(cache_path: Path) -> Path:
        """The features' folder beside a results cache: cache.jsonl -> cache-features/."""
        return cache_path.with_name(cache_path.stem + "-features")

    def path(self, name: str) -> Path:
        return self.folder / f"{name}.npy"

    def has(self, name: str) -> bool:
        return self.path(name).is_file()

    def save(self, name: str, rows) -> None:
        import numpy as np

        from tcodec.fileio import write_atomic

        buffer = io.BytesIO()
        np.save(buffer, np.asarray(rows), allow_pickle=False)
        write_atomic(self.path(name), buffer.getvalue(), overwrite=True)

    def load(self, name: str):
        import numpy as np

        try:
            return np.load(self.path(name), allow_pickle=False)
        except (OSError, ValueError) as error:
            raise OutputError(f"{self.path(name)}: cannot read stored features ({error}); "
                              "remove it to measure again") from None
