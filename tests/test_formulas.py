"""Each formula of the registry against a count derived by hand (the arithmetic is in the comments).

Formulas of CUDA-only kernels are called on meta tensors of the shapes the kernel takes, so they
run without a GPU.
"""

import math

import pytest
import torch
from torch.utils.flop_counter import flop_registry

from bkprof.flops import formulas
from bkprof.flops.formulas import FORMULAS, formula

aten = torch.ops.aten


def count(op, *args, out=None, **kwargs):
    """The registry's count for `op` (an OpOverload) on these arguments."""
    return formulas.count_op(op, args, kwargs, out)


def meta(*shape, dtype=torch.float32):
    return torch.empty(*shape, device="meta", dtype=dtype)


def test_registering_a_formula_twice_raises():
    with pytest.raises(ValueError, match="already registered"):
        formula("mm", family="matmul", rule="again")(lambda *a: {})
    assert FORMULAS["mm"].rule.startswith("2·M·K·N")  # the first registration stands


def test_a_new_name_registers_once():
    name = "bkprof_test::only_once"
    formula(name, family="data", rule="0")(lambda *a: {"data": 0})
    try:
        with pytest.raises(ValueError, match=name):
            formula(name, family="data", rule="0")(lambda *a: {"data": 0})
    finally:
        del FORMULAS[name]


# ---- scaled-dot-product attention ----
# B=2, H=3, s_q=5, s_k=7, d=4, d_v=6: scores = 2·3·5·7 = 210
# matmul = 2·210·(4 + 6) = 4200; q, k scales = 2·3·5·4 + 2·3·7·4 = 120 + 168 = 288; softmax = 5·210 = 1050
Q, K, V = (2, 3, 5, 4), (2, 3, 7, 4), (2, 3, 7, 6)
FORWARD = {"matmul": 4200, "elementwise": 288, "normalization": 1050}
MASKED = {**FORWARD, "elementwise": 288 + 210}
# backward: matmul 2·4200 = 8400; scales 288; softmax backward 4·210 = 840
BACKWARD = {"matmul": 8400, "elementwise": 288, "normalization": 840}


def _qkv():
    return meta(*Q), meta(*K), meta(*V)


def test_cpu_flash_attention_plain_causal_and_masked():
    q, k, v = _qkv()
    op = aten._scaled_dot_product_flash_attention_for_cpu.default
    assert count(op, q, k, v) == FORWARD
    assert count(op, q, k, v, 0.0, True) == MASKED
    assert count(op, q, k, v, attn_mask=meta(5, 7)) == MASKED
    # dropout p > 0: 2 more per score (scale the mask, multiply): 288 + 2·210 = 708
    assert count(op, q, k, v, 0.1)["elementwise"] == 708


def test_cpu_flash_attention_backward():
    q, k, v = _qkv()
    op = aten._scaled_dot_product_flash_attention_for_cpu_backward.default
    out, lse = meta(2, 3, 5, 6), meta(2, 3, 5)
    assert count(op, meta(2, 3, 5, 6), q, k, v, out, lse, 0.0, True) == BACKWARD


def test_cuda_kernels_forward_and_backward_on_shapes():
    q, k, v = _qkv()
    t = meta(1)
    assert count(aten._scaled_dot_product_flash_attention.default, q, k, v) == FORWARD
    assert count(aten._scaled_dot_product_flash_attention.default, q, k, v, 0.0, True) == MASKED
    assert count(aten._scaled_dot_product_efficient_attention.default, q, k, v, meta(2, 3, 5, 7), False) == MASKED
    assert count(aten._scaled_dot_product_efficient_attention.default, q, k, v, None, False) == FORWARD
    assert count(aten._scaled_dot_product_cudnn_attention.default, q, k, v, None, False, 0.0, True) == MASKED
    assert count(aten._scaled_dot_product_flash_attention_backward.default,
                 meta(2, 3, 5, 6), q, k, v, t, t, t, t, 5, 7, 0.0, False, t, t) == BACKWARD
    assert count(aten._scaled_dot_product_efficient_attention_backward.default,
                 meta(2, 3, 5, 6), q, k, v, t, t, t, t, t, 0.0, [True] * 4) == BACKWARD
    assert count(aten._scaled_dot_product_cudnn_attention_backward.default,
                 meta(2, 3, 5, 6), q, k, v, t, t, t, t, t, t, t, 5, 7, 0.0, True) == BACKWARD


def test_cuda_kernels_matmul_equals_pytorchs_own_formula():
    """PyTorch registers formulas for the CUDA kernels (not the CPU one): the matmul family agrees."""
    q, k, v = _qkv()
    op = aten._scaled_dot_product_efficient_attention
    theirs = flop_registry[op](q, k, v, None, False, out_val=None)
    assert count(op.default, q, k, v, None, False)["matmul"] == theirs == 4200


def test_attention_math_kernel_counts_the_same_as_the_fused_formula():
    """The math kernel runs as bmm, mul, add, _safe_softmax: counted op by op, it gives the fused formula."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from bkprof.flops.model_count import count_flops

    class Attention(torch.nn.Module):
        def forward(self, q, k, v, mask=None, causal=False):
            return torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)

    q, k, v = (torch.randn(*s, requires_grad=True) for s in (Q, K, V))
    with sdpa_kernel([SDPBackend.MATH]):
        plain = count_flops(Attention(), q, k, v, backward=True)
        masked = count_flops(Attention(), q, k, v, torch.randn(5, 7), backward=True)
        causal = count_flops(Attention(), q, k, v, None, True, backward=True)
    for counted, expected in ((plain, FORWARD), (masked, MASKED), (causal, MASKED)):
        assert {f: v for f, v in counted.by_family().items() if v} == expected
        assert {f: v for f, v in counted.by_family("backward").items() if v} == BACKWARD
    assert "aten._safe_softmax" in plain.by_op()


def test_native_multi_head_attention():
    # B=2, S=8, E=16, H=2: q, k, v and output linears 4·2·16·16·16 = 32768, bias 4·16·16 = 1024
    # attention with head dim 8: scores 2·2·8·8 = 256, matmul 2·256·16 = 8192; the weights returned
    # (need_weights defaults to True): q alone scaled, 2·8·16 = 256 (the Python path's count too);
    # softmax 5·256 = 1280; head average of the weights: 256 sums + 2·8·8 = 128 divisions = 384
    x = meta(2, 8, 16)
    weights = (meta(48, 16), meta(48), meta(16, 16), meta(16))
    counts = count(aten._native_multi_head_attention.default, x, x, x, 16, 2, *weights)
    assert counts == {"matmul": 32768 + 8192, "bias": 1024, "elementwise": 256, "normalization": 1280,
                      "reduction": 384}
    # without the weights: scaled-dot-product attention, q and k scaled by d^-1/4 each: 2·256 = 512
    counts = count(aten._native_multi_head_attention.default, x, x, x, 16, 2, *weights, need_weights=False)
    assert counts == {"matmul": 32768 + 8192, "bias": 1024, "elementwise": 512, "normalization": 1280}


def test_safe_softmax_and_log_softmax():
    # 5 per element of a (3, 4) tensor: 60; backward 4 per element: 48
    x = torch.randn(3, 4)
    assert count(aten._safe_softmax.default, x, -1, out=x) == {"normalization": 60}
    assert count(aten._log_softmax.default, x, -1, False, out=x) == {"normalization": 60}
    assert count(aten._log_softmax_backward_data.default, x, x, -1, torch.float32, out=x) == {"normalization": 48}


# ---- recurrent kernels ----
# LSTM, I=16, H=8, T·B = 4·3 = 12 rows. Per row: matmul 2·4·8·(16 + 8) = 1536, bias 2·32 = 64,
# cell 13·8 = 104. Totals: 18432, 768, 1248.
LSTM_ROWS = {"matmul": 18432, "bias": 768, "elementwise": 1248}


def _mkldnn_args(mode, gates, hidden=8, biased=True):
    x = meta(4, 3, 16)
    w = (meta(gates * hidden, 16), meta(gates * hidden, hidden), meta(gates * hidden), meta(gates * hidden))
    return x, w, meta(3, hidden)


def test_mkldnn_lstm_layer():
    x, w, h = _mkldnn_args(2, 4)
    counts = count(aten.mkldnn_rnn_layer.default, x, *w, h, h, False, [], 2, 8, 1, True, False, False, False)
    assert counts == LSTM_ROWS


def test_mkldnn_gru_and_rnn_layers():
    # GRU: per row matmul 2·3·8·24 = 1152, bias 48, cell 10·8 = 80; ×12 rows
    x, w, h = _mkldnn_args(3, 3)
    gru = count(aten.mkldnn_rnn_layer.default, x, *w, h, h, False, [], 3, 8, 1, True, False, False, False)
    assert gru == {"matmul": 13824, "bias": 576, "elementwise": 960}
    # RNN tanh without biases: per row matmul 2·8·24 = 384, cell 2·8 = 16
    x, w, h = _mkldnn_args(1, 1)
    rnn = count(aten.mkldnn_rnn_layer.default, x, *w, h, h, False, [], 1, 8, 1, False, False, False, False)
    assert rnn == {"matmul": 4608, "bias": 0, "elementwise": 192}


def test_mkldnn_lstm_layer_backward():
    # 2× the matmuls (36864), the bias gradient 1 per gate element (32·12 = 384), the cell's gradient 23·8·12 = 2208
    x, w, h = _mkldnn_args(2, 4)
    out = meta(4, 3, 8)
    counts = count(aten.mkldnn_rnn_layer_backward.default, x, *w, h, h, out, h, h, out, h, h,
                   False, 2, 8, 1, True, True, False, [], False, meta(1))
    assert counts == {"matmul": 36864, "reduction": 384, "elementwise": 2208}


def test_cudnn_rnn_two_bidirectional_layers():
    # LSTM I=16, H=8, 2 layers × 2 directions, T·B = 12 rows. Layer 0 input 16, layer 1 input 2·8 = 16.
    # Each of the 4 (layer, direction): LSTM_ROWS; so 4× that. Dropout 0.5 in training, between the
    # layers: 2 per element of layer 0's output, 12·8·2 = 192 elements -> 384.
    weights = [meta(1)] * 16  # 4 per (layer, direction): w_ih, w_hh, b_ih, b_hh
    args = (meta(4, 3, 16), weights, 4, None, meta(4, 3, 8), meta(4, 3, 8), 2, 8, 0, 2, False, 0.5, True, True, [], None)
    counts = count(aten._cudnn_rnn.default, *args)
    assert counts == {"matmul": 4 * 18432, "bias": 4 * 768, "elementwise": 4 * 1248 + 384}
    backward = (meta(4, 3, 16), weights, 4, meta(1), meta(4, 3, 8), meta(4, 3, 8), meta(4, 3, 16), None, None, None,
                2, 8, 0, 2, False, 0.5, True, True, [], None, meta(1), [True] * 4)
    # per (layer, direction): 36864 matmul, 384 bias gradient, 2208 cell gradient
    assert count(aten._cudnn_rnn_backward.default, *backward) == {
        "matmul": 4 * 36864, "reduction": 4 * 384, "elementwise": 4 * 2208}


def test_cudnn_lstm_with_projection():
    # I=16, H=8, proj 4, one layer, 12 rows, biased: matmul per row 2·32·(16 + 4) + 2·8·4 = 1280 + 64 = 1344
    weights = [meta(1)] * 5  # w_ih, w_hh, b_ih, b_hh, w_hr
    args = (meta(4, 3, 16), weights, 5, None, meta(1, 3, 4), meta(1, 3, 8), 2, 8, 4, 1, False, 0.0, False, False, [], None)
    assert count(aten._cudnn_rnn.default, *args) == {"matmul": 12 * 1344, "bias": 768, "elementwise": 1248}


def test_fused_cuda_cells():
    # _thnn_fused_lstm_cell on (B=3, 4·H=32) gates: 13·8·3 = 312 + biases 2·96 = 192
    gates = meta(3, 32)
    assert count(aten._thnn_fused_lstm_cell.default, gates, gates, meta(3, 8), meta(32), meta(32)) == {
        "elementwise": 312, "bias": 192}


# ---- normalisations ----

def test_batch_norm_train_and_eval():
    # (N=2, C=3, 4×4): 96 elements, 3 channels, affine
    x, c = meta(2, 3, 4, 4), meta(3)
    # train: 5·96 + 2·3 + 2·96 + 7·3 (running statistics) = 480 + 6 + 192 + 21 = 699
    assert count(aten.native_batch_norm.default, x, c, c, c, c, True, 0.1, 1e-5) == {"normalization": 699}
    # eval: 2·96 + 2·3 + 2·96 = 390
    assert count(aten.native_batch_norm.default, x, c, c, c, c, False, 0.1, 1e-5) == {"normalization": 390}
    assert count(aten._native_batch_norm_legit_no_training.default, x, c, c, c, c, 0.1, 1e-5) == {"normalization": 390}
    # no running statistics, no affine: 5·96 + 2·3 = 486
    assert count(aten._native_batch_norm_legit.no_stats, x, None, None, True, 0.1, 1e-5) == {"normalization": 486}
    assert count(aten.cudnn_batch_norm.default, x, c, c, c, c, True, 0.1, 1e-5) == {"normalization": 699}


def test_batch_norm_backward():
    x, c = meta(2, 3, 4, 4), meta(3)
    # train, all three gradients: (8 + 2 + 1)·96 = 1056; eval, input only: 2·96 = 192
    assert count(aten.native_batch_norm_backward.default, x, x, c, c, c, c, c, True, 1e-5, [True] * 3) == {
        "normalization": 1056}
    assert count(aten.native_batch_norm_backward.default, x, x, c, c, c, c, c, False, 1e-5,
                 [True, False, False]) == {"normalization": 192}


def test_group_norm_forward_and_backward():
    # (N=2, C=4, 3×3) = 72 elements in 2 groups: 5·72 + 2·(2·2) + 2·72 = 360 + 8 + 144 = 512
    x, c = meta(2, 4, 3, 3), meta(4)
    assert count(aten.native_group_norm.default, x, c, c, 2, 4, 9, 2, 1e-5) == {"normalization": 512}
    # backward, input and weight: (8 + 2)·72 = 720
    assert count(aten.native_group_norm_backward.default, x, x, meta(2, 2), meta(2, 2), c, 2, 4, 9, 2,
                 [True, True, False]) == {"normalization": 720}


def test_instance_norm_runs_as_a_batch_norm_over_samples_times_channels():
    # InstanceNorm2d(3, affine) on (2, 3, 4, 4): batch norm over N·C = 6 channels of 16 elements,
    # no running statistics (track_running_stats=False): 5·96 + 2·6 = 492 (the affine weight is
    # applied by the batch norm: + 2·96 = 192) -> 684
    from bkprof.flops.model_count import count_flops

    counted = count_flops(torch.nn.InstanceNorm2d(3, affine=True), torch.randn(2, 3, 4, 4))
    assert counted.by_op()["aten.native_batch_norm"] == 684
    assert counted.ops_without_formula() == []


# ---- pooling ----

def test_max_and_avg_pool():
    # (1, 2, 6, 6) pooled 2×2 stride 2 -> (1, 2, 3, 3) = 18 outputs of 4-element windows
    x, out = meta(1, 2, 6, 6), meta(1, 2, 3, 3)
    assert count(aten.max_pool2d_with_indices.default, x, [2, 2], out=(out, out)) == {"reduction": 72}
    # average: 72 adds + 18 divisions
    assert count(aten.avg_pool2d.default, x, [2], out=out) == {"reduction": 90}
    # backward: max 1 per grad element (18); average (1 + 4) per grad element (90)
    assert count(aten.max_pool2d_with_indices_backward.default, out, x, [2, 2], [2, 2], [0, 0], [1, 1], False, out,
                 out=x) == {"index": 18}
    assert count(aten.avg_pool2d_backward.default, out, x, [2, 2], [2, 2], [0, 0], False, True, None, out=x) == {
        "index": 90}


def test_adaptive_pool_windows_overlap_when_sizes_do_not_divide():
    # 5 -> 3: windows [0, 2), [1, 4), [3, 5): 2 + 3 + 2 = 7 elements per dim; 2-D 7·7 = 49 per plane,
    # 2 planes: 98 adds + 18 divisions
    assert formulas.adaptive_window_sum(5, 3) == 7
    x, out = meta(1, 2, 5, 5), meta(1, 2, 3, 3)
    assert count(aten._adaptive_avg_pool2d.default, x, [3, 3], out=out) == {"reduction": 116}
    assert count(aten.adaptive_max_pool2d.default, x, [3, 3], out=(out, out)) == {"reduction": 98}


def test_embedding_is_a_lookup_and_its_gradient_adds_rows():
    weight, index = torch.randn(10, 4), torch.tensor([[1, 2, 3]])
    assert count(aten.embedding.default, weight, index, out=weight[index]) == {"data": 0}
    # 3 looked-up rows of 4: 12 adds into the weight gradient
    assert count(aten.embedding_dense_backward.default, torch.randn(1, 3, 4), index, 10, -1, False) == {"index": 12}


# ---- complex ops ----

def test_complex_elementwise_in_real_flops():
    z = torch.randn(3, 5, dtype=torch.complex64)  # 15 complex values
    assert count(aten.mul.Tensor, z, z, out=z * z) == {"complex": 90}      # 6 each
    assert count(aten.abs.default, z, out=z.abs()) == {"complex": 60}      # sqrt(a² + b²): 4 each
    assert count(aten.exp.default, z, out=z.exp()) == {"complex": 75}      # exp, cos, sin, 2 mul: 5 each
    assert count(aten.tanh.default, z, out=z.tanh()) == {"complex": 300}  # (e^2z − 1)/(e^2z + 1): 20 each
    assert count(aten.sin.default, z, out=z.sin()) is None  # no complex rule: reported, not guessed
    assert count(aten.sum.default, z, out=z.sum()) == {"reduction": 30}    # a complex add is 2 real adds


def test_complex_matmul_is_four_real_multiply_accumulates_each():
    # (2, 3) @ (3, 4) complex: 24 complex MACs = 96 real MACs = 192 FLOPs
    a, b = torch.randn(2, 3, dtype=torch.complex64), torch.randn(3, 4, dtype=torch.complex64)
    assert count(aten.mm.default, a, b, out=a @ b) == {"matmul": 192}


def test_fft():
    # c2c of length 8 along the last dim of (4, 8): 4 transforms · 5·8·log2(8) = 4·120 = 480
    z = meta(4, 8, dtype=torch.complex64)
    assert count(aten._fft_c2c.default, z, [1], 0, True, out=z) == {"complex": 480}
    # r2c: half (240); with normalisation ("ortho" = 2): + 2 real multiplies per complex output (4·5·2 = 40)
    assert count(aten._fft_r2c.default, meta(4, 8), [1], 2, True, out=meta(4, 5, dtype=torch.complex64)) == {
        "complex": 280}
    assert math.log2(8) == 3


def test_dropout_and_losses():
    x = torch.randn(4, 5)
    # training dropout: 2 per element (40); eval: 0
    assert count(aten.native_dropout.default, x, 0.1, True, out=(x, x)) == {"elementwise": 40}
    assert count(aten.native_dropout.default, x, 0.1, False, out=(x, x)) == {"elementwise": 0}
    # nll_loss over 4 targets, mean: 4 + 1
    assert count(aten.nll_loss_forward.default, x, torch.tensor([0, 1, 2, 3]), None, 1, -100,
                 out=(x[0, 0], x[0, 0])) == {"reduction": 5}
    # mse_loss, mean: 3·20 + 1
    assert count(aten.mse_loss.default, x, x, 1, out=x[0, 0]) == {"reduction": 61}


# ---- the ops of issue 22, each run through the counter (so the op that really dispatches is the one
# counted) and held to a count derived by hand ----

class _Fn(torch.nn.Module):
    def __init__(self, fn, *modules):
        super().__init__()
        self.fn, self.mods = fn, torch.nn.ModuleList(modules)

    def forward(self, *xs):
        return self.fn(self, *xs)


def ops_of(fn, *xs, modules=(), backward=False, tensors="auto"):
    """{op: FLOPs} of `fn(module, *xs)` (forward, or backward), and no op without a formula."""
    from bkprof.flops.model_count import count_flops

    model = _Fn(fn, *modules)
    if backward:
        xs = tuple(x.detach().requires_grad_() if x.is_floating_point() else x for x in xs)
    counted = count_flops(model.train(backward), *xs, backward=backward, tensors=tensors)
    assert counted.ops_without_formula() == []
    return counted.by_op("backward" if backward else "forward")


def test_vector_products():
    a, x = torch.randn(3, 4), torch.randn(4)
    assert ops_of(lambda m, a, x: torch.mv(a, x), a, x)["aten.mv"] == 24            # 2·3·4
    assert ops_of(lambda m, x: torch.dot(x, x), x)["aten.dot"] == 8                   # 2·4
    z = torch.randn(5, dtype=torch.complex64)
    assert count(aten.vdot.default, z, z, out=torch.vdot(z, z)) == {"matmul": 40}     # 8 real FLOPs per complex MAC: 8·5
    b = torch.randn(3)
    assert count(aten.addmv.default, b, a, x, out=b) == {"matmul": 24, "bias": 3}     # 2·3·4 + 3 adds
    assert count(aten.addmv.default, b, a, x, beta=0, out=b) == {"matmul": 24, "bias": 0}


def test_addbmm_and_baddbmm_with_beta_zero():
    m, b1, b2 = torch.randn(3, 5), torch.randn(2, 3, 4), torch.randn(2, 4, 5)
    # 2 per MAC over the batch: 2·2·3·4·5 = 240 (the batch's sum is the MACs' adds); + 3·5 = 15 bias adds
    assert count(aten.addbmm.default, m, b1, b2, out=m) == {"matmul": 240, "bias": 15}
    out = torch.baddbmm(torch.randn(2, 3, 5), b1, b2)
    assert count(aten.baddbmm.default, out, b1, b2, out=out) == {"matmul": 240, "bias": 30}   # 2·3·5 adds
    assert count(aten.baddbmm.default, out, b1, b2, beta=0, out=out) == {"matmul": 240, "bias": 0}


def test_bilinear_runs_trilinear():
    # nn.Bilinear(4, 6, 5) on 3 rows: x1·W (3·5·4·6 MACs) then ·x2 (3·5·6 MACs): 2·(360 + 90) = 900;
    # its bias is a separate add of 3·5 = 15
    bilinear = torch.nn.Bilinear(4, 6, 5)
    counted = ops_of(lambda m, x1, x2: m.mods[0](x1, x2), torch.randn(3, 4), torch.randn(3, 6), modules=(bilinear,))
    assert counted["aten._trilinear"] == 900 and counted["aten.add"] == 15


def test_cdist_both_ways():
    x1, x2 = torch.randn(2, 5, 4), torch.randn(2, 6, 4)
    # by matmul: pairs 2·5·6 = 60; product 2·60·(4 + 2) = 720; norms 2·2·(5 + 6)·4 = 176;
    # x1·(-2) 2·5·4 = 40, clamp + sqrt 2·60 = 120: 1056
    mm = ops_of(lambda m, a, b: torch.cdist(a, b, compute_mode="use_mm_for_euclid_dist"), x1, x2)
    assert mm["aten._euclidean_dist"] == 1056
    # direct: per pair 3·4 + 1 root = 13: 60·13 = 780; p = 1: no root, 60·12 = 720
    assert ops_of(lambda m, a, b: torch.cdist(a, b), x1, x2)["aten._cdist_forward"] == 780
    assert ops_of(lambda m, a, b: torch.cdist(a, b, p=1), x1, x2)["aten._cdist_forward"] == 720


def test_activations():
    x = torch.randn(3, 4)  # 12 elements
    f = torch.nn.functional
    counted = ops_of(lambda m, x: [f.hardswish(x), f.hardsigmoid(x), f.mish(x), f.glu(x), f.logsigmoid(x),
                                   torch.logsumexp(x, -1), torch.atan2(x, x), torch.remainder(x, 0.7),
                                   torch.xlogy(x, x.abs())], x)
    assert counted["aten.hardswish"] == 48          # add 3, clamp, multiply, divide: 4·12
    assert counted["aten.hardsigmoid"] == 36        # add 3, clamp, divide: 3·12
    assert counted["aten.mish"] == 60               # softplus 3, tanh, multiply: 5·12
    assert counted["aten.glu"] == 12                # sigmoid + multiply per output, (3, 2): 2·6
    assert counted["aten.log_sigmoid_forward"] == 72  # abs, negate, exp, log1p, min, subtract: 6·12
    assert counted["aten.logsumexp"] == 54          # 4 per input (max, sub, exp, sum) 48 + 2 per row (log, add) 6
    assert counted["aten.atan2"] == counted["aten.remainder"] == 12  # 1 each
    assert counted["aten.xlogy"] == 24              # log, multiply
    prelu = ops_of(lambda m, x: m.mods[0](x), x, modules=(torch.nn.PReLU(4),))
    assert prelu["aten._prelu_kernel"] == 24        # test, multiply: 2·12
    back = ops_of(lambda m, x: [f.hardswish(x), f.hardsigmoid(x), f.mish(x), f.glu(x), f.logsigmoid(x),
                                m.mods[0](x)], x, modules=(torch.nn.PReLU(4),), backward=True)
    assert back["aten.hardswish_backward"] == 60    # 2x, + 3, / 6, × g, range test: 5·12
    assert back["aten.hardsigmoid_backward"] == 24  # range test, multiply: 2·12
    assert back["aten.mish_backward"] == 132        # 11·12
    assert back["aten.glu_backward"] == 36          # 3 per grad_input element: 3·12
    assert back["aten.log_sigmoid_backward"] == 48  # 4·12
    assert back["aten._prelu_kernel_backward"] == 36  # 3·12


def test_complex_activations_in_real_flops():
    z = torch.randn(6, dtype=torch.complex64)
    assert count(aten.sigmoid.default, z, out=z) == {"complex": 78}    # 13·6: negate 2, exp 5, + 1, reciprocal 5
    assert count(aten.tanh.default, z, out=z) == {"complex": 120}      # 20·6: 2z 2, exp 5, ∓ 1 2, divide 11
    assert count(aten.pow.Tensor_Scalar, z, 2, out=z) == {"complex": 102}  # 17·6: log 6, multiply 6, exp 5
    assert count(aten.sigmoid_backward.default, z, z, out=z) == {"complex": 84}  # 14·6
    assert count(aten.tanh_backward.default, z, z, out=z) == {"complex": 84}     # 14·6


def test_upsampling_and_grid_sample():
    x = torch.randn(1, 2, 4, 4)
    f = torch.nn.functional
    up = lambda m, x: f.interpolate(x, scale_factor=2, mode="bilinear")  # noqa: E731
    # output 1·2·8·8 = 128 elements: 4 multiplies + 3 adds each = 896; backward 8 per grad_output = 1024
    assert ops_of(up, x)["aten.upsample_bilinear2d"] == 896
    assert ops_of(up, x, backward=True)["aten.upsample_bilinear2d_backward"] == 1024
    nearest = lambda m, x: f.interpolate(x, scale_factor=2)  # noqa: E731
    assert ops_of(nearest, x)["aten.upsample_nearest2d"] == 0                       # a copy
    assert ops_of(nearest, x, backward=True)["aten.upsample_nearest2d_backward"] == 128  # 1 add per grad_output
    grid = torch.rand(1, 3, 3, 2) * 2 - 1
    sample = lambda m, x, g: f.grid_sample(x, g, align_corners=False)  # noqa: E731
    # 9 locations · 14 = 126; 1·2·3·3 = 18 outputs · 7 = 126: 252
    assert ops_of(sample, x, grid)["aten.grid_sampler_2d"] == 252
    # grad_input 8·18 = 144, grad_grid 16·18 + 20·9 = 288 + 180 = 468: 612
    assert ops_of(sample, x, grid, backward=True)["aten.grid_sampler_2d_backward"] == 612


def test_losses():
    x, t = torch.randn(3, 4), torch.rand(3, 4)
    f = torch.nn.functional
    # 9 per element ((1 − t)·x, − log σ(x)) 108 + the mean: 12 adds + 1 division = 121
    assert ops_of(lambda m, x, t: f.binary_cross_entropy_with_logits(x, t), x, t)[
        "aten.binary_cross_entropy_with_logits"] == 121
    # pos_weight: 4 more per element: 13·12 + 13 = 169
    pos = torch.rand(4)
    assert ops_of(lambda m, x, t, p: f.binary_cross_entropy_with_logits(x, t, pos_weight=p), x, t, pos)[
        "aten.binary_cross_entropy_with_logits"] == 169
    # smooth L1: 6·12 + 12 + 1 = 85; backward 5·12 = 60 for each of the input and the target (both require grad)
    assert ops_of(lambda m, x, t: f.smooth_l1_loss(x, t), x, t)["aten.smooth_l1_loss"] == 85
    assert ops_of(lambda m, x, t: f.smooth_l1_loss(x, t), x, t, backward=True)["aten.smooth_l1_loss_backward"] == 120


def test_inverse_weight_norm_and_embedding_bag():
    a = torch.randn(2, 4, 4) + 4 * torch.eye(4)
    assert ops_of(lambda m, a: torch.linalg.inv(a), a)["aten.linalg_inv_ex"] == 256   # 2·4³ per matrix, 2 matrices
    with pytest.warns(FutureWarning):
        linear = torch.nn.utils.weight_norm(torch.nn.Linear(4, 3))
    x = torch.randn(5, 4)
    # v (3, 4), 3 norms: 3·12 + 2·3 = 42; backward 5·12 + 3·3 = 69
    assert ops_of(lambda m, x: m.mods[0](x), x, modules=(linear,))["aten._weight_norm_interface"] == 42
    back = ops_of(lambda m, x: m.mods[0](x), x, modules=(linear,), backward=True)
    assert back["aten._weight_norm_interface_backward"] == 69
    bag = torch.nn.EmbeddingBag(10, 4, mode="mean")
    ids, offsets = torch.tensor([1, 2, 3, 4, 5, 6]), torch.tensor([0, 3])
    # forward: 6 looked-up rows of 4 = 24 adds + 2 bags · 4 divisions = 32; backward: 24 adds + 24 divisions
    run = lambda m, i, o: m.mods[0](i, o)  # noqa: E731
    assert ops_of(run, ids, offsets, modules=(bag,))["aten._embedding_bag"] == 32
    assert ops_of(run, ids, offsets, modules=(bag,), backward=True)["aten._embedding_bag_backward"] == 48


def test_scatter_arithmetic_and_fold():
    src, index = torch.randn(3, 4), torch.zeros(3, 4, dtype=torch.long)
    into = lambda m, s: torch.zeros(3, 4).scatter(0, index, s, reduce="add")  # noqa: E731
    assert ops_of(into, src)["aten.scatter"] == 12                                  # 1 add per source element
    assert ops_of(lambda m, s: torch.zeros(3, 4).scatter(0, index, s), src)["aten.scatter"] == 0   # a write
    assert ops_of(lambda m, s: torch.zeros(3, 4).scatter_add(0, index, s), src)["aten.scatter_add"] == 12
    mean = lambda m, s: torch.zeros(3, 4).scatter_reduce(0, index, s, reduce="mean")  # noqa: E731
    assert ops_of(mean, src)["aten.scatter_reduce"] == 12 + 2 * 12                   # + count and divide per output
    assert ops_of(lambda m, s: torch.zeros(5, 4).index_add(0, torch.tensor([0, 2, 2]), s[:3]), src)[
        "aten.index_add"] == 12
    # F.fold of (1, 2·2·2, 9) columns into 4×4: 1 add per input element: 72
    assert ops_of(lambda m, c: torch.nn.functional.fold(c, (4, 4), 2), torch.randn(1, 8, 9))["aten.col2im"] == 72


def test_flex_attention_with_score_mod_and_block_mask():
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    q, k, v = torch.randn(1, 2, 16, 8), torch.randn(1, 2, 16, 8), torch.randn(1, 2, 16, 6)
    mask = create_block_mask(lambda b, h, i, j: i >= j, 1, 2, 16, 16, device="cpu", BLOCK_SIZE=8)

    def relative(score, b, h, i, j):
        return score + (i - j)  # an integer difference (0) and one float add per score

    # scores 1·2·16·16 = 512: QKᵀ and PV 2·512·(8 + 6) = 14336; scale 512, softmax 5·512 = 2560;
    # score_mod 1 per score: 512. The block mask's skipped blocks are counted (the whole matrix).
    def counted(fn, tensors="auto"):  # the default block mask's construction: data ops, 0
        return {op: flops for op, flops in ops_of(fn, q, k, v, tensors=tensors).items() if flops}

    assert counted(lambda m, q, k, v: flex_attention(q, k, v)) == {"higher_order.flex_attention": 14336 + 512 + 2560}
    modded = counted(lambda m, q, k, v: flex_attention(q, k, v, score_mod=relative, block_mask=mask))
    assert modded == {"higher_order.flex_attention": 14336 + 512 + 2560 + 512}
    assert counted(lambda m, q, k, v: flex_attention(q, k, v, score_mod=relative), tensors="real") == modded


def test_flex_attention_backward_on_shapes():
    """FlexAttention has no CPU backward in torch 2.13: the formula on its arguments' shapes."""
    from torch._higher_order_ops.flex_attention import flex_attention_backward as hop

    q, k, v = meta(1, 2, 16, 8), meta(1, 2, 16, 8), meta(1, 2, 16, 6)

    def joint(score, b, h, i, j, grad):
        return [grad * 2]  # one multiply per score

    # 2× the forward matmuls 2·14336 = 28672; scale 512; softmax backward 4·512 = 2048; joint 512
    args = (q, k, v, meta(1, 2, 16, 6), meta(1, 2, 16), meta(1, 2, 16, 6), None, None, joint, (), 1.0, {}, (), ())
    assert formulas.count_op(hop, args, {}, None) == {"matmul": 28672, "elementwise": 512 + 512,
                                                      "normalization": 2048}


def test_kernels_pytorch_counts_land_in_their_family_with_their_bias():
    x, w, b = torch.randn(1, 2, 5, 5), torch.randn(3, 2, 3, 3), torch.randn(3)
    out = torch.nn.functional.conv2d(x, w, b)  # (1, 3, 3, 3): 27 outputs, each 2·2·3·3 = 36 FLOPs
    expected = {"matmul": 27 * 36, "bias": 27}
    assert count(aten._convolution.default, x, w, b, [1, 1], [0, 0], [1, 1], False, [0, 0], 1, False, False,
                 True, True, out=out) == expected
    assert count(aten._slow_conv2d_forward.default, x, w, [3, 3], b, [1, 1], [0, 0], out=out) == expected
    assert count(aten._slow_conv2d_forward.default, x, w, [3, 3], None, [1, 1], [0, 0], out=out)["bias"] == 0
    # _scaled_mm (16, 32)·(32, 8): 2·16·32·8 = 8192; bias 16·8 = 128; tensorwise scales 128
    a, m2, one = meta(16, 32), meta(32, 8), meta(())
    assert count(aten._scaled_mm.default, a, m2, one, one, meta(8), out=meta(16, 8)) == {
        "matmul": 8192, "bias": 128, "elementwise": 128}
    # the flash and efficient kernels, (batch, sequence, heads, dim): the counts of the SDPA tests above
    qf, kf, vf = meta(2, 5, 3, 4), meta(2, 7, 3, 4), meta(2, 7, 3, 6)
    assert count(aten._flash_attention_forward.default, qf, kf, vf, None, None, 5, 7, 0.0, False, False) == FORWARD
    assert count(aten._flash_attention_forward.default, qf, kf, vf, None, None, 5, 7, 0.0, True, False) == MASKED
    assert count(aten._efficient_attention_forward.default, qf, kf, vf, None, None, None, 5, 7, 0.0, 0) == FORWARD
    t = meta(1)
    assert count(aten._flash_attention_backward.default, meta(2, 5, 3, 6), qf, kf, vf, t, t, t, t, 5, 7, 0.0,
                 False, t, t) == BACKWARD


def test_data_ops_leave_no_formula():
    """Ops that do no arithmetic are counted 0, not listed as without a formula."""
    f = torch.nn.functional
    x = torch.randn(1, 4, 2, 2)
    counted = ops_of(lambda m, x: [x.contiguous(memory_format=torch.channels_last), torch.hann_window(4),
                                   torch.eye(3), f.pixel_shuffle(x, 2), torch.complex(x, x)], x, tensors="real")
    assert set(counted.values()) == {0}
    gru = torch.nn.GRU(4, 4, batch_first=True)
    packed = lambda m, x: m.mods[0](torch.nn.utils.rnn.pack_padded_sequence(x, torch.tensor([3, 2]), batch_first=True))[0].data  # noqa: E731,E501
    assert ops_of(packed, torch.randn(2, 3, 4), modules=(gru,))["aten._pack_padded_sequence"] == 0
    # as_strided_ (restriding in place, as channels_last runs do): a view, 0
    assert formulas.count_op(aten.as_strided_.default, (x, (4,), (1,)), {}, x) == {"data": 0}


def test_ops_the_zoo_found():
    f = torch.nn.functional
    theta = torch.randn(2, 2, 3)
    grid = lambda m, t: f.affine_grid(t, [2, 1, 4, 5], align_corners=False)  # noqa: E731
    # output (2, 4, 5, 2): 80 values, each (x, y, 1)·θ row: 3 MACs, 2·3·80 = 480; backward the same
    # (on the CPU its backward decomposes into a bmm of those shapes)
    assert ops_of(grid, theta)["aten.affine_grid_generator"] == 480
    assert ops_of(grid, theta, backward=True)["aten.bmm"] == 480
    assert count(aten.affine_grid_generator_backward.default, meta(2, 4, 5, 2), [2, 1, 4, 5], False) == {
        "matmul": 480}
    # reflection padding's gradient: 1 add per grad_output element, 1·1·6·6 = 36
    pad = lambda m, x: f.pad(x, (1, 1, 1, 1), mode="reflect")  # noqa: E731
    assert ops_of(pad, torch.randn(1, 1, 4, 4), backward=True)["aten.reflection_pad2d_backward"] == 36
    # softplus' gradient g·σ(x): 4 per element, 12 elements
    assert ops_of(lambda m, x: f.softplus(x), torch.randn(3, 4), backward=True)["aten.softplus_backward"] == 48


def test_lazy_conjugation_and_negation_resolved():
    z = torch.randn(5, dtype=torch.complex64)
    # a lazy conjugate made real: the 5 imaginary parts negated, 5; nothing to resolve: 0
    assert count(aten.resolve_conj.default, z.conj(), out=z) == {"complex": 5}
    assert count(aten.resolve_conj.default, z, out=z) == {"complex": 0}
    assert count(aten._conj_physical.default, z, out=z) == {"complex": 5}
    assert count(aten._conj_physical.default, z.real, out=z.real) == {"elementwise": 0}   # a real copy
    # a lazy negation of a real tensor: 1 per element, 4·1 = 4
    x = torch.randn(4)
    assert count(aten.resolve_neg.default, torch._neg_view(x), out=x) == {"elementwise": 4}
