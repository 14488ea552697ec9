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
