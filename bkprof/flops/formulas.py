"""One registry of per-op FLOP formulas: the counting conventions of bkprof (docs/counting.md).

Each formula takes the op's (args, kwargs, out) and returns {family: FLOPs}. Families:
`matmul` (2 FLOPs per multiply-accumulate, PyTorch's own convention; fvcore reports the same
work as MACs), `bias` (the bias adds of linear and conv layers, 1 per output element), `elementwise`, `complex` (elementwise ops with a complex result, in real FLOPs),
`reduction`, `normalization`, `index` (arithmetic done by scatter/index-add) and `data`
(views, copies, selection, creation and integer/boolean results: 0 FLOPs).
Ops absent from this registry fall back to PyTorch's flop registry (custom kernels register
there) and are otherwise reported as ops without a formula.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch.utils import flop_counter

from bkprof.conventions import ELEMENTWISE, layer_norm_flops

Counts = dict[str, int]


@dataclass(frozen=True)
class OpFormula:
    family: str
    rule: str
    count: Callable[[object, tuple, dict, object], Counts]


FORMULAS: dict[str, OpFormula] = {}


def formula(*names: str, family: str, rule: str):
    """Register `count(func, args, kwargs, out) -> {family: FLOPs}` for the ops `names`: aten ops by
    their name, others (bkprof's custom ops) as "namespace::name". An op has one formula: a second
    registration raises ValueError."""

    def register(count):
        for name in names:
            if name in FORMULAS:
                raise ValueError(f"a FLOP formula for {name!r} is already registered ({FORMULAS[name].rule})")
            FORMULAS[name] = OpFormula(family, rule, count)
        return count

    return register


def named_args(func, args, kwargs) -> dict:
    """The op's arguments by their schema names, defaults filled in (formulas read these, so one
    formula serves every overload and every position an argument may arrive in)."""
    schema = func._schema.arguments
    named = {a.name: a.default_value for a in schema if a.has_default_value()}
    named.update(zip((a.name for a in schema), args))
    named.update(kwargs)
    return named


def _first(out):
    return out[0] if isinstance(out, (tuple, list)) else out


def _numel(t) -> int:
    return t.numel() if isinstance(t, torch.Tensor) else 0


def _is_float_result(out) -> bool:
    t = _first(out)
    return isinstance(t, torch.Tensor) and (t.is_floating_point() or t.is_complex())


def _is_complex(t) -> bool:
    return isinstance(t, torch.Tensor) and t.is_complex()


# a complex multiply-accumulate is 4 real multiplications and 4 real additions: 4 real ones
COMPLEX_MAC = 4


def _torch_matmul(func, args, kwargs, out) -> int:
    """PyTorch's count (2 per multiply-accumulate), times 4 for complex operands."""
    flops = int(flop_counter.flop_registry[func.overloadpacket](*args, **kwargs, out_val=out))
    return flops * (COMPLEX_MAC if _is_complex(_first(out)) else 1)


# ---- matmul family: 2 FLOPs per multiply-accumulate; bias adds are elementwise ----

@formula("mm", "bmm", "bkprof::grouped_linear_input_grad", family="matmul",
         rule="2·M·K·N (2 per multiply-accumulate; complex: 8, four real MACs each)")
def _mm(func, args, kwargs, out):
    return {"matmul": _torch_matmul(func, args, kwargs, out)}


@formula("mv", "dot", "vdot", family="matmul",
         rule="2·M·K (mv), 2·K (dot, vdot): 2 per multiply-accumulate; complex: 8 (vdot's conjugation is free)")
def _mv(func, args, kwargs, out):
    a = args[0]
    macs = a.numel() if func.overloadpacket is not torch.ops.aten.mv else a.shape[0] * a.shape[1]
    return {"matmul": 2 * macs * (COMPLEX_MAC if _is_complex(_first(out)) else 1)}


def _bias_adds(a: dict, out) -> int:
    """1 per output element, unless beta = 0 (the bias is then ignored: no add happens)."""
    return out.numel() if a.get("beta", 1) != 0 else 0


@formula("addmm", "baddbmm", "bkprof::grouped_linear", family="matmul",
         rule="2·M·K·N + M·N (the bias add, 1 per output element; none when beta = 0)")
def _addmm(func, args, kwargs, out):
    return {"matmul": _torch_matmul(func, args, kwargs, out), "bias": _bias_adds(named_args(func, args, kwargs), out)}


@formula("addmv", "addbmm", family="matmul",
         rule="2·M·K (addmv), 2·B·M·K·N (addbmm: the batch's products summed into one M×N: the sum is the "
              "MACs' adds) + 1 per output element for the bias (none when beta = 0)")
def _addmv_addbmm(func, args, kwargs, out):
    a = named_args(func, args, kwargs)
    macs = a["mat"].numel() if "mat" in a else a["batch1"].numel() * a["batch2"].shape[-1]
    return {"matmul": 2 * macs * (COMPLEX_MAC if _is_complex(out) else 1), "bias": _bias_adds(a, out)}


@formula("convolution", "_convolution", "convolution_overrideable", "cudnn_convolution", "_slow_conv2d_forward",
         family="matmul",
         rule="2·out·(C_in/groups)·kernel + out if biased (the bias add); transposed: 2·in·(C_out/groups)·kernel")
def _convolution(func, args, kwargs, out):
    # PyTorch's count (torch.utils.flop_counter.conv_flop), from the shapes: weight (C_out, C_in/groups, k...)
    # or, transposed, (C_in, C_out/groups, k...); each output (transposed: input) element takes
    # prod(weight.shape[1:]) multiply-accumulates. (PyTorch's own formula cannot be called on
    # _slow_conv2d_forward, whose arguments differ.)
    a = named_args(func, args, kwargs)
    x, weight = args[0], args[1]
    driven = x if a.get("transposed", False) else out
    macs = driven.numel() * math.prod(weight.shape[1:])
    return {"matmul": 2 * macs * (COMPLEX_MAC if _is_complex(out) else 1),
            "bias": out.numel() if a.get("bias") is not None else 0}


@formula("_scaled_mm", family="matmul",
         rule="2·M·K·N + M·N if biased + 1 per output element per scale applied (tensorwise scales: 1, rowwise: 2)")
def _scaled_mm(func, args, kwargs, out):
    a = named_args(func, args, kwargs)
    scales = 1 if a["scale_a"].numel() == 1 and a["scale_b"].numel() == 1 else 2
    return {"matmul": _torch_matmul(func, args, kwargs, out),
            "bias": out.numel() if a["bias"] is not None else 0, "elementwise": scales * out.numel()}


def _trilinear_macs(a: dict) -> int:
    """aten::_trilinear as it runs: i1·i2 summed over the sum dims i3 lacks, then that times i3 summed over
    the rest (nn.Bilinear: x1 (N, I1)·W (O, I1, I2) -> (N, O, I2), then · x2 (N, I2): N·O·I2·(I1 + 1))."""
    dims = len(a["expand1"]) + a["i1"].dim()

    def expanded(t, expand):
        shape = list(t.shape)
        for d in sorted(expand):
            shape.insert(d, 1)
        return shape

    s1, s2, s3 = (expanded(a[k], a[e]) for k, e in (("i1", "expand1"), ("i2", "expand2"), ("i3", "expand3")))
    pair = [max(x, y) for x, y in zip(s1, s2)]
    first = math.prod(pair)
    reduced = [1 if d in a["sumdim"] and s3[d] == 1 else pair[d] for d in range(dims)]
    return first + math.prod(max(x, y) for x, y in zip(reduced, s3))


@formula("_trilinear", family="matmul",
         rule="2 per multiply-accumulate of its two pairwise products (nn.Bilinear: 2·N·O·I2·(I1 + 1))")
def _trilinear(func, args, kwargs, out):
    return {"matmul": 2 * _trilinear_macs(named_args(func, args, kwargs))}


@formula("_euclidean_dist", family="matmul",
         rule="cdist by matmul (p=2): x1·(-2) 1 per x1 element; row norms 2 per element of x1 and x2; the product "
              "with the norms appended 2·n·m·(d + 2); clamp and sqrt 2 per distance")
def _euclidean_dist(func, args, kwargs, out):
    x1, x2 = args[0], args[1]
    n, m, d = x1.shape[-2], x2.shape[-2], x1.shape[-1]
    pairs = out.numel()  # batch·n·m
    batch = pairs // (n * m)
    return {"matmul": 2 * pairs * (d + 2), "reduction": 2 * batch * (n + m) * d,
            "elementwise": batch * n * d + 2 * pairs}


@formula("_cdist_forward", family="reduction",
         rule="per pair: 3 per dim (subtract, the power p of its absolute value, sum) + 1 root unless p is 0, 1 or infinite")
def _cdist_forward(func, args, kwargs, out):
    a = named_args(func, args, kwargs)
    root = a["p"] not in (0, 1, math.inf)
    return {"reduction": out.numel() * (3 * a["x1"].shape[-1] + root)}


@formula("_cdist_backward", family="reduction",
         rule="per pair: 4 per dim (subtract, the p-norm's derivative, scale, accumulate) + 2 (grad / dist^(p-1))")
def _cdist_backward(func, args, kwargs, out):
    a = named_args(func, args, kwargs)
    pairs = a["cdist"].numel()
    return {"reduction": pairs * (4 * a["x1"].shape[-1] + 2)}


@formula("convolution_backward", family="matmul",
         rule="2·MACs for each of grad_input and grad_weight asked for; grad_bias: 1 per grad_output element")
def _convolution_backward(func, args, kwargs, out):
    output_mask = args[10]
    return {"matmul": _torch_matmul(func, args, kwargs, out),
            "reduction": _numel(args[0]) if output_mask[2] else 0}


@formula("bkprof::grouped_linear_weight_grad", family="matmul",
         rule="2·M·K·N (grad_weight); grad_bias: 1 per grad_output element, a reduction as nn.Linear's")
def _grouped_weight_grad(func, args, kwargs, out):
    return {"matmul": _torch_matmul(func, args, kwargs, out), "reduction": args[0].numel()}


# ---- elementwise: per output element; complex results in real FLOPs ----

# the table of per-element costs is bkprof.conventions.ELEMENTWISE (the closed-form counts use it too)


def _elementwise(name: str):
    real, complex_ = ELEMENTWISE[name]

    def count(func, args, kwargs, out):
        result = _first(out)
        if not _is_float_result(out):
            return {"data": 0}
        if result.is_complex() or _is_complex(args[0] if args else None):
            # no complex rule: reported as an op without a formula rather than guessed
            return {"complex": complex_ * result.numel()} if complex_ is not None else None
        return {"elementwise": real * result.numel()}

    return count


for _name, (_real, _complex) in ELEMENTWISE.items():
    _rule = f"{_real} per output element" + (f"; complex: {_complex} real FLOPs" if _complex else "")
    formula(_name, f"{_name}_", family="elementwise", rule=_rule)(_elementwise(_name))


# ---- reductions and normalisations ----

def _complex_factor(t) -> int:
    """Real FLOPs of one complex addition (or a division by a real count): 2."""
    return ELEMENTWISE["add"][1] if _is_complex(t) else 1


@formula("sum", "amax", "amin", "max", "min", "prod", "cumsum", "cumprod", "logcumsumexp", family="reduction",
         rule="1 per input element (complex: 2)")
def _reduction(func, args, kwargs, out):
    return {"reduction": args[0].numel() * _complex_factor(args[0]) if _is_float_result(out) else 0}


@formula("mean", family="reduction", rule="1 per input element + 1 per output element (the division); complex: 2 each")
def _mean(func, args, kwargs, out):
    return {"reduction": (args[0].numel() + out.numel()) * _complex_factor(args[0])}


@formula("var", "var_mean", "std", "std_mean", family="reduction",
         rule="4 per input element (mean, subtract, square, sum) + 2 per output element (the two divisions; std: +1 sqrt)")
def _variance(func, args, kwargs, out):
    result = _first(out)
    root = func.overloadpacket.__name__.startswith("std")
    return {"reduction": 4 * args[0].numel() + (2 + root) * result.numel()}


@formula("linalg_vector_norm", family="reduction", rule="2 per input element (|x|^p, sum) + 1 per output element (the root)")
def _vector_norm(func, args, kwargs, out):
    return {"reduction": 2 * args[0].numel() + out.numel()}


SOFTMAX = 5           # per element: max, subtract, exp, sum, divide
SOFTMAX_BACKWARD = 4  # per element: y·g, sum, subtract, multiply by y


@formula("_softmax", "_safe_softmax", "_log_softmax", family="normalization",
         rule="5 per element (max, subtract, exp, sum, divide; log_softmax: log and subtract instead of divide; "
              "_safe_softmax's zeros for fully masked rows are a comparison, 0)")
def _softmax(func, args, kwargs, out):
    return {"normalization": SOFTMAX * out.numel()}


@formula("_softmax_backward_data", "_log_softmax_backward_data", family="normalization",
         rule="4 per element (mul, sum, subtract, mul; log_softmax: exp, sum, mul, subtract)")
def _softmax_backward(func, args, kwargs, out):
    return {"normalization": SOFTMAX_BACKWARD * out.numel()}


@formula("native_layer_norm", family="normalization",
         rule="5 per element (mean, subtract, square, sum, scale) + 2 per row (rsqrt(var+eps)) + 2 per element if affine")
def _layer_norm(func, args, kwargs, out):
    x, shape, weight = args[0], args[1], args[2]
    rows = x.numel() // math.prod(shape)
    return {"normalization": layer_norm_flops(x.numel(), rows, weight is not None)}


@formula("native_layer_norm_backward", family="normalization",
         rule="grad_input 8 per element; grad_weight 2 per element; grad_bias 1 per element (as asked for)")
def _layer_norm_backward(func, args, kwargs, out):
    numel, mask = args[1].numel(), args[7]
    return {"normalization": numel * (8 * mask[0] + 2 * mask[1] + 1 * mask[2])}


# ---- scatter arithmetic ----

@formula("index_add", "index_add_", "scatter_add", "scatter_add_", family="index", rule="1 add per source element")
def _index_add(func, args, kwargs, out):
    source = args[3] if len(args) > 3 else kwargs.get("source", kwargs.get("src"))
    return {"index": _numel(source)}


@formula("index_put", "index_put_", "_index_put_impl_", family="index",
         rule="1 add per value element when accumulating, else 0 (a write)")
def _index_put(func, args, kwargs, out):
    accumulate = args[3] if len(args) > 3 else kwargs.get("accumulate", False)
    return {"index": _numel(args[2]) if accumulate else 0}


# ---- scaled-dot-product attention: one count for every kernel torch dispatches to ----
# The fused kernels (CPU flash, CUDA flash, memory-efficient, cuDNN) are counted as the math kernel
# runs: q and k scaled by sqrt(scale) each, QKᵀ, the mask added, softmax, dropout, PV; so a model
# counts the same whichever kernel runs (the math kernel itself runs as those ops and is counted
# op by op). Scores are counted over the whole s_q × s_k matrix, causal or not, as PyTorch's own
# counter does (flash kernels skip the blocks a causal mask hides: that saving is not counted).
# Backward: the four products dP = dO·Vᵀ, dV = Pᵀ·dO, dQ = dS·K, dK = dSᵀ·Q, the softmax gradient,
# the scales' gradient and the dropout mask; the flash kernels' recomputation of QKᵀ in the backward
# pass is not counted, as in PyTorch's counter.

def attention_flops(q: tuple, k: tuple, v: tuple, *, masked: bool, dropout: bool) -> Counts:
    """q (..., s_q, d), k (..., s_k, d), v (..., s_k, d_v) shapes; the leading dims are q's (batch, heads)."""
    scores = math.prod(q[:-1]) * k[-2]
    return {"matmul": 2 * scores * (q[-1] + v[-1]),
            "elementwise": math.prod(q) + math.prod(k) + scores * (masked + 2 * dropout),
            "normalization": SOFTMAX * scores}


def attention_backward_flops(q: tuple, k: tuple, v: tuple, *, dropout: bool) -> Counts:
    scores = math.prod(q[:-1]) * k[-2]
    return {"matmul": 2 * 2 * scores * (q[-1] + v[-1]),
            "elementwise": math.prod(q) + math.prod(k) + 2 * scores * dropout,
            "normalization": SOFTMAX_BACKWARD * scores}


ATTENTION_RULE = ("2·B·H·s_q·s_k·(d + d_v) (QKᵀ and PV over the whole score matrix, causal or not); q and k "
                  "scaled, 1 per element; per score: softmax 5, mask 1 (float, bool or causal), dropout 2 if p > 0")
ATTENTION_BACKWARD_RULE = ("2× the forward matmuls (dP, dV, dQ, dK; flash's recomputed QKᵀ not counted); q and k "
                           "scales 1 per element; per score: softmax backward 4, dropout 2 if p > 0")


def _shape(t) -> tuple:
    return tuple(t.shape)


@formula("_scaled_dot_product_flash_attention_for_cpu", "_scaled_dot_product_flash_attention",
         "_scaled_dot_product_efficient_attention", "_scaled_dot_product_cudnn_attention",
         "_scaled_dot_product_fused_attention_overrideable", family="matmul", rule=ATTENTION_RULE)
def _attention(func, args, kwargs, out):
    a = named_args(func, args, kwargs)
    masked = a.get("attn_mask", a.get("attn_bias")) is not None or a["is_causal"]
    return attention_flops(_shape(a["query"]), _shape(a["key"]), _shape(a["value"]), masked=masked,
                           dropout=a["dropout_p"] > 0)


@formula("_scaled_dot_product_flash_attention_for_cpu_backward", "_scaled_dot_product_flash_attention_backward",
         "_scaled_dot_product_efficient_attention_backward", "_scaled_dot_product_cudnn_attention_backward",
         "_scaled_dot_product_fused_attention_overrideable_backward", family="matmul", rule=ATTENTION_BACKWARD_RULE)
def _attention_backward(func, args, kwargs, out):
    a = named_args(func, args, kwargs)
    return attention_backward_flops(_shape(a["query"]), _shape(a["key"]), _shape(a["value"]),
                                    dropout=a["dropout_p"] > 0)


# The CUDA kernels under scaled-dot-product attention, reached directly (a custom attention that
# calls them): their tensors are (batch, sequence, heads, dim); a variable-length batch (cumulative
# sequence lengths) has no fixed score matrix: PyTorch's count of its products only.

def _heads_first(t: torch.Tensor) -> tuple:
    b, s, h, d = t.shape
    return (b, h, s, d)


def _kernel_attention(a: dict, backward: bool, func, args, kwargs, out) -> Counts:
    if a["query"].dim() == 3:  # variable length: (total tokens, heads, dim)
        return {"matmul": int(flop_counter.flop_registry[func.overloadpacket](*args, **kwargs, out_val=out))}
    q, k, v = (_heads_first(a[name]) for name in ("query", "key", "value"))
    dropout = a["dropout_p"] > 0
    if backward:
        return attention_backward_flops(q, k, v, dropout=dropout)
    masked = a.get("is_causal", False) or a.get("bias") is not None or a.get("custom_mask_type", 0) != 0
    return attention_flops(q, k, v, masked=masked, dropout=dropout)


@formula("_flash_attention_forward", "_efficient_attention_forward", family="matmul", rule=ATTENTION_RULE)
def _attention_kernel(func, args, kwargs, out):
    return _kernel_attention(named_args(func, args, kwargs), False, func, args, kwargs, out)


@formula("_flash_attention_backward", "_efficient_attention_backward", family="matmul", rule=ATTENTION_BACKWARD_RULE)
def _attention_kernel_backward(func, args, kwargs, out):
    return _kernel_attention(named_args(func, args, kwargs), True, func, args, kwargs, out)


# ---- flex_attention (a higher-order operator; eager on the CPU it runs a dense math version) ----
# Counted as scaled-dot-product attention over the whole score matrix: QKᵀ and PV, the scale (1 per
# score), score_mod's own ops per score (score_mod run once under the counter on one 0-d score, times
# the number of scores), softmax 5 per score. A block_mask's skipped blocks are counted as computed
# (as PyTorch's counter does, and as a causal mask is for SDPA): on fake tensors which blocks it skips
# cannot be known. Backward: 2× the forward matmuls, softmax backward 4 and the scale 1 per score,
# and the score_mod gradient's ops (its joint graph, likewise per score); the recomputed scores are
# not counted (as for the flash kernels).

def per_score_counts(score_fn, query: torch.Tensor, extra: tuple, buffers) -> Counts | None:
    """What `score_fn(score, b, h, q_idx, kv_idx, *extra, *buffers)` costs on one score, counted by the
    op counter (None when it cannot be run on one score)."""
    from bkprof.flops.counter import OpCounter

    score = query.new_zeros((), dtype=torch.float32)
    index = query.new_zeros((), dtype=torch.int32)
    counter = OpCounter(torch.nn.Module())
    try:
        with counter:
            score_fn(score, index, index, index, index, *(score for _ in extra), *buffers)
    except Exception:  # noqa: BLE001 - a score_mod this cannot call: the op is reported as without a formula
        return None
    if counter.counts.missing:
        return None
    totals: dict[str, int] = {}
    for (_, _, family, _), flops in counter.counts.flops.items():
        totals[family] = totals.get(family, 0) + flops
    return totals


def _flex_shapes(a: dict) -> tuple[int, int]:
    q, k, v = a["query"], a["key"], a["value"]
    scores = math.prod(q.shape[:-1]) * k.shape[-2]
    return scores, 2 * scores * (q.shape[-1] + v.shape[-1])


@formula("higher_order::flex_attention", family="matmul",
         rule="2·B·H·s_q·s_k·(d + d_v) over the whole score matrix (block_mask's skipped blocks counted); per "
              "score: scale 1, softmax 5, + score_mod's own ops (counted on one score)")
def _flex_attention(func, args, kwargs, out):
    names = ("query", "key", "value", "score_mod", "block_mask", "scale", "kernel_options",
             "score_mod_other_buffers", "mask_mod_other_buffers")
    a = {**dict(zip(names, args)), **kwargs}
    scores, matmul = _flex_shapes(a)
    mod = per_score_counts(a["score_mod"], a["query"], (), a.get("score_mod_other_buffers", ()))
    if mod is None:
        return None
    total = {"matmul": matmul, "elementwise": scores, "normalization": SOFTMAX * scores}
    return _added(total, _times(mod, scores))


@formula("higher_order::flex_attention_backward", family="matmul",
         rule="2× the forward matmuls; per score: scale 1, softmax backward 4, + the score_mod gradient's ops "
              "(its joint graph, counted on one score)")
def _flex_attention_backward(func, args, kwargs, out):
    names = ("query", "key", "value", "out", "logsumexp", "grad_out", "grad_logsumexp", "fw_graph", "joint_graph",
             "block_mask", "scale", "kernel_options", "score_mod_other_buffers", "mask_mod_other_buffers")
    a = {**dict(zip(names, args)), **kwargs}
    scores, matmul = _flex_shapes(a)
    mod = per_score_counts(a["joint_graph"], a["query"], ("grad",), a.get("score_mod_other_buffers", ()))
    if mod is None:
        return None
    total = {"matmul": 2 * matmul, "elementwise": scores, "normalization": SOFTMAX_BACKWARD * scores}
    return _added(total, _times(mod, scores))


@formula("_native_multi_head_attention", family="matmul",
         rule="nn.MultiheadAttention's inference kernel: the q, k, v and output linears (2·rows·E² + rows·E "
              "bias each), attention as above with head dim E/H (weights returned: q alone scaled, as the "
              "Python path), + the head average of the weights if returned")
def _native_multi_head_attention(func, args, kwargs, out):
    a = named_args(func, args, kwargs)
    query, key, heads = a["query"], a["key"], a["num_head"]
    (*lead, s_q, e), s_k = query.shape, key.shape[-2]
    batch = math.prod(lead)
    head = (batch, heads, s_q, e // heads)
    keys = (batch, heads, s_k, e // heads)
    rows_q, rows_k = batch * s_q, batch * s_k
    total = attention_flops(head, keys, keys, masked=a["mask"] is not None, dropout=False)
    total["matmul"] += 2 * e * e * (2 * rows_q + 2 * rows_k)  # q, output (rows_q); k, v (rows_k)
    total["bias"] = e * (2 * rows_q + 2 * rows_k)
    if a["need_weights"]:
        # the weights are returned: the kernel scales q alone by 1/sqrt(d) and runs QKᵀ, softmax, PV
        # itself (as nn.MultiheadAttention's Python path does), not scaled-dot-product attention,
        # which scales q and k by d^-1/4 each: k is not scaled
        total["elementwise"] -= math.prod(keys)
        if a["average_attn_weights"]:
            total["reduction"] = batch * heads * s_q * s_k + batch * s_q * s_k  # sum over heads, divide
    return total


# ---- recurrent layers: the fused kernels (mkldnn on the CPU, cuDNN, the CUDA cells) ----
# Per time step and batch row, a cell with G gates of H units computes x·W_ihᵀ + h·W_hhᵀ
# (2·G·H·(I + H)), adds both biases (2·G·H) and runs its gate arithmetic per hidden unit:
#   RNN   h' = act(a_x + a_h): add, act                                         2
#   LSTM  the two products added (4), σ×3 + tanh (4), c' = f·c + i·g (3), h' = o·tanh(c') (2)   13
#   GRU   r, z: add + σ (4); n = tanh(a_n + r·b_n) (3); h' = n + z·(h - n) (3)                10
# Backward: grad_input/grad_hidden and grad_weight, 2× the forward matmuls; bias gradient 1 per gate
# element (both biases get the same one); the gate arithmetic's gradient per hidden unit:
#   LSTM: do (1), dc' (5), df, dc, di, dg (4), σ' ×3 (9), tanh' (3), dh accumulated (1)        23
#   GRU: dz (2), dn (2), tanh' (3), dr and db_n (2), σ' ×2 (6), dh accumulated (2)           17
#   RNN: act' (tanh 3, relu 1) + dh accumulated (1)                                     4 / 2

RNN_MODES = {0: "rnn_relu", 1: "rnn_tanh", 2: "lstm", 3: "gru"}  # mkldnn's and cuDNN's mode numbers
RNN_GATES = {"rnn_relu": 1, "rnn_tanh": 1, "lstm": 4, "gru": 3}
RNN_CELL = {"rnn_relu": 2, "rnn_tanh": 2, "lstm": 13, "gru": 10}
RNN_CELL_BACKWARD = {"rnn_relu": 2, "rnn_tanh": 4, "lstm": 23, "gru": 17}


def rnn_step_flops(cell: str, input_size: int, hidden: int, biased: bool, proj: int = 0) -> Counts:
    """One time step of one batch row through one layer and direction (proj: LSTM projection size)."""
    gates = RNN_GATES[cell] * hidden
    recurrent = proj or hidden
    return {"matmul": 2 * gates * (input_size + recurrent) + (2 * hidden * proj if proj else 0),
            "bias": 2 * gates if biased else 0,
            "elementwise": RNN_CELL[cell] * hidden}


def rnn_step_backward_flops(cell: str, input_size: int, hidden: int, biased: bool, proj: int = 0,
                            weights: bool = True) -> Counts:
    forward = rnn_step_flops(cell, input_size, hidden, biased, proj)
    return {"matmul": forward["matmul"] * (2 if weights else 1),
            "reduction": RNN_GATES[cell] * hidden if biased and weights else 0,
            "elementwise": RNN_CELL_BACKWARD[cell] * hidden}


def _times(counts: Counts, rows: int) -> Counts:
    return {family: flops * rows for family, flops in counts.items()}


def _added(*counts: Counts) -> Counts:
    total: dict[str, int] = {}
    for c in counts:
        for family, flops in c.items():
            total[family] = total.get(family, 0) + flops
    return total


RNN_RULE = ("per step and row: 2·G·H·(I + H) (G gates) + 2·G·H bias adds + the cell's arithmetic per unit "
            "(RNN 2, LSTM 13, GRU 10); every layer and direction")
RNN_BACKWARD_RULE = ("2× the forward matmuls, 1 per gate element for the bias gradient, the cell's gradient per "
                     "unit (RNN 4 tanh / 2 relu, LSTM 23, GRU 17)")


def _mkldnn_layer(step_flops):
    """One layer, one direction: input (T, B, I) or (B, T, I); rows = T·B."""

    def count(func, args, kwargs, out):
        a = named_args(func, args, kwargs)
        x = a["input"]
        step = step_flops(RNN_MODES[a["mode"]], x.shape[-1], a["hidden_size"], a["has_biases"])
        return _times(step, x.numel() // x.shape[-1])

    return count


formula("mkldnn_rnn_layer", family="matmul", rule=RNN_RULE)(_mkldnn_layer(rnn_step_flops))
formula("mkldnn_rnn_layer_backward", family="matmul", rule=RNN_BACKWARD_RULE)(_mkldnn_layer(rnn_step_backward_flops))


def _cudnn_layers(a: dict):
    """(input size, hidden, projection) of every layer and direction of a cuDNN RNN, and its cell."""
    cell, hidden, proj = RNN_MODES[a["mode"]], a["hidden_size"], a["proj_size"]
    directions = 2 if a["bidirectional"] else 1
    layer_out = (proj or hidden) * directions
    sizes = [a["input"].shape[-1]] + [layer_out] * (a["num_layers"] - 1)
    return cell, [(size, hidden, proj) for size in sizes for _ in range(directions)]


def _cudnn_rows(a: dict) -> int:
    x = a["input"]
    return x.numel() // x.shape[-1]  # T·B, or the packed total of the batch sizes


def _cudnn_biased(a: dict, layers: int) -> bool:
    # per layer and direction: w_ih, w_hh (+ b_ih, b_hh) (+ w_hr when projected)
    per_layer = len(a["weight"]) // layers
    return per_layer - (1 if a["proj_size"] else 0) == 4


@formula("_cudnn_rnn", family="matmul", rule=RNN_RULE + "; dropout between layers 2 per element when training")
def _cudnn_rnn(func, args, kwargs, out):
    a = named_args(func, args, kwargs)
    cell, layers = _cudnn_layers(a)
    biased, rows = _cudnn_biased(a, len(layers)), _cudnn_rows(a)
    total = _added(*(_times(rnn_step_flops(cell, i, h, biased, p), rows) for i, h, p in layers))
    if a["train"] and a["dropout"] > 0 and a["num_layers"] > 1:
        directions = 2 if a["bidirectional"] else 1
        dropped = rows * (a["proj_size"] or a["hidden_size"]) * directions * (a["num_layers"] - 1)
        total = _added(total, {"elementwise": 2 * dropped})
    return total


@formula("_cudnn_rnn_backward", family="matmul", rule=RNN_BACKWARD_RULE + " (grad_weight as output_mask asks)")
def _cudnn_rnn_backward(func, args, kwargs, out):
    a = named_args(func, args, kwargs)
    cell, layers = _cudnn_layers(a)
    biased, rows, weights = _cudnn_biased(a, len(layers)), _cudnn_rows(a), bool(a["output_mask"][3])
    return _added(*(_times(rnn_step_backward_flops(cell, i, h, biased, p, weights), rows) for i, h, p in layers))


@formula("_thnn_fused_lstm_cell", "_thnn_fused_gru_cell", family="elementwise",
         rule="the CUDA cells (gates already multiplied): LSTM 13, GRU 10 per hidden unit + 2 per gate element if biased")
def _fused_cell(func, args, kwargs, out):
    a = named_args(func, args, kwargs)
    cell = "lstm" if "lstm" in func.overloadpacket.__name__ else "gru"
    gates = a["input_gates"]
    rows, hidden = gates.shape[0], gates.shape[1] // RNN_GATES[cell]
    biased = a.get("input_bias") is not None
    return {"elementwise": rows * RNN_CELL[cell] * hidden, "bias": 2 * gates.numel() if biased else 0}


@formula("_thnn_fused_lstm_cell_backward_impl", "_thnn_fused_gru_cell_backward", family="elementwise",
         rule="the CUDA cells' gradient: LSTM 23, GRU 17 per hidden unit + 1 per gate element for the bias gradient")
def _fused_cell_backward(func, args, kwargs, out):
    a = named_args(func, args, kwargs)
    cell = "lstm" if "lstm" in func.overloadpacket.__name__ else "gru"
    gates = _first(out)  # grad of the gates: (B, G·H)
    rows, hidden = gates.shape[0], gates.shape[1] // RNN_GATES[cell]
    return {"elementwise": rows * RNN_CELL_BACKWARD[cell] * hidden,
            "reduction": gates.numel() if a["has_bias"] else 0}


# ---- batch, group and instance norm (instance norm runs as a batch norm over N·C channels) ----

def batch_norm_flops(numel: int, channels: int, affine: bool, batch_stats: bool, update: bool) -> int:
    """Batch statistics: 5 per element (mean, subtract, square, sum, scale); running statistics
    (eval): 2 (subtract, scale). + 2 per channel (rsqrt(var + eps)), + 2 per element if affine,
    + 7 per channel to update the running mean and variance (3 each, 1 for the unbiased factor)."""
    return ((5 if batch_stats else 2) * numel + 2 * channels + (2 * numel if affine else 0)
            + (7 * channels if update else 0))


def _batch_norm(training: Callable[[dict], bool]):
    def count(func, args, kwargs, out):
        a = named_args(func, args, kwargs)
        x = a["input"]
        batch_stats = training(a)
        update = batch_stats and a.get("running_mean") is not None
        return {"normalization": batch_norm_flops(x.numel(), x.shape[1], a.get("weight") is not None,
                                                  batch_stats, update)}

    return count


BATCH_NORM_RULE = ("batch statistics 5 per element, running statistics 2; + 2 per channel (rsqrt), "
                   "+ 2 per element if affine, + 7 per channel when the running statistics are updated")
for _names, _training in (
    (("native_batch_norm", "_native_batch_norm_legit", "cudnn_batch_norm", "miopen_batch_norm"),
     lambda a: a["training"]),
    (("_native_batch_norm_legit_no_training",), lambda a: False),
    (("_batch_norm_with_update",), lambda a: True),
    (("_batch_norm_no_update",), lambda a: a.get("running_mean") is None),
):
    formula(*_names, family="normalization", rule=BATCH_NORM_RULE)(_batch_norm(_training))


def norm_backward_flops(numel: int, mask, batch_stats: bool = True) -> int:
    """grad_input 8 per element (2 with running statistics: g·rstd·weight); grad_weight 2; grad_bias 1."""
    return numel * ((8 if batch_stats else 2) * bool(mask[0]) + 2 * bool(mask[1]) + bool(mask[2]))


@formula("native_batch_norm_backward", "batch_norm_backward", "cudnn_batch_norm_backward", "miopen_batch_norm_backward",
         family="normalization",
         rule="grad_input 8 per element (2 with running statistics); grad_weight 2; grad_bias 1 (as asked for)")
def _batch_norm_backward(func, args, kwargs, out):
    a = named_args(func, args, kwargs)
    batch_stats = a.get("train", a.get("update", True))
    return {"normalization": norm_backward_flops(a["input"].numel(), a.get("output_mask", (True,) * 3), batch_stats)}


@formula("native_group_norm", family="normalization",
         rule="5 per element + 2 per (sample, group) (rsqrt) + 2 per element if affine")
def _group_norm(func, args, kwargs, out):
    a = named_args(func, args, kwargs)
    return {"normalization": layer_norm_flops(a["input"].numel(), a["N"] * a["group"], a["weight"] is not None)}


@formula("native_group_norm_backward", family="normalization",
         rule="grad_input 8 per element; grad_weight 2; grad_bias 1 (as asked for)")
def _group_norm_backward(func, args, kwargs, out):
    a = named_args(func, args, kwargs)
    return {"normalization": norm_backward_flops(a["input"].numel(), a["output_mask"])}


@formula("_fused_rms_norm", family="normalization",
         rule="3 per element (square, sum, scale) + 3 per row (mean, + eps, rsqrt) + 1 per element if weighted")
def _rms_norm(func, args, kwargs, out):
    a = named_args(func, args, kwargs)
    x = a["input"]
    rows = x.numel() // math.prod(a["normalized_shape"])
    return {"normalization": 3 * x.numel() + 3 * rows + (x.numel() if a["weight"] is not None else 0)}


@formula("_fused_rms_norm_backward", family="normalization", rule="grad_input 6 per element; grad_weight 2 (as asked for)")
def _rms_norm_backward(func, args, kwargs, out):
    a = named_args(func, args, kwargs)
    mask = a["output_mask"]
    return {"normalization": a["input"].numel() * (6 * bool(mask[0]) + 2 * bool(mask[1]))}


# ---- pooling: 1 per window element (comparisons as max, additions as sum), + 1 division per average ----

def _window(kernel, dims: int) -> int:
    kernel = [kernel] * dims if isinstance(kernel, int) else list(kernel)
    return math.prod(kernel * dims if len(kernel) == 1 else kernel)


def adaptive_window_sum(size: int, out: int) -> int:
    """Input elements summed over the `out` adaptive windows of one dimension of `size`:
    window i spans floor(i·size/out) .. ceil((i+1)·size/out)."""
    return sum(-(-(i + 1) * size // out) - (i * size // out) for i in range(out))


def _adaptive_elements(x, out, dims: int) -> int:
    """Window elements over every output of an adaptive pool over the last `dims` dims."""
    spatial = [(x.shape[-i], out.shape[-i]) for i in range(1, dims + 1)]
    planes = out.numel() // math.prod(o for _, o in spatial)
    return planes * math.prod(adaptive_window_sum(s, o) for s, o in spatial)


def _pool_dims(func) -> int:
    name = func.overloadpacket.__name__
    return 3 if "3d" in name else 1 if "1d" in name else 2


@formula("max_pool1d", "max_pool2d", "max_pool3d", "max_pool1d_with_indices", "max_pool2d_with_indices",
         "max_pool3d_with_indices", family="reduction", rule="1 per window element (k comparisons per output, padding included)")
def _max_pool(func, args, kwargs, out):
    return {"reduction": _first(out).numel() * _window(named_args(func, args, kwargs)["kernel_size"], _pool_dims(func))}


@formula("avg_pool2d", "avg_pool3d", family="reduction", rule="1 per window element + 1 per output (the division)")
def _avg_pool(func, args, kwargs, out):
    window = _window(named_args(func, args, kwargs)["kernel_size"], _pool_dims(func))
    return {"reduction": out.numel() * (window + 1)}


@formula("_adaptive_avg_pool2d", "_adaptive_avg_pool3d", family="reduction",
         rule="1 per element of each adaptive window + 1 per output (the division)")
def _adaptive_avg_pool(func, args, kwargs, out):
    return {"reduction": _adaptive_elements(args[0], out, _pool_dims(func)) + out.numel()}


@formula("adaptive_max_pool2d", "adaptive_max_pool3d", family="reduction", rule="1 per element of each adaptive window")
def _adaptive_max_pool(func, args, kwargs, out):
    return {"reduction": _adaptive_elements(args[0], _first(out), _pool_dims(func))}


@formula("max_pool2d_with_indices_backward", "max_pool3d_with_indices_backward", "adaptive_max_pool2d_backward",
         "adaptive_max_pool3d_backward", family="index", rule="1 add per grad_output element (into its maximum)")
def _max_pool_backward(func, args, kwargs, out):
    return {"index": args[0].numel()}


@formula("avg_pool2d_backward", "avg_pool3d_backward", family="index",
         rule="per grad_output element: 1 division + 1 add per window element")
def _avg_pool_backward(func, args, kwargs, out):
    window = _window(named_args(func, args, kwargs)["kernel_size"], _pool_dims(func))
    return {"index": args[0].numel() * (window + 1)}


@formula("_adaptive_avg_pool2d_backward", "_adaptive_avg_pool3d_backward", family="index",
         rule="1 division per grad_output element + 1 add per element of its window")
def _adaptive_avg_pool_backward(func, args, kwargs, out):
    grad, x = args[0], args[1]
    return {"index": _adaptive_elements(x, grad, _pool_dims(func)) + grad.numel()}


# ---- embedding: a lookup (0); its gradient adds rows ----

@formula("embedding_dense_backward", "embedding_backward", family="index",
         rule="1 add per grad_output element (rows summed into the weight gradient)")
def _embedding_backward(func, args, kwargs, out):
    return {"index": args[0].numel()}


@formula("_embedding_bag", "_embedding_bag_forward_only", family="index",
         rule="sum/mean: 1 add per looked-up element (+1 per output for mean, +1 per looked-up element with "
              "per_sample_weights); max: 1 comparison per looked-up element")
def _embedding_bag(func, args, kwargs, out):
    a = named_args(func, args, kwargs)
    looked_up = a["indices"].numel() * a["weight"].shape[-1]
    weighted = looked_up if a["per_sample_weights"] is not None else 0
    return {"index": looked_up + weighted + (_first(out).numel() if a["mode"] == 1 else 0)}


# ---- dropout, losses ----

@formula("native_dropout", family="elementwise", rule="training with p > 0: 2 per element (scale the mask, multiply)")
def _native_dropout(func, args, kwargs, out):
    a = named_args(func, args, kwargs)
    return {"elementwise": 2 * a["input"].numel() if a["train"] is not False and a["p"] > 0 else 0}


@formula("native_dropout_backward", family="elementwise", rule="2 per element (mask, scale)")
def _native_dropout_backward(func, args, kwargs, out):
    return {"elementwise": 2 * out.numel()}


@formula("nll_loss_forward", "nll_loss2d_forward", family="reduction",
         rule="1 per target (the sum of the picked log-probabilities) + 1 per target if weighted + 1 (the mean)")
def _nll_loss(func, args, kwargs, out):
    a = named_args(func, args, kwargs)
    targets = a["target"].numel()
    return {"reduction": targets * (1 + (a["weight"] is not None)) + (a["reduction"] == 1)}


@formula("nll_loss_backward", "nll_loss2d_backward", family="index", rule="1 per target (its gradient, scaled)")
def _nll_loss_backward(func, args, kwargs, out):
    return {"index": named_args(func, args, kwargs)["target"].numel()}


@formula("mse_loss", family="reduction", rule="3 per element (subtract, square, sum) + 1 (the mean)")
def _mse_loss(func, args, kwargs, out):
    a = named_args(func, args, kwargs)
    return {"reduction": 3 * a["self"].numel() + (a["reduction"] == 1)}


@formula("mse_loss_backward", family="elementwise",
         rule="3 per element (subtract, double, multiply by the gradient; the mean's scale folded in)")
def _mse_loss_backward(func, args, kwargs, out):
    return {"elementwise": 3 * out.numel()}


# ---- FFTs: 5·n·log2(n) real FLOPs per complex transform of length n (the radix-2 count, for any n) ----

def fft_flops(transforms: int, length: int, real: bool) -> int:
    """A real-input (or real-output) transform does half the work of a complex one."""
    if length < 2:
        return 0
    full = 5 * transforms * length * math.log2(length)
    return round(full / 2 if real else full)


def _fft(func, args, kwargs, out):
    a = named_args(func, args, kwargs)
    name = func.overloadpacket.__name__
    # the transformed dims are the complex side's for c2c, the real side's for r2c and c2r
    signal = a["self"] if name != "_fft_c2r" else out
    dims = [d % signal.dim() for d in a["dim"]]
    flops = 0
    for d in dims:
        length = signal.shape[d]
        flops += fft_flops(signal.numel() // length, length, real=name != "_fft_c2c")
    result = _first(out)
    scaled = result.numel() * (2 if result.is_complex() else 1)  # a complex value times a real: 2
    return {"complex": flops + (scaled if a["normalization"] else 0)}


formula("_fft_c2c", "_fft_r2c", "_fft_c2r", family="complex",
        rule="5·n·log2(n) per complex transform of length n along each dim (r2c, c2r: half), "
             "+ the normalisation, 1 real multiply per real output value")(_fft)


@formula("resolve_conj", "resolve_neg", family="elementwise",
         rule="materialising a lazy conjugate (1 real FLOP per complex element) or negation (1; complex 2); "
              "0 when there is none to resolve")
def _resolve(func, args, kwargs, out):
    x = args[0]
    if func.overloadpacket is torch.ops.aten.resolve_conj:
        return {"complex": x.numel() if x.is_conj() else 0}
    return {"elementwise": x.numel() * _complex_factor(x) if x.is_neg() else 0}


@formula("logsumexp", family="reduction",
         rule="4 per input element (max, subtract, exp, sum) + 2 per output element (log, add the max back)")
def _logsumexp(func, args, kwargs, out):
    return {"reduction": 4 * args[0].numel() + 2 * out.numel()}


@formula("argmax", "argmin", "cummax", "cummin", family="reduction",
         rule="1 per input element (a comparison, as max and min count; integer inputs: 0)")
def _arg_reduction(func, args, kwargs, out):
    x = args[0]
    return {"reduction": x.numel() if x.is_floating_point() else 0}


@formula("linalg_inv_ex", family="linalg",
         rule="2·n³ per n×n matrix: LU factorisation 2/3·n³ + the inverse from it 4/3·n³ (LAPACK getrf + getri)")
def _inverse(func, args, kwargs, out):
    a = args[0]
    n = a.shape[-1]
    return {"linalg": 2 * n ** 3 * (a.numel() // (n * n)) * (COMPLEX_MAC if a.is_complex() else 1)}


# ---- losses with fused kernels ----

def _reduced(a: dict, elements: int) -> int:
    """The loss's reduction: 1 add per element (sum, mean) + 1 division (mean); none: 0."""
    return 0 if a["reduction"] == 0 else elements + (a["reduction"] == 1)


@formula("binary_cross_entropy_with_logits", family="reduction",
         rule="9 per element ((1 − t)·x 2, − log σ(x) 7) + 1 if weighted + 4 with pos_weight ((p − 1)·t + 1, "
              "times the log term) + the reduction (sum 1 per element, mean + 1)")
def _bce_with_logits(func, args, kwargs, out):
    a = named_args(func, args, kwargs)
    n = a["self"].numel()
    per = 9 + (a["weight"] is not None) + 4 * (a["pos_weight"] is not None)
    return {"reduction": per * n + _reduced(a, n)}


@formula("smooth_l1_loss", "huber_loss", family="reduction",
         rule="6 per element (subtract, abs, compare with β, then ½·d²/β or |d| − ½β: 3 at most) + the reduction")
def _smooth_l1(func, args, kwargs, out):
    a = named_args(func, args, kwargs)
    n = a["self"].numel()
    return {"reduction": 6 * n + _reduced(a, n)}


@formula("smooth_l1_loss_backward", "huber_loss_backward", family="elementwise",
         rule="5 per element (subtract, compare, d/β or sign(d), × g, the mean's 1/n)")
def _smooth_l1_backward(func, args, kwargs, out):
    return {"elementwise": 5 * named_args(func, args, kwargs)["self"].numel()}


# ---- weight norm, embedding bags ----

@formula("_weight_norm_interface", family="normalization",
         rule="w = g·v/‖v‖: 3 per element of v (square, sum, scale) + 2 per norm (sqrt, g / ‖v‖)")
def _weight_norm(func, args, kwargs, out):
    v, norms = args[0], out[1]
    return {"normalization": 3 * v.numel() + 2 * norms.numel()}


@formula("_weight_norm_interface_backward", family="normalization",
         rule="5 per element of v (grad_g: g_w·v and its sum, 2; grad_v: v·grad_g/‖v‖, subtract, × g/‖v‖, 3) + 3 per norm")
def _weight_norm_backward(func, args, kwargs, out):
    a = named_args(func, args, kwargs)
    return {"normalization": 5 * a["saved_v"].numel() + 3 * a["saved_norms"].numel()}


@formula("_embedding_bag_backward", "_embedding_bag_dense_backward", "_embedding_bag_sparse_backward", family="index",
         rule="1 add per looked-up element (rows summed into the weight gradient) + 1 per looked-up element for "
              "mean's division or per-sample weights")
def _embedding_bag_backward(func, args, kwargs, out):
    a = named_args(func, args, kwargs)
    looked_up = a["indices"].numel() * a["grad"].shape[-1]
    scaled = a["mode"] == 1 or a.get("per_sample_weights") is not None
    return {"index": looked_up * (1 + scaled)}


# ---- scatter with a reduction, fold ----

@formula("scatter", "scatter_", family="index",
         rule="a write (0) without reduce; reduce='add' or 'multiply': 1 per source element (per index element for a scalar)")
def _scatter(func, args, kwargs, out):
    a = named_args(func, args, kwargs)
    if a.get("reduce") is None:
        return {"data": 0}
    return {"index": _numel(a.get("src")) or a["index"].numel()}


@formula("scatter_reduce", "scatter_reduce_", family="index",
         rule="1 per source element (sum, prod, amax, amin, mean) + mean: 2 per output element (the count and the division)")
def _scatter_reduce(func, args, kwargs, out):
    a = named_args(func, args, kwargs)
    return {"index": a["src"].numel() + (2 * out.numel() if a["reduce"] == "mean" else 0)}


@formula("col2im", family="index", rule="F.fold: 1 add per input element (each patch value added into its place)")
def _col2im(func, args, kwargs, out):
    return {"index": args[0].numel()}


# ---- interpolation: upsampling, grid_sample ----
# A linear interpolation from k neighbours is k multiplies + (k − 1) adds per output element; the
# weights are computed once per output row or column (or per grid location) and not counted, except
# in grid_sample where each location has its own. Backward: k multiplies + k adds per grad_output element.

UPSAMPLE_NEIGHBOURS = {"upsample_linear1d": 2, "upsample_bilinear2d": 4, "_upsample_bilinear2d_aa": 4,
                       "upsample_trilinear3d": 8, "upsample_bicubic2d": 16, "_upsample_bicubic2d_aa": 16}


@formula(*UPSAMPLE_NEIGHBOURS, family="elementwise",
         rule="2·k − 1 per output element for k neighbours (linear 3, bilinear 7, trilinear 15, bicubic 31)")
def _upsample(func, args, kwargs, out):
    return {"elementwise": (2 * UPSAMPLE_NEIGHBOURS[func.overloadpacket.__name__] - 1) * out.numel()}


@formula(*(f"{name}_backward" for name in UPSAMPLE_NEIGHBOURS), family="index",
         rule="2·k per grad_output element (weight and add into each of k neighbours: bilinear 8)")
def _upsample_backward(func, args, kwargs, out):
    k = UPSAMPLE_NEIGHBOURS[func.overloadpacket.__name__.removesuffix("_backward")]
    return {"index": 2 * k * args[0].numel()}


@formula("upsample_nearest1d_backward", "upsample_nearest2d_backward", "upsample_nearest3d_backward",
         "_upsample_nearest_exact1d_backward", "_upsample_nearest_exact2d_backward",
         "_upsample_nearest_exact3d_backward", family="index",
         rule="1 add per grad_output element (into the input element it copied)")
def _upsample_nearest_backward(func, args, kwargs, out):
    return {"index": args[0].numel()}


@formula("reflection_pad1d_backward", "reflection_pad2d_backward", "reflection_pad3d_backward",
         "replication_pad1d_backward", "replication_pad2d_backward", "replication_pad3d_backward", family="index",
         rule="1 add per grad_output element (into the input element it copied)")
def _pad_backward(func, args, kwargs, out):
    return {"index": args[0].numel()}


@formula("affine_grid_generator", family="matmul",
         rule="2·N·H·W·3·2 (each output location's homogeneous coordinates (x, y, 1) times θᵀ (3×2))")
def _affine_grid(func, args, kwargs, out):
    return {"matmul": 2 * 3 * out.numel()}  # out (N, H, W, 2): N·H·W·2 outputs, 3 MACs each


@formula("affine_grid_generator_backward", family="matmul",
         rule="2·N·H·W·3·2 (grad θ = base gridᵀ · grad grid)")
def _affine_grid_backward(func, args, kwargs, out):
    return {"matmul": 2 * 3 * args[0].numel()}


# grid_sample (2-D): per grid location, the two coordinates unnormalised (3 each: add, scale, shift)
# and, bilinear, the distances to the 4 corners (4) and their weights (4): 14; nearest: 6 + 2 roundings;
# bicubic: 6 + 2 sets of 4 cubic coefficients (4 each) = 38. Per output element (location × channel):
# bilinear 7 (4 multiplies, 3 adds), nearest 0 (a copy), bicubic 31 (16 neighbours).
GRID_SAMPLE = {0: (14, 7), 1: (8, 0), 2: (38, 31)}  # mode: (per location, per output element)


@formula("grid_sampler_2d", family="elementwise",
         rule="per location: bilinear 14 (coordinates 6, corner distances 4, weights 4), nearest 8, bicubic 38; "
              "per output element: bilinear 7, nearest 0, bicubic 31")
def _grid_sampler(func, args, kwargs, out):
    a = named_args(func, args, kwargs)
    per_location, per_output = GRID_SAMPLE[a["interpolation_mode"]]
    return {"elementwise": per_location * a["grid"].numel() // 2 + per_output * out.numel()}


@formula("grid_sampler_2d_backward", family="index",
         rule="bilinear: per grad_output element 8 for grad_input (4 corners: multiply, add) and 16 for grad_grid "
              "(4 corners × 2 coordinates: multiply, add), per location 14 + 6 (the chain rule through the "
              "coordinates); nearest: 1 add per grad_output element; bicubic: no formula")
def _grid_sampler_backward(func, args, kwargs, out):
    a = named_args(func, args, kwargs)
    locations, grads = a["grid"].numel() // 2, a["grad_output"].numel()
    want_input, want_grid = a["output_mask"]
    if a["interpolation_mode"] == 1:
        return {"index": grads if want_input else 0}
    if a["interpolation_mode"] != 0:
        return None
    return {"index": (8 * grads if want_input else 0) + ((16 * grads + 20 * locations) if want_grid else 0)}


# ---- no arithmetic, and arithmetic not counted by convention: 0 FLOPs, each list with its rule ----

# Ops that only move, copy, view or look up values: every output value is an input value (or a
# constant the op writes: fill, zero, padding). tests/test_formulas.py runs each on distinct values and
# checks exactly that; a view is checked by its schema (its result aliases its input).
DATA_OPS = (
    # views
    "view", "_unsafe_view", "reshape", "_reshape_alias", "t", "t_", "transpose", "transpose_", "permute", "expand",
    "slice", "select", "squeeze", "squeeze_", "unsqueeze", "unsqueeze_", "detach", "alias", "unbind", "as_strided",
    "as_strided_", "view_as_real", "view_as_complex", "_conj", "conj", "_neg_view", "real", "imag", "split",
    "split_with_sizes", "unsafe_split", "unsafe_split_with_sizes", "narrow", "diagonal", "unfold", "lift_fresh",
    # copies, layout changes, padding, concatenation
    "clone", "copy_", "_to_copy", "contiguous", "lift_fresh_copy", "cat", "stack", "flip", "roll", "repeat",
    "repeat_interleave", "tril", "triu", "constant_pad_nd", "reflection_pad1d", "reflection_pad2d",
    "reflection_pad3d", "replication_pad1d", "replication_pad2d", "replication_pad3d", "im2col", "pixel_shuffle",
    "pixel_unshuffle", "complex", "upsample_nearest1d", "upsample_nearest2d", "upsample_nearest3d",
    "_upsample_nearest_exact1d", "_upsample_nearest_exact2d", "_upsample_nearest_exact3d",
    "_pack_padded_sequence", "select_backward", "slice_backward",
    # selection and lookup by index or mask, writes
    "gather", "index", "_unsafe_index", "index_select", "embedding", "masked_select", "masked_scatter", "where",
    "masked_fill", "masked_fill_", "index_copy", "index_fill", "fill", "fill_", "zero", "zero_",
    "_local_scalar_dense",
    # checks (no result)
    "_assert_async", "_assert_tensor_metadata", "_linalg_check_errors",
)

# Values made from the shape or drawn at random, none computed from the inputs.
CREATION_OPS = (
    "arange", "linspace", "eye", "hann_window", "hamming_window", "blackman_window", "scalar_tensor",
    "ones", "ones_like", "zeros", "zeros_like", "empty", "empty_like", "empty_strided", "full", "full_like",
    "new_empty", "new_empty_strided", "new_zeros", "new_ones", "new_full",
    "rand", "randn", "rand_like", "randn_like", "randint", "randperm", "uniform_", "normal_", "bernoulli_",
    "exponential_", "random_", "triu_indices", "tril_indices",
)

# Comparisons, sorting and integer/boolean logic: bkprof counts no comparison whose result is a
# boolean, an index or an order (max, min, argmax and pooling, whose results are values or picks
# of values, count 1 per element).
COMPARISON_OPS = (
    "eq", "ne", "ge", "gt", "le", "lt", "isfinite", "isnan", "isinf", "isneginf", "isposinf",
    "logical_and", "logical_and_", "logical_not", "logical_or", "logical_xor", "bitwise_not", "bitwise_and",
    "bitwise_or", "bitwise_xor", "all", "any", "nonzero", "topk", "sort", "searchsorted", "bucketize",
)


def _zero(func, args, kwargs, out):
    return {"data": 0}


formula(*DATA_OPS, family="data", rule="0: views, copies, padding, selection and lookups (values moved, none computed)")(_zero)
formula(*CREATION_OPS, family="data", rule="0: creation (values from the shape: arange, eye, windows) and random draws")(_zero)
formula(*COMPARISON_OPS, family="data",
        rule="0 by convention: comparisons with boolean, index or order results (eq, isnan, topk, sort, nonzero) "
             "and integer/boolean logic")(_zero)


def _registry_name(func) -> str:
    if isinstance(func, torch._ops.HigherOrderOperator):  # flex_attention: "higher_order::flex_attention"
        return f"{func.namespace}::{func.name()}"
    name = func.overloadpacket.__name__
    return name if func.namespace == "aten" else f"{func.namespace}::{name}"


def has_formula(func) -> bool:
    return _registry_name(func) in FORMULAS or getattr(func, "overloadpacket", func) in flop_counter.flop_registry


def count_op(func, args, kwargs, out) -> Counts | None:
    """{family: FLOPs} for one executed op, or None when neither registry has a formula for it
    (or its formula has no rule for these arguments, such as a complex `relu`)."""
    name = _registry_name(func)
    if name in FORMULAS:
        return FORMULAS[name].count(func, args, kwargs, out)
    packet = getattr(func, "overloadpacket", func)
    if packet in flop_counter.flop_registry:  # a custom kernel's own formula (aten's are all in FORMULAS)
        return {"custom": int(flop_counter.flop_registry[packet](*args, **kwargs, out_val=out))}
    return None


def conventions() -> list[dict]:
    """The registry as rows (family, rule, ops): what `bkprof flops --conventions` prints."""
    grouped: dict[tuple[str, str], list[str]] = {}
    for name, f in FORMULAS.items():
        grouped.setdefault((f.family, f.rule), []).append(name)
    return [{"family": family, "rule": rule, "ops": ", ".join(sorted(names))} for (family, rule), names in grouped.items()]
