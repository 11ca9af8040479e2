"""Encoder-side refinement of one image's latents (``-O effort``).

The analysis transform gives latents that are good for images in general; for one
image, better ones are found by gradient descent on that image's own rate-distortion
cost, bits/pixel + λ·255²·MSE, through the frozen hyper-decoder, entropy model and
decoder (Yang, Bamler and Mandt, "Improving Inference for Neural Image Compression",
NeurIPS 2020). Rounding is relaxed by stochastic Gumbel annealing: each value is a soft
mix of rounding down and up, whose odds follow the distances and sharpen as the
temperature falls. The latents of the lowest real cost seen (rounded as the coder
rounds, with the coder's own entropy parameters) are then coded exactly as unrefined
ones are, so any decoder of the model reads them.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from tcodec.models.integer import replace_with_float_layers
from tcodec.models.layers import checkerboard
from tcodec.models.taco import TacoModel, scale_indexes, unpack_checkerboard

LEARNING_RATE = 0.02  # Adam's, decayed linearly to 0
TEMPERATURES = (0.3, 0.1)  # of the soft rounding, from the first step to the last
CHECK_EVERY = 8  # steps between measurements of the real cost (each costs a decode)
SEED = 0  # of the Gumbel noise: the same image and settings give the same file
WINDOW = 1024  # pixels: larger images are refined in windows of this size (memory)
MARGIN = 64  # pixels of a window's surroundings refined with it; multiples of 64 keep z aligned


class Refiner:
    """Refines latents for a model prepared for coding. Holds a copy whose
    entropy-parameter networks are plain float32 convolutions, which have gradients (an
    integer network's exact form rounds every activation); the real cost is measured
    with the coding model itself. Shareable between threads: nothing in it
    changes while it refines."""

    def __init__(self, model: TacoModel) -> None:
        self.model = model
        self.relaxed = copy.deepcopy(model)
        for network in self.relaxed.parameter_networks():
            replace_with_float_layers(network)
            network.float()  # float64 in a float model that codes
        self.relaxed.requires_grad_(False)

    def refine(self, x: Tensor, y: Tensor, inverse_gain: Tensor | None, lam: float, steps: int, *,
               size: tuple[int, int], progress: Callable[[], None] | None = None) -> tuple[Tensor, Tensor]:
        """Latents (y after the rate gains, z) for the padded image ``x`` (1, 3, H, W) whose
        real size is ``size`` (height, width; only real pixels count), starting from the
        analysis transform's ``y`` and its z; never of higher real cost than the start.

        Memory grows with the area refined at once, so an image larger than WINDOW x
        WINDOW pixels is refined window by window, each with MARGIN pixels of its
        surroundings (refined with it, then dropped), and the windows' latents joined.
        """
        height, width = x.shape[-2:]
        if height <= WINDOW and width <= WINDOW:
            return self._refine(x, y, inverse_gain, lam, steps, size=size, progress=progress)
        step, z_step = self.model.downsampling // 4, self.model.downsampling  # y is 1/16 of x, z 1/64
        with torch.no_grad():
            start = (y.float(), self.model.h_a(y).float())
        joined = (start[0].clone(), start[1].clone())
        for top, left, bottom, right in windows(height, width):
            outer = (max(top - MARGIN, 0), max(left - MARGIN, 0), min(bottom + MARGIN, height),
                     min(right + MARGIN, width))
            real = (min(outer[2], size[0]) - outer[0], min(outer[3], size[1]) - outer[1])
            if min(real) <= 0:  # padding only: nothing to refine for
                continue
            y_window, z_window = self._refine(
                x[..., outer[0]:outer[2], outer[1]:outer[3]],
                y[..., outer[0] // step:outer[2] // step, outer[1] // step:outer[3] // step],
                inverse_gain, lam, steps, size=real, progress=progress)
            for whole, part, s in ((joined[0], y_window, step), (joined[1], z_window, z_step)):
                core = part[..., (top - outer[0]) // s:(bottom - outer[0]) // s,
                            (left - outer[1]) // s:(right - outer[1]) // s]
                whole[..., top // s:bottom // s, left // s:right // s] = core
        distortion = _distortion(x, size, inverse_gain)
        pixels = size[0] * size[1]
        if self.real_cost(*joined, distortion, lam, pixels) < self.real_cost(*start, distortion, lam, pixels):
            return joined[0].to(x.dtype), joined[1].to(x.dtype)
        return start[0].to(x.dtype), start[1].to(x.dtype)

    def _refine(self, x: Tensor, y: Tensor, inverse_gain: Tensor | None, lam: float, steps: int, *,
                size: tuple[int, int], progress: Callable[[], None] | None = None) -> tuple[Tensor, Tensor]:
        model, relaxed = self.model, self.relaxed
        height, width = size
        medians = model.entropy_bottleneck._get_medians().view(1, -1, 1, 1).float()
        with torch.no_grad():
            z = model.h_a(y).float()
        y = y.detach().float().clone().requires_grad_(True)
        z = z.detach().clone().requires_grad_(True)
        optimizer = torch.optim.Adam([y, z], lr=LEARNING_RATE)
        noise = _Gumbel(SEED)
        anchor = checkerboard(*y.shape[-2:], device=y.device)[0]
        pixels = height * width

        distortion = _distortion(x, size, inverse_gain)
        best, best_cost = None, math.inf
        for step in range(steps + 1):
            if step % CHECK_EVERY == 0 or step == steps:
                cost = self.real_cost(y.detach(), z.detach(), distortion, lam, pixels)
                if cost < best_cost:
                    best, best_cost = (y.detach().clone(), z.detach().clone()), cost
            if step == steps:
                break
            temperature = TEMPERATURES[0] + (TEMPERATURES[1] - TEMPERATURES[0]) * step / steps
            z_hat = noise.round(z - medians, temperature) + medians
            bits = -torch.log2(relaxed.entropy_bottleneck.likelihood(z_hat)).sum()
            hyper = relaxed.h_s(z_hat)
            decoded: list[Tensor] = []
            for i, y_slice in enumerate(y.split(relaxed.config.slices, dim=1)):
                # training's masked form of the coding order: both passes at full size
                context = relaxed._channel_context(i, decoded)
                scales, means = relaxed._anchor_parameters(i, hyper, context)
                y_anchor = (noise.round(y_slice - means, temperature) + means) * anchor
                local = relaxed.local_context[i](y_anchor)
                scales_n, means_n = relaxed._nonanchor_parameters(i, hyper, context, local)
                scales, means = torch.where(anchor, scales, scales_n), torch.where(anchor, means, means_n)
                y_hat = torch.where(anchor, y_anchor, noise.round(y_slice - means, temperature) + means)
                bits = bits - torch.log2(relaxed.gaussian_conditional.likelihood(y_hat, scales, means)).sum()
                decoded.append(y_hat)
            loss = bits / pixels + lam * 255**2 * distortion(torch.cat(decoded, dim=1), relaxed)
            for group in optimizer.param_groups:
                group["lr"] = LEARNING_RATE * (1 - step / steps)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if progress is not None:
                progress()
        return best[0].to(x.dtype), best[1].to(x.dtype)

    @torch.no_grad()
    def real_cost(self, y: Tensor, z: Tensor, distortion, lam: float, pixels: int) -> float:
        """bits/pixel + λ·255²·MSE of coding (y, z) as the coder would: z and y rounded
        around the coding model's medians and means, y's bits under the table scale each
        value is coded with (the frozen tables' own rounding aside)."""
        model = self.model
        z_hat = model._dequantize_z(model.z_symbols(z))
        scales, means = coding_parameters(model, model.h_s(z_hat), y)
        y_hat = torch.round(y - means) + means
        bits = -(torch.log2(model.entropy_bottleneck.likelihood(z_hat.float())).sum()
                 + torch.log2(model.gaussian_conditional.likelihood(y_hat, scales, means)).sum())
        return (bits / pixels + lam * 255**2 * distortion(y_hat, model)).item()


def _distortion(x: Tensor, size: tuple[int, int], inverse_gain: Tensor | None):
    """MSE(decoded, x) over the real pixels, for a latent after the rate gains and a decoder."""
    height, width = size
    target = x[..., :height, :width].float()

    def distortion(y_hat: Tensor, decoder: TacoModel) -> Tensor:
        y_hat = y_hat if inverse_gain is None else y_hat * inverse_gain
        decoded = decoder.g_s(y_hat.contiguous(memory_format=torch.channels_last))  # the transforms' layout
        return F.mse_loss(decoded[..., :height, :width], target)
    return distortion


def windows(height: int, width: int) -> list[tuple[int, int, int, int]]:
    """The (top, left, bottom, right) windows a padded image of this size is refined in."""
    if height <= WINDOW and width <= WINDOW:
        return [(0, 0, height, width)]
    return [(top, left, min(top + WINDOW, height), min(left + WINDOW, width))
            for top in range(0, height, WINDOW) for left in range(0, width, WINDOW)]


def window_count(height: int, width: int) -> int:
    """How many windows an image of this (real) size is refined in, padded as coding pads it."""
    step = TacoModel.downsampling
    return len(windows(-(-height // step) * step, -(-width // step) * step))


@torch.no_grad()
def coding_parameters(model: TacoModel, hyper: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """The scale (its table entry: what the coder uses) and the mean of every value of
    ``y``, as coding ``y`` computes them; float32."""
    table = model.gaussian_conditional.scale_table.float()
    passes: list[tuple[Tensor, Tensor]] = []

    def record(scales: Tensor, means: Tensor, y_pass: Tensor) -> Tensor:
        passes.append((table[scale_indexes(model.gaussian_conditional, scales).long()], means.float()))
        return torch.round(y_pass - means) + means

    model.walk_latent(hyper, y, record)
    size = y.shape[-2:]
    anchors, nonanchors = passes[::2], passes[1::2]
    scales = torch.cat([unpack_checkerboard(a[0], n[0], size) for a, n in zip(anchors, nonanchors)], dim=1)
    means = torch.cat([unpack_checkerboard(a[1], n[1], size) for a, n in zip(anchors, nonanchors)], dim=1)
    return scales, means


class _Gumbel:
    """Soft rounding with Gumbel noise from a seeded generator (on the CPU, so the noise
    is the same on every device)."""

    def __init__(self, seed: int) -> None:
        self.generator = torch.Generator().manual_seed(seed)

    def round(self, v: Tensor, temperature: float) -> Tensor:
        """floor(v) + the Gumbel-softmax weight of rounding up, with log-odds
        (atanh(1 - r) - atanh(r)) / temperature for the fraction r: even at r = 1/2,
        certain at r = 0 or 1."""
        floor = torch.floor(v).detach()
        fraction = (v - floor).clamp(1e-4, 1 - 1e-4)
        logits = torch.stack([-torch.atanh(fraction), -torch.atanh(1 - fraction)], dim=-1) / temperature
        uniform = torch.rand(logits.shape, generator=self.generator).clamp_(1e-10, 1 - 1e-10).to(v.device)
        return floor + torch.softmax(logits - torch.log(-torch.log(uniform)), dim=-1)[..., 1]
