"""The BK-Core's backward in closed form: the adjoint of G_ii from the forward's ratios, no scan to differentiate.

With A = T - zI and G = A^-1, dG = -G dA G, so dG_ii/dalpha_j = -G_ij G_ji and, because G_ii depends on
upper_j and lower_j only through k_j = upper_j lower_j, dG_ii/dk_j follows from dG_ii/dupper_j =
-G_ij G_{j+1,i}. Along a tridiagonal chain the off-diagonal entries of G are the diagonal ones times
ratio factors: walking right from the diagonal, G_{i,j+1} G_{j+1,i} = r_j G_ij G_ji with
r_j = k_j / e_{j+1}^2; walking left, G_{j,i} G_{i,j} = s_j G_{j+1,i} G_{i,j+1} with s_j = k_j / d_j^2
(d, e the left and right ratios of `sweeps`). For a loss L with PyTorch's gradient v = dL/dRe G + i dL/dIm G,
w = conj(v) and c_j = w_j G_jj^2, the sums over i become two first-order linear recurrences:

    U_j = c_j + r_{j-1} U_{j-1}   (U_0 = c_0)          sum over i <= j of w_i G_ij G_ji
    V_j = c_j + s_j V_{j+1}       (V_{N-1} = c_{N-1})  sum over i >= j

    dL/dalpha_j = Re(c_j - U_j - V_j)
    dL/dk_j     = Re(U_j / e_{j+1} + V_{j+1} / d_j)

(docs/gpu-kernel.md derives them). Every quantity is a ratio the forward computes, so the backward is
O(N) work and needs d, e and k only. The recurrences are linear, so they parallelise as an
associative scan of affine maps y -> a y + b, whose partial products stay bounded: a product of r_m
over i <= m < j is G_ij G_ji / G_ii^2.
"""

from __future__ import annotations

from typing import Callable

import torch

from bkprof.core import sweeps


def linear_recurrence(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """y_j = a_j y_{j-1} + b_j along the last dimension (y_{-1} = 0), by a log-depth Hillis-Steele scan
    of the affine maps (a_j, b_j): (a2, b2) after (a1, b1) is (a2 a1, a2 b1 + b2)."""
    n = a.shape[-1]
    offset = 1
    while offset < n:
        b = torch.cat([b[..., :offset], a[..., offset:] * b[..., :-offset] + b[..., offset:]], dim=-1)
        a = torch.cat([a[..., :offset], a[..., offset:] * a[..., :-offset]], dim=-1)
        offset *= 2
    return b


def sequential_recurrence(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The same recurrence one position at a time (the baseline `linear_recurrence` is tested against)."""
    out = [b[..., 0]]
    for j in range(1, a.shape[-1]):
        out.append(a[..., j] * out[-1] + b[..., j])
    return torch.stack(out, dim=-1)


Recurrence = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def resolvent_adjoint(grad: torch.Tensor, left: torch.Tensor, right: torch.Tensor, k: torch.Tensor,
                      recurrence: Recurrence = linear_recurrence,
                      want_k: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
    """dL/dalpha (B, N) and dL/dk (B, N-1, None unless `want_k`), real, from PyTorch's complex gradient
    `grad` of G (B, N), the left ratios d and right ratios e (B, N, complex) and the real couplings k (B, N-1)."""
    kc = k.to(left.dtype)
    g = sweeps.combine(left, right, kc)
    c = grad.conj() * g * g
    zero = torch.zeros_like(kc[..., :1])
    e_next, d_here = right[..., 1:], left[..., :-1]
    r = torch.cat([zero, kc / (e_next * e_next)], dim=-1)    # r_{j-1} at position j
    s = torch.cat([kc / (d_here * d_here), zero], dim=-1)    # s_j at position j
    u = recurrence(r, c)
    v = recurrence(s.flip(-1), c.flip(-1)).flip(-1)
    grad_alpha = (c - u - v).real
    grad_k = (u[..., :-1] / e_next + v[..., 1:] / d_here).real if want_k else None
    return grad_alpha, grad_k


class ClosedFormResolvent(torch.autograd.Function):
    """G_ii by the vectorized scan, differentiated by `resolvent_adjoint` (saves d, e and k)."""

    @staticmethod
    def forward(ctx, diag: torch.Tensor, k: torch.Tensor, z: complex) -> torch.Tensor:
        left, right = sweeps.scan_ratios(diag, k, z)
        ctx.save_for_backward(left, right, k)
        return sweeps.combine(left, right, k.to(left.dtype))

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        left, right, k = ctx.saved_tensors
        grad_alpha, grad_k = resolvent_adjoint(grad, left, right, k, want_k=ctx.needs_input_grad[1])
        return (grad_alpha.to(k.dtype) if ctx.needs_input_grad[0] else None,
                None if grad_k is None else grad_k.to(k.dtype), None)


def closed_form_sweeps(diag: torch.Tensor, k: torch.Tensor, z: complex) -> torch.Tensor:
    """The vectorized backend: the scan's G_ii, with the closed-form backward when a gradient is needed."""
    if torch.is_grad_enabled() and (diag.requires_grad or k.requires_grad):
        return ClosedFormResolvent.apply(diag, k, z)
    return sweeps.scan_sweeps(diag, k, z)
