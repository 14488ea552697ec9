"""The triton backend's host side on the CPU, with the kernels replaced by stand-ins written in torch.

`run` must pick the plain autograd.Function (the eager fast path) exactly when nothing observes the
call, and the custom ops otherwise; the launchers must launch nothing but the two kernels for rows of
one segment (no fills, no copies), and the backward must save the ratios and k only.

The stand-ins take the real launchers' arguments (`launch` and `launch_adjoint` run unchanged, only
`_rows_kernel` and `_adjoint_kernel` are replaced) and either do nothing but record the call, or
compute what the kernel's contract says with the vectorized backend (`sweeps.scan_ratios`,
`adjoint.resolvent_adjoint`). Gradients through the fast path are compared with autograd through the
float64 dense inverse, which shares no code with either. The kernels themselves are checked in
Triton's interpreter (tests/test_triton_interpreter.py, opt-in) and on the GPU (tests/test_triton_backend.py).
"""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from bkprof.core import adjoint, sweeps, triton_backend
from tests.helpers import dense_resolvent_diagonal, random_chain, weighted_gradients

TRAIN_OP = torch.ops.bkprof.tridiag_resolvent_diagonal_triton_train
ADJOINT_OP = torch.ops.bkprof.tridiag_resolvent_adjoint_triton


class RecordingKernel:
    """`kernel[grid](*args, **meta)` that only records (grid, args, meta)."""

    def __init__(self):
        self.calls = []

    def __getitem__(self, grid):
        return lambda *args, **meta: self.calls.append((grid, args, meta))


class ForwardStandIn(RecordingKernel):
    """_rows_kernel's contract: G into out (B, N, 2) and, when SAVE, d and e into ratios (2, B, N, 2)."""

    def __getitem__(self, grid):
        def run(diag, k, out, sync, totals, ratios, e_offset, n, segments, z_re, alpha_im, **meta):
            self.calls.append((grid, meta))
            left, right = sweeps.scan_ratios(diag, k, complex(z_re, -alpha_im))
            out.copy_(torch.view_as_real(sweeps.combine(left, right, k.to(left.dtype))))
            if meta["SAVE"]:
                ratios.copy_(torch.stack([torch.view_as_real(left), torch.view_as_real(right)]))
        return run


class AdjointStandIn(RecordingKernel):
    """_adjoint_kernel's contract: dL/ddiag and dL/dk from the gradient of G (as pairs), d, e and k."""

    def __getitem__(self, grid):
        def run(pairs, d, e, k, grad_diag, grad_k, n, **meta):
            self.calls.append((grid, meta))
            ga, gk = adjoint.resolvent_adjoint(torch.view_as_complex(pairs), torch.view_as_complex(d),
                                               torch.view_as_complex(e), k)
            grad_diag.copy_(ga)
            grad_k.copy_(gk)
        return run


def _install(monkeypatch, forward, backward):
    """The stand-ins in place of the kernels, and the CPU as a device the launchers run on."""
    monkeypatch.setattr(triton_backend, "_rows_kernel", forward, raising=False)
    monkeypatch.setattr(triton_backend, "_adjoint_kernel", backward, raising=False)
    monkeypatch.setattr(triton_backend, "KERNEL_DEVICE_TYPES", frozenset({"cpu"}))
    return forward, backward


@pytest.fixture
def kernels(monkeypatch):
    """Stand-ins that compute."""
    return _install(monkeypatch, ForwardStandIn(), AdjointStandIn())


@pytest.fixture
def recorders(monkeypatch):
    """Stand-ins that only record."""
    return _install(monkeypatch, RecordingKernel(), RecordingKernel())


def _chain(seed, batch, n, scale=3.0, dtype=torch.float64):
    diag, upper, lower = random_chain(torch.Generator().manual_seed(seed), batch, n, scale, dtype)
    return diag, upper, lower


# ---- which path `run` takes ---------------------------------------------------------------------

def test_unobserved_training_call_takes_the_plain_function(kernels):
    diag, upper, lower = _chain(1, 3, 40)
    g = triton_backend.run(diag.requires_grad_(), upper * lower, 1j)
    assert g.grad_fn.name() == "_EagerResolventBackward"
    forward, _ = kernels
    assert [meta["SAVE"] for _, meta in forward.calls] == [True]


def test_no_grad_call_launches_the_forward_without_saving(kernels):
    diag, upper, lower = _chain(2, 3, 40)
    with torch.no_grad():
        g = triton_backend.run(diag.requires_grad_(), upper * lower, 1j)
    assert g.grad_fn is None
    assert [meta["SAVE"] for _, meta in kernels[0].calls] == [False]


def test_observed_calls_take_the_custom_ops():
    """Under a dispatch mode (here FlopCounterMode, on meta tensors: the ops' fake implementations) the
    train op and its registered autograd run, and the counter counts both kernels."""
    diag = torch.empty(3, 1000, device="meta", requires_grad=True)
    k = torch.empty(3, 999, device="meta")
    with FlopCounterMode(display=False) as counter:
        g = triton_backend.run(diag, k, 1j)
        assert "GeneratedBackwardFor_bkprof_tridiag_resolvent_diagonal_triton_train" in g.grad_fn.name()
        (grad,) = torch.autograd.grad(g, diag, torch.ones_like(g))
    assert grad.shape == diag.shape
    counts = counter.get_flop_counts()["Global"]
    assert counts[TRAIN_OP] == triton_backend.kernel_flops(3, 1000)
    assert counts[ADJOINT_OP] == triton_backend.backward_kernel_flops(3, 1000)


@pytest.mark.parametrize("why", ["subclass", "device", "tracing", "compiling"])
def test_plain_is_false_whenever_something_could_observe(kernels, monkeypatch, why):
    diag, upper, lower = _chain(3, 2, 16)
    k = upper * lower
    assert triton_backend._plain(diag, k)
    if why == "subclass":
        diag = torch.nn.Parameter(diag)
    elif why == "device":
        diag, k = diag.to("meta"), k.to("meta")
    elif why == "tracing":
        monkeypatch.setattr(torch.jit, "is_tracing", lambda: True)
    else:
        monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    assert not triton_backend._plain(diag, k)


# ---- the fast path's gradients: the wiring, with the vectorized stand-ins ------------------------


@pytest.mark.parametrize("grad_of", [(True, True, True), (True, False, False), (False, True, True)])
@pytest.mark.parametrize("dtype, tolerance", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_fast_path_gradients_match_the_dense_inverse(kernels, grad_of, dtype, tolerance):
    inputs = _chain(4, 3, 33, 5.0)
    z = 0.3 + 1j
    weights = torch.randn(3, 33, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    truth = weighted_gradients(lambda d, u, l: dense_resolvent_diagonal(d, u, l, z), inputs, weights)
    ours = weighted_gradients(lambda d, u, l: triton_backend.run(d, u * l, z), [t.to(dtype) for t in inputs],
                               weights, grad_of)
    for flag, got, want in zip(grad_of, ours, truth):
        assert (got is not None) == flag
        if flag:
            assert got.dtype == dtype
            assert ((got.double() - want).abs().max() / want.abs().max()).item() <= tolerance
    assert len(kernels[1].calls) == 1


def test_fast_path_gradcheck(kernels):
    leaves = [t.requires_grad_() for t in _chain(5, 2, 9, 3.0)]
    assert torch.autograd.gradcheck(lambda d, u, l: torch.view_as_real(triton_backend.run(d, u * l, -1 + 0.5j)),
                                    leaves)


def test_backward_skipped_when_no_gradient_reaches_g(kernels):
    """G unused by the loss: autograd never calls the backward, so no adjoint kernel runs."""
    diag, upper, lower = _chain(6, 2, 9)
    leaf = diag.requires_grad_()
    g = triton_backend.run(leaf, upper * lower, 1j)
    (leaf * 2).sum().backward()
    assert g.grad_fn is not None and len(kernels[1].calls) == 0


# ---- what the launchers launch and what the backward saves ----------------------------------------

WRITES = ("fill", "zero", "full", "ones", "copy", "clone", "_to_copy", "cat", "stack")


class OpLog(TorchDispatchMode):
    """Every aten op dispatched while active, with the number of elements it returns."""

    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        numel = out.numel() if isinstance(out, torch.Tensor) else None
        self.ops.append((func.__name__, numel))
        return out


def _fast_step(diag, k):
    """One forward + backward on the fast path, the ops of each logged apart (the log is started
    after run() chose its path: a dispatch mode would make it take the custom ops)."""
    leaf = diag.detach().requires_grad_()
    g = triton_backend.run(leaf, k, 1j)
    grad = torch.ones_like(g)
    with OpLog() as log:
        torch.autograd.grad(g, leaf, grad)
    return log.ops


def test_one_segment_rows_launch_two_kernels_and_no_fill(recorders):
    """Rows of at most 2,048 positions: one forward kernel, one adjoint kernel, and otherwise only
    allocations and views (nothing that writes memory: no fill, no zeros, no copy)."""
    forward, backward = recorders
    diag, upper, lower = _chain(7, 4, 256, dtype=torch.float32)
    with OpLog() as log:
        triton_backend._EagerResolvent.apply(diag.requires_grad_(), upper * lower, 1j)
    ops = log.ops + _fast_step(diag, upper * lower)
    assert not [op for op, _ in ops if op.startswith(WRITES)], ops
    assert len(forward.calls) == 2 and len(backward.calls) == 1  # two forwards: the logged one and _fast_step's


def test_segmented_rows_fill_only_their_counters(recorders):
    """Rows of several segments zero B + 1 int32 counters per forward (the segments' ticket and
    arrivals; the kernel cannot reset them itself without a change proven on the GPU), nothing else."""
    diag, upper, lower = _chain(8, 3, 4097, dtype=torch.float32)
    with OpLog() as log:
        triton_backend._EagerResolvent.apply(diag.requires_grad_(), upper * lower, 1j)
    writes = [(op, numel) for op, numel in log.ops if op.startswith(WRITES)]
    assert writes and all(numel == 3 + 1 for _, numel in writes), writes


@pytest.mark.parametrize("dtype, ratio_bytes", [(torch.float32, 16), (torch.float64, 32)])
def test_backward_saves_the_ratios_and_the_input_k(recorders, dtype, ratio_bytes):
    """Counted by saved_tensors_hooks over one fast-path forward: the tensors the op allocates to save
    (the ratios d and e: 2 complex per position, 16 B in float32) and the inputs it keeps a reference
    to (k only: no copy, 4 B per position in float32, but kept alive as long as the graph is even when
    the caller drops it, as the layer's k = upper * lower is dropped)."""
    batch, n = 4, 300
    diag, upper, lower = _chain(9, batch, n, dtype=dtype)
    diag.requires_grad_()
    k = upper * lower
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        triton_backend.run(diag, k, 1j)
    inputs = [t for t in saved if t.data_ptr() in (diag.data_ptr(), k.data_ptr())]
    made = [t for t in saved if t.data_ptr() not in (diag.data_ptr(), k.data_ptr())]
    assert [t.data_ptr() for t in inputs] == [k.data_ptr()]
    assert sum(t.numel() * t.element_size() for t in made) == ratio_bytes * batch * n
    assert inputs[0].numel() * inputs[0].element_size() == (ratio_bytes // 4) * batch * (n - 1)


def test_launch_metadata_is_built_once_per_layout(recorders):
    triton_backend._forward_meta.cache_clear()
    diag, upper, lower = _chain(10, 2, 64, dtype=torch.float32)
    for _ in range(3):
        triton_backend.run(diag, upper * lower, 1j)
    info = triton_backend._forward_meta.cache_info()
    assert (info.misses, info.hits) == (1, 2)
    lanes, per_lane, segments = triton_backend.row_layout(64)
    grid, _, meta = recorders[0].calls[0]
    assert grid == (2 * segments,)
    assert meta == dict(LANES=lanes, LOG2_LANES=lanes.bit_length() - 1, QUADS=per_lane // 4, FP64=False,
                        SEGMENTED=False, SAVE=False, num_warps=lanes // 32)


def test_observed_backward_does_not_fill_the_ratios_gradient():
    """The custom-op path (meta tensors under a dispatch mode): autograd hands the backward None for
    the ratios output instead of a tensor of zeros (without set_materialize_grads(False) it dispatches
    aten.zeros of the ratios' 2 x B x N x 2 elements, a 58 µs fill at 1,024 x 16,384 on the H200)."""
    diag, k = torch.empty(3, 1000, device="meta", requires_grad=True), torch.empty(3, 999, device="meta")
    with OpLog() as log:
        g = triton_backend.run(diag, k, 1j)
        torch.autograd.grad(g, diag, torch.ones_like(g))
    assert [op for op, _ in log.ops] == ["tridiag_resolvent_diagonal_triton_train.default", "ones_like.default",
                                         "tridiag_resolvent_adjoint_triton.default"]
