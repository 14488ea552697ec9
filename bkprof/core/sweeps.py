"""The two O(N) sweeps of the BK-Core in ratio (continued-fraction) form.

With alpha_i = a_i - z and k_i = upper_i * lower_i, the left ratios
d_0 = alpha_0, d_i = alpha_i - k_{i-1} / d_{i-1} and the right ratios
e_{N-1} = alpha_{N-1}, e_i = alpha_i - k_i / e_{i+1} give
G_ii = 1 / (d_i - k_i / e_{i+1})  (and G_{N-1,N-1} = 1 / d_{N-1}).
Ratios of consecutive determinants stay O(|alpha| + |k|), so unlike the
theta/phi determinants they never overflow.
"""

from __future__ import annotations

import torch


def complex_chain(diag: torch.Tensor, k: torch.Tensor, z: complex) -> tuple[torch.Tensor, torch.Tensor]:
    """alpha = diag - z and k as complex tensors of the precision that matches the input."""
    cdtype = torch.complex128 if diag.dtype == torch.float64 else torch.complex64
    return diag.to(cdtype) - z, k.to(cdtype)


def combine(left: torch.Tensor, right: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """G_ii from the left ratios d, the right ratios e and the couplings k (all batched, last dim N)."""
    inner = left[..., :-1] - k / right[..., 1:]
    return torch.cat([inner, left[..., -1:]], dim=-1).reciprocal()


def reference_sweeps(diag: torch.Tensor, k: torch.Tensor, z: complex) -> torch.Tensor:
    """One position at a time, as the recursions read: the baseline every backend is checked against."""
    alpha, k = complex_chain(diag, k, z)
    n = alpha.shape[-1]
    left = [alpha[:, 0]]
    for i in range(1, n):
        left.append(alpha[:, i] - k[:, i - 1] / left[-1])
    right = [alpha[:, n - 1]]
    for i in range(n - 2, -1, -1):
        right.append(alpha[:, i] - k[:, i] / right[-1])
    return combine(torch.stack(left, dim=-1), torch.stack(right[::-1], dim=-1), k)


def scan_sweeps(diag: torch.Tensor, k: torch.Tensor, z: complex) -> torch.Tensor:
    """Both sweeps as one log-depth scan (the right sweep is the left sweep of the reversed chain)."""
    left, right = scan_ratios(diag, k, z)
    return combine(left, right, k.to(left.dtype))


def scan_ratios(diag: torch.Tensor, k: torch.Tensor, z: complex) -> tuple[torch.Tensor, torch.Tensor]:
    """The left ratios d and the right ratios e (complex, shape of diag), by one log-depth scan."""
    alpha, k = complex_chain(diag, k, z)
    rows = alpha.shape[0]
    ratios = continued_fraction_scan(torch.cat([alpha, alpha.flip(-1)]), torch.cat([k, k.flip(-1)]))
    return ratios[:rows], ratios[rows:].flip(-1)


def continued_fraction_scan(alpha: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """d_i = alpha_i - k_{i-1} / d_{i-1} for every i, by a Hillis-Steele scan of Moebius matrices.

    d_i = P_i[0,0] / P_i[1,0] with P_i = M_i ... M_0 and M_i = [[alpha_i, -k_{i-1}], [1, 0]].
    Each partial product is divided by its largest entry, which leaves the ratio unchanged and
    keeps every entry in range for any N.
    """
    n = alpha.shape[-1]
    zero = torch.zeros_like(alpha[..., :1])
    p = torch.stack([alpha, torch.cat([zero, -k], dim=-1), torch.ones_like(alpha), torch.zeros_like(alpha)])
    offset = 1
    while offset < n:
        p = torch.cat([p[..., :offset], _normalized_product(p[..., offset:], p[..., :-offset])], dim=-1)
        offset *= 2
    return p[0] / p[2]


def _normalized_product(later: torch.Tensor, earlier: torch.Tensor) -> torch.Tensor:
    a1, b1, c1, d1 = later
    a2, b2, c2, d2 = earlier
    product = torch.stack([a1 * a2 + b1 * c2, a1 * b2 + b1 * d2, c1 * a2 + d1 * c2, c1 * b2 + d1 * d2])
    # max |re|, |im| over the four entries: a cheap norm (complex abs is a slow hypot on the CPU)
    scale = torch.view_as_real(product).abs().amax(dim=(0, -1))
    return product * scale.reciprocal()
