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
    their name, others (bkprof's custom ops) as "namespace::name"."""

    def register(count):
        for name in names:
            FORMULAS[name] = OpFormula(family, rule, count)
        return count

    return register


def _first(out):
    return out[0] if isinstance(out, (tuple, list)) else out


def _numel(t) -> int:
    return t.numel() if isinstance(t, torch.Tensor) else 0


def _is_float_result(out) -> bool:
    t = _first(out)
    return isinstance(t, torch.Tensor) and (t.is_floating_point() or t.is_complex())


def _torch_matmul(func, args, kwargs, out) -> int:
    return int(flop_counter.flop_registry[func.overloadpacket](*args, **kwargs, out_val=out))


# ---- matmul family: 2 FLOPs per multiply-accumulate; bias adds are elementwise ----

@formula("mm", "bmm", "bkprof::grouped_linear_input_grad", family="matmul",
         rule="2·M·K·N (2 per multiply-accumulate)")
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
    "mul": (1, 6),          # (a+bi)(c+di): 4 mul + 2 add
    "div": (1, 11),         # a·conj(b) (6) + |b|² (3) + 2 real divisions
    "reciprocal": (1, 5),   # conj(b) / |b|²: |b|² (3) + 2 real divisions
    "abs": (1, None), "sgn": (1, None), "clamp": (1, None), "clamp_min": (1, None), "clamp_max": (1, None),
    "relu": (1, None), "gelu": (1, None), "sigmoid": (1, None), "exp": (1, None), "log": (1, None),
    "sqrt": (1, None), "rsqrt": (1, None), "pow": (1, None), "tanh": (1, None),
    "threshold_backward": (1, None), "gelu_backward": (2, None), "sigmoid_backward": (3, None),
}


def _elementwise(name: str):
    real, complex_ = ELEMENTWISE[name]

    def count(func, args, kwargs, out):
        result = _first(out)
        if not _is_float_result(out):
            return {"data": 0}
        if result.is_complex():
            # no complex rule: reported as an op without a formula rather than guessed
            return {"complex": complex_ * result.numel()} if complex_ is not None else None
        return {"elementwise": real * result.numel()}

    return count


for _name, (_real, _complex) in ELEMENTWISE.items():
    _rule = f"{_real} per output element" + (f"; complex: {_complex} real FLOPs" if _complex else "")
    formula(_name, f"{_name}_", family="elementwise", rule=_rule)(_elementwise(_name))


# ---- reductions and normalisations ----

@formula("sum", "amax", "amin", "max", "min", family="reduction", rule="1 per input element")
def _reduction(func, args, kwargs, out):
    return {"reduction": args[0].numel() if _is_float_result(out) else 0}


@formula("mean", family="reduction", rule="1 per input element + 1 per output element (the division)")
def _mean(func, args, kwargs, out):
    return {"reduction": args[0].numel() + out.numel()}


@formula("_softmax", family="normalization", rule="5 per element (max, subtract, exp, sum, divide)")
def _softmax(func, args, kwargs, out):
    return {"normalization": 5 * out.numel()}


@formula("_softmax_backward_data", family="normalization", rule="4 per element (mul, sum, subtract, mul)")
def _softmax_backward(func, args, kwargs, out):
    return {"normalization": 4 * out.numel()}


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
