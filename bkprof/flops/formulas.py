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


@formula("addmm", "baddbmm", "bkprof::grouped_linear", family="matmul",
         rule="2·M·K·N + M·N (the bias add, 1 per output element)")
def _addmm(func, args, kwargs, out):
    return {"matmul": _torch_matmul(func, args, kwargs, out), "bias": out.numel()}


@formula("convolution", family="matmul",
         rule="2·out·(C_in/groups)·kernel + out if biased (the bias add)")
def _convolution(func, args, kwargs, out):
    bias = args[2]
    return {"matmul": _torch_matmul(func, args, kwargs, out), "bias": out.numel() if bias is not None else 0}


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

# name: (real FLOPs per element, complex FLOPs per element or None where bkprof has no complex rule)
ELEMENTWISE: dict[str, tuple[int, int | None]] = {
    "add": (1, 2), "sub": (1, 2), "rsub": (1, 2), "neg": (1, 2),
    "mul": (1, 6),          # (a+bi)(c+di): 4 mul + 2 add (a real factor counts as complex)
    "div": (1, 11),         # a·conj(b) (6) + |b|² (3) + 2 real divisions
    "reciprocal": (1, 5),   # conj(b) / |b|²: |b|² (3) + 2 real divisions
    "abs": (1, 4),          # |z| = sqrt(a² + b²): 2 mul, 1 add, 1 sqrt (a real result from a complex input)
    "sgn": (1, 6),          # z / |z|: |z| (4) + 2 real divisions
    "exp": (1, 5),          # e^a·(cos b + i·sin b): exp, cos, sin, 2 mul
    "log": (1, 6),          # log|z| + i·atan2(b, a): |z|² (3), log, halve, atan2
    "sqrt": (1, 11),        # sqrt((|z|+a)/2) + i·sign(b)·sqrt((|z|-a)/2): |z| (4), 2 add, 2 halve, 2 sqrt, sign
    "angle": (1, 1),        # atan2(b, a)
    "clamp": (1, None), "clamp_min": (1, None), "clamp_max": (1, None),
    "relu": (1, None), "gelu": (1, None), "sigmoid": (1, None),
    "rsqrt": (1, None), "pow": (1, None), "tanh": (1, None),
    "silu": (1, None), "leaky_relu": (1, None), "hardtanh": (1, None), "elu": (1, None), "erf": (1, None),
    "sin": (1, None), "cos": (1, None), "log1p": (1, None), "expm1": (1, None), "sign": (1, None),
    "maximum": (1, None), "minimum": (1, None), "floor": (1, None), "ceil": (1, None), "round": (1, None),
    "softplus": (3, None),  # log(1 + exp(x)): exp, add, log
    "lerp": (2, None), "addcmul": (2, None), "addcdiv": (2, None),   # a + w·(b - a); a + v·b·c; a + v·b/c
    "threshold_backward": (1, None), "gelu_backward": (2, None), "sigmoid_backward": (3, None),
    "tanh_backward": (3, None),      # g·(1 - y²): square, subtract, multiply
    "silu_backward": (5, None),      # g·s·(1 + x·(1 - s)), s = sigmoid(x)
    "leaky_relu_backward": (1, None), "hardtanh_backward": (1, None), "elu_backward": (2, None),
}


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


def layer_norm_flops(numel: int, rows: int, affine: bool) -> int:
    """5 per element (mean, subtract, square, sum, scale) + 2 per row (rsqrt of var + eps) + 2 per element if affine."""
    return 5 * numel + 2 * rows + (2 * numel if affine else 0)


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


@formula("_native_multi_head_attention", family="matmul",
         rule="nn.MultiheadAttention's inference kernel: the q, k, v and output linears (2·rows·E² + rows·E "
              "bias each), attention as above with head dim E/H, + the head average of the weights if returned")
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
    if a["need_weights"] and a["average_attn_weights"]:
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


# ---- data movement, creation, selection and integer/boolean results: 0 FLOPs ----

DATA_OPS = (
    "view", "_unsafe_view", "reshape", "t", "transpose", "permute", "expand", "slice", "select", "squeeze",
    "unsqueeze", "flip", "cat", "stack", "clone", "copy_", "_to_copy", "detach", "alias", "unbind", "as_strided",
    "view_as_real", "view_as_complex", "_conj", "gather", "index", "index_select", "scatter", "nonzero", "topk",
    "sort", "searchsorted", "argmax", "arange", "ones", "ones_like", "zeros", "zeros_like", "empty", "empty_like",
    "full", "new_empty", "new_empty_strided", "new_zeros", "new_ones", "scalar_tensor", "fill_", "zero_", "where",
    "select_backward", "slice_backward", "rand", "randn", "rand_like", "randn_like", "randint", "uniform_",
    "normal_", "bernoulli_", "cummax", "cummin",
    "eq", "ne", "ge", "gt", "le", "lt", "logical_and", "logical_and_", "logical_not", "lift_fresh", "_local_scalar_dense",
    "split", "split_with_sizes", "contiguous", "masked_fill", "masked_fill_", "isfinite", "all", "any",
    "unsafe_split", "unsafe_split_with_sizes", "transpose_", "t_", "squeeze_", "unsqueeze_", "tril", "triu",
    "repeat", "roll", "constant_pad_nd", "narrow", "diagonal", "unfold", "_unsafe_index", "embedding",
    "isnan", "isinf", "isneginf", "isposinf", "logical_or", "logical_xor", "bitwise_not", "bitwise_and",
    "bitwise_or", "full_like", "new_full", "empty_strided", "lift_fresh_copy", "masked_select", "masked_scatter",
    "repeat_interleave", "_reshape_alias", "real", "imag", "conj", "_conj_physical", "resolve_conj", "resolve_neg",
    "_neg_view", "fill", "zero", "im2col", "col2im", "reflection_pad1d", "reflection_pad2d", "replication_pad1d",
    "replication_pad2d", "index_copy", "index_fill", "_assert_async", "_assert_tensor_metadata",
)


@formula(*DATA_OPS, family="data",
         rule="0: views, copies, selection (topk, gather, where), creation, random draws, integer/boolean results")
def _data(func, args, kwargs, out):
    return {"data": 0}


def _registry_name(func) -> str:
    name = func.overloadpacket.__name__
    return name if func.namespace == "aten" else f"{func.namespace}::{name}"


def has_formula(func) -> bool:
    return _registry_name(func) in FORMULAS or func.overloadpacket in flop_counter.flop_registry


def count_op(func, args, kwargs, out) -> Counts | None:
    """{family: FLOPs} for one executed op, or None when neither registry has a formula for it
    (or its formula has no rule for these arguments, such as a complex `relu`)."""
    name = _registry_name(func)
    if name in FORMULAS:
        return FORMULAS[name].count(func, args, kwargs, out)
    if func.overloadpacket in flop_counter.flop_registry:
        return {"custom": int(flop_counter.flop_registry[func.overloadpacket](*args, **kwargs, out_val=out))}
    return None


def conventions() -> list[dict]:
    """The registry as rows (family, rule, ops): what `bkprof flops --conventions` prints."""
    grouped: dict[tuple[str, str], list[str]] = {}
    for name, f in FORMULAS.items():
        grouped.setdefault((f.family, f.rule), []).append(name)
    return [{"family": family, "rule": rule, "ops": ", ".join(sorted(names))} for (family, rule), names in grouped.items()]
