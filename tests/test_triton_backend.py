"""The "triton" backend: unavailable (and harmless) on CPU; correct, differentiable and counted on CUDA.

The CUDA tests are skipped where CUDA or triton is missing (CI); run them on a GPU machine with
`python -m pytest -q tests/test_triton_backend.py` (their output is in reports/pytest/H100-2026-11-24/triton-tests-H100.txt).
"""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from bkprof.core import BACKENDS, resolve_backend, tridiag_resolvent_diagonal
from bkprof.core import triton_backend
from bkprof.variants import VARIANTS, LayerConfig, build
from tests.helpers import dense_resolvent_diagonal, random_chain, relative_max_error

ON_GPU = triton_backend.available("cuda")
gpu_only = pytest.mark.skipif(not ON_GPU, reason="needs CUDA and triton")
OP = torch.ops.bkprof.tridiag_resolvent_diagonal_triton


# ---- everywhere -------------------------------------------------------------------------------

def test_registered_but_unavailable_on_cpu():
    assert "triton" in BACKENDS
    assert not BACKENDS["triton"].available(torch.device("cpu"))
    with pytest.raises(ValueError, match="not available"):
        resolve_backend("triton", "cpu")
    assert resolve_backend("auto", "cpu").name == "vectorized"


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 63, 256, 257, 1000, 4096, 4097, 16384, 65536, 100_003])
def test_kernel_flops_linear_in_rows(n):
    per_row = triton_backend.kernel_flops(1, n)
    assert triton_backend.kernel_flops(0, n) == 0
    for rows in (2, 7, 1024):
        assert triton_backend.kernel_flops(rows, n) == rows * per_row
    # at least the 26 FLOPs per position of the sweeps, which every position slot runs
    assert per_row >= triton_backend.SWEEP_FLOPS_PER_SLOT * n
    assert BACKENDS["triton"].kernel_flops is triton_backend.kernel_flops


@pytest.mark.parametrize("n", [1, 2, 3, 5, 256, 257, 1000, 2047, 2048, 2049, 4096, 6145, 65536])
def test_layout_covers_the_row(n):
    SEGMENT_MAX = triton_backend.SEGMENT_LANES * triton_backend.TILE
    lanes, per_lane, segments = triton_backend.row_layout(n)
    assert per_lane in (4, 8, 16) and lanes % 32 == 0 and lanes & (lanes - 1) == 0
    assert segments == -(-n // SEGMENT_MAX)
    capacity = segments * lanes * per_lane
    assert capacity >= n > capacity - SEGMENT_MAX or lanes == triton_backend.MIN_LANES
    if segments > 1:
        assert lanes * per_lane == SEGMENT_MAX


@pytest.mark.parametrize("n, per_row", [(256, (65 + 26) * 256 + 32 * (2 * 79 * 5 + 56)),
                                        (2048, (65 + 26) * 2048 + 128 * (2 * 79 * 7 + 56)),
                                        (6000, 3 * ((65 + 26) * 2048 + 128 * (2 * 79 * 7 + 56) + 2 * 28))])
def test_flops_follow_the_layout(n, per_row):
    """32 lanes x 8 slots at n = 256, 128 lanes x 16 at n = 2048, two scans of log2(lanes) steps;
    three such segments at n = 6000, each program carrying its ratios through the other two's maps."""
    assert triton_backend.kernel_flops(3, n) == 3 * per_row


def test_flop_counter_reads_the_kernel_formula():
    """Shapes only (meta tensors): torch's flop counter sees the opaque op through its registered formula."""
    diag, k = torch.empty(3, 1000, device="meta"), torch.empty(3, 999, device="meta")
    with FlopCounterMode(display=False) as counter:
        g = OP(diag, k, 0.0, 1.0)
    assert g.shape == (3, 1000) and g.dtype == torch.complex64
    assert counter.get_total_flops() == triton_backend.kernel_flops(3, 1000)


# ---- CUDA -------------------------------------------------------------------------------------

def _chain_on_gpu(seed, batch, n, scale, dtype=torch.float32):
    diag, upper, lower = random_chain(torch.Generator().manual_seed(seed), batch, n, scale, torch.float64)
    return diag.to("cuda", dtype), upper.to("cuda", dtype), lower.to("cuda", dtype)


def _poisoned_launch(diag, k, z):
    """Run the kernel into an output buffer filled with NaN: any element not written stays NaN."""
    out = torch.full((*diag.shape, 2), float("nan"), dtype=diag.dtype, device=diag.device)
    triton_backend.launch(diag, k, z, out)
    return torch.view_as_complex(out)


def _truth(diag, upper, lower, z):
    if diag.shape[-1] <= 64:
        return dense_resolvent_diagonal(diag.cpu(), upper.cpu(), lower.cpu(), z).to(diag.device)
    return tridiag_resolvent_diagonal(diag.double(), upper.double(), lower.double(), z, backend="vectorized")


# one-segment rows (N <= 2048) around each layout change, then rows of several segments of 2048
# whose last segment holds one position, all 2048, or some
GRID = [(1, 1), (3, 1), (1, 2), (3, 2), (1, 3), (5, 5), (64, 17), (1024, 2), (1024, 64), (2, 127), (8, 255),
        (8, 256), (1024, 256), (7, 257), (3, 511), (3, 513), (2, 1000), (8, 1024), (5, 2047), (64, 2048), (3, 2049),
        (33, 4096), (2, 6145), (1, 16384), (256, 16384), (1024, 16384), (1, 65536), (4, 65536), (1, 100_003)]


@gpu_only
@pytest.mark.parametrize("batch, n", GRID)
@pytest.mark.parametrize("scale", [3.0, 100.0])
def test_float32_matches_float64_reference(batch, n, scale):
    diag, upper, lower = _chain_on_gpu(batch * 7919 + n, batch, n, scale)
    z = 1j if scale == 3.0 else -1 + 0.25j
    g = _poisoned_launch(diag, upper * lower, z)
    assert g.dtype == torch.complex64 and g.shape == (batch, n)
    assert torch.isfinite(torch.view_as_real(g)).all()
    assert relative_max_error(g, _truth(diag, upper, lower, z)) <= 1e-5


@gpu_only
@pytest.mark.parametrize("batch, n", [(1, 1), (1, 2), (3, 9), (5, 64), (2, 300), (2, 1500), (3, 5000)])
@pytest.mark.parametrize("z", [1j, 0.3 + 1j])
def test_float64_matches_float64_reference(batch, n, z):
    diag, upper, lower = _chain_on_gpu(n, batch, n, 20.0, torch.float64)
    g = _poisoned_launch(diag, upper * lower, z)
    assert g.dtype == torch.complex128
    assert relative_max_error(g, _truth(diag, upper, lower, z)) <= 1e-10


@gpu_only
def test_public_entry_uses_the_op_and_auto_picks_it():
    diag, upper, lower = _chain_on_gpu(5, 16, 3000, 10.0)
    assert resolve_backend("auto", diag.device).name == "triton"
    direct = _poisoned_launch(diag, upper * lower, 1j)
    with FlopCounterMode(display=False) as counter:
        g = tridiag_resolvent_diagonal(diag, upper, lower, backend="auto")
    assert torch.equal(g, direct)
    assert counter.get_flop_counts()["Global"][OP] == triton_backend.kernel_flops(16, 3000)
    unbatched = tridiag_resolvent_diagonal(diag[3], upper[3], lower[3], backend="triton")
    assert torch.equal(unbatched, direct[3])
    # unobserved calls skip the dispatcher; observed ones go through the op: same kernels, same bits
    k = upper * lower
    assert triton_backend._unobserved(diag, k)
    assert torch.equal(triton_backend.run(diag, k, 1j), OP(diag, k, 0.0, 1.0))


@gpu_only
def test_gradient_matches_dense_derivative():
    diag, upper, lower = _chain_on_gpu(4, 2, 9, 5.0, torch.float64)
    weights = torch.randn(2, 9, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    grads = {}
    for name, device, fn in [("dense", "cpu", dense_resolvent_diagonal),
                             ("triton", "cuda", lambda d, u, l: tridiag_resolvent_diagonal(d, u, l, backend="triton"))]:
        leaves = [t.detach().to(device).requires_grad_() for t in (diag, upper, lower)]
        (torch.view_as_real(fn(*leaves)) * weights.to(device)).sum().backward()
        grads[name] = [t.grad.cpu() for t in leaves]
    for ours, truth in zip(grads["triton"], grads["dense"]):
        torch.testing.assert_close(ours, truth, rtol=1e-9, atol=1e-12)


@gpu_only
def test_gradcheck_float64():
    leaves = [t.requires_grad_() for t in _chain_on_gpu(3, 2, 6, 3.0, torch.float64)]

    def real_parts(d, u, l):
        return torch.view_as_real(tridiag_resolvent_diagonal(d, u, l, backend="triton"))

    assert torch.autograd.gradcheck(real_parts, leaves)


def _training_step(name, backend, x):
    """One forward + backward + SGD step; returns the loss, the gradients and the op's counted FLOPs."""
    module = build(name, LayerConfig(d_model=32, n_seq=x.shape[1], backend=backend), seed=0).cuda().train()
    torch.manual_seed(1)  # same dropout and Gumbel noise for both backends
    with FlopCounterMode(display=False) as counter:
        out, _ = module(x)
        loss = out.square().mean()
        loss.backward()
    grads = {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}
    before = {n: p.detach().clone() for n, p in module.named_parameters()}
    torch.optim.SGD(module.parameters(), lr=0.1).step()
    moved = any(not torch.equal(before[n], p) for n, p in module.named_parameters())
    return loss.item(), grads, counter.get_flop_counts()["Global"].get(OP, 0), moved


@gpu_only
@pytest.mark.parametrize("name", VARIANTS)
def test_training_step_through_every_variant(name):
    x = torch.randn(2, 128, 32, device="cuda", generator=torch.Generator("cuda").manual_seed(0))
    loss, grads, op_flops, moved = _training_step(name, "triton", x)
    ref_loss, ref_grads, _, _ = _training_step(name, "vectorized", x)
    assert op_flops > 0, "the triton op did not run"
    assert moved
    v_grad = next(g for n, g in grads.items() if n.endswith("v_proj.proj.weight"))
    assert v_grad.abs().sum() > 0, "no gradient reached the BK-Core's input"
    assert abs(loss - ref_loss) <= 1e-5 * abs(ref_loss)
    assert grads.keys() == ref_grads.keys()
    for n in grads:
        assert torch.isfinite(grads[n]).all(), n
        torch.testing.assert_close(grads[n], ref_grads[n], rtol=1e-3, atol=1e-5, msg=n)
