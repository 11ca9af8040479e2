"""The bridge between a model's tensors and :mod:`tcodec.coding.entropy` (numpy, constriction).

One class serves both directions, so that the model runs the same code when it
encodes and when it decodes: given symbols it writes them, given None it reads them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from tcodec.coding.entropy import CdfTables, LatentDecoder, LatentEncoder


def cdf_tables(entropy_model) -> CdfTables:
    """The frozen integer CDFs of a CompressAI EntropyBottleneck or GaussianConditional."""
    if entropy_model._quantized_cdf.numel() == 0:
        raise ValueError("the model's CDF tables are empty: call update() before coding")
    return CdfTables(entropy_model._quantized_cdf.cpu().numpy(), entropy_model._cdf_length.cpu().numpy(),
                     entropy_model._offset.cpu().numpy())


class TensorCoder:
    """Writes symbols to a LatentEncoder, or reads them from a LatentDecoder."""

    def __init__(self, stream: LatentEncoder | LatentDecoder) -> None:
        self.stream = stream
        self._tables: dict[int, CdfTables] = {}

    @classmethod
    def writer(cls) -> "TensorCoder":
        return cls(LatentEncoder())

    @classmethod
    def reader(cls, data: bytes, expected: Sequence[tuple[object, int]] = ()) -> "TensorCoder":
        """A coder reading ``data``; ``expected`` lists (entropy model, symbol count) of
        everything that will be read, which bounds from below how long ``data`` must be
        (:class:`tcodec.coding.entropy.LatentDecoder`)."""
        coder = cls(LatentDecoder(data))
        coder.stream.expect(sum(count * coder._tables_of(model).min_symbol_bits for model, count in expected))
        return coder

    def to_bytes(self) -> bytes:
        return self.stream.to_bytes()

    def _tables_of(self, entropy_model) -> CdfTables:
        key = id(entropy_model)
        if key not in self._tables:
            self._tables[key] = cdf_tables(entropy_model)
        return self._tables[key]

    def code_factorized(self, symbols: Tensor | None, entropy_bottleneck, shape=None) -> Tensor:
        """z under the factorized prior: one table row per channel."""
        if symbols is not None:
            shape = symbols.shape
        channels = torch.arange(shape[1]).view(1, -1, 1, 1).expand(shape)
        return self._code(symbols, channels, self._tables_of(entropy_bottleneck), shape)

    def code_gaussian(self, symbols: Tensor | None, indexes: Tensor, gaussian_conditional) -> Tensor:
        """y under the Gaussian conditional: one table row per scale index."""
        return self._code(symbols, indexes, self._tables_of(gaussian_conditional), indexes.shape)

    def _code(self, symbols: Tensor | None, rows: Tensor, tables: CdfTables, shape) -> Tensor:
        rows_np = rows.reshape(-1).cpu().numpy().astype(np.int64)
        if symbols is None:
            values = self.stream.decode(rows_np, tables)
            return torch.from_numpy(values).reshape(shape).to(rows.device, torch.float64)
        values = symbols.reshape(-1).cpu().numpy().astype(np.int64)
        self.stream.encode(values, rows_np, tables)
        return symbols
