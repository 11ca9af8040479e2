"""PerCo (SD): a vector-quantised hyper-latent plus a caption, decoded by latent diffusion.

Careil et al., "Towards Image Compression with Perfect Realism at Ultra-Low Bitrates"
(ICLR 2024), as Nikolai10/PerCo (da3be39) rebuilt it on Stable Diffusion 2.1:

- encoder: SD's VAE maps the image to a latent (1/8 of its size, 4 channels, times the
  VAE's scaling factor); :class:`HyperEncoder` (ELIC-style blocks, N=192, M=320) maps
  that to a grid of features, and a cosine-similarity vector quantiser (codebook vectors
  of dimension 32) turns each cell into an index: the indices are all that is coded
  besides the caption;
- decoder: the indices' codebook vectors, projected back to M channels and nearest-
  upsampled to the latent's size, are concatenated with the noisy latent into the U-Net's
  extended first convolution (4 + M input channels); the caption conditions the U-Net
  through SD's text encoder; v-prediction, DDIM, classifier-free guidance against the
  empty caption's embedding; SD's VAE decodes the latent to pixels.

The networks are diffusers' and transformers' own classes except the hyper-encoder and
its quantiser, which are written here under the parameter names PerCo (SD) saves, so its
released ``hyper_enc/`` loads unchanged. What differs from PerCo (SD)'s code, and why
(``tools/perco_crosscheck.py`` measures each):

- the latent is the VAE posterior's mean, not a sample from it (PerCo (SD) draws one
  without a seed): the indices are then a function of the image;
- the quantiser's projection and cosine similarities run in float64 on the CPU, so the
  indices depend as little as possible on the device and the thread count;
- the initial noise is drawn by a CPU generator on every device (PerCo (SD) draws it on
  the sampling device), so CPU and CUDA start from the same noise;
- the image is not squashed to 512x512 (the backend keeps its aspect ratio:
  :func:`tcodec.backends.perco.working_size`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tcodec.models.layers import AttentionBlock, conv, half_width_branch


# --- the hyper-encoder and its quantiser (PerCo (SD)'s hyper_enc/) ------------------------


class _ResidualBottleneckBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.layers = half_width_branch(channels)  # PerCo (SD)'s name

    def forward(self, x: Tensor) -> Tensor:
        return x + self.layers(x)


class _CosineCodebook(nn.Module):
    """The buffers of vector_quantize_pytorch's CosineSimCodebook (one head), under its
    names; ``embed`` holds the unit-length codebook vectors, the others only training
    statistics (loaded, so that the file loads strictly, and unused)."""

    def __init__(self, size: int, dim: int) -> None:
        super().__init__()
        self.register_buffer("initted", torch.ones(1))
        self.register_buffer("cluster_size", torch.ones(1, size))
        self.register_buffer("embed_avg", torch.zeros(1, size, dim))
        self.register_buffer("embed", F.normalize(torch.randn(1, size, dim), dim=-1))


class CosineVectorQuantizer(nn.Module):
    """vector_quantize_pytorch's ``VectorQuantize(dim, codebook_size, use_cosine_sim=True,
    codebook_dim)`` at inference: project to ``codebook_dim``, normalise, take the codebook
    vector of largest cosine similarity (the first, on a tie); its vector projected back is
    the decoded feature."""

    def __init__(self, dim: int, codebook_size: int, codebook_dim: int) -> None:
        super().__init__()
        self.project_in = nn.Linear(dim, codebook_dim) if codebook_dim != dim else nn.Identity()
        self.project_out = nn.Linear(codebook_dim, dim) if codebook_dim != dim else nn.Identity()
        self._codebook = _CosineCodebook(codebook_size, codebook_dim)

    @property
    def codebook_size(self) -> int:
        return self._codebook.embed.shape[1]

    def indices(self, features: Tensor) -> Tensor:
        """(B, M, H, W) features -> (B, H, W) int64 indices, computed in float64 on the CPU."""
        x = features.detach().to("cpu", torch.float64).permute(0, 2, 3, 1)
        project = self.project_in
        if isinstance(project, nn.Linear):
            x = F.linear(x, project.weight.to("cpu", torch.float64), project.bias.to("cpu", torch.float64))
        x = F.normalize(x, dim=-1)
        similarity = x @ self._codebook.embed[0].to("cpu", torch.float64).T
        return similarity.argmax(dim=-1)

    def features(self, indices: Tensor) -> Tensor:
        """(B, H, W) indices -> (B, M, H, W) decoded features (on the quantiser's device)."""
        codes = self._codebook.embed[0][indices.to(self._codebook.embed.device)]
        return self.project_out(codes).permute(0, 3, 1, 2)


class HyperEncoder(nn.Module):
    """PerCo (SD)'s ``HyperEncoder``: the SD latent to a grid of ``cfg_ss`` per 512 pixels
    (64: no downsampling; each halving of the grid moves one 1x1 layer to a stride-2 5x5
    one), quantised to ``cfg_cs`` codebook vectors. Arguments as its config.json names them."""

    def __init__(self, in_channels: int = 4, N: int = 192, M: int = 320, codebook_dim: int = 32,
                 cfg_ss: int = 64, cfg_cs: int = 256) -> None:
        super().__init__()

        def reduce(cin: int, cout: int, keep: bool) -> nn.Module:
            return nn.Conv2d(cin, cout, 1) if keep else conv(cin, cout)

        self.backbone = nn.Sequential(
            reduce(in_channels, N, cfg_ss >= 16), *(_ResidualBottleneckBlock(N) for _ in range(3)),
            reduce(N, N, cfg_ss >= 32), *(_ResidualBottleneckBlock(N) for _ in range(3)), AttentionBlock(N),
            reduce(N, N, cfg_ss == 64), *(_ResidualBottleneckBlock(N) for _ in range(3)),
            nn.Conv2d(N, M, 1), AttentionBlock(M),
        )
        self.quantizer = CosineVectorQuantizer(M, cfg_cs, codebook_dim)

    def forward(self, latent: Tensor) -> Tensor:
        """Indices (B, H/f, W/f) of the scaled SD latent (B, 4, H, W)."""
        return self.quantizer.indices(self.backbone(latent))


# --- the model -------------------------------------------------------------------------


@contextmanager
def _without_onednn(device: torch.device):
    """oneDNN off for the CPU while any thread is inside (a process-wide switch: threads
    encoding at once keep it off until the last one leaves; a decode meanwhile is slower,
    not different in kind)."""
    global _onednn_holders, _onednn_before
    if device.type != "cpu":
        yield
        return
    with _onednn_switch:
        if not _onednn_holders:
            _onednn_before = torch.backends.mkldnn.enabled
            torch.backends.mkldnn.enabled = False
        _onednn_holders += 1
    try:
        yield
    finally:
        with _onednn_switch:
            _onednn_holders -= 1
            if not _onednn_holders:
                torch.backends.mkldnn.enabled = _onednn_before


_onednn_switch = threading.Lock()
_onednn_holders = 0
_onednn_before = True


class PercoModel:
    """The components of one PerCo (SD) model (nn.Modules), each loaded on first use by
    ``load(name)`` and moved to the model's device (an encoder needs only the VAE and the
    hyper-encoder: gigabytes less).

    ``load`` returns the component called ``vae``, ``text_encoder``, ``tokenizer``,
    ``unet`` (diffusers' UNet2DConditionModel whose ``conv_in`` is PerCo's extended
    convolution), ``scheduler_config`` or ``hyper_enc``.
    """

    def __init__(self, load: Callable[[str], object], hyper_config: dict) -> None:
        self._load = load
        self._components: dict[str, object] = {}
        self._loading = threading.Lock()  # threads of a folder conversion share one model: one copy of each
        self.hyper_config = hyper_config
        self.device = torch.device("cpu")
        self._empty_embedding: Tensor | None = None

    def to(self, device: torch.device | str) -> "PercoModel":
        """Components load onto ``device`` from now on (those loaded already are moved)."""
        self.device = torch.device(device)
        self._empty_embedding = None
        for name, value in self._components.items():
            if isinstance(value, nn.Module):
                self._components[name] = value.to(self.device, self._dtype(name))
        return self

    def _dtype(self, name: str) -> torch.dtype:
        # fp16 for the U-Net and the text encoder on CUDA; the VAE and the hyper-encoder
        # stay float32 everywhere (the indices must not depend on the device)
        return torch.float16 if self.device.type == "cuda" and name in ("unet", "text_encoder") else torch.float32

    def component(self, name: str):
        with self._loading:
            if name not in self._components:
                value = self._load(name)
                if isinstance(value, nn.Module):
                    value = value.to(self.device, self._dtype(name)).eval().requires_grad_(False)
                self._components[name] = value
            return self._components[name]

    # encoder

    def latent(self, pixels: Tensor) -> Tensor:
        """(1, 3, H, W) pixels in [0, 1] -> the scaled VAE latent (its posterior mean)."""
        vae = self.component("vae")
        posterior = vae.encode(pixels.to(self.device, torch.float32) * 2 - 1).latent_dist
        return posterior.mode() * vae.config.scaling_factor

    def indices(self, pixels: Tensor) -> Tensor:
        """(1, 3, H, W) pixels (sides multiples of the grid's cell) -> (H', W') int64 indices.
        On the CPU, without oneDNN: its convolutions sum in an order that depends on the
        thread count, torch's own do not, and the indices must be the same on every machine
        (the VAE encoder is then slower; the decoder keeps oneDNN's speed)."""
        with _without_onednn(self.device):
            return self.component("hyper_enc")(self.latent(pixels))[0]

    # decoder

    def text_embedding(self, caption: str) -> Tensor:
        """SD's text encoder on the caption, padded to the tokenizer's window (77 tokens)."""
        tokenizer = self.component("tokenizer")
        ids = tokenizer(caption, padding="max_length", max_length=tokenizer.model_max_length,
                        truncation=True, return_tensors="pt").input_ids
        return self.component("text_encoder")(ids.to(self.device))[0]

    def empty_embedding(self) -> Tensor:
        """The unconditional embedding of classifier-free guidance: the empty caption's, as
        PerCo (SD) trains (10% of captions dropped to "") and samples."""
        if self._empty_embedding is None:
            self._empty_embedding = self.text_embedding("")
        return self._empty_embedding

    def features(self, indices: Tensor) -> Tensor:
        """(H', W') indices -> (1, M, H', W') the quantised features the U-Net sees."""
        return self.component("hyper_enc").quantizer.features(indices[None])

    def initial_noise(self, latent_size: tuple[int, int], seed: int) -> Tensor:
        """The latent (1, 4, h, w) sampling starts from (before the scheduler's
        ``init_noise_sigma``): standard normal, from a CPU generator seeded with ``seed``."""
        generator = torch.Generator("cpu").manual_seed(seed)
        shape = (1, self.component("unet").config.in_channels, *latent_size)
        return torch.randn(shape, generator=generator, dtype=torch.float32).to(self.device)

    def denoise(self, indices: Tensor, caption: str, latent_size: tuple[int, int], sampling,
                on_step: Callable[[Tensor, Tensor, Tensor], None] | None = None) -> Tensor:
        """DDIM sampling of the latent (1, 4, h, w), conditioned on the indices and the
        caption; ``sampling`` gives ``steps``, ``guidance`` and ``seed``. ``on_step``, if
        given, is called after each step with the timestep, the U-Net's output (batch
        [empty caption, caption] when guided) and the latents after the step."""
        from diffusers.schedulers.scheduling_ddim import DDIMScheduler

        unet = self.component("unet")
        dtype = unet.dtype
        scheduler = DDIMScheduler.from_config(self.component("scheduler_config"))
        scheduler.set_timesteps(sampling.steps, device=self.device)
        guided = sampling.guidance > 1
        text = self.text_embedding(caption)
        if guided:
            text = torch.cat([self.empty_embedding(), text])
        latents = self.initial_noise(latent_size, sampling.seed) * scheduler.init_noise_sigma
        local = F.interpolate(self.features(indices).to(dtype), size=latent_size, mode="nearest")
        if guided:
            local = torch.cat([local] * 2)
        for t in scheduler.timesteps:
            model_input = torch.cat([latents] * 2) if guided else latents
            model_input = scheduler.scale_model_input(model_input, t).to(dtype)
            output = prediction = unet(torch.cat([model_input, local], dim=1), t,
                                       encoder_hidden_states=text.to(dtype)).sample
            if guided:
                unconditional, conditional = prediction.float().chunk(2)
                prediction = unconditional + sampling.guidance * (conditional - unconditional)
            latents = scheduler.step(prediction.float(), t, latents, eta=0.0).prev_sample
            if on_step is not None:
                on_step(t, output, latents)
        return latents

    def pixels(self, latents: Tensor) -> Tensor:
        """The VAE's decoding of a latent: (1, 3, H, W) in [0, 1]."""
        vae = self.component("vae")
        image = vae.decode(latents.to(torch.float32) / vae.config.scaling_factor).sample
        return (image / 2 + 0.5).clamp(0, 1)
