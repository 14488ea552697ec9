"""The dense MoE-ResNet-BK layer: MoE-FFN, then the BK-Core spectral branch (docs/model.md)."""

from __future__ import annotations

import torch
from torch import nn

from bkprof.core import tridiag_resolvent_diagonal
from bkprof.variants.config import LayerConfig, check_input
from bkprof.variants.grouped import grouped_linear


def _stacked(parameters) -> nn.Parameter:
    return nn.Parameter(torch.stack([p.detach() for p in parameters]))


class GroupedExperts(nn.Module):
    """E experts Linear(d, 2d) -> ReLU -> Dropout -> Linear(2d, d), their weights stacked (E, ...),
    run on rows sorted by expert (`ends`: each expert's cumulative end row) as two grouped linears."""

    def __init__(self, c: LayerConfig):
        super().__init__()
        d = c.d_model
        # nn.Linear's own initialisation, drawn in the order of E separate experts
        firsts, seconds = zip(*[(nn.Linear(d, 2 * d), nn.Linear(2 * d, d)) for _ in range(c.num_experts)])
        self.w1, self.b1 = _stacked(f.weight for f in firsts), _stacked(f.bias for f in firsts)
        self.w2, self.b2 = _stacked(s.weight for s in seconds), _stacked(s.bias for s in seconds)
        self.dropout = nn.Dropout(c.dropout)

    def forward(self, rows: torch.Tensor, ends: torch.Tensor) -> torch.Tensor:
        hidden = self.dropout(torch.relu(grouped_linear(rows, ends, self.w1, self.b1)))
        return grouped_linear(hidden, ends, self.w2, self.b2)


class MoEFFN(nn.Module):
    """Gate Linear(d, E), top-k routing; expert = Linear(d, 2d) -> ReLU -> Dropout -> Linear(2d, d).

    Each token runs through exactly top_k experts (the argmax for top_k = 1). Each chosen expert's
    output is scaled by its probability under the softmax over all E gate logits, as in the Switch
    Transformer: that is what gives the gate a gradient (a softmax over the chosen logits alone is 1
    for top_k = 1, so the router would never learn). The probabilities are returned for the
    load-balancing loss (`bkprof.training.load_balancing_loss`).

    The (token, slot) pairs are sorted by expert and each expert's rows run through its weights in
    one grouped op per layer (`grouped`): no per-expert selection, no shape that depends on the
    routing, so on CUDA (with Triton) the layer never synchronises with the host.
    """

    def __init__(self, c: LayerConfig):
        super().__init__()
        self.top_k = c.top_k
        self.num_experts = c.num_experts
        self.gate = nn.Linear(c.d_model, c.num_experts)
        self.experts = GroupedExperts(c)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(output, expert index (..., top_k), router probabilities (..., E))."""
        tokens = x.reshape(-1, x.shape[-1])
        probs = self.gate(tokens).softmax(dim=-1)
        # the softmax is monotone: the top-k probabilities are those of the top-k logits
        weights, top_index = probs.topk(self.top_k, dim=-1)
        # pair p = token * top_k + slot; stable, so each expert's rows keep token order
        expert, order = top_index.flatten().sort(stable=True)
        ends = torch.searchsorted(expert, torch.arange(self.num_experts, device=x.device), right=True)
        token_of_pair = order.div(self.top_k, rounding_mode="floor")
        sorted_out = self.experts(tokens[token_of_pair], ends)
        # each row back to its pair's place (a write: every pair once), then the weighted sum over slots
        pair_out = sorted_out.new_empty(sorted_out.shape).index_put((order,), sorted_out)
        out = (pair_out.view(*weights.shape, -1) * weights[..., None]).sum(1)
        return (out.view_as(x), top_index.view(*x.shape[:-1], self.top_k),
                probs.view(*x.shape[:-1], self.num_experts))


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
        self.config = c
        self.moe = MoEFFN(c)
        self.v_proj = SpectralInput(c)
        self.bk_core = BKCore(c)
        self.out_proj = SpectralOutput(c)
        self.bk_scale = nn.Parameter(torch.tensor(1.0))

    def spectral_features(self, x: torch.Tensor, ffn_out: torch.Tensor) -> tuple[torch.Tensor, dict]:
        return torch.view_as_real(self.bk_core(self.v_proj(ffn_out))), {}

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict]:
        check_input(x, self.config, type(self).__name__)
        ffn_out, expert_index, router_probs = self.moe(x)
        features, stats = self.spectral_features(x, ffn_out)
        out = ffn_out + self.bk_scale * self.out_proj(features)
        return out, {"expert_index": expert_index, "router_probs": router_probs, **stats}
