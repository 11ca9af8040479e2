"""Building blocks of the ELIC/TACO networks.

Attribute names follow the official TACO code (effl-lab/TACO @ 004f488), including its
typo ``fushion``, so that its published checkpoints load with ``strict=True``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def conv(in_channels: int, out_channels: int, kernel_size: int = 5, stride: int = 2) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2)


def deconv(in_channels: int, out_channels: int, kernel_size: int = 5, stride: int = 2) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(in_channels, out_channels, kernel_size, stride=stride,
                              padding=kernel_size // 2, output_padding=stride - 1)


class ResidualBottleneck(nn.Module):
    """x + (1x1 -> 3x3 -> 1x1 at half width): ELIC's cheap residual block."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        half = channels // 2
        self.branch = nn.Sequential(
            nn.Conv2d(channels, half, 1), nn.ReLU(),
            nn.Conv2d(half, half, 3, padding=1), nn.ReLU(),
            nn.Conv2d(half, channels, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.branch(x)


class Injector(nn.Module):
    """Image features attend to text tokens; the result is added with a learned gain.

    The gain starts at zero, so an untrained adapter adds nothing from the text (the
    features are still layer-normalised: the official code carries the normalised
    features on, not its input).
    """

    def __init__(self, channels: int, text_dim: int, heads: int = 8) -> None:
        super().__init__()
        self.text_feature_dim_proj = nn.Linear(text_dim, channels)
        nn.init.kaiming_normal_(self.text_feature_dim_proj.weight)
        self.image_norm = nn.LayerNorm(channels)
        self.text_norm = nn.LayerNorm(channels)
        self.cross_attn = nn.MultiheadAttention(channels, heads, batch_first=True)
        self.gamma = nn.Parameter(torch.zeros(channels))

    def forward(self, image: Tensor, text: Tensor) -> Tensor:
        b, c, h, w = image.shape
        tokens = self.image_norm(image.flatten(2).transpose(1, 2))
        text = self.text_norm(self.text_feature_dim_proj(text))
        attended, _ = self.cross_attn(tokens, text, text, need_weights=False)
        return (tokens + self.gamma * attended).transpose(1, 2).reshape(b, c, h, w)


class Extractor(nn.Module):
    """Text tokens attend to image features (at the text width) and are updated."""

    def __init__(self, channels: int, text_dim: int, heads: int = 8) -> None:
        super().__init__()
        self.image_feature_dim_proj = nn.Linear(channels, text_dim)
        nn.init.kaiming_normal_(self.image_feature_dim_proj.weight)
        self.image_norm = nn.LayerNorm(text_dim)
        self.text_norm = nn.LayerNorm(text_dim)
        self.cross_attn = nn.MultiheadAttention(text_dim, heads, batch_first=True)

    def forward(self, text: Tensor, image: Tensor) -> Tensor:
        image = self.image_norm(self.image_feature_dim_proj(image.flatten(2).transpose(1, 2)))
        text = self.text_norm(text)
        attended, _ = self.cross_attn(text, image, image, need_weights=False)
        return text + attended


class ChannelContext(nn.Module):
    """Entropy parameters from the already decoded channel slices."""

    def __init__(self, in_channels: int, out_channels: int, hidden: tuple[int, int] = (224, 128)) -> None:
        super().__init__()
        self.fushion = nn.Sequential(
            nn.Conv2d(in_channels, hidden[0], 5, padding=2), nn.ReLU(),
            nn.Conv2d(hidden[0], hidden[1], 5, padding=2), nn.ReLU(),
            nn.Conv2d(hidden[1], out_channels, 5, padding=2),
        )

    def forward(self, decoded_slices: Tensor) -> Tensor:
        return self.fushion(decoded_slices)


class EntropyParameters(nn.Module):
    """1x1 convolutions fusing the contexts into (scales, means)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.fusion = nn.Sequential(
            nn.Conv2d(in_channels, out_channels * 5 // 3, 1), nn.ReLU(),
            nn.Conv2d(out_channels * 5 // 3, out_channels * 4 // 3, 1), nn.ReLU(),
            nn.Conv2d(out_channels * 4 // 3, out_channels, 1),
        )

    def forward(self, contexts: Tensor) -> Tensor:
        return self.fusion(contexts)


def checkerboard(height: int, width: int, device=None) -> tuple[Tensor, Tensor]:
    """Masks (1, 1, H, W) of the anchor positions ((h + w) odd, coded first) and the rest."""
    rows = torch.arange(height, device=device).view(-1, 1)
    cols = torch.arange(width, device=device).view(1, -1)
    anchor = ((rows + cols) % 2 == 1).view(1, 1, height, width)
    return anchor, ~anchor
