"""Sparsity losses of the second source document (docs/sweeps.md), usable from the variants' stats,
and the router's load-balancing loss (Switch Transformer).

Current sparsity is 1 - mean(mask): in train mode the sparse layer's mask is a straight-through
Gumbel-sigmoid, so every loss here sends gradients back into the importance predictor. Nothing is
modified in place, so backward works (the original's failed with an in-place autograd error).
"""

from __future__ import annotations

import torch

from bkprof.training.kinds import LOSS_KINDS

# The source's demo numbers (current 0.387, target 0.5: adaptive 0.006328) come from delta = 0.1.
DEFAULT_DELTA = 0.1

# KL needs 0 < current < 1; the clamp keeps log() finite when a mask keeps everything or nothing.
_KL_EPS = 1e-6


def current_sparsity(mask: torch.Tensor) -> torch.Tensor:
    """1 - mean(mask) over every position of every sequence (a 0-dim tensor, differentiable)."""
    return 1 - mask.mean()


def sparsity_loss(current: torch.Tensor, target: float | torch.Tensor, kind: str = "adaptive",
                  delta: float = DEFAULT_DELTA) -> torch.Tensor:
    """The penalty for `current` sparsity missing `target`.

    A tensor `target` (a training schedule's value on the device) is taken as it is: checking its
    range would read it back to the host, a sync that a captured training step cannot have.

    l2: (c - t)^2; l1: |c - t|; kl: Bernoulli KL(t || c) = t log(t/c) + (1-t) log((1-t)/(1-c));
    adaptive: Huber, 0.5 (c - t)^2 if |c - t| < delta else delta (|c - t| - delta/2).
    """
    if not isinstance(target, torch.Tensor) and not 0 <= target <= 1:
        raise ValueError(f"target sparsity must be in [0, 1], got {target}")
    target_t = torch.as_tensor(target, dtype=current.dtype, device=current.device)
    if kind == "l2":
        return (current - target_t).square()
    if kind == "l1":
        return (current - target_t).abs()
    if kind == "kl":
        c = current.clamp(_KL_EPS, 1 - _KL_EPS)
        # xlogy gives 0 for a target of exactly 0 or 1 (0 log 0 = 0)
        return (torch.xlogy(target_t, target_t) - torch.xlogy(target_t, c)
                + torch.xlogy(1 - target_t, 1 - target_t) - torch.xlogy(1 - target_t, 1 - c))
    if kind == "adaptive":
        if not delta > 0:
            raise ValueError(f"delta must be positive, got {delta}")
        return torch.nn.functional.huber_loss(current, target_t, delta=delta)
    raise ValueError(f"sparsity loss kind must be one of {', '.join(LOSS_KINDS)}, got {kind!r}")


def stats_sparsity(stats: dict) -> torch.Tensor:
    """current_sparsity of the mask in the stats dict that the sparse and combined variants return."""
    if "mask" not in stats:
        raise ValueError("stats hold no 'mask': only the sparse and combined variants have a sparsity loss")
    return current_sparsity(stats["mask"])


def stats_sparsity_loss(stats: dict, target: float, kind: str = "adaptive",
                        delta: float = DEFAULT_DELTA) -> torch.Tensor:
    """sparsity_loss for a sparse or combined variant's stats dict."""
    return sparsity_loss(stats_sparsity(stats), target, kind, delta)


def balanced_loss(task_loss: torch.Tensor, stats: dict, target: float | torch.Tensor, *, kind: str = "adaptive",
                  sparsity_weight: float | torch.Tensor = 0.01, accuracy_weight: float = 1.0,
                  delta: float = DEFAULT_DELTA) -> tuple[torch.Tensor, dict]:
    """accuracy_weight * task_loss + sparsity_weight * sparsity_loss, and its breakdown.

    The breakdown holds detached 0-dim tensors (no device sync on a GPU) and the settings as given
    (plain floats, or tensors when a schedule on the device gives them): total_loss, accuracy_loss, sparsity_loss, current_sparsity, target_sparsity,
    sparsity_weight, accuracy_weight.
    """
    current = stats_sparsity(stats)
    penalty = sparsity_loss(current, target, kind, delta)
    total = accuracy_weight * task_loss + sparsity_weight * penalty
    breakdown = {
        "total_loss": total.detach(),
        "accuracy_loss": task_loss.detach(),
        "sparsity_loss": penalty.detach(),
        "current_sparsity": current.detach(),
        "target_sparsity": _setting(target),
        "sparsity_weight": _setting(sparsity_weight),
        "accuracy_weight": float(accuracy_weight),
    }
    return total, breakdown


def _setting(value):
    """A float as a float; a tensor left on its device (float() would be a host sync)."""
    return value if isinstance(value, torch.Tensor) else float(value)


def route_counts(expert_index: torch.Tensor, num_experts: int) -> torch.Tensor:
    """(token, slot) pairs routed to each expert: (E,) int64.

    scatter_add, not bincount: bincount reads the largest index back to the host (a sync on CUDA,
    which a captured training step cannot have)."""
    flat = expert_index.flatten()
    return torch.zeros(num_experts, dtype=torch.long, device=flat.device).scatter_add_(0, flat, torch.ones_like(flat))


def expert_load(expert_index: torch.Tensor, num_experts: int) -> torch.Tensor:
    """Fraction of the (token, slot) pairs routed to each expert: (E,), summing to 1."""
    counts = route_counts(expert_index, num_experts)
    return counts.to(torch.float32) / max(1, expert_index.numel())


def load_balancing_loss(router_probs: torch.Tensor, expert_index: torch.Tensor, num_experts: int) -> torch.Tensor:
    """Switch Transformer's auxiliary loss, E * sum_e f_e * P_e: f_e the fraction of (token, slot)
    pairs routed to expert e (no gradient: a count), P_e the mean router probability of e over the
    tokens (differentiable). 1 when routing is uniform, up to E when every token goes to one expert
    with certainty; its gradient pushes probability away from the experts that get the most tokens.

    router_probs (..., E) and expert_index (..., top_k), as the dense layer's stats hold them.
    """
    if router_probs.shape[-1] != num_experts:
        raise ValueError(f"router_probs has {router_probs.shape[-1]} experts in its last dimension, "
                         f"expected {num_experts}")
    fraction = expert_load(expert_index, num_experts).to(router_probs.dtype)
    mean_prob = router_probs.reshape(-1, num_experts).mean(dim=0)
    return num_experts * (fraction * mean_prob).sum()
