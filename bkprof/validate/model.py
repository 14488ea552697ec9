"""A small ResNet-BK language model: token embedding, pre-norm residual blocks of one variant, LM head.

Every block is x + layer(LayerNorm(x)), the layer being one of the four variants; a final LayerNorm
and a Linear head give the logits over the words. The layers see the whole sequence (the BK-Core's
G_ii depends on every position, the multi-scale pooling mixes neighbours, the importance predictor
and the interpolator are convolutions), so the model is trained and scored on masked words: the
positions to predict read <mask> at the input, and only their logits are computed.

The reference model (`REFERENCE`, "transformer": not a registered BK variant) swaps the blocks for
pre-norm `nn.TransformerEncoderLayer`s of the same width and depth; everything else is the same.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from bkprof.validate.train import REFERENCE
from bkprof.variants import LayerConfig, build


def transformer_block(config: LayerConfig) -> nn.Module:
    """The reference block: a pre-norm Transformer encoder layer of the same width (SDPA attention,
    feed-forward 2d with ReLU like one expert, the same dropout), heads = d // 32 (at least 1).

    It is a whole residual block itself (x + attn(LN(x)), then x + ffn(LN(x))), so it stands in for
    `Block`; no attention mask: like the BK layers it sees the whole sequence (masked-word objective)."""
    return nn.TransformerEncoderLayer(config.d_model, reference_heads(config.d_model), 2 * config.d_model,
                                      config.dropout, activation="relu", batch_first=True, norm_first=True)


def reference_heads(d_model: int) -> int:
    return max(1, d_model // 32)


class ReferenceBlock(nn.Module):
    def __init__(self, config: LayerConfig, seed: int):
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.layer = transformer_block(config)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict]:
        return self.layer(x), {}


class Block(nn.Module):
    def __init__(self, variant: str, config: LayerConfig, seed: int):
        super().__init__()
        self.norm = nn.LayerNorm(config.d_model)
        self.layer = build(variant, config, seed=seed)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict]:
        out, stats = self.layer(self.norm(x))
        return x + out, stats


class Stack(nn.Module):
    """The blocks and the final LayerNorm: (B, N, d) -> (B, N, d) and each block's stats."""

    def __init__(self, variant: str, config: LayerConfig, layers: int, seed: int):
        super().__init__()
        block = ReferenceBlock if variant == REFERENCE else partial(Block, variant)
        self.blocks = nn.ModuleList(block(config, seed * 1000 + i) for i in range(layers))
        self.norm = nn.LayerNorm(config.d_model)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[dict]]:
        stats = []
        for block in self.blocks:
            x, s = block(x)
            stats.append(s)
        return self.norm(x), stats


class LanguageModel(nn.Module):
    def __init__(self, variant: str, config: LayerConfig, layers: int, vocab_size: int, predictable: int,
                 seed: int):
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.embed = nn.Embedding(vocab_size, config.d_model)
            self.head = nn.Linear(config.d_model, predictable)
        self.stack = Stack(variant, config, layers, seed)
        self.num_experts = config.num_experts

    def forward(self, tokens: torch.Tensor, where: torch.Tensor | None = None) -> tuple[torch.Tensor, list[dict]]:
        """Logits (K, V) at the K positions `where` and the blocks' stats. `where`: a (B, N) bool mask, or
        (training) the K positions' indices into the flattened B x N positions; None: every position."""
        hidden, stats = self.stack(self.embed(tokens))
        return self.head(picked_rows(hidden, where)), stats


def picked_rows(hidden: torch.Tensor, where: torch.Tensor | None) -> torch.Tensor:
    """The rows of `hidden` (B, N, d) at `where`, (K, d). Indices give a shape fixed by their number
    (capture-safe); a bool mask's K is read from its values (a nonzero: a host sync on CUDA)."""
    flat = hidden.reshape(-1, hidden.shape[-1])
    if where is None:
        return flat
    return hidden[where] if where.dtype == torch.bool else flat.index_select(0, where)


class FromEmbeddings(nn.Module):
    """The model from its embedded input to the logits at fixed positions, as the op counter wants it
    ((B, N, d) float in, (output, stats) out)."""

    def __init__(self, model: LanguageModel, where: torch.Tensor | None):
        super().__init__()
        self.model, self.where = model, where

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict]:
        hidden, _ = self.model.stack(x)
        return self.model.head(picked_rows(hidden, self.where)), {}


class StackOnly(nn.Module):
    def __init__(self, stack: Stack):
        super().__init__()
        self.stack = stack

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict]:
        return self.stack(x)[0], {}


def masks_of(stats: list[dict]) -> list[torch.Tensor]:
    """The importance masks of the blocks that have one (sparse and combined layers)."""
    return [s["mask"] for s in stats if "mask" in s]
