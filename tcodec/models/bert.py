"""A BERT encoder (its ``last_hidden_state``) in plain torch, for MiniLM captions.

transformers' ``BertModel`` computes the same values, but importing transformers' model
code costs a coding process about as much time as the rest of its start-up together;
tcodec's own models need only this forward pass of a frozen 6-layer encoder, with the
fast tokenizer of the ``tokenizers`` package (what transformers' fast tokenizer runs).
tests/models/test_bert.py checks both against transformers.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class BertEncoder(nn.Module):
    """BERT's embeddings and encoder layers, named as in the checkpoint (post-norm, GELU)."""

    def __init__(self, config: dict) -> None:
        super().__init__()
        if config.get("model_type") != "bert" or config.get("hidden_act") != "gelu" \
                or config.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError("only BERT with GELU and absolute positions is supported")
        width = config["hidden_size"]
        self.heads, self.eps = config["num_attention_heads"], config["layer_norm_eps"]
        self.embeddings = nn.Module()
        # the tables are always loaded (load_checkpoint): no random values to draw first, which
        # for the word table would take a coding process a tenth of a second
        for name, rows in (("word_embeddings", "vocab_size"), ("position_embeddings", "max_position_embeddings"),
                           ("token_type_embeddings", "type_vocab_size")):
            setattr(self.embeddings, name, nn.Embedding.from_pretrained(torch.empty(config[rows], width)))
        self.embeddings.LayerNorm = nn.LayerNorm(width, eps=self.eps)
        self.layers = nn.ModuleList(_Layer(width, config["intermediate_size"], self.eps)
                                    for _ in range(config["num_hidden_layers"]))

    def load_checkpoint(self, state: dict[str, Tensor]) -> None:
        """A BertModel state dict: the encoder's layers are ``encoder.layer.{i}``; the
        pooler and the position-id buffer are not used."""
        state = {key.replace("encoder.layer.", "layers."): value for key, value in state.items()
                 if not key.startswith("pooler.") and key != "embeddings.position_ids"}
        self.load_state_dict(state, strict=True)

    def forward(self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor) -> Tensor:
        embeddings = self.embeddings
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        x = (embeddings.word_embeddings(input_ids) + embeddings.token_type_embeddings(token_type_ids)
             + embeddings.position_embeddings(positions))
        x = embeddings.LayerNorm(x)
        # padded keys get no attention: an additive mask of the dtype's minimum
        mask = (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * torch.finfo(x.dtype).min
        for layer in self.layers:
            x = layer(x, mask, self.heads)
        return x


class _Layer(nn.Module):
    def __init__(self, width: int, hidden: int, eps: float) -> None:
        super().__init__()
        self.attention = nn.Module()
        self.attention.self = nn.Module()
        for name in ("query", "key", "value"):
            setattr(self.attention.self, name, nn.Linear(width, width))
        self.attention.output = _Output(width, width, eps)
        self.intermediate = nn.Module()
        self.intermediate.dense = nn.Linear(width, hidden)
        self.output = _Output(hidden, width, eps)

    def forward(self, x: Tensor, mask: Tensor, heads: int) -> Tensor:
        batch, length, width = x.shape

        def split(projection: nn.Linear) -> Tensor:
            return projection(x).view(batch, length, heads, width // heads).transpose(1, 2)

        attention = self.attention.self
        context = F.scaled_dot_product_attention(split(attention.query), split(attention.key),
                                                 split(attention.value), attn_mask=mask)
        x = self.attention.output(context.transpose(1, 2).reshape(batch, length, width), x)
        return self.output(F.gelu(self.intermediate.dense(x)), x)


class _Output(nn.Module):
    """LayerNorm(residual + dense(x))."""

    def __init__(self, width_in: int, width: int, eps: float) -> None:
        super().__init__()
        self.dense = nn.Linear(width_in, width)
        self.LayerNorm = nn.LayerNorm(width, eps=eps)

    def forward(self, x: Tensor, residual: Tensor) -> Tensor:
        return self.LayerNorm(self.dense(x) + residual)


def load_bert(folder: Path) -> tuple[object, BertEncoder]:
    """The fast tokenizer (``tokenizer.json``) and the frozen encoder of a BERT folder."""
    from safetensors.torch import load_file
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    encoder = BertEncoder(json.loads((folder / "config.json").read_text(encoding="utf-8")))
    encoder.load_checkpoint(load_file(folder / "model.safetensors"))
    return tokenizer, encoder.eval().requires_grad_(False)


def tokenize(tokenizer, captions: list[str], length: int) -> dict[str, Tensor]:
    """input_ids, attention_mask and token_type_ids, each (B, length): truncated, then
    padded with the tokenizer's padding token."""
    tokenizer.enable_truncation(max_length=length)
    pad = tokenizer.token_to_id("[PAD]")
    tokenizer.enable_padding(length=length, pad_id=pad, pad_token="[PAD]")
    encodings = tokenizer.encode_batch(captions)
    return {name: torch.tensor([getattr(e, field) for e in encodings], dtype=torch.long)
            for name, field in (("input_ids", "ids"), ("attention_mask", "attention_mask"),
                                ("token_type_ids", "type_ids"))}
