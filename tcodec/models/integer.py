"""Integer entropy-parameter networks: the same numbers on every machine, at float32 speed.

The networks whose outputs reach the entropy coder (hyper synthesis, the contexts, the
entropy parameters) must give bit-identical results at the encoder and the decoder.
tcodec's first models run them in float64 (see :mod:`tcodec.models.taco`). A model with
``integer_bits`` runs them as integer networks instead (Ballé, Johnston and Minnen,
"Integer networks for data compression with latent-variable models", ICLR 2019):
integer weights and biases, and activations rounded to integers on a fixed grid.

Why float32 is exact here: a convolution of integer inputs with integer weights, each of
whose partial sums stays within 2^24 in magnitude, is computed exactly in float32 in any
order, blocking, thread split or fused multiply-add: every intermediate value is an
integer that float32 holds. Each layer's weight step is chosen so that
``Σ|w|·max|input| + |b| ≤ 2^24`` for every output channel (checked again when a model
loads). Moving a sum to the next layer's grid is one float64 multiply and a rounding,
which IEEE arithmetic makes the same everywhere. (Direct or GEMM convolutions only: a
Winograd or FFT convolution is not a sum of the products. torch runs float32
convolutions on the CPU directly (tests/models/test_integer.py compares them with float64
at a Kodak latent's size); on CUDA the integer networks run in float64, where any
algorithm's error is far below the 0.5 that rounding the sums removes.)

Training is quantisation-aware: the same layers round the float weights and the
activations to the same grids in the forward pass, with straight-through gradients.
Activation grids are fixed by :func:`calibrate`; weight grids follow the weights.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tcodec.models.layers import checkerboard_context, ste_round, transposed_as_convolution

EXACT_LIMIT = 2**24  # float32 holds every integer up to this
WEIGHT_LEVELS = 127  # weights are int8

# what a layer's output is: its grid's range, or "final" (real values, no grid)
RELU, SIGNED, FINAL = "relu", "signed", "final"


def compute_dtype(device: torch.device) -> torch.dtype:
    """float32 on the CPU (direct convolutions: exact); float64 elsewhere (see above)."""
    return torch.float32 if device.type == "cpu" else torch.float64


def output_range(kind: str, bits: int) -> tuple[int, int]:
    """The integer range of an activation grid: ReLU outputs use all ``bits`` unsigned."""
    if kind == RELU:
        return 0, 2**bits - 1
    return -(2 ** (bits - 1) - 1), 2 ** (bits - 1) - 1


class IntegerLayer:
    """What the integer convolutions share; mixed into torch's Conv2d / ConvTranspose2d,
    whose ``weight`` and ``bias`` (and state-dict names) they keep.

    Buffers: ``input_step`` (per input channel: the grid of the values coming in),
    ``output_step`` (the grid this layer rounds to), and, frozen by :meth:`freeze`,
    ``weight_step`` (per output channel), ``integer_weight`` (int8), ``integer_bias``.
    """

    out_axis = 0  # of the weight tensor; 1 for transposed convolutions
    BUFFERS = ("input_step", "output_step", "weight_step", "integer_weight", "integer_bias")  # setup_integer's

    def setup_integer(self, bits: int, output: str, quantize_input: bool, input_kind: str = SIGNED) -> None:
        self.bits, self.output, self.quantize_input = bits, output, quantize_input
        self.input_limit = max(abs(v) for v in output_range(input_kind, bits))
        self.register_buffer("input_step", torch.ones(self.in_channels))
        self.register_buffer("output_step", torch.ones(()))
        self.register_buffer("weight_step", torch.zeros(self.out_channels))
        self.register_buffer("integer_weight", torch.zeros(self.weight.shape, dtype=torch.int8))
        self.register_buffer("integer_bias", torch.zeros(self.out_channels, dtype=torch.int32))
        self.exact = False  # run the frozen integers (coding) instead of the float weights
        self.observer: Callable[[str, Tensor], None] | None = None  # calibrate()'s hook
        self._exact_cache: dict = {}

    # --- grids --------------------------------------------------------------------------

    def _per(self, vector: Tensor, axis: int) -> Tensor:
        shape = [1] * self.weight.dim()
        shape[axis] = -1
        return vector.view(shape)

    def _sum_out(self, x: Tensor) -> Tensor:
        """Sum over everything but the output channel axis."""
        return x.transpose(0, self.out_axis).flatten(1).sum(1)

    def scaled_weight(self) -> Tensor:
        """The weights acting on the incoming integers (input steps folded in)."""
        return self.weight * self._per(self.input_step, 1 - self.out_axis)

    def weight_steps(self, scaled: Tensor, bias: Tensor) -> Tensor:
        """Per output channel: the finest step with at most WEIGHT_LEVELS levels whose sums
        stay within EXACT_LIMIT for inputs up to ``input_limit`` (see the module docstring;
        the budget allows for each weight and the bias rounding up by a half)."""
        fan_in = scaled.numel() // self.out_channels
        budget = EXACT_LIMIT - self.input_limit * fan_in / 2 - 1
        if budget <= 0:
            raise ValueError(f"a layer with {fan_in} inputs cannot be exact at {self.bits} bits")
        magnitude = scaled.abs()
        by_levels = magnitude.transpose(0, self.out_axis).flatten(1).amax(1) / WEIGHT_LEVELS
        by_sum = (self._sum_out(magnitude) * self.input_limit + bias.abs()) / budget
        step = torch.maximum(by_levels, by_sum)
        return torch.where(step > 0, step, torch.ones_like(step))

    # --- training: the float weights, rounded like the integers ---------------------------

    def forward(self, x: Tensor) -> Tensor:
        if self.exact:
            return self.exact_forward(x)
        if self.observer is not None:
            return self._observe(x)
        if self.quantize_input:
            x = self._fake(x, self._per_channel(self.input_step), *output_range(SIGNED, self.bits))
        scaled = self.scaled_weight()
        step = self.weight_steps(scaled.detach(), self.bias.detach())
        weight = ste_round(scaled / self._per(step, self.out_axis)) * self._per(step, self.out_axis)
        weight = weight / self._per(self.input_step, 1 - self.out_axis)
        out = self.linear(x, weight, ste_round(self.bias / step) * step)
        if self.output == FINAL:
            return out
        return self._fake(out, self.output_step, *output_range(self.output, self.bits))

    @staticmethod
    def _per_channel(step: Tensor) -> Tensor:
        return step.view(1, -1, 1, 1)

    @staticmethod
    def _fake(x: Tensor, step: Tensor, low: int, high: int) -> Tensor:
        clipped = torch.minimum(torch.maximum(x, low * step), high * step)
        return ste_round(clipped / step) * step

    def _observe(self, x: Tensor) -> Tensor:
        if self.quantize_input:
            self.observer("input", x)
        out = self.linear(x, self.weight, self.bias)
        if self.output != FINAL:
            self.observer("output", out)
        return out

    # --- coding: the frozen integers -------------------------------------------------------

    @torch.no_grad()
    def freeze(self) -> None:
        """Round the current float weights to the integers that coding uses."""
        scaled = self.scaled_weight().double()
        step = self.weight_steps(scaled, self.bias.double()).float()
        for _ in range(8):  # the float32 step can round down: coarsen until the bound holds
            weight = torch.round(scaled / self._per(step.double(), self.out_axis))
            bias = torch.round(self.bias.double() / step.double())
            if _within_bound(weight, bias, self):
                break
            step = step * (1 + 2**-20)
        else:
            raise ValueError("could not fit the weights within the exact range")
        self.weight_step.copy_(step)
        self.integer_weight.copy_(weight.to(torch.int8))
        self.integer_bias.copy_(bias.to(torch.int32))
        self._exact_cache.clear()

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """A packaged model stores the frozen integers only (what coding uses): the float
        weights are then the integers times their steps."""
        if prefix + "weight" not in state_dict and prefix + "integer_weight" in state_dict:
            step = state_dict[prefix + "weight_step"].float()
            inputs = state_dict[prefix + "input_step"].float()
            weight = state_dict[prefix + "integer_weight"].float() * self._per(step, self.out_axis)
            state_dict[prefix + "weight"] = weight / self._per(inputs, 1 - self.out_axis)
            state_dict[prefix + "bias"] = state_dict[prefix + "integer_bias"].float() * step
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def check_exact(self) -> None:
        """Raise ValueError unless the frozen integers keep every sum within EXACT_LIMIT
        (and every step is a positive number)."""
        steps = torch.cat([self.weight_step, self.input_step, self.output_step.view(1)])
        if not bool(((steps > 0) & steps.isfinite()).all()):
            raise ValueError("integer weights not frozen, or a step that is not a positive number")
        if not _within_bound(self.integer_weight.long(), self.integer_bias.long(), self):
            raise ValueError("integer weights exceed the exact range")

    def exact_forward(self, x: Tensor) -> Tensor:
        """Integers in (any float dtype holding integers, or real values when the layer
        quantises its input), integers out (real float64 values for a final layer)."""
        compute = compute_dtype(x.device)
        if self.quantize_input:
            x = self.quantize(x)
        weight, bias = self.exact_weights(compute, x.device)
        return self.requantize(self.linear(x.to(compute), weight, bias))

    def quantize(self, x: Tensor) -> Tensor:
        """Real values (float64) onto this layer's input grid."""
        inverse = torch.reciprocal(self._per_channel(self.input_step.double()))
        low, high = output_range(SIGNED, self.bits)
        return torch.round(x.double() * inverse).clamp_(low, high)

    def requantize(self, sums: Tensor) -> Tensor:
        """Exact integer sums to this layer's output grid (float64 arithmetic)."""
        sums = sums.double().round_()  # a no-op on exact sums; removes float64 GPU algorithms' error
        if self.output == FINAL:
            return sums.mul_(self._per_channel(self.weight_step.double()))
        multiplier = self.weight_step.double() / self.output_step.double()
        low, high = output_range(self.output, self.bits)
        out = sums.mul_(self._per_channel(multiplier)).round_().clamp_(low, high)
        return out.to(compute_dtype(out.device))

    def exact_weights(self, dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor]:
        key = (dtype, device)
        if key not in self._exact_cache:
            self._exact_cache[key] = (self.integer_weight.to(device, dtype), self.integer_bias.to(device, dtype))
        return self._exact_cache[key]

    def linear(self, x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
        raise NotImplementedError


def _within_bound(weight: Tensor, bias: Tensor, layer: IntegerLayer) -> bool:
    sums = layer._sum_out(weight.abs().double()) * layer.input_limit + bias.abs().double()
    return bool((sums <= EXACT_LIMIT).all())


class IntegerConv2d(IntegerLayer, nn.Conv2d):
    def linear(self, x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
        return self._conv_forward(x, weight, bias)

    def checkerboard(self, anchors: Tensor) -> Tensor:
        """``checkerboard_context`` of this (5x5) layer, exact: for the local context."""
        if not self.exact:
            raise RuntimeError("checkerboard() is for coding, with frozen integers")
        compute = compute_dtype(anchors.device)
        weight, bias = self.exact_weights(compute, anchors.device)
        return self.requantize(checkerboard_context(self, self.quantize(anchors).to(compute), weight, bias))


class IntegerConvTranspose2d(IntegerLayer, nn.ConvTranspose2d):
    out_axis = 1

    def linear(self, x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
        if self.stride == (1, 1):
            return transposed_as_convolution(self, x, weight, bias)
        return F.conv_transpose2d(x, weight, bias, self.stride, self.padding, self.output_padding)


def integer_layer(layer: nn.Module, bits: int, output: str, quantize_input: bool, input_kind: str) -> IntegerLayer:
    """The integer counterpart of a float convolution, sharing its parameters."""
    if isinstance(layer, nn.ConvTranspose2d):
        twin = IntegerConvTranspose2d(layer.in_channels, layer.out_channels, layer.kernel_size,
                                      stride=layer.stride, padding=layer.padding,
                                      output_padding=layer.output_padding)
    elif isinstance(layer, nn.Conv2d):
        twin = IntegerConv2d(layer.in_channels, layer.out_channels, layer.kernel_size,
                             stride=layer.stride, padding=layer.padding)
    else:
        raise TypeError(f"no integer form of {type(layer).__name__}")
    twin.weight, twin.bias = layer.weight, layer.bias
    twin.setup_integer(bits, output, quantize_input, input_kind)
    return twin


def integer_network(network: nn.Module, bits: int, output: str, quantize_input: bool) -> nn.Module:
    """``network`` (a convolution, or a Sequential of convolutions and ReLUs) with integer
    convolutions: each one followed by a ReLU rounds to an unsigned grid, the last one to
    ``output``; the first quantises its input (real values) when ``quantize_input``."""
    if not isinstance(network, nn.Sequential):
        return integer_layer(network, bits, output, quantize_input, SIGNED)
    layers = list(network)
    input_kind = SIGNED
    for i, layer in enumerate(layers):
        if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)):
            followed_by_relu = i + 1 < len(layers) and isinstance(layers[i + 1], nn.ReLU)
            kind = RELU if followed_by_relu else output
            layers[i] = integer_layer(layer, bits, kind, quantize_input and i == 0, input_kind)
            input_kind = kind
    return nn.Sequential(*layers)


def replace_with_float_layers(module: nn.Module) -> None:
    """Swap every integer layer inside ``module`` for the plain float convolution it
    stands for (its float weights, which a loaded model derives from the frozen integers;
    activations not rounded): a differentiable stand-in for refining inputs through the
    network. In place: for a copy of a model."""
    for name, child in list(module.named_children()):
        if isinstance(child, IntegerLayer):
            if isinstance(child, nn.ConvTranspose2d):
                plain = nn.ConvTranspose2d(child.in_channels, child.out_channels, child.kernel_size,
                                           stride=child.stride, padding=child.padding,
                                           output_padding=child.output_padding)
            else:
                plain = nn.Conv2d(child.in_channels, child.out_channels, child.kernel_size,
                                  stride=child.stride, padding=child.padding)
            plain.weight, plain.bias = child.weight, child.bias
            setattr(module, name, plain)
        else:
            replace_with_float_layers(child)


def integer_layers(modules: Iterable[nn.Module]) -> list[IntegerLayer]:
    return [m for module in modules for m in module.modules() if isinstance(m, IntegerLayer)]


@torch.no_grad()
def calibrate(networks: Iterable[nn.Module], run: Callable[[], None], quantile: float = 0.9999,
              samples: int = 2**20) -> None:
    """Set the activation grids of the integer layers in ``networks`` from the float
    values they see while ``run()`` runs them: the step that puts the ``quantile`` of the
    magnitudes at the grid's top. Within a Sequential, each layer's input grid is then the
    output grid of the layer before it."""
    networks = list(networks)
    layers = integer_layers(networks)
    seen: dict[tuple[int, str], list[Tensor]] = {}
    generator = torch.Generator().manual_seed(0)

    def at_most_samples(values: Tensor) -> Tensor:
        if values.numel() <= samples:
            return values
        return values[torch.randint(values.numel(), (samples,), generator=generator)]

    for index, layer in enumerate(layers):
        def observe(where: str, x: Tensor, index=index) -> None:
            seen.setdefault((index, where), []).append(at_most_samples(x.detach().float().flatten().abs()))
        layer.observer = observe
    try:
        run()
    finally:
        for layer in layers:
            layer.observer = None
    for (index, where), chunks in seen.items():
        layer = layers[index]
        top = float(torch.quantile(at_most_samples(torch.cat(chunks)), quantile))
        kind = SIGNED if where == "input" else layer.output
        step = max(top, 1e-6) / output_range(kind, layer.bits)[1]
        (layer.input_step if where == "input" else layer.output_step).fill_(step)
    for module in (m for network in networks for m in network.modules()):
        if isinstance(module, nn.Sequential):
            chain = [m for m in module if isinstance(m, IntegerLayer)]
            for before, after in zip(chain, chain[1:]):
                after.input_step.copy_(before.output_step.expand_as(after.input_step))
