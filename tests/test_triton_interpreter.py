"""The Triton kernels themselves on the CPU, in Triton's interpreter, against the float64 dense inverse.

Opt-in: needs triton installed and TRITON_INTERPRET=1 set before bkprof is imported, e.g.

    TRITON_INTERPRET=1 python -m pytest -q -n 0 tests/test_triton_interpreter.py

`.ci/run` does so in a step of its own, with triton pinned and BKPROF_REQUIRE_INTERPRETER=1, under
which a missing interpreter fails the module instead of skipping it; the main test run has no triton
and skips it. The interpreter runs a
kernel's programs one after another: rows of several segments (N > 2,048), whose programs wait for
each other, would never finish there, so only rows of one segment run here (the GPU tests in
tests/test_triton_backend.py cover the others). The backward's blocks of 4 x 256 positions do
change inside that range (two blocks from N = 1,025).
"""

from __future__ import annotations

import os

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from bkprof.core import triton_backend
from tests.helpers import dense_resolvent_diagonal, random_chain, relative_max_error, weighted_gradients

NEEDS = ("needs triton and TRITON_INTERPRET=1 before import (the kernels run on the CPU in Triton's "
         "interpreter); .ci/run's interpreter step has them")
if os.environ.get("BKPROF_REQUIRE_INTERPRETER") == "1" and not triton_backend.INTERPRETED:
    pytest.fail(f"BKPROF_REQUIRE_INTERPRETER=1 but the kernels are not interpreted: {NEEDS}", pytrace=False)
pytestmark = pytest.mark.skipif(not triton_backend.INTERPRETED, reason=NEEDS)

TOLERANCE = {torch.float32: 1e-5, torch.float64: 1e-10}
# around each change of the forward's layout (lanes 32 -> 128, positions per lane 4 / 8 / 16) and the
# backward's (lanes 32 -> 256, then two blocks), all one segment
SIZES = [(1, 1), (3, 2), (2, 5), (4, 17), (2, 127), (2, 128), (3, 129), (2, 256), (2, 257), (1, 1000),
         (1, 1024), (1, 1025), (1, 2047), (1, 2048)]


def _case(batch, n, scale, dtype):
    diag, upper, lower = random_chain(torch.Generator().manual_seed(batch * 7919 + n), batch, n, scale, dtype)
    return diag, upper, lower, (1j if scale == 3.0 else -1 + 0.25j)


@pytest.mark.parametrize("batch, n", SIZES)
@pytest.mark.parametrize("scale, dtype", [(3.0, torch.float32), (100.0, torch.float32), (20.0, torch.float64)])
def test_forward_kernel_matches_dense_inverse(batch, n, scale, dtype):
    """launch() into NaN-filled buffers: every element of G and of the saved ratios written, G as the
    dense inverse's diagonal, and G recomputed from the saved ratios (as the backward does) the same."""
    diag, upper, lower, z = _case(batch, n, scale, dtype)
    k = upper * lower
    out = torch.full((batch, n, 2), float("nan"), dtype=dtype)
    ratios = torch.full((2, batch, n, 2), float("nan"), dtype=dtype)
    triton_backend.launch(diag, k, z, out, ratios)
    assert not ratios.isnan().any() and not out.isnan().any()
    g = torch.view_as_complex(out)
    truth = dense_resolvent_diagonal(diag, upper, lower, z)
    assert relative_max_error(g, truth) <= TOLERANCE[dtype]
    d, e = (torch.view_as_complex(r).to(torch.complex128) for r in ratios)
    inner = d[:, :-1] - k.double() / e[:, 1:]
    assert relative_max_error(1 / torch.cat([inner, d[:, -1:]], dim=-1), truth) <= 10 * TOLERANCE[dtype]
    without = torch.full((batch, n, 2), float("nan"), dtype=dtype)
    triton_backend.launch(diag, k, z, without)
    assert torch.equal(without, out)  # SAVE changes what is stored, not G



@pytest.mark.parametrize("batch, n", SIZES)
@pytest.mark.parametrize("scale, dtype", [(3.0, torch.float32), (100.0, torch.float32), (20.0, torch.float64)])
def test_backward_kernel_matches_dense_gradient(batch, n, scale, dtype):
    """run() with a gradient needed (the eager fast path: forward kernel with SAVE, then the adjoint
    kernel) against autograd through the float64 dense inverse, for diag, upper and lower."""
    diag, upper, lower, z = _case(batch, n, scale, dtype)
    weights = torch.randn(batch, n, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(n))
    truth = weighted_gradients(lambda d, u, l: dense_resolvent_diagonal(d, u, l, z),
                                [t.double() for t in (diag, upper, lower)], weights)
    ours = weighted_gradients(lambda d, u, l: triton_backend.run(d, u * l, z), (diag, upper, lower), weights)
    for got, want in zip(ours, truth):
        assert got.dtype == dtype and not got.isnan().any()
        if want.numel():
            assert relative_max_error(got, want) <= TOLERANCE[dtype]


def test_gradcheck_through_the_fast_path():
    leaves = [t.requires_grad_() for t in random_chain(torch.Generator().manual_seed(3), 2, 6, 3.0)]
    assert torch.autograd.gradcheck(lambda d, u, l: torch.view_as_real(triton_backend.run(d, u * l, -1 + 0.5j)),
                                    leaves)


def test_fast_path_and_custom_ops_agree_bit_for_bit():
    """The same kernels either way: the plain Function unobserved, the custom ops (counted) under
    FlopCounterMode; G and both gradients equal bit for bit."""
    diag, upper, lower, z = _case(3, 300, 3.0, torch.float32)
    k = upper * lower
    results = []
    for observed in (False, True):
        leaf = diag.detach().requires_grad_()
        kk = k.detach().requires_grad_()
        with FlopCounterMode(display=False) if observed else torch.autograd.graph.saved_tensors_hooks(
                lambda t: t, lambda t: t) as counter:
            g = triton_backend.run(leaf, kk, z)
            torch.view_as_real(g).sum().backward()
        results.append((g.grad_fn.name(), g.detach(), leaf.grad, kk.grad, counter))
    (fast_name, *fast), (op_name, *op) = results
    assert fast_name == "_EagerResolventBackward" and "triton_train" in op_name
    for a, b in zip(fast[:3], op[:3]):
        assert torch.equal(a, b)
    counts = op[3].get_flop_counts()["Global"]
    assert counts[torch.ops.bkprof.tridiag_resolvent_adjoint_triton] == triton_backend.backward_kernel_flops(3, 300)


def test_compiled_loss_runs_the_custom_ops():
    """torch.compile(fullgraph=True) traces run() through the ops' fake implementations and
    registered autograd (aot_eager here: the CPU has no Triton code generation for Inductor to
    reuse, and the point is the tracing); its gradient equals the eager one."""
    diag, upper, lower, z = _case(2, 200, 3.0, torch.float32)
    k = upper * lower

    def loss_of(d):
        return torch.view_as_real(triton_backend.run(d, k, z)).square().sum()

    grads = []
    for fn in (loss_of, torch.compile(loss_of, fullgraph=True, backend="aot_eager")):
        leaf = diag.detach().requires_grad_()
        fn(leaf).backward()
        grads.append(leaf.grad)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-6, atol=1e-6)
