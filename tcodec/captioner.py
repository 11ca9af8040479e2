"""Captions made from the image itself: ``tcodec encode --caption auto`` and :func:`caption`.

PerCo conditions its decoder on a caption; its reference code (Nikolai10/PerCo) makes one
with BLIP-2 ``Salesforce/blip2-opt-2.7b-coco`` (transformers' ``Blip2Processor`` and
``Blip2ForConditionalGeneration``, greedy, at most 32 tokens). This module does the same,
behind a small interface (:class:`Captioner`), so that another captioner can be added
without touching its callers.

The weights come only through :mod:`tcodec.weights` (models.lock, the cache,
``tcodec models fetch``): transformers reads the installed folder with
``local_files_only=True`` (it never downloads) and its safetensors only (a folder holding
only pickles is refused, never unpickled). torch and transformers are imported on first
use, so importing this module costs nothing.

>>> from tcodec.captioner import caption            # doctest: +SKIP
>>> tcodec.encode(image, "perco", caption=caption(image))  # doctest: +SKIP
"""

from __future__ import annotations

import importlib.util
import threading
from abc import ABC, abstractmethod
from functools import cache
from pathlib import Path

from PIL import Image

from tcodec.errors import BackendError, ModelError, ModelNotFoundError, one_line

DEFAULT_CAPTIONER = "blip2-opt-2.7b-coco"  # PerCo's
# PerCo's limit on a caption's length. Its code passes max_length=32, which earlier
# transformers' BLIP-2 counted past the image queries (it added their number to it);
# transformers 5 counts the 32 queries in max_length, leaving no room for text, so the
# limit is given as new tokens
MAX_NEW_TOKENS = 32
# the keyword that asks the command line for generated captions (README, "Captions")
AUTO = "auto"


class Captioner(ABC):
    """Writes a caption for an image; loads its model on first use, once per process."""

    name: str

    @abstractmethod
    def check(self) -> None:
        """Raise ModelNotFoundError if the weights are not installed, BackendError if what
        runs them is not; cheap (nothing is loaded), so that a run fails before it reads
        any image."""

    @abstractmethod
    def caption(self, image: Image.Image, device: str = "auto") -> str:
        """The caption of ``image``: the same image always gets the same caption.

        Raises:
            ModelError: the weights are missing, damaged or do not load.
            BackendError: torch or transformers is not installed.
        """


class Blip2Captioner(Captioner):
    """BLIP-2 (a ViT, the Q-Former, a language model) from a Hugging Face folder that
    models.lock lists, decoding greedily as PerCo does."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._processor = self._model = None
        self._device = None
        self._lock = threading.Lock()  # folder runs caption from several threads: one load, one generate at a time

    def check(self) -> None:
        self._folder()
        _require_transformers()

    def _folder(self) -> Path:
        """The installed folder, every file models.lock lists there."""
        from tcodec import weights

        entry = weights.lock_entry(self.name)
        folder = weights.model_folder(self.name)
        missing = [f.path for f in entry.files if not weights.has_model_file(folder, f.path)]
        if missing:
            more = f" and {len(missing) - 1} more of its files" if len(missing) > 1 else ""
            raise ModelNotFoundError(
                f"captioner {self.name} is not installed: looked for {folder / missing[0]}{more}; pass a caption "
                f"(--caption/--captions/--sidecar-captions) or get the captioner with: tcodec models fetch {self.name}"
            )
        return folder

    def caption(self, image: Image.Image, device: str = "auto") -> str:
        from tcodec.api import check_device

        check_device(device)
        _require_transformers()
        import torch

        with self._lock:
            processor, model = self._loaded(device)
            inputs = processor(images=image.convert("RGB"), return_tensors="pt").to(self._device)
            with torch.no_grad():
                # greedy, whatever the folder's generation_config.json says: one image, one caption
                ids = model.generate(**inputs, max_new_tokens=MAX_NEW_TOKENS, do_sample=False, num_beams=1)
        return processor.batch_decode(ids, skip_special_tokens=True)[0].strip()

    def _loaded(self, device: str):
        from tcodec.models import resolve_device

        if self._model is None:
            self._processor, self._model = self._load()
        wanted = resolve_device(device)
        if self._device != wanted:  # moving walks every module: not on every call
            self._model.to(wanted)
            self._device = wanted
        return self._processor, self._model

    def _load(self):
        from tcodec import weights

        folder = self._folder()
        problems = weights.verify(self.name)
        if problems:
            raise ModelError(f"captioner {self.name}: {problems[0]}; "
                             f"get it again with: tcodec models fetch {self.name}")
        from safetensors import SafetensorError
        # from their modules: transformers' lazy top-level names race between the threads of a folder run
        from transformers.models.blip_2.modeling_blip_2 import Blip2ForConditionalGeneration
        from transformers.models.blip_2.processing_blip_2 import Blip2Processor
        from transformers.utils import logging

        logging.set_verbosity_error()  # keep library chatter and progress bars off the CLI's stderr
        logging.disable_progress_bar()
        try:
            processor = Blip2Processor.from_pretrained(folder, local_files_only=True)
            model = Blip2ForConditionalGeneration.from_pretrained(
                folder, local_files_only=True, use_safetensors=True)
        except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as error:
            raise ModelError(f"captioner {self.name} could not be loaded from {folder} ({one_line(error, 200)}); "
                             f"get it again with: tcodec models fetch {self.name}") from None
        if getattr(model.config, "image_token_index", 0) is None:
            # a config written before transformers put BLIP-2's image queries in the token
            # sequence (the processor then adds <image> to the tokenizer, the id later
            # configs name): the positions the query embeddings take
            model.config.image_token_index = processor.tokenizer.convert_tokens_to_ids("<image>")
        # float32 whatever the files hold, as PerCo runs it: float16 is slow or missing on CPUs
        return processor, model.float().eval().requires_grad_(False)


def _require_transformers() -> None:
    missing = [module for module in ("torch", "transformers") if importlib.util.find_spec(module) is None]
    if missing:
        raise BackendError(f"generated captions need {' and '.join(missing)}: pip install 'tcodec[perco]'")


@cache
def get_captioner(name: str = DEFAULT_CAPTIONER) -> Captioner:
    """The captioner called ``name`` (a models.lock entry of backend ``captioner``); one per
    process, so a folder of images loads its model once."""
    from tcodec.weights import read_lock

    known = [entry.name for entry in read_lock().values() if entry.backend == "captioner"]
    if name not in known:
        raise ModelNotFoundError(f"unknown captioner {name!r} (known: {', '.join(known)})")
    return Blip2Captioner(name)  # every captioner models.lock lists so far is a BLIP-2 folder


def caption(image: Image.Image, device: str = "auto", name: str = DEFAULT_CAPTIONER) -> str:
    """A caption for ``image`` (the pixels to be coded, e.g. :func:`tcodec.images.load_image`'s),
    made by the captioner ``name``: what ``--caption auto`` stores or encodes with."""
    return get_captioner(name).caption(image, device)
