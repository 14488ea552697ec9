"""The "triton" backend: unavailable (and harmless) on CPU; correct, differentiable and counted on CUDA.

The CUDA tests are skipped where CUDA or triton is missing (CI); run them on a GPU machine with
`python -m pytest -q tests/test_triton_backend.py` (their output: reports/pytest/H100-2026-11-24/triton-tests-H100.txt
for the forward on the H100, reports/bench-core/H200-2026-12-02/triton-tests*.txt with the backward on the H200).
"""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from bkprof.core import BACKENDS, resolve_backend, tridiag_resolvent_diagonal
from bkprof.core import triton_backend
from bkprof.variants import VARIANTS, LayerConfig, build
from tests.helpers import dense_resolvent_diagonal, random_chain, relative_max_error, weighted_gradients

ON_GPU = triton_backend.available("cuda")
gpu_only = pytest.mark.skipif(not ON_GPU, reason="needs CUDA and triton")
OP = torch.ops.bkprof.tridiag_resolvent_diagonal_triton
TRAIN_OP = torch.ops.bkprof.tridiag_resolvent_diagonal_triton_train
ADJOINT_OP = torch.ops.bkprof.tridiag_resolvent_adjoint_triton


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


# Counted by hand from the kernel source (convention of `kernel_flops`: every real +, -, *, /, negate,
# abs and max is 1). Per position slot, transfer matrices: alpha = diag - Re z 1; _left_transfer
# 4 lines of 3 mul + 2 add = 20; _right_transfer -kap 1 + 4 lines of 2 mul + 2 add + 4 mul = 21;
# _rescaled 8 abs + 7 max + 8 mul = 23, every second step in each direction = 23 per slot: 65.
# Sweeps: alpha again in _left_sweep and _right_sweep 2; _ratio_step kap / |x|^2 4 + 2 + 2 = 8;
# _right_step kap / |e|^2 4, t 2, w 2, 1 / |w|^2 4, e 2, G 3 = 17: 27. Per lane: the two scans'
# _matmul_rescaled 8 lines of 4 mul + 3 add = 56, + 23 = 79 per step; entering 2 x _apply_map
# (4 lines of 4, 1 / |q|^2 4, 2 x 4) = 56. Per program and other segment of its row: one _apply_map 28.
FORWARD_SLOT, SCAN_STEP, ENTRY, WALK = 1 + 20 + 21 + 23 + 2 + 8 + 17, 56 + 23, 2 * 28, 28


@pytest.mark.parametrize("n, per_row", [(256, FORWARD_SLOT * 256 + 32 * (2 * SCAN_STEP * 5 + ENTRY)),
                                        (2048, FORWARD_SLOT * 2048 + 128 * (2 * SCAN_STEP * 7 + ENTRY)),
                                        (6000, 3 * (FORWARD_SLOT * 2048 + 128 * (2 * SCAN_STEP * 7 + ENTRY) + 2 * WALK))])
def test_flops_follow_the_layout(n, per_row):
    """32 lanes x 8 slots at n = 256, 128 lanes x 16 at n = 2048, two scans of log2(lanes) steps;
    three such segments at n = 6000, each program carrying its ratios through the other two's maps."""
    assert triton_backend.kernel_flops(3, n) == 3 * per_row


# The backward kernel by hand, per position slot. _weights: k / |e_next|^2 4, w = d - k / e_next 4,
# 1 / |w|^2 4, G 3, G^2 5, conj(v) G^2 1 + 6 = 27; _real_over_square 10 (r in pass 1, s in pass 2);
# one _step 8 per pass; outputs: pass 1 Re(c - U) 1 + Re(U / e_next) 7, pass 2 subtract 1 +
# Re(V_next / d) 7 + add 1. Per lane and pass: _lane_maps 3 x _affine_after (2 x 6 mul + 2 add) = 42,
# 14 per scan step, entering _step 8.
BACKWARD_SLOT = (27 + 10 + 8 + 1 + 7) + (27 + 10 + 8 + 1 + 7 + 1)
BACKWARD_LANE_PASS = 42 + 8


@pytest.mark.parametrize("n, per_row", [(1, 32 * (4 * BACKWARD_SLOT + 2 * (BACKWARD_LANE_PASS + 14 * 5))),
                                        (256, 64 * (4 * BACKWARD_SLOT + 2 * (BACKWARD_LANE_PASS + 14 * 6))),
                                        (4097, 5 * 256 * (4 * BACKWARD_SLOT + 2 * (BACKWARD_LANE_PASS + 14 * 8)))])
def test_backward_flops_follow_the_layout(n, per_row):
    """One block of 32 lanes at n = 1 (a warp at least), 64 lanes at n = 256 (64 x 4 positions),
    five blocks of 256 lanes at n = 4097 (4 x 256 = 1024 positions a block)."""
    assert triton_backend.backward_kernel_flops(3, n) == 3 * per_row
    assert BACKENDS["triton"].backward_flops is triton_backend.backward_kernel_flops


def test_flop_counter_reads_the_kernel_formula():
    """Shapes only (meta tensors): torch's flop counter sees the opaque op through its registered formula."""
    diag, k = torch.empty(3, 1000, device="meta"), torch.empty(3, 999, device="meta")
    with FlopCounterMode(display=False) as counter:
        g = OP(diag, k, 0.0, 1.0)
    assert g.shape == (3, 1000) and g.dtype == torch.complex64
    assert counter.get_total_flops() == triton_backend.kernel_flops(3, 1000)


def test_training_ops_have_fake_shapes_and_formulas():
    """The training forward (G and the saved ratios) and the backward op on meta tensors: shapes, dtypes, FLOPs."""
    diag, k = torch.empty(3, 1000, device="meta", dtype=torch.float64), torch.empty(3, 999, device="meta", dtype=torch.float64)
    with FlopCounterMode(display=False) as counter:
        g, ratios = TRAIN_OP(diag, k, 0.0, 1.0)
        grad_diag, grad_k = ADJOINT_OP(g, ratios, k)
    assert g.dtype == torch.complex128 and ratios.shape == (2, 3, 1000, 2) and ratios.dtype == torch.float64
    assert grad_diag.shape == (3, 1000) and grad_k.shape == (3, 999) and grad_k.dtype == torch.float64
    counts = counter.get_flop_counts()["Global"]
    assert counts[TRAIN_OP] == triton_backend.kernel_flops(3, 1000)
    assert counts[ADJOINT_OP] == triton_backend.backward_kernel_flops(3, 1000)


# ---- CUDA -------------------------------------------------------------------------------------

def _chain_on_gpu(seed, batch, n, scale, dtype=torch.float32):
    diag, upper, lower = random_chain(torch.Generator().manual_seed(seed), batch, n, scale, torch.float64)
    return diag.to("cuda", dtype), upper.to("cuda", dtype), lower.to("cuda", dtype)


def _scaled_case(batch, n, scale):
    """A float32 chain with |diag| <= scale; z = i, or off the imaginary axis for the large diagonals."""
    return (*_chain_on_gpu(batch * 7919 + n, batch, n, scale), 1j if scale == 3.0 else -1 + 0.25j)


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
    diag, upper, lower, z = _scaled_case(batch, n, scale)
    g = _poisoned_launch(diag, upper * lower, z)
    assert g.dtype == torch.complex64 and g.shape == (batch, n)
    assert torch.isfinite(torch.view_as_real(g)).all()
    assert relative_max_error(g, _truth(diag, upper, lower, z)) <= 1e-5


FLOAT64_SIZES = [(1, 1), (1, 2), (3, 9), (5, 64), (2, 300), (2, 1500), (3, 5000)]


@gpu_only
@pytest.mark.parametrize("batch, n", FLOAT64_SIZES)
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
    assert triton_backend._plain(diag, k) and not k.requires_grad
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



def _gradient_truth(diag, upper, lower, z, weights):
    """float64 gradients: autograd through the dense inverse (CPU) for short rows; for long ones the
    vectorized backend's closed form in float64, which tests/test_adjoint.py holds to the dense inverse."""
    inputs = [t.double() for t in (diag, upper, lower)]
    if diag.shape[-1] <= 64:
        cpu = weighted_gradients(lambda d, u, l: dense_resolvent_diagonal(d, u, l, z),
                                  [t.cpu() for t in inputs], weights.double().cpu())
        return [g.to(diag.device) for g in cpu]
    return weighted_gradients(lambda d, u, l: tridiag_resolvent_diagonal(d, u, l, z, backend="vectorized"),
                               inputs, weights.double())


def _gradient_error(diag, upper, lower, z, grad_of=(True, True, True)):
    weights = torch.randn(*diag.shape, 2, device="cuda", generator=torch.Generator("cuda").manual_seed(diag.shape[-1]))
    ours = weighted_gradients(lambda d, u, l: tridiag_resolvent_diagonal(d, u, l, z, backend="triton"),
                               (diag, upper, lower), weights, grad_of)
    truth = _gradient_truth(diag, upper, lower, z, weights)
    for flag, grad in zip(grad_of, ours):
        assert (grad is not None) == flag
        assert grad is None or torch.isfinite(grad).all()
    return max((relative_max_error(a, b) for a, b in zip(ours, truth) if a is not None and a.numel()), default=0.0)


# around every change of the forward's layout (lanes, positions per lane, segments) and the backward's
# (lanes, blocks of 4 x 256 positions)
GRAD_GRID = [(1, 1), (3, 2), (5, 5), (2, 127), (8, 256), (1024, 256), (7, 257), (3, 1000), (5, 1024), (3, 1025),
             (5, 2047), (3, 2049), (33, 4096), (2, 6145), (4, 16384), (1024, 16384), (1, 65536), (1, 100_003)]


@gpu_only
@pytest.mark.parametrize("batch, n", GRAD_GRID)
@pytest.mark.parametrize("scale", [3.0, 100.0])
def test_float32_gradient_matches_float64(batch, n, scale):
    assert _gradient_error(*_scaled_case(batch, n, scale)) <= 1e-5


FLOAT64_GRAD_SIZES = [(1, 1), (3, 9), (5, 64), (2, 300), (2, 1500), (3, 5000)]


@gpu_only
@pytest.mark.parametrize("batch, n", FLOAT64_GRAD_SIZES)
@pytest.mark.parametrize("z", [1j, 0.3 + 1j])
def test_float64_gradient_matches_float64(batch, n, z):
    diag, upper, lower = _chain_on_gpu(n, batch, n, 20.0, torch.float64)
    assert _gradient_error(diag, upper, lower, z) <= 1e-10


@gpu_only
def test_gradient_for_diag_only_and_finite_for_long_rows():
    n = 262_144
    v = torch.empty(1, n, device="cuda").uniform_(-3, 3, generator=torch.Generator("cuda").manual_seed(8))
    ones = torch.ones(1, n - 1, device="cuda")
    diag = (v - 2).requires_grad_()
    torch.view_as_real(tridiag_resolvent_diagonal(diag, ones, ones, backend="triton")).sum().backward()
    assert torch.isfinite(diag.grad).all() and diag.grad.abs().max() > 0
    diag, upper, lower = _chain_on_gpu(9, 4, 3000, 10.0)
    assert _gradient_error(diag, upper, lower, 1j, grad_of=(True, False, False)) <= 1e-5


@gpu_only
def test_saved_for_backward_are_the_ratios():
    """With a gradient needed the op keeps d and e (two complex64 per position: 16 B) besides its input k."""
    diag, upper, lower = _chain_on_gpu(7, 64, 4096, 3.0)
    diag.requires_grad_()
    k = upper * lower
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    g = triton_backend.run(diag, k, 1j)
    extra = torch.cuda.memory_allocated() - before - g.numel() * g.element_size()
    assert 16 * diag.numel() <= extra <= 16 * diag.numel() + 4096
    assert g.grad_fn is not None


@gpu_only
def test_backward_under_cuda_graph_capture_and_compile():
    from bkprof.profile.timing import capture

    diag, upper, lower = _chain_on_gpu(6, 4, 3000, 10.0)
    weights = torch.randn(4, 3000, 2, device="cuda", generator=torch.Generator("cuda").manual_seed(6))

    def loss_of(d):
        g = tridiag_resolvent_diagonal(d, upper, lower, check_finite=False, backend="triton")
        return (torch.view_as_real(g) * weights).sum()

    def step(d):
        leaf = d.detach().requires_grad_()
        loss_of(leaf).backward()
        return leaf.grad

    eager = step(diag)
    with FlopCounterMode(display=False) as counter:
        step(diag)
    assert counter.get_flop_counts()["Global"][ADJOINT_OP] == triton_backend.backward_kernel_flops(4, 3000)
    # captured: the replay on new inputs gives the eager gradient bit for bit (same kernels)
    static, result = diag.clone(), torch.empty_like(diag)
    graph = capture(lambda d: result.copy_(step(d)), static)
    static.copy_(diag * 0.5)
    graph.replay()
    torch.cuda.synchronize()
    assert torch.equal(result, step(diag * 0.5))
    # compiled: traced through the ops' fake implementations, then run
    leaf = diag.detach().requires_grad_()
    torch.compile(loss_of, fullgraph=True)(leaf).backward()
    torch.testing.assert_close(leaf.grad, eager, rtol=1e-6, atol=1e-6)


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
    counts = counter.get_flop_counts()["Global"]
    return loss.item(), grads, counts.get(TRAIN_OP, 0) + counts.get(ADJOINT_OP, 0), moved


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
