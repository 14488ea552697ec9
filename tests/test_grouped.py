"""The grouped linear ops behind the MoE-FFN: exact, differentiable, counted, and sync-free on CUDA.

The CUDA tests are skipped where CUDA or triton is missing (CI); run them on a GPU machine with
`python -m pytest -q tests/test_grouped.py`.
"""

import pytest
import torch
import torch.nn.functional as F

from bkprof.flops.counter import count_layer_flops
from bkprof.variants import LayerConfig, build
from bkprof.variants import grouped
from bkprof.variants.dense import MoEFFN
from bkprof.variants.grouped import grouped_linear, matmul_flops

ON_GPU = torch.cuda.is_available() and grouped.triton is not None
gpu_only = pytest.mark.skipif(not ON_GPU, reason="needs CUDA and triton")


def _case(sizes, fan_in=12, fan_out=10, dtype=torch.float32, device="cpu", seed=0):
    """Rows sorted by group (group e has sizes[e] rows), weights and biases, all drawn from `seed`."""
    g = torch.Generator().manual_seed(seed)
    rows, groups = sum(sizes), len(sizes)
    x = torch.randn(rows, fan_in, generator=g, dtype=dtype)
    weight = torch.randn(groups, fan_out, fan_in, generator=g, dtype=dtype)
    bias = torch.randn(groups, fan_out, generator=g, dtype=dtype)
    ends = torch.tensor(sizes, dtype=torch.int64).cumsum(0)
    return (t.to(device) for t in (x, ends, weight, bias))


def _per_group_linear(x, ends, weight, bias):
    starts = [0, *ends.tolist()[:-1]]
    pieces = [F.linear(x[s:e], weight[g], bias[g]) for g, (s, e) in enumerate(zip(starts, ends.tolist()))]
    return torch.cat(pieces)


def _random_sizes(seed, groups=5, most=9):
    return torch.randint(0, most, (groups,), generator=torch.Generator().manual_seed(seed)).tolist()


SIZES = [[7], [3, 0, 5], [0, 0, 4], [4, 0, 0], [0, 0], [1, 1, 1, 1], *(_random_sizes(s) for s in range(6))]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("sizes", SIZES)
def test_equals_a_linear_per_group(sizes, dtype):
    x, ends, weight, bias = _case(sizes, dtype=dtype)
    out = grouped_linear(x, ends, weight, bias)
    assert out.shape == (sum(sizes), 10) and out.dtype == dtype
    torch.testing.assert_close(out, _per_group_linear(x, ends, weight, bias), rtol=0, atol=0)


@pytest.mark.parametrize("sizes", [[3, 0, 5], [6], [0, 2, 0, 3]])
def test_gradcheck_in_float64(sizes):
    x, ends, weight, bias = _case(sizes, fan_in=4, fan_out=3, dtype=torch.float64)
    leaves = [t.requires_grad_() for t in (x, weight, bias)]
    assert torch.autograd.gradcheck(lambda x, w, b: grouped_linear(x, ends, w, b), leaves)


def test_an_unused_group_gets_zero_gradients():
    x, ends, weight, bias = _case([3, 0, 2])
    weight.requires_grad_(), bias.requires_grad_()
    grouped_linear(x, ends, weight, bias).sum().backward()
    assert weight.grad[1].eq(0).all() and bias.grad[1].eq(0).all()
    assert weight.grad[0].ne(0).any() and bias.grad[2].ne(0).any()


def test_registration_passes_opcheck():
    """Schema, fake (meta) implementation and autograd registration, as torch.library checks them."""
    x, ends, weight, bias = _case([3, 0, 5])
    for t in (x, weight, bias):
        t.requires_grad_()
    torch.library.opcheck(torch.ops.bkprof.grouped_linear, (x, ends, weight, bias),
                          test_utils=("test_schema", "test_autograd_registration", "test_faketensor"))


@pytest.mark.parametrize("args, named", [
    (lambda x, e, w, b: (x[0], e, w, b), "x must be"),
    (lambda x, e, w, b: (x, e, w[:, :, :-1], b), "weight must be"),
    (lambda x, e, w, b: (x, e[:-1], w, b), "ends must be"),
    (lambda x, e, w, b: (x, e.int(), w, b), "ends must be"),
    (lambda x, e, w, b: (x, e, w, b[:, :-1]), "bias must be"),
    (lambda x, e, w, b: (x, e, w, b.double()), "share a dtype"),
    (lambda x, e, w, b: (x, e.flip(0), w, b), "non-decreasing"),
    (lambda x, e, w, b: (x, e - 1, w, b), "end at the number of rows"),
])
def test_bad_input_is_a_value_error_naming_it(args, named):
    with pytest.raises(ValueError, match=named):
        grouped_linear(*args(*_case([3, 2, 4])))


def test_counted_flops_follow_the_formula():
    """Forward 2·R·in·out + R·out bias adds; backward: grad_x, grad_weight 2·R·in·out each, grad_bias R·out."""
    x, ends, weight, bias = _case([5, 0, 6], fan_in=12, fan_out=10)
    layer = _GroupedLayer(ends, weight, bias)
    result = count_layer_flops(layer, x, backward=True)
    rows = x.shape[0]
    assert not result.missing
    assert result.flops[("forward", "residual", "matmul", "bkprof.grouped_linear")] == matmul_flops(rows, 12, 10)
    assert result.flops[("forward", "residual", "bias", "bkprof.grouped_linear")] == rows * 10
    backward = {(family, op): v for (phase, _, family, op), v in result.flops.items() if phase == "backward"}
    assert backward[("matmul", "bkprof.grouped_linear_input_grad")] == matmul_flops(rows, 10, 12)
    assert backward[("matmul", "bkprof.grouped_linear_weight_grad")] == matmul_flops(rows, 10, 12)
    assert backward[("reduction", "bkprof.grouped_linear_weight_grad")] == rows * 10


class _GroupedLayer(torch.nn.Module):
    """One grouped linear as a module returning (out, stats), the shape `count_layer_flops` runs."""

    def __init__(self, ends, weight, bias):
        super().__init__()
        self.ends = ends
        self.weight, self.bias = torch.nn.Parameter(weight), torch.nn.Parameter(bias)

    def forward(self, x):
        return grouped_linear(x, self.ends, self.weight, self.bias), {}


def _moe_reference(moe: MoEFFN, x: torch.Tensor) -> torch.Tensor:
    """Each token through each of its top_k experts, one at a time, weighted by the expert's probability
    under the softmax over all E logits (Switch Transformer)."""
    e = moe.experts
    tokens = x.reshape(-1, x.shape[-1])
    out = torch.zeros_like(tokens)
    for t, token in enumerate(tokens):
        probs = moe.gate(token).softmax(-1)
        for k in probs.argsort(descending=True)[:moe.top_k].tolist():
            weight = probs[k]
            hidden = torch.relu(F.linear(token, e.w1[k], e.b1[k]))
            out[t] += weight * F.linear(hidden, e.w2[k], e.b2[k])
    return out.view_as(x)


@pytest.mark.parametrize("top_k", [1, 2])
def test_moe_equals_a_per_token_loop(top_k):
    config = LayerConfig(d_model=8, n_seq=12, num_experts=3, top_k=top_k)
    moe = build("dense", config, seed=3).moe.eval()
    x = torch.randn(2, 12, 8, dtype=torch.float64)
    out, index, probs = moe.double()(x)
    torch.testing.assert_close(out, _moe_reference(moe, x), rtol=1e-12, atol=1e-12)
    assert index.shape == (2, 12, top_k)
    torch.testing.assert_close(probs, F.softmax(moe.gate(x), dim=-1))


def test_experts_initialise_like_separate_linears():
    """The stacked weights hold what E pairs of nn.Linear would draw, in the same order."""
    config = LayerConfig(d_model=8, n_seq=12, num_experts=3)
    experts = build("dense", config, seed=5).moe.experts
    torch.manual_seed(5)
    torch.nn.Linear(8, 3)  # the gate draws first
    for k in range(3):
        first, second = torch.nn.Linear(8, 16), torch.nn.Linear(16, 8)
        for mine, theirs in ((experts.w1[k], first.weight), (experts.b1[k], first.bias),
                             (experts.w2[k], second.weight), (experts.b2[k], second.bias)):
            assert torch.equal(mine, theirs)


# ---- CUDA (Triton) -----------------------------------------------------------------------------

def _on_cuda(*tensors):
    return [t.cuda() for t in tensors]


@gpu_only
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(12, 10), (128, 256), (256, 128), (33, 70)])
@pytest.mark.parametrize("sizes", [[7], [0, 300, 0, 1], [64, 65, 129, 3], [0, 0],
                                   *(_random_sizes(s, most=200) for s in range(3))])
def test_triton_equals_the_loop_forward_and_gradients(sizes, shape, dtype):
    fan_in, fan_out = shape
    cpu = [t.requires_grad_() if t.is_floating_point() else t for t in _case(sizes, fan_in, fan_out, dtype)]
    gpu = [t.detach().cuda().requires_grad_() if t.is_floating_point() else t.cuda() for t in cpu]
    out_cpu, out_gpu = grouped_linear(*cpu), grouped_linear(*gpu)
    seed = torch.randn(out_cpu.shape, dtype=dtype)
    out_cpu.backward(seed)
    out_gpu.backward(seed.cuda())
    tol = {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 1e-12, "atol": 1e-12}
    torch.testing.assert_close(out_gpu.cpu(), out_cpu, **tol)
    for a, b in ((cpu[0], gpu[0]), (cpu[2], gpu[2]), (cpu[3], gpu[3])):
        torch.testing.assert_close(b.grad.cpu(), a.grad, **tol)


@gpu_only
def test_triton_reads_non_contiguous_inputs():
    x, ends, weight, bias = _on_cuda(*_case([5, 40, 3], fan_in=32, fan_out=24))
    wide = torch.randn(x.shape[0], 64, device="cuda")
    wide[:, ::2] = x
    torch.testing.assert_close(grouped_linear(wide[:, ::2], ends, weight, bias), grouped_linear(x, ends, weight, bias))


def _moe_step(moe: MoEFFN, x: torch.Tensor) -> None:
    out, *_ = moe(x)
    out.backward(torch.ones_like(out))


@gpu_only
@pytest.mark.parametrize("top_k", [1, 2])
def test_moe_forward_and_backward_never_synchronise(top_k):
    """A host sync would raise under sync debug mode "error": nonzero, .item(), boolean masks, bincount..."""
    config = LayerConfig(d_model=32, n_seq=64, num_experts=4, top_k=top_k)
    moe = build("dense", config).moe.cuda().train()
    x = torch.randn(4, 64, 32, device="cuda", requires_grad=True)
    _moe_step(moe, x)  # compiles the kernels and fills the allocator's cache first
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        _moe_step(moe, x)
    finally:
        torch.cuda.set_sync_debug_mode(0)


@gpu_only
def test_moe_forward_replays_as_a_cuda_graph():
    config = LayerConfig(d_model=32, n_seq=64, num_experts=4, top_k=2)
    moe = build("dense", config).moe.cuda().eval()
    x = torch.randn(4, 64, 32, device="cuda")
    with torch.no_grad():
        # warm-up on a side stream, as torch.cuda.graph's documentation asks (kernels compiled, cuBLAS set up)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            moe(x)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            captured, *_ = moe(x)
        x.copy_(torch.randn_like(x))  # new tokens, new routing
        graph.replay()
        expected, *_ = moe(x)
    torch.testing.assert_close(captured, expected)


@gpu_only
def test_moe_on_cuda_is_counted_like_on_cpu():
    # no dropout: on CUDA train-mode dropout is aten.native_dropout, which the registry does not know
    config = LayerConfig(d_model=32, n_seq=64, num_experts=4, top_k=2, dropout=0.0)
    x = torch.randn(2, 64, 32)
    on_cpu = count_layer_flops(_MoEOnly(config), x, backward=True)
    on_gpu = count_layer_flops(_MoEOnly(config).cuda(), x.cuda(), backward=True)
    assert not on_gpu.missing
    assert on_gpu.flops == on_cpu.flops


class _MoEOnly(torch.nn.Module):
    """The dense layer's MoE-FFN alone, as a module returning (out, stats) named like the layer's."""

    def __init__(self, config):
        super().__init__()
        self.moe = build("dense", config).moe

    def forward(self, x):
        out, *_ = self.moe(x)
        return out, {}
