"""The closed-form backward of the BK-Core (bkprof.core.adjoint) against the dense-inverse gradient.

Ground truth: autograd through torch.linalg.inv of the dense complex128 matrix (tests/helpers.py), which
shares no code with the recurrences; gradcheck compares with finite differences.
"""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bkprof.core import adjoint, sweeps, tridiag_resolvent_diagonal
from tests.helpers import dense_resolvent_diagonal, random_chain, relative_max_error

TOLERANCE = {torch.float32: 1e-5, torch.float64: 1e-10}


def weighted_gradients(fn, inputs, weights, dtype, grad_of=(True, True, True)):
    """Gradients of sum(weights * (Re G, Im G)) with respect to the inputs marked in grad_of (None elsewhere)."""
    leaves = [t.detach().to(dtype).requires_grad_(flag) for t, flag in zip(inputs, grad_of)]
    (torch.view_as_real(fn(*leaves)) * weights.to(dtype)).sum().backward()
    return [t.grad for t in leaves]


def relative_gradient_error(ours, truth) -> float:
    return max((relative_max_error(a, b) for a, b in zip(ours, truth) if a is not None and a.numel()), default=0.0)


@given(
    n=st.integers(1, 200),
    scale=st.sampled_from([0.5, 3.0, 20.0, 100.0]),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    z=st.sampled_from([1j, 0.3 + 1j, -1 + 0.25j]),
    grad_of=st.sampled_from([(True, False, False), (True, True, True), (False, True, False)]),
    seed=st.integers(0, 2**31 - 1),
)
@settings(max_examples=25, deadline=None)
def test_vectorized_gradient_matches_dense_inverse(n, scale, dtype, z, grad_of, seed):
    gen = torch.Generator().manual_seed(seed)
    inputs = random_chain(gen, 2, n, scale)
    weights = torch.randn(2, n, 2, dtype=torch.float64, generator=gen)
    truth = weighted_gradients(lambda d, u, l: dense_resolvent_diagonal(d, u, l, z), inputs, weights, torch.float64)
    ours = weighted_gradients(lambda d, u, l: tridiag_resolvent_diagonal(d, u, l, z, backend="vectorized"),
                              inputs, weights, dtype, grad_of)
    for flag, grad in zip(grad_of, ours):
        assert (grad is not None) == flag
    assert relative_gradient_error(ours, truth) <= TOLERANCE[dtype]


def test_backward_does_not_differentiate_the_scan():
    """With a gradient needed, the vectorized backend runs the closed-form Function and saves d, e, k
    (two complex and one real value per position), not the scan's per-level tensors."""
    diag, upper, lower = (t.requires_grad_() for t in random_chain(torch.Generator().manual_seed(1), 2, 64, 3.0))
    g = tridiag_resolvent_diagonal(diag, upper, lower, backend="vectorized")
    assert g.grad_fn.name() == "ClosedFormResolventBackward"
    saved = g.grad_fn.saved_tensors
    assert [tuple(t.shape) for t in saved] == [(2, 64), (2, 64), (2, 63)]
    assert [t.dtype for t in saved] == [torch.complex128, torch.complex128, torch.float64]


def test_gradcheck_float64_with_well_separated_z():
    leaves = [t.requires_grad_() for t in random_chain(torch.Generator().manual_seed(2), 3, 11, 20.0)]

    def parts(d, u, l):
        return torch.view_as_real(tridiag_resolvent_diagonal(d, u, l, -1 + 0.25j, backend="vectorized"))

    assert torch.autograd.gradcheck(parts, leaves)


@pytest.mark.parametrize("n", [1, 2, 3, 31, 32, 33, 100])
def test_log_depth_recurrence_matches_the_sequential_one(n):
    gen = torch.Generator().manual_seed(n)
    a = torch.randn(3, n, dtype=torch.complex128, generator=gen) * 0.9
    b = torch.randn(3, n, dtype=torch.complex128, generator=gen)
    torch.testing.assert_close(adjoint.linear_recurrence(a, b), adjoint.sequential_recurrence(a, b),
                               rtol=1e-12, atol=1e-12)


def test_two_positions_by_hand():
    """N = 2: G_00 = 1 / (alpha_0 - k / alpha_1), so dG_00/dalpha_0 = -G_00^2, dG_00/dalpha_1 = -G_00^2 k / alpha_1^2
    and dG_00/dk = G_00^2 / alpha_1 (symmetric for G_11). With v = (1, 0): dL/dx = Re dG_00/dx."""
    alpha = torch.tensor([[0.5 - 1j, -0.25 - 1j]], dtype=torch.complex128)
    k = torch.tensor([[2.0]], dtype=torch.float64)
    left = torch.stack([alpha[:, 0], alpha[:, 1] - 2.0 / alpha[:, 0]], dim=-1)
    right = torch.stack([alpha[:, 0] - 2.0 / alpha[:, 1], alpha[:, 1]], dim=-1)
    grad = torch.tensor([[1.0 + 0j, 0.0]], dtype=torch.complex128)
    grad_alpha, grad_k = adjoint.resolvent_adjoint(grad, left, right, k, adjoint.sequential_recurrence)
    g00 = 1 / (alpha[0, 0] - 2.0 / alpha[0, 1])
    expected_alpha = torch.tensor([[(-g00 ** 2).real, (-g00 ** 2 * 2.0 / alpha[0, 1] ** 2).real]], dtype=torch.float64)
    torch.testing.assert_close(grad_alpha, expected_alpha)
    torch.testing.assert_close(grad_k, torch.tensor([[(g00 ** 2 / alpha[0, 1]).real]], dtype=torch.float64))
    torch.testing.assert_close(sweeps.combine(left, right, k.to(left.dtype))[0, 0], g00)
