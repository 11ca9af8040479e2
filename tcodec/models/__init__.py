"""nn.Modules of the learned backends, and the few tensor helpers they share.

Torch lives here and below; nothing outside imports this package at start-up.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from tcodec.errors import InputError



def resolve_device(device: str) -> torch.device:
    """``auto`` is CUDA when torch sees a GPU, else the CPU; the one place this is decided."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("--device cuda was asked for, but torch sees no CUDA GPU here")
    return torch.device(device)


def image_to_tensor(image: Image.Image) -> torch.Tensor:
    """An RGB image as a (1, 3, H, W) float tensor in [0, 1], channels-last: the pixels'
    own order, which the networks run in, so no transposing copy is made."""
    pixels = torch.from_numpy(np.array(image, dtype=np.uint8))  # (H, W, 3), a writable copy
    return pixels.to(torch.float32).div_(255).permute(2, 0, 1).unsqueeze(0)


def tensor_to_image(x: torch.Tensor) -> Image.Image:
    """(1, 3, H, W) in [0, 1] to an RGB image, rounding to the nearest 8-bit value
    (no transposing copy when ``x`` is channels-last, as the networks' output is)."""
    pixels = x[0].clamp(0, 1).mul_(255).round_().to(torch.uint8).permute(1, 2, 0)
    return Image.fromarray(pixels.contiguous().cpu().numpy(), "RGB")


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad bottom and right to a multiple of ``multiple`` by repeating the edge pixels
    (the official code pads with zeros; repeating edges costs fewer bits)."""
    height, width = x.shape[-2:]
    if height % multiple == 0 and width % multiple == 0:
        return x
    return F.pad(x, (0, -width % multiple, 0, -height % multiple), mode="replicate")
