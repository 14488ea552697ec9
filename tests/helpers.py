"""Ground truth and input generators shared by the tests."""

from __future__ import annotations

import torch


def dense_resolvent_diagonal(diag, upper, lower, z=1j) -> torch.Tensor:
    """diag((T - zI)^-1) by a dense complex128 inverse: the ground truth for every backend."""
    diag, upper, lower = (t.to(torch.float64) for t in (diag, upper, lower))
    batched = diag.dim() == 2
    if not batched:
        diag, upper, lower = diag[None], upper[None], lower[None]
    n = diag.shape[-1]
    t = torch.diag_embed(diag) + torch.diag_embed(upper, 1) + torch.diag_embed(lower, -1)
    shifted = t.to(torch.complex128) - z * torch.eye(n, dtype=torch.complex128)
    # one matrix at a time: after any torch.set_num_threads in the process (the CLI tests run bkprof in
    # it), MKL's batched complex LU fails on multi-threaded calls (pytorch/pytorch#141358)
    g = torch.stack([torch.linalg.inv(m).diagonal() for m in shifted])
    return g if batched else g[0]


def relative_max_error(value: torch.Tensor, truth: torch.Tensor) -> float:
    return ((value.to(torch.complex128) - truth).abs().max() / truth.abs().max()).item()


def random_chain(generator: torch.Generator, batch: int | None, n: int, scale: float, dtype=torch.float64):
    """A random tridiagonal chain: |diag| <= scale, non-symmetric off-diagonals with upper*lower > 0.

    upper*lower > 0 makes T similar to a real symmetric matrix, so T - zI is invertible for
    Im z != 0 and the dense inverse is a trustworthy reference.
    """
    shape = (n,) if batch is None else (batch, n)
    off = (n - 1,) if batch is None else (batch, n - 1)
    diag = (torch.rand(shape, generator=generator, dtype=torch.float64) * 2 - 1) * scale
    sign = torch.where(torch.rand(off, generator=generator) < 0.5, -1.0, 1.0).to(torch.float64)
    upper = sign * (0.05 + 2 * torch.rand(off, generator=generator, dtype=torch.float64))
    lower = sign * (0.05 + 2 * torch.rand(off, generator=generator, dtype=torch.float64))
    return diag.to(dtype), upper.to(dtype), lower.to(dtype)


def weighted_gradients(fn, inputs, weights, grad_of=(True, True, True)):
    """Gradients of sum(weights * (Re G, Im G)) with respect to the inputs marked in grad_of, G = fn(*inputs)."""
    leaves = [t.detach().requires_grad_(flag) for t, flag in zip(inputs, grad_of)]
    (torch.view_as_real(fn(*leaves)) * weights.to(leaves[0].dtype)).sum().backward()
    return [t.grad for t in leaves]
