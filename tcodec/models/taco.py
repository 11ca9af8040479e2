"""TACO: an ELIC learned image codec whose encoder is guided by a caption.

Lee et al., "Neural Image Compression with Text-guided Encoding for both Pixel-level
and Perceptual Fidelity", ICML 2024. A port of the official code (effl-lab/TACO @
004f488): the same layers under the same names, so its checkpoints load strictly.

::

    x ──g_a(x, text)──> y ──h_a──> z ──[factorized prior]──> ẑ ──h_s──> hyper
                        │                                              │
                        └─ 5 channel slices × checkerboard (anchor, then the rest):
                           scales, means = f(hyper, decoded slices, decoded anchors)
                           ŷ = round(y − mean) + mean ──g_s──> x̂

The caption enters only the encoder (an injector at 1/4 resolution, an extractor and a
second injector at 1/8). tcodec adds, for its own weights, optional per-channel gains
on y that select the rate from one model (Cui et al., CVPR 2021); the official
single-rate configuration has none.

Determinism: during coding, the networks that compute entropy parameters run in
float64, or, in a model with ``integer_bits`` (tcodec-taco-v4 on), as integer networks
that float32 computes exactly (:mod:`tcodec.models.integer`); every scale is snapped to
an index of the model's scale table, whose integer CDFs (frozen by
:meth:`TacoModel.update`) are what the coder uses. Encoder and decoder run the same
function, :meth:`TacoModel._code_latent`.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from tcodec.models.entropy_models import FactorizedPrior, GaussianPrior
from tcodec.models.integer import FINAL, SIGNED, IntegerLayer, calibrate, integer_layers, integer_network
from tcodec.models.layers import (
    AttentionBlock,
    ChannelContext,
    EntropyParameters,
    Extractor,
    Injector,
    PhaseTransposedConv,
    ResidualBottleneck,
    checkerboard,
    checkerboard_context,
    conv,
    deconv,
    pack,
    run_layer,
    ste_round,
    unpack_into,
)


@dataclass(frozen=True)
class TacoConfig:
    """Architecture of a TACO model; the official one is the default."""

    N: int = 192
    M: int = 320
    slices: tuple[int, ...] = (16, 16, 32, 64, 192)
    text_dim: int = 512
    residual_blocks: int = 3  # per resolution stage
    context_channels: tuple[int, int] = (224, 128)  # hidden widths of the channel context
    rates: int = 0  # quality levels with gain vectors; 0: single-rate (official)
    # The Gaussian conditional's scale table (smallest, largest, entries; log-spaced), frozen
    # into the model's CDFs on export. Every scale is coded under the next entry up, which
    # costs bits when entries are far apart: CompressAI's default (the official models,
    # tcodec-taco-v1, v2) steps 13% per entry; (0.11, 64, 160) steps 4%, which made
    # tcodec-taco-v2's Kodak files 0.2-0.6% smaller with the same pixels (scales beyond 64
    # are rare and cost next to nothing).
    scale_table: tuple[float, float, int] = (0.11, 256.0, 64)
    # 0: the entropy-parameter networks code in float64. Otherwise they are integer networks
    # (tcodec.models.integer) with activations of this many bits, exact in float32.
    integer_bits: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "slices", tuple(self.slices))
        object.__setattr__(self, "context_channels", tuple(self.context_channels))
        low, high, levels = self.scale_table
        object.__setattr__(self, "scale_table", (float(low), float(high), int(levels)))
        if sum(self.slices) != self.M:
            raise ValueError(f"slices {self.slices} must add up to M={self.M}")

    def to_dict(self) -> dict:
        return {**asdict(self), "slices": list(self.slices), "context_channels": list(self.context_channels),
                "scale_table": list(self.scale_table)}

    @classmethod
    def from_dict(cls, data: dict) -> "TacoConfig":
        return cls(**data)


def rate_lambda(quality, lambdas: tuple[float, float], rates: int):
    """The λ of ``quality`` (a number or a tensor) of a model with ``rates`` qualities trained
    with λ = lambdas[0] at quality 1 and lambdas[1] at the top one, log-spaced between."""
    low, high = lambdas
    return low * (high / low) ** ((quality - 1) / (rates - 1))


def scale_indexes(gaussian_conditional: nn.Module, scales: Tensor) -> Tensor:
    """The table row of each scale: the first entry at or above it (the last for larger
    ones). The same integers as CompressAI's ``build_indexes``, which makes one pass over
    the tensor per table entry; a binary search costs the same at any table size."""
    scales = gaussian_conditional.lower_bound_scale(scales)
    table = gaussian_conditional.scale_table[:-1].to(scales.dtype)  # float32 -> float64 is exact
    return torch.searchsorted(table, scales.contiguous()).int()


class AnalysisTransform(nn.Module):
    def __init__(self, config: TacoConfig) -> None:
        super().__init__()
        N, M, text = config.N, config.M, config.text_dim

        def blocks():
            return [ResidualBottleneck(N) for _ in range(config.residual_blocks)]

        self.analysis_transform = nn.Sequential(
            conv(3, N), *blocks(),
            conv(N, N), *blocks(),
            Injector(N, text), AttentionBlock(N),
            conv(N, N), *blocks(),
            Extractor(N, text), Injector(N, text),
            conv(N, M), AttentionBlock(M),
        )

    def forward(self, x: Tensor, text: Tensor) -> Tensor:
        for layer in self.analysis_transform:
            if isinstance(layer, Injector):
                x = layer(x, text)
            elif isinstance(layer, Extractor):
                text = layer(text, x)
            else:
                x = run_layer(layer, x)
        return x


class SynthesisTransform(nn.Module):
    def __init__(self, config: TacoConfig) -> None:
        super().__init__()
        N, M = config.N, config.M

        def blocks():
            return [ResidualBottleneck(N) for _ in range(config.residual_blocks)]

        self.synthesis_transform = nn.Sequential(
            AttentionBlock(M), deconv(M, N), *blocks(),
            deconv(N, N), AttentionBlock(N), *blocks(),
            deconv(N, N), *blocks(),
            PhaseTransposedConv(N, 3),  # = deconv(N, 3), faster to run
        )

    def forward(self, y_hat: Tensor) -> Tensor:
        x = y_hat
        for layer in self.synthesis_transform:
            x = run_layer(layer, x)
        return x


class HyperAnalysis(nn.Module):
    def __init__(self, config: TacoConfig) -> None:
        super().__init__()
        N, M = config.N, config.M
        self.reduction = nn.Sequential(
            nn.Conv2d(M, N, 3, padding=1), nn.ReLU(inplace=True), conv(N, N), nn.ReLU(inplace=True), conv(N, N),
        )

    def forward(self, y: Tensor) -> Tensor:
        return self.reduction(y)


class HyperSynthesis(nn.Module):
    def __init__(self, config: TacoConfig) -> None:
        super().__init__()
        M = config.M
        self.increase = nn.Sequential(
            deconv(config.N, M), nn.ReLU(inplace=True), deconv(M, M * 3 // 2), nn.ReLU(inplace=True),
            deconv(M * 3 // 2, M * 2, kernel_size=3, stride=1),
        )

    def forward(self, z_hat: Tensor) -> Tensor:
        return self.increase(z_hat)


def _compressai():
    """CompressAI's entropy models and its model base (for its buffer-resizing loader)."""
    with warnings.catch_warnings():  # CompressAI 1.2.8 scripts a function at import: torch warns
        warnings.simplefilter("ignore", FutureWarning)
        import compressai.entropy_models
        import compressai.models.base
    return compressai


class TacoModel(nn.Module):
    """TACO with configurable width, slices and rate gains; see the module docstring.

    ``trainable``: the priors are CompressAI's, which train and freeze their tables
    (:meth:`update`, :meth:`aux_loss`); otherwise they are :mod:`tcodec.models.entropy_models`'
    frozen ones, which code, refine latents and load the same state dict without
    importing CompressAI (what a coding process loads).
    """

    downsampling = 64  # g_a halves the size 4 times, h_a 2 more: inputs are padded to multiples of it

    def __init__(self, config: TacoConfig = TacoConfig(), *, trainable: bool = True) -> None:
        super().__init__()
        self.config = config
        self.trainable = trainable
        N, M, slices = config.N, config.M, config.slices
        self.g_a = AnalysisTransform(config)
        self.g_s = SynthesisTransform(config)
        self.h_a = HyperAnalysis(config)
        self.h_s = HyperSynthesis(config)
        self.local_context = nn.ModuleList(nn.Conv2d(c, c * 2, 5, padding=2) for c in slices)
        self.channel_context = nn.ModuleList(
            ChannelContext(sum(slices[:i]), c * 2, config.context_channels) if i else None
            for i, c in enumerate(slices)
        )
        self.entropy_parameters_anchor = nn.ModuleList(
            EntropyParameters(M * 2 + (c * 2 if i else 0), c * 2) for i, c in enumerate(slices)
        )
        self.entropy_parameters_nonanchor = nn.ModuleList(
            EntropyParameters(M * 2 + (c * 4 if i else c * 2), c * 2) for i, c in enumerate(slices)
        )
        if trainable:
            entropy_models = _compressai().entropy_models
            self.gaussian_conditional = entropy_models.GaussianConditional(None)
            self.entropy_bottleneck = entropy_models.EntropyBottleneck(N)
        else:
            self.gaussian_conditional = GaussianPrior()
            self.entropy_bottleneck = FactorizedPrior(N)
        if config.integer_bits:
            self._make_integer(config.integer_bits)
        if config.rates:
            # log-gains keep the gains positive; quality 1 (coarse) .. rates (fine)
            levels = torch.linspace(-1.0, 1.0, config.rates).view(-1, 1).repeat(1, M)
            self.rate_log_gain = nn.Parameter(levels.clone())
            self.rate_log_inverse_gain = nn.Parameter(-levels.clone())

    def update(self, scale_table: Tensor | None = None, force: bool = False, update_quantiles: bool = False) -> bool:
        """Freeze the integer CDFs, by default over the config's scale table, and the
        integer networks' weights (if any). Trainable models only."""
        base = self._compressai_base("update")
        if scale_table is None:
            scale_table = _compressai().models.base.get_scale_table(*self.config.scale_table)
        for layer in self.integer_layers():
            layer.freeze()
        return base.update(self, scale_table, force=force, update_quantiles=update_quantiles)

    def aux_loss(self) -> Tensor:
        """The loss that fits the factorized prior's tail quantiles (trainable models)."""
        return self._compressai_base("aux_loss").aux_loss(self)

    def load_state_dict(self, state_dict, strict: bool = True):
        """Loads either kind of prior's tables, whatever their sizes; a trainable model
        also takes CompressAI's older names of the factorized prior's tensors."""
        if self.trainable:
            return _compressai().models.base.CompressionModel.load_state_dict(self, state_dict, strict=strict)
        return super().load_state_dict(state_dict, strict=strict)

    def _compressai_base(self, what: str):
        if not self.trainable:
            raise TypeError(f"{what} needs a trainable TacoModel (CompressAI's priors); this one only codes")
        return _compressai().models.base.CompressionModel

    # --- integer entropy-parameter networks ----------------------------------------------

    def _make_integer(self, bits: int) -> None:
        self.h_s.increase = integer_network(self.h_s.increase, bits, SIGNED, quantize_input=True)
        for i in range(len(self.config.slices)):
            self.local_context[i] = integer_network(self.local_context[i], bits, SIGNED, quantize_input=True)
            if i:
                context = self.channel_context[i]
                context.fushion = integer_network(context.fushion, bits, SIGNED, quantize_input=True)
            for parameters in (self.entropy_parameters_anchor[i], self.entropy_parameters_nonanchor[i]):
                parameters.fusion = integer_network(parameters.fusion, bits, FINAL, quantize_input=False)

    def integer_layers(self) -> list[IntegerLayer]:
        return integer_layers(self.parameter_networks())

    def derived_state_keys(self) -> set[str]:
        """State-dict entries that a packaged model leaves out because they follow from
        others: the integer layers' float weights (their frozen integers times the steps)."""
        return {f"{name}.{key}" for name, module in self.named_modules() if isinstance(module, IntegerLayer)
                for key in ("weight", "bias")}

    def calibrate_integer_networks(self, run) -> None:
        """Set the activation grids from the float networks' values while ``run()`` runs
        the model (:func:`tcodec.models.integer.calibrate`); the entropy parameters' input
        grids are then their producers' output grids."""
        calibrate(self.parameter_networks(), run)
        hyper = self.h_s.increase[-1].output_step
        for i, c in enumerate(self.config.slices):
            context = [self.channel_context[i].fushion[-1].output_step.expand(2 * c)] if i else []
            local = [self.local_context[i].output_step.expand(2 * c)]
            hyper_part = [hyper.expand(2 * self.config.M)]
            self.entropy_parameters_anchor[i].fusion[0].input_step.copy_(torch.cat(context + hyper_part))
            self.entropy_parameters_nonanchor[i].fusion[0].input_step.copy_(torch.cat(local + context + hyper_part))

    def prepare_for_coding(self) -> None:
        """Integer networks run their frozen integers (refused if a sum could leave the
        exact range); float networks run in float64."""
        if self.config.integer_bits:
            for layer in self.integer_layers():
                layer.check_exact()
                layer.exact = True
        else:
            for network in self.parameter_networks():
                network.to(torch.float64)

    # --- rate control ---------------------------------------------------------------

    def gains(self, quality: Tensor | float | None) -> tuple[Tensor, Tensor] | None:
        """Per-sample (gain, inverse gain), shape (B, M, 1, 1), for qualities in [1, rates].

        Fractional qualities interpolate the log-gains linearly (Cui et al.'s
        exponential interpolation). None for single-rate models.
        """
        if not self.config.rates:
            return None
        q = torch.as_tensor(quality, dtype=torch.float32, device=self.rate_log_gain.device).reshape(-1)
        q = q.clamp(1, self.config.rates) - 1
        low = q.floor().long().clamp(max=self.config.rates - 2)
        t = (q - low).view(-1, 1)
        def mix(table: Tensor) -> Tensor:
            return torch.exp(table[low] * (1 - t) + table[low + 1] * t).view(len(q), -1, 1, 1)
        return mix(self.rate_log_gain), mix(self.rate_log_inverse_gain)

    # --- training ---------------------------------------------------------------------

    def forward(self, x: Tensor, text: Tensor, quality: Tensor | float | None = None) -> dict:
        """Reconstruction and likelihoods for training (rounding with straight-through)."""
        gains = self.gains(quality)
        y = self.g_a(x, text)
        if gains is not None:
            y = y * gains[0]
        y_hat, likelihoods = self.quantize_latent(y)
        if gains is not None:
            y_hat = y_hat * gains[1]
        return {"x_hat": self.g_s(y_hat), "likelihoods": likelihoods}

    def quantize_latent(self, y: Tensor) -> tuple[Tensor, dict]:
        """ŷ and the likelihoods of y and z, for training, from y after the rate gains."""
        z = self.h_a(y).float()  # likelihoods in float32 even under bf16 autocast
        _, z_likelihoods = self.entropy_bottleneck(z)
        medians = self.entropy_bottleneck._get_medians()
        z_hat = ste_round(z - medians) + medians
        hyper = self.h_s(z_hat)
        y_hat_slices, y_likelihoods = [], []
        anchor, nonanchor = checkerboard(*y.shape[-2:], device=y.device)
        for i, y_slice in enumerate(y.split(self.config.slices, dim=1)):
            channel_ctx = self._channel_context(i, y_hat_slices)
            scales_a, means_a = self._anchor_parameters(i, hyper, channel_ctx)
            y_hat_anchor = (ste_round(y_slice - means_a) + means_a) * anchor
            local_ctx = self.local_context[i](y_hat_anchor)
            scales_n, means_n = self._nonanchor_parameters(i, hyper, channel_ctx, local_ctx)
            scales = torch.where(anchor, scales_a, scales_n)
            means = torch.where(anchor, means_a, means_n)
            _, likelihoods = self.gaussian_conditional(y_slice.float(), scales.float(), means.float())
            y_hat_slices.append(torch.where(anchor, y_hat_anchor, ste_round(y_slice - means) + means))
            y_likelihoods.append(likelihoods)
        return torch.cat(y_hat_slices, dim=1), {"y": torch.cat(y_likelihoods, dim=1), "z": z_likelihoods}

    def _channel_context(self, i: int, decoded: list[Tensor]) -> Tensor | None:
        return self.channel_context[i](torch.cat(decoded, dim=1)) if i else None

    def _anchor_parameters(self, i: int, hyper: Tensor, channel_ctx: Tensor | None):
        inputs = hyper if channel_ctx is None else torch.cat([channel_ctx, hyper], dim=1)
        return self.entropy_parameters_anchor[i](inputs).chunk(2, dim=1)

    def _nonanchor_parameters(self, i: int, hyper: Tensor, channel_ctx: Tensor | None, local_ctx: Tensor):
        parts = [local_ctx, hyper] if channel_ctx is None else [local_ctx, channel_ctx, hyper]
        return self.entropy_parameters_nonanchor[i](torch.cat(parts, dim=1)).chunk(2, dim=1)

    # --- coding -----------------------------------------------------------------------

    def parameter_networks(self) -> list[nn.Module]:
        """The networks whose outputs reach the entropy coder (float64 or exact integers
        when coding: :meth:`prepare_for_coding`)."""
        return [self.h_s, self.local_context, self.channel_context,
                self.entropy_parameters_anchor, self.entropy_parameters_nonanchor]

    @torch.no_grad()
    def compress(self, x: Tensor, text: Tensor, coder, quality: float | None = None) -> None:
        """Code one image (1, 3, H, W) with H, W multiples of 64; symbols go to ``coder``,
        a :class:`tcodec.models.coding.TensorCoder` that the caller turns into bytes."""
        self.compress_analysed(self.analyse(x, text), coder, quality)

    def analyse(self, x: Tensor, text: Tensor) -> Tensor:
        """The latent y before the rate gains: the same for every quality."""
        return self.g_a(x.contiguous(memory_format=torch.channels_last), text)

    @torch.no_grad()
    def compress_analysed(self, y: Tensor, coder, quality: float | None = None) -> None:
        """Code ``analyse``'s output at one quality (a rate search calls this repeatedly)."""
        self.code_scaled(self.scaled(y, quality), coder)

    def scaled(self, y: Tensor, quality: float | None) -> Tensor:
        """y times the rate gains of ``quality``: the latent that is rounded and coded."""
        gains = self.gains(quality)
        return y if gains is None else y * gains[0]

    @torch.no_grad()
    def code_scaled(self, y: Tensor, coder, z: Tensor | None = None) -> None:
        """Code a latent after the rate gains (``scaled``), and first its hyper-latent:
        ``z`` (refined) or h_a(y)."""
        z_symbols = self.z_symbols(self.h_a(y) if z is None else z)
        coder.code_factorized(z_symbols, self.entropy_bottleneck)
        self._code_latent(self._dequantize_z(z_symbols), coder, y=y)

    def z_symbols(self, z: Tensor) -> Tensor:
        """The hyper-latent's symbols: z rounded around its prior's medians."""
        return torch.round(z - self.entropy_bottleneck._get_medians())

    @torch.no_grad()
    def decompress(self, coder, z_size: tuple[int, int], quality: float | None = None) -> Tensor:
        """Decode the image (1, 3, 64·h, 64·w), channels-last, from a reading TensorCoder;
        (h, w) is z's size."""
        h, w = z_size
        z_symbols = coder.code_factorized(None, self.entropy_bottleneck, shape=(1, self.config.N, h, w))
        y_hat = self._code_latent(self._dequantize_z(z_symbols), coder)
        gains = self.gains(quality)
        if gains is not None:
            y_hat = y_hat * gains[1]
        return self.g_s(y_hat.float().contiguous(memory_format=torch.channels_last)).clamp_(0, 1)

    def coded_symbols(self, z_size: tuple[int, int]) -> list[tuple[nn.Module, int]]:
        """What :meth:`decompress` reads for z of size (h, w): (entropy model, symbol count)."""
        h, w = z_size
        return [(self.entropy_bottleneck, self.config.N * h * w),
                (self.gaussian_conditional, sum(self.config.slices) * 16 * h * w)]

    def _dequantize_z(self, z_symbols: Tensor) -> Tensor:
        # in float64 on both sides: the encoder's symbols are float32, the decoder's not;
        # the decoder's come from the range coder on the CPU, the medians may be on a GPU
        medians = self.entropy_bottleneck._get_medians().double()
        return z_symbols.to(medians.device).double() + medians

    def _code_latent(self, z_hat: Tensor, coder, y: Tensor | None = None) -> Tensor:
        """Walk the slices and checkerboard passes in coding order, ŷ in float64.

        With ``y`` (encoding) each pass is quantised and its symbols go to the coder;
        without (decoding) they come from it. Both sides compute the same parameters
        from the same reconstructed values, so they make the same scale indexes. Each
        pass works on its half of the positions, packed (``layers.pack``): the 1x1
        parameter networks and the local context compute only what the pass codes.
        """
        return self.walk_latent(self.h_s(z_hat), y, lambda scales, means, y_pass:
                                self._code_pass(coder, scales, means, y_pass))

    def walk_latent(self, hyper: Tensor, y: Tensor | None, code_pass) -> Tensor:
        """The coding order of :meth:`_code_latent` with the hyper-decoder's output given:
        ``code_pass(scales, means, y_pass)`` returns the pass's ŷ (packed positions)."""
        dtype = torch.float64
        hyper_anchor, hyper_nonanchor = _halves(hyper)
        y_slices = y.to(dtype).split(self.config.slices, dim=1) if y is not None else [None] * len(self.config.slices)
        decoded: list[Tensor] = []
        for i, y_slice in enumerate(y_slices):
            channel_ctx = self._channel_context(i, decoded)
            ctx_anchor, ctx_nonanchor = _halves(channel_ctx)
            y_anchor, y_nonanchor = _halves(y_slice)
            scales, means = self._anchor_parameters(i, hyper_anchor, ctx_anchor)
            y_hat_anchor = code_pass(scales, means, y_anchor)
            local = self.local_context[i]
            local_ctx = (local.checkerboard(y_hat_anchor) if self.config.integer_bits
                         else checkerboard_context(local, y_hat_anchor))
            scales, means = self._nonanchor_parameters(i, hyper_nonanchor, ctx_nonanchor, local_ctx)
            y_hat_nonanchor = code_pass(scales, means, y_nonanchor)
            decoded.append(unpack_checkerboard(y_hat_anchor, y_hat_nonanchor, hyper.shape[-2:]))
        return torch.cat(decoded, dim=1)

    def _code_pass(self, coder, scales: Tensor, means: Tensor, y: Tensor | None) -> Tensor:
        """Code one pass (packed positions of one slice); returns its ŷ."""
        indexes = scale_indexes(self.gaussian_conditional, scales)
        symbols = None if y is None else torch.round(y - means)
        return coder.code_gaussian(symbols, indexes, self.gaussian_conditional).to(means.dtype) + means


def unpack_checkerboard(anchor: Tensor, nonanchor: Tensor, size) -> Tensor:
    """The full (1, C, H, W) tensor whose anchor and non-anchor positions were packed."""
    full = torch.empty((1, anchor.shape[1], *size), dtype=anchor.dtype, device=anchor.device)
    return unpack_into(unpack_into(full, anchor, anchor=True), nonanchor, anchor=False)


def _halves(x: Tensor | None) -> tuple[Tensor | None, Tensor | None]:
    """``x``'s anchor and non-anchor positions, packed; (None, None) for None."""
    return (None, None) if x is None else (pack(x, anchor=True), pack(x, anchor=False))
