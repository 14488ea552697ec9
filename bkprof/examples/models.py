"""Factories `bkprof flops --model bkprof.examples.models:NAME` can count, each a plain nn.Module.

    bkprof flops --model bkprof.examples.models:transformer_layer --input-shape 2x256x128
    bkprof flops --model bkprof.examples.models:small_cnn --input-shape 8x3x32x32
    bkprof flops --model bkprof.examples.models:lstm --input-shape 4x100x64
    bkprof flops --model bkprof.examples.models:tiny_language_model --inputs bkprof.examples.models:token_ids
"""

from __future__ import annotations

import torch
from torch import nn

VOCABULARY = 1000


def transformer_layer(d_model: int = 128, heads: int = 4, feedforward: int = 512) -> nn.Module:
    """One post-norm encoder layer, batch first: input (batch, sequence, d_model)."""
    return nn.TransformerEncoderLayer(d_model, heads, feedforward, dropout=0.1, batch_first=True)


def small_cnn(classes: int = 10) -> nn.Module:
    """Two conv blocks and a classifier: input (batch, 3, 32, 32)."""
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Linear(32, classes),
    )


def lstm(input_size: int = 64, hidden: int = 128) -> nn.Module:
    """A two-layer LSTM, batch first: input (batch, time, input_size); returns (output, (h, c))."""
    return nn.LSTM(input_size, hidden, num_layers=2, batch_first=True)


class TinyLanguageModel(nn.Module):
    """Embedding -> two encoder layers -> a tied output projection; input: token ids (batch, sequence)."""

    def __init__(self, vocabulary: int = VOCABULARY, d_model: int = 64, layers: int = 2):
        super().__init__()
        self.embed = nn.Embedding(vocabulary, d_model)
        layer = nn.TransformerEncoderLayer(d_model, 4, 4 * d_model, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        hidden = self.norm(self.encoder(self.embed(tokens)))
        return {"logits": hidden @ self.embed.weight.T, "hidden": hidden}


def tiny_language_model() -> nn.Module:
    return TinyLanguageModel()


def token_ids(batch: int = 2, sequence: int = 32) -> torch.Tensor:
    """Integer inputs, which --input-shape (floating) cannot make: token ids for tiny_language_model."""
    return torch.randint(0, VOCABULARY, (batch, sequence), generator=torch.Generator().manual_seed(0))
