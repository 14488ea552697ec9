"""Learned sparsity for G_ii: importance predictor, mask, and the interpolators (docs/model.md)."""

from __future__ import annotations

import torch
from torch import nn

from bkprof.variants.config import LayerConfig, kept_positions
from bkprof.variants.dense import DenseLayer


class ImportancePredictor(nn.Module):
    """Conv1d(d, d/2, 3) -> ReLU -> Conv1d(d/2, d/2, 3) -> ReLU -> Linear -> ReLU -> Dropout -> Linear(d/2, 1)."""

    def __init__(self, c: LayerConfig):
        super().__init__()
        h = c.d_model // 2
        self.context = nn.Sequential(
            nn.Conv1d(c.d_model, h, 3, padding=1), nn.ReLU(), nn.Conv1d(h, h, 3, padding=1), nn.ReLU()
        )
        self.head = nn.Sequential(nn.Linear(h, h), nn.ReLU(), nn.Dropout(c.dropout), nn.Linear(h, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # contiguous, so the head's Linear is one addmm (a strided input decomposes into mm + add)
        return self.head(self.context(x.transpose(1, 2)).transpose(1, 2).contiguous()).squeeze(-1)


def importance_mask(scores: torch.Tensor, kept: int, tau: float, training: bool) -> torch.Tensor:
    """1.0 where G_ii is computed exactly, 0.0 where it is interpolated.

    Training: Gumbel-sigmoid with a straight-through hard threshold, so the scores get gradients.
    Inference: exactly the `kept` highest-scoring positions of each sequence.
    When `kept` is every position (sparsity 0, validate's no-skip control) the mask is exactly 1.0
    everywhere in both modes: the same ops run (so the counted FLOPs do not change), but the training
    threshold passes every position, and 1 - soft + soft rounds to exactly 1.0 for soft in [0, 1].
    """
    if training:
        u = torch.rand_like(scores).clamp(1e-6, 1 - 1e-6)
        soft = torch.sigmoid((scores + u.log() - (1 - u).log()) / tau)
        threshold = 0.5 if kept < scores.shape[-1] else -1.0
        return (soft > threshold).to(soft.dtype) - soft.detach() + soft
    top = scores.topk(kept, dim=-1).indices
    return torch.zeros_like(scores).scatter(-1, top, 1.0)


class LearnedInterpolator(nn.Module):
    """Conv1d(2, 32, 5) -> ReLU -> Conv1d(32, 32, 5) -> ReLU -> Conv1d(32, 2, 5) over the masked features."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv1d(2, 32, 5, padding=2), nn.ReLU(), nn.Conv1d(32, 32, 5, padding=2), nn.ReLU(),
            nn.Conv1d(32, 2, 5, padding=2),
        )

    def forward(self, kept: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.net(kept.transpose(1, 2)).transpose(1, 2)


def kept_neighbours(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Index of the nearest kept position at or before, and at or after, each position.

    Where one side has none, the other side stands in, so both are always valid indices.
    """
    n = mask.shape[-1]
    index = torch.arange(n, device=mask.device).expand_as(mask)
    kept = mask > 0.5
    before = torch.where(kept, index, -1).cummax(dim=-1).values
    after = torch.where(kept, index, n).flip(-1).cummin(dim=-1).values.flip(-1)
    return torch.where(before < 0, after, before), torch.where(after >= n, before, after)


def _take(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    return values.gather(1, index[..., None].expand(-1, -1, values.shape[-1]))


def _position_in_gap(before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
    """t in [0, 1): how far each position lies from `before` towards `after` (0 where they coincide)."""
    index = torch.arange(before.shape[-1], device=before.device)
    gap = after - before
    return ((index - before) * (gap > 0) / gap.clamp(min=1))[..., None]


class LinearInterpolator(nn.Module):
    """Straight line between the nearest kept neighbours on each side."""

    def forward(self, kept: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        before, after = kept_neighbours(mask)
        t = _position_in_gap(before, after)
        left = _take(kept, before)
        return left + t * (_take(kept, after) - left)


class CubicInterpolator(nn.Module):
    """Catmull-Rom spline through the two nearest kept neighbours on each side."""

    def forward(self, kept: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        before, after = kept_neighbours(mask)
        # the kept neighbour strictly before `before` and strictly after `after` (or the same one)
        outer_before = before.gather(1, (before - 1).clamp(min=0))
        outer_after = after.gather(1, (after + 1).clamp(max=mask.shape[-1] - 1))
        t = _position_in_gap(before, after)
        p0, p1, p2, p3 = (_take(kept, i) for i in (outer_before, before, after, outer_after))
        return p1 + 0.5 * t * ((p2 - p0) + t * ((2 * p0 - 5 * p1 + 4 * p2 - p3) + t * (3 * (p1 - p2) + p3 - p0)))


INTERPOLATORS = {"learned": LearnedInterpolator, "linear": LinearInterpolator, "cubic": CubicInterpolator}


class ImportanceMask(nn.Module):
    """The mask from the importance scores, and the sparsity it gives (1 - mean of the mask)."""

    def __init__(self, c: LayerConfig):
        super().__init__()
        self.kept = kept_positions(c.n_seq, c.sparsity)
        self.tau = c.tau

    def forward(self, scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mask = importance_mask(scores, self.kept, self.tau, self.training)
        return mask, 1 - mask.mean()


class Interpolation(nn.Module):
    """Exact features where the mask keeps them, the interpolator's estimate elsewhere."""

    def __init__(self, c: LayerConfig):
        super().__init__()
        self.method = INTERPOLATORS[c.interp]()

    def forward(self, exact: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        kept = exact * mask[..., None]
        return kept + self.method(kept, mask) * (1 - mask)[..., None]


class SparseLayer(DenseLayer):
    """Dense, with G_ii kept at the masked positions and interpolated elsewhere.

    Exact G_ii at any subset of positions still needs both sweeps over every position, so the
    BK-Core runs in full; the mask then selects which values survive.
    """

    def __init__(self, c: LayerConfig):
        super().__init__(c)
        self.importance = ImportancePredictor(c)
        self.mask = ImportanceMask(c)
        self.interpolation = Interpolation(c)

    def spectral_features(self, x: torch.Tensor, ffn_out: torch.Tensor) -> tuple[torch.Tensor, dict]:
        exact, _ = super().spectral_features(x, ffn_out)
        scores = self.importance(x)
        mask, sparsity = self.mask(scores)
        return self.interpolation(exact, mask), {"mask": mask, "sparsity": sparsity, "importance": scores}
