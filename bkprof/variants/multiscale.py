"""Multi-scale processing: N -> N/f -> N around an inner layer at length N/f (docs/model.md)."""

from __future__ import annotations

import torch
from torch import nn

from bkprof.variants.config import LayerConfig, check_input
from bkprof.variants.dense import DenseLayer
from bkprof.variants.sparse import SparseLayer


class Downsampler(nn.Module):
    """Groups of f positions pooled with softmax-normalised learned weights, then Linear -> LayerNorm -> GELU.

    The importance scorer runs on all N positions; its scores are returned as statistics.
    """

    def __init__(self, c: LayerConfig):
        super().__init__()
        d, f = c.d_model, c.downsample
        self.factor = f
        self.scorer = nn.Sequential(nn.Linear(d, d // 2), nn.ReLU(), nn.Linear(d // 2, 1))
        self.pool_logits = nn.Parameter(torch.zeros(c.n_seq // f, f))
        self.proj = nn.Sequential(nn.Linear(d, d), nn.LayerNorm(d), nn.GELU())

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, n, d = x.shape
        scores = self.scorer(x).squeeze(-1)
        weights = self.pool_logits.softmax(dim=-1)
        pooled = (x.view(b, n // self.factor, self.factor, d) * weights[..., None]).sum(dim=2)
        return self.proj(pooled), scores


class Upsampler(nn.Module):
    """Linear(d, f*d) -> LayerNorm(f*d) -> GELU -> Linear(f*d, f*d), unfolded to N positions, plus a position bias (f, d)."""

    def __init__(self, c: LayerConfig):
        super().__init__()
        d, f = c.d_model, c.downsample
        self.factor = f
        self.net = nn.Sequential(nn.Linear(d, f * d), nn.LayerNorm(f * d), nn.GELU(), nn.Linear(f * d, f * d))
        self.position_bias = nn.Parameter(0.02 * torch.randn(f, d))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        b, m, d = h.shape
        y = self.net(h).view(b, m, self.factor, d) + self.position_bias
        return y.view(b, m * self.factor, d)


class MultiScaleLayer(nn.Module):
    """x_c = x + s1 * up(inner(down(x))); out = x_c + s2 * refine(x_c)."""

    def __init__(self, c: LayerConfig, inner: nn.Module):
        super().__init__()
        self.config = c
        d = c.d_model
        self.down = Downsampler(c)
        self.inner = inner
        self.up = Upsampler(c)
        self.refine = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, d), nn.GELU(), nn.Linear(d, d))
        self.s1 = nn.Parameter(torch.tensor(0.5))
        self.s2 = nn.Parameter(torch.tensor(0.3))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict]:
        check_input(x, self.config, f"{type(self).__name__} around {type(self.inner).__name__}")
        coarse, scores = self.down(x)
        h, stats = self.inner(coarse)
        x_c = x + self.s1 * self.up(h)
        out = x_c + self.s2 * self.refine(x_c)
        return out, {**stats, "downsample_importance": scores}


def multiscale_layer(c: LayerConfig) -> MultiScaleLayer:
    """The multi-scale variant: a dense layer at N/f inside (built first, as the parameters are drawn in that order)."""
    return MultiScaleLayer(c, DenseLayer(c.inner_config()))


def combined_layer(c: LayerConfig) -> MultiScaleLayer:
    """The combined variant: a sparse layer at N/f inside."""
    return MultiScaleLayer(c, SparseLayer(c.inner_config()))
