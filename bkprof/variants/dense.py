"""The dense MoE-ResNet-BK layer: MoE-FFN, then the BK-Core spectral branch (SPEC section 3)."""

from __future__ import annotations

import torch
from torch import nn

from bkprof.core import tridiag_resolvent_diagonal
from bkprof.variants.config import LayerConfig


class MoEFFN(nn.Module):
    """Gate Linear(d, E), top-k routing; expert = Linear(d, 2d) -> ReLU -> Dropout -> Linear(2d, d).

    Each token runs through exactly top_k experts, weighted by the softmax of its top_k gate logits.
    """

    def __init__(self, c: LayerConfig):
        super().__init__()
        d = c.d_model
        self.top_k = c.top_k
        self.gate = nn.Linear(d, c.num_experts)
        self.experts = nn.ModuleList(
            nn.Sequential(nn.Linear(d, 2 * d), nn.ReLU(), nn.Dropout(c.dropout), nn.Linear(2 * d, d))
            for _ in range(c.num_experts)
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = x.reshape(-1, x.shape[-1])
        top_logits, top_index = self.gate(tokens).topk(self.top_k, dim=-1)
        weights = top_logits.softmax(dim=-1)
        out = torch.zeros_like(tokens)
        for e, expert in enumerate(self.experts):
            token, slot = (top_index == e).nonzero(as_tuple=True)
            # index_put (accumulate) rather than index_add: the latter is ~1000x slower on 2-thread CPUs
            out = out.index_put((token,), expert(tokens[token]) * weights[token, slot, None], accumulate=True)
        return out.view_as(x), top_index.view(*x.shape[:-1], self.top_k)


class BKCore(nn.Module):
    """G_ii of H = H0 + diag(v), H0 the discrete Laplacian (-2 on the diagonal, +1 beside it)."""

    def __init__(self, c: LayerConfig):
        super().__init__()
        self.z = c.z
        self.backend = c.backend

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        off = torch.ones(*v.shape[:-1], v.shape[-1] - 1, dtype=v.dtype, device=v.device)
        return tridiag_resolvent_diagonal(v - 2.0, off, off, self.z, backend=self.backend, check_finite=False)


class SpectralInput(nn.Module):
    """v = clamp(Linear(d, 1)(h), -3, 3): the potential the BK-Core sees."""

    def __init__(self, c: LayerConfig):
        super().__init__()
        self.proj = nn.Linear(c.d_model, 1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.proj(h).squeeze(-1).clamp(-3.0, 3.0)


class SpectralOutput(nn.Module):
    """Linear(2, d) over [Re G_ii, Im G_ii] clamped to +-10."""

    def __init__(self, c: LayerConfig):
        super().__init__()
        self.proj = nn.Linear(2, c.d_model)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.proj(features.clamp(-10.0, 10.0))


class DenseLayer(nn.Module):
    """out = ffn_out + bk_scale * Linear(2, d)([Re G, Im G]), with G over all N positions."""

    def __init__(self, c: LayerConfig):
        super().__init__()
        self.moe = MoEFFN(c)
        self.v_proj = SpectralInput(c)
        self.bk_core = BKCore(c)
        self.out_proj = SpectralOutput(c)
        self.bk_scale = nn.Parameter(torch.tensor(1.0))

    def spectral_features(self, x: torch.Tensor, ffn_out: torch.Tensor) -> tuple[torch.Tensor, dict]:
        return torch.view_as_real(self.bk_core(self.v_proj(ffn_out))), {}

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict]:
        ffn_out, expert_index = self.moe(x)
        features, stats = self.spectral_features(x, ffn_out)
        out = ffn_out + self.bk_scale * self.out_proj(features)
        return out, {"expert_index": expert_index, **stats}
