"""The two entropy models of a trained model, as coding needs them: torch only.

CompressAI's ``EntropyBottleneck`` and ``GaussianConditional`` train the priors and
freeze their integer CDF tables; importing CompressAI costs seconds at start-up (its
package imports its datasets, torch_geometric and torch._dynamo), while a trained
model needs only what the tables and a few learned tensors give. These classes hold
the same tensors under the same names (a state dict loads into either) and provide
what coding and latent refinement use: the medians of z, the scale bound, the tables
(read by :mod:`tcodec.models.coding`) and differentiable likelihoods. Training,
fitting the tail quantiles and freezing tables stay CompressAI's
(``TacoModel(config, trainable=True)``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LIKELIHOOD_BOUND = 1e-9  # CompressAI's default lower bound on a likelihood
SCALE_BOUND = 0.11  # and on a Gaussian's scale


class _CdfTables(nn.Module):
    """The frozen tables: one integer CDF per row, its length and its first symbol."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("_offset", torch.IntTensor())
        self.register_buffer("_quantized_cdf", torch.IntTensor())
        self.register_buffer("_cdf_length", torch.IntTensor())
        self.likelihood_lower_bound = _Bound(LIKELIHOOD_BOUND)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        # the tables' sizes are known only from the stored tensors
        for name in self._resized_buffers:
            key = prefix + name
            if key in state_dict:
                getattr(self, name).resize_(state_dict[key].shape)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    _resized_buffers = ("_offset", "_quantized_cdf", "_cdf_length")


class _Bound(nn.Module):
    """Holds a lower bound as a buffer named ``bound`` (where CompressAI's LowerBound keeps it)."""

    def __init__(self, bound: float) -> None:
        super().__init__()
        self.register_buffer("bound", torch.Tensor([float(bound)]))

    def forward(self, x: Tensor) -> Tensor:
        return torch.maximum(x, self.bound.to(x.dtype))


class FactorizedPrior(_CdfTables):
    """z's prior: a learned density per channel (Ballé et al. 2018), as CompressAI's
    ``EntropyBottleneck(channels)`` with its default filters stores it."""

    filters = (3, 3, 3, 3)

    def __init__(self, channels: int) -> None:
        super().__init__()
        widths = (1, *self.filters, 1)
        self.matrices = nn.ParameterList(torch.zeros(channels, widths[i + 1], widths[i])
                                         for i in range(len(widths) - 1))
        self.biases = nn.ParameterList(torch.zeros(channels, widths[i + 1], 1) for i in range(len(widths) - 1))
        self.factors = nn.ParameterList(torch.zeros(channels, widths[i + 1], 1) for i in range(len(self.filters)))
        self.quantiles = nn.Parameter(torch.zeros(channels, 1, 3))
        self.register_buffer("target", torch.zeros(3))

    def _get_medians(self) -> Tensor:
        """(C, 1, 1): the median of each channel, where its symbols are centred."""
        return self.quantiles[:, :, 1:2]

    def _logits_cumulative(self, values: Tensor) -> Tensor:
        logits = values
        for i, (matrix, bias) in enumerate(zip(self.matrices, self.biases)):
            logits = torch.matmul(F.softplus(matrix), logits) + bias
            if i < len(self.factors):
                logits = logits + torch.tanh(self.factors[i]) * torch.tanh(logits)
        return logits

    def likelihood(self, z: Tensor) -> Tensor:
        """The probability of each (quantised) value of z (B, C, H, W) under its channel's
        density: its mass over z ± 1/2."""
        batch, channels, height, width = z.shape
        values = z.permute(1, 0, 2, 3).reshape(channels, 1, -1)
        lower = self._logits_cumulative(values - 0.5)
        upper = self._logits_cumulative(values + 0.5)
        likelihood = self.likelihood_lower_bound(torch.sigmoid(upper) - torch.sigmoid(lower))
        return likelihood.reshape(channels, batch, height, width).permute(1, 0, 2, 3)


class GaussianPrior(_CdfTables):
    """y's prior given the hyperprior: a Gaussian with a scale and mean per value, coded
    under the table row of its scale, as CompressAI's ``GaussianConditional`` stores it."""

    _resized_buffers = (*_CdfTables._resized_buffers, "scale_table")

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("scale_table", torch.Tensor())
        self.register_buffer("scale_bound", torch.Tensor([SCALE_BOUND]))
        self.lower_bound_scale = _Bound(SCALE_BOUND)

    def likelihood(self, y: Tensor, scales: Tensor, means: Tensor) -> Tensor:
        """The probability of each (quantised) value of y: the Gaussian's mass over y ± 1/2."""
        values = torch.abs(y - means)
        scales = self.lower_bound_scale(scales)
        upper = _standard_normal_cdf((0.5 - values) / scales)
        lower = _standard_normal_cdf((-0.5 - values) / scales)
        return self.likelihood_lower_bound(upper - lower)


def _standard_normal_cdf(x: Tensor) -> Tensor:
    return 0.5 * torch.erfc(x * -(2**-0.5))

