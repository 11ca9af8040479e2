"""Building blocks of the ELIC/TACO networks.

Attribute names follow the official TACO code (effl-lab/TACO @ 004f488), including its
typo ``fushion``, so that its published checkpoints load with ``strict=True``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def ste_round(x: Tensor) -> Tensor:
    """Round in the forward pass, identity gradient in the backward pass."""
    return torch.round(x) - x.detach() + x


def conv(in_channels: int, out_channels: int, kernel_size: int = 5, stride: int = 2) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2)


def deconv(in_channels: int, out_channels: int, kernel_size: int = 5, stride: int = 2) -> nn.ConvTranspose2d:
    kind = StrideOneTransposedConv if stride == 1 else nn.ConvTranspose2d
    return kind(in_channels, out_channels, kernel_size, stride=stride,
                padding=kernel_size // 2, output_padding=stride - 1)


class StrideOneTransposedConv(nn.ConvTranspose2d):
    """A stride-1 transposed convolution run as the convolution it equals (kernel flipped,
    in and out swapped): the same weights, but in float64 on the CPU torch's transposed
    kernel is slower (``benchmarks/bench_taco_layers.py`` compares them)."""

    def forward(self, x: Tensor) -> Tensor:
        return transposed_as_convolution(self, x, self.weight, self.bias)


def transposed_as_convolution(layer: nn.ConvTranspose2d, x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """A stride-1 transposed ``layer`` with ``weight`` and ``bias`` (its own, or an integer
    layer's), run as the convolution it equals."""
    return F.conv2d(x, weight.flip(-1, -2).transpose(0, 1), bias, padding=layer.kernel_size[0] - 1 - layer.padding[0])


class PhaseTransposedConv(nn.ConvTranspose2d):
    """A 5x5, stride-2 transposed convolution (padding 2, output padding 1) that, when no
    gradient is needed, runs as a 3x3 convolution whose output channels are the four output
    phases (row and column parity), then a pixel shuffle. The same sums and weights; for the
    synthesis's last layer (64 to 3 channels), where torch's transposed kernel is slow
    (``benchmarks/bench_taco_layers.py`` compares them)."""

    # For output phase p (0: even, 1: odd) and 3x3 window position j (input offset j - 1),
    # the 5x5 kernel tap used; 5 points at a zero row/column padded onto the kernel.
    _TAPS = ((4, 2, 0), (5, 3, 1))

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(in_channels, out_channels, 5, stride=2, padding=2, output_padding=1)

    def forward(self, x: Tensor) -> Tensor:
        if torch.is_grad_enabled():
            return super().forward(x)
        return F.pixel_shuffle(F.conv2d(x, self.phase_weight(), self.bias.repeat_interleave(4), padding=1), 2)

    def phase_weight(self) -> Tensor:
        """(out · 4, in, 3, 3): output channel c·4 + 2·row phase + column phase, pixel
        shuffle's order."""
        taps = torch.tensor(self._TAPS, device=self.weight.device)
        padded = F.pad(self.weight, (0, 1, 0, 1))  # (in, out, 6, 6)
        gathered = padded[:, :, taps[:, :, None, None], taps[None, None, :, :]]  # (in, out, 2, 3, 2, 3)
        return gathered.permute(1, 2, 4, 0, 3, 5).reshape(self.out_channels * 4, self.in_channels, 3, 3)


def half_width_branch(channels: int) -> nn.Sequential:
    """1x1 -> ReLU -> 3x3 -> ReLU -> 1x1 at half the width: the residual branch of ELIC's
    blocks and of the attention block's units."""
    half = channels // 2
    return nn.Sequential(
        nn.Conv2d(channels, half, 1), nn.ReLU(inplace=True),
        nn.Conv2d(half, half, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(half, channels, 1),
    )


class ResidualBottleneck(nn.Module):
    """x + (1x1 -> 3x3 -> 1x1 at half width): ELIC's cheap residual block."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.branch = half_width_branch(channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.branch(x).add_(x)  # in place: the branch's last output is not needed for its gradient

    def add_in_bands_(self, x: Tensor, rows: int = 32) -> Tensor:
        """``forward(x)`` written over ``x``, band by band of ``rows`` rows: for inference,
        on an activation that nothing else holds. The 3x3 convolution's output and the
        branch's output then exist for one band at a time, not at full size: at half
        resolution a band is about an eighth of the full-size tensors (by the shapes), so
        far fewer fresh pages; where pages are fresh (the first image of a process) that
        makes the block faster (``benchmarks/bench_taco_layers.py`` measures it). Same
        values as ``forward``.

        The first 1x1 convolution runs at full size first, because a band's 3x3 needs the
        row above the band, which the band before has already overwritten in ``x``.
        """
        reduce, _, spread, _, expand = self.branch
        reduced = F.relu_(reduce(x))
        height = x.shape[-2]
        for top in range(0, height, rows):
            bottom = min(top + rows, height)
            above, below = max(top - 1, 0), min(bottom + 1, height)
            band = reduced[..., above:below, :]
            if above == top or below == bottom:  # the image's edge: the 3x3's zero padding
                band = F.pad(band, (0, 0, int(above == top), int(below == bottom)))
            hidden = F.relu_(F.conv2d(band, spread.weight, spread.bias, padding=(0, 1)))
            x[..., top:bottom, :].add_(expand(hidden))
        return x


class _ResidualUnit(nn.Module):
    """relu(x + (1x1 -> 3x3 -> 1x1 at half width)), inside AttentionBlock."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = half_width_branch(channels)  # named as in CompressAI's

    def forward(self, x: Tensor) -> Tensor:
        return F.relu_(self.conv(x).add_(x))


class AttentionBlock(nn.Module):
    """x + a(x)·sigmoid(b(x)): the simplified attention of Cheng et al. (CVPR 2020), as
    CompressAI's ``AttentionBlock`` (same parameter names, same values), written here so
    that coding does not import CompressAI."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv_a = nn.Sequential(*(_ResidualUnit(channels) for _ in range(3)))
        self.conv_b = nn.Sequential(*(_ResidualUnit(channels) for _ in range(3)), nn.Conv2d(channels, channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.conv_a(x) * torch.sigmoid(self.conv_b(x)) + x


def run_layer(layer: nn.Module, x: Tensor) -> Tensor:
    """``layer(x)`` for the layers of a transform's sequence, whose inputs are their own
    activations: when no gradient is needed, residual blocks add into ``x`` in bands."""
    if isinstance(layer, ResidualBottleneck) and not torch.is_grad_enabled():
        return layer.add_in_bands_(x)
    return layer(x)


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
        if torch.is_grad_enabled():  # the gain's gradient needs ``attended`` as it is
            out = tokens + self.gamma * attended
        else:  # the same values, without two more image-sized tensors
            out = attended.mul_(self.gamma).add_(tokens)
        return out.transpose(1, 2).reshape(b, c, h, w)


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
        text = self.text_norm(text)
        pixels = image.flatten(2).transpose(1, 2)  # (B, T, C) tokens
        if torch.is_grad_enabled():
            features = self.image_norm(self.image_feature_dim_proj(pixels))
            attended, _ = self.cross_attn(text, features, features, need_weights=False)
        else:
            attended = self._attend_folded(text, pixels)
        return text + attended

    def _attend_folded(self, text: Tensor, pixels: Tensor) -> Tensor:
        """``cross_attn(text, f, f)`` for ``f = image_norm(image_feature_dim_proj(pixels))``
        without f's keys and values: the key and value projections (the text width squared
        per image token, 90% of this layer's work) fold into the few text queries.

        For a query r (the head's query times its key weights) and a token's normalised
        features f = g ⊙ (u - μ)/σ + β, u = W p + b: r·f = (((r ⊙ g) W)·p + (r ⊙ g)·b - μ Σ(r ⊙ g))/σ
        + r·β, and the last term is the same for every token, so softmax ignores it. The
        values are linear in f, so the weighted sum of f is taken first, at the pixels' width.
        Used when no gradient is needed (coding); training runs the layers as they are.
        """
        attention, projection, norm = self.cross_attn, self.image_feature_dim_proj, self.image_norm
        batch, n_text, width = text.shape
        heads = attention.num_heads
        head_width = width // heads
        w_query, w_key, w_value = attention.in_proj_weight.chunk(3)
        b_query, _, b_value = attention.in_proj_bias.chunk(3)  # the key bias adds the same to every score

        # the normalisation's statistics per token: μ, 1/σ (B, T, 1)
        _, mean, inverse_std = torch.native_layer_norm(projection(pixels), (width,), None, None, norm.eps)
        # tokens as (p, 1, μ)/σ: one product gives every score, its transpose the sums over tokens
        tokens = torch.cat([pixels, torch.ones_like(mean), mean], dim=-1) * inverse_std  # (B, T, C + 2)

        query = F.linear(text, w_query, b_query).view(batch, n_text, heads, head_width)
        reach = torch.einsum("blhd,hde->bhle", query, w_key.view(heads, head_width, width)) * head_width**-0.5
        reach = reach * norm.weight  # (B, H, L, E): r ⊙ g
        coefficients = torch.cat([reach @ projection.weight, (reach @ projection.bias)[..., None],
                                  -reach.sum(-1, keepdim=True)], dim=-1)  # (B, H, L, C + 2)
        scores = coefficients.flatten(1, 2) @ tokens.transpose(1, 2)  # (B, H·L, T)
        # Σ_t P f_t = g ⊙ (W Σ_t (P/σ) p_t + b Σ_t P/σ - Σ_t (P/σ) μ_t) + β
        sums = (scores.softmax(dim=-1) @ tokens).view(batch, heads, n_text, -1)
        pooled = (F.linear(sums[..., :-2], projection.weight, projection.bias * sums[..., -2:-1])
                  - sums[..., -1:]) * norm.weight + norm.bias
        values = torch.einsum("bhle,hde->blhd", pooled, w_value.view(heads, head_width, width)) + b_value.view(heads, head_width)
        return attention.out_proj(values.reshape(batch, n_text, width))


class ChannelContext(nn.Module):
    """Entropy parameters from the already decoded channel slices."""

    def __init__(self, in_channels: int, out_channels: int, hidden: tuple[int, int] = (224, 128)) -> None:
        super().__init__()
        self.fushion = nn.Sequential(
            nn.Conv2d(in_channels, hidden[0], 5, padding=2), nn.ReLU(inplace=True),
            nn.Conv2d(hidden[0], hidden[1], 5, padding=2), nn.ReLU(inplace=True),
            nn.Conv2d(hidden[1], out_channels, 5, padding=2),
        )

    def forward(self, decoded_slices: Tensor) -> Tensor:
        return self.fushion(decoded_slices)


class EntropyParameters(nn.Module):
    """1x1 convolutions fusing the contexts into (scales, means)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.fusion = nn.Sequential(
            nn.Conv2d(in_channels, out_channels * 5 // 3, 1), nn.ReLU(inplace=True),
            nn.Conv2d(out_channels * 5 // 3, out_channels * 4 // 3, 1), nn.ReLU(inplace=True),
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


# --- the checkerboard, packed ------------------------------------------------------------
#
# When coding, each pass works on half the positions only. ``pack`` gathers them into a
# (..., H, W/2) tensor, row by row in raster order (the order their symbols are coded in),
# so that 1x1 convolutions run on the half that is used.

def pack(x: Tensor, anchor: bool) -> Tensor:
    """The anchor (or non-anchor) positions of (..., H, W), H and W even, as (..., H, W/2)."""
    if anchor:
        return _interleave_rows(x[..., 0::2, 1::2], x[..., 1::2, 0::2])
    return _interleave_rows(x[..., 0::2, 0::2], x[..., 1::2, 1::2])


def unpack_into(full: Tensor, packed: Tensor, anchor: bool) -> Tensor:
    """Writes ``pack``'s output back at its positions of ``full``; returns ``full``."""
    even, odd = _split_rows(packed)
    full[..., 0::2, int(anchor)::2] = even
    full[..., 1::2, 1 - int(anchor)::2] = odd
    return full


def _split_rows(packed: Tensor) -> tuple[Tensor, Tensor]:
    """A packed (..., H, W/2) tensor's even and odd rows, each (..., H/2, W/2)."""
    height, half_width = packed.shape[-2:]
    pairs = packed.reshape(*packed.shape[:-2], height // 2, 2, half_width)
    return pairs[..., 0, :], pairs[..., 1, :]


def _interleave_rows(even: Tensor, odd: Tensor) -> Tensor:
    """The inverse of ``_split_rows``."""
    return torch.stack([even, odd], dim=-2).flatten(-3, -2)


def checkerboard_context(conv: nn.Conv2d, anchors: Tensor, weight: Tensor | None = None,
                         bias: Tensor | None = None) -> Tensor:
    """``pack(conv(unpack(anchors)), anchor=False)`` for a 5x5, padding-2 convolution,
    computed from the taps that meet anchors only: 24% of the dense multiply-adds.
    ``weight`` and ``bias``, when given, stand in for the layer's own (integer layers).

    An output at a non-anchor position sees anchors through the taps whose row and column
    offsets differ in parity: 3x2 taps (even rows) and 2x3 taps (odd rows). Per output
    phase, that is two small convolutions of the two anchor phases.
    """
    if conv.kernel_size != (5, 5) or conv.padding != (2, 2):
        raise ValueError("checkerboard_context takes a 5x5 convolution with padding 2")
    weight = conv.weight if weight is None else weight
    bias = conv.bias if bias is None else bias
    even, odd = _split_rows(anchors)  # anchors of even rows (odd columns), of odd rows
    even_row_taps, odd_row_taps = weight[..., 0::2, 1::2], weight[..., 1::2, 0::2]  # 3x2, 2x3
    # F.pad: (left, right, top, bottom)
    top_left = (F.conv2d(F.pad(even, (1, 0, 1, 1)), even_row_taps, bias)
                + F.conv2d(F.pad(odd, (1, 1, 1, 0)), odd_row_taps))
    bottom_right = (F.conv2d(F.pad(even, (1, 1, 0, 1)), odd_row_taps, bias)
                    + F.conv2d(F.pad(odd, (0, 1, 1, 1)), even_row_taps))
    return _interleave_rows(top_left, bottom_right)
