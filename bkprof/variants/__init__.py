"""The four layer variants as PyTorch modules: dense, sparse G_ii, multi-scale, combined."""

from __future__ import annotations

import torch
from torch import nn

from bkprof.variants.config import INTERPOLATIONS, VARIANTS, LayerConfig, first_problem, kept_positions
from bkprof.variants.dense import DenseLayer
from bkprof.variants.multiscale import MultiScaleLayer
from bkprof.variants.sparse import SparseLayer

__all__ = ["INTERPOLATIONS", "VARIANTS", "LayerConfig", "build", "first_problem", "kept_positions"]


def _construct(name: str, c: LayerConfig) -> nn.Module:
    coarse = c.inner_config() if name in ("multiscale", "combined") else c
    if name == "dense":
        return DenseLayer(c)
    if name == "sparse":
        return SparseLayer(c)
    if name == "multiscale":
        return MultiScaleLayer(c, DenseLayer(coarse))
    return MultiScaleLayer(c, SparseLayer(coarse))


def build(name: str, config: LayerConfig | None = None, *, seed: int = 0) -> nn.Module:
    """The `name` variant for `config`, its parameters drawn from `seed` (same seed, same module).

    Every variant maps x (B, N, d) to (out (B, N, d), stats dict).
    """
    if name not in VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, got {name!r}")
    config = config or LayerConfig()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _construct(name, config)
