"""Closed-form FLOPs of the four built-in variants, component by component, from the config alone
(each registry entry's `analytic`).

Conventions are bkprof's counting conventions (`bkprof.conventions`, the op counter's too): 2 FLOPs
per multiply-accumulate, bias adds and activations 1 per element, complex results in real FLOPs.
Counts are for `b` sequences; the forward pass, in train mode when `training` (dropout, Gumbel
noise). `bkprof.flops.analytic` adds the backward pass and the totals; tests hold every component
equal to the op counter's count of the modules that run.
"""

from __future__ import annotations

from collections import Counter

from bkprof.conventions import ELEMENTWISE, layer_norm_flops
from bkprof.variants.config import LayerConfig

COMPLEX_ADD = ELEMENTWISE["add"][1]
COMPLEX_MUL = ELEMENTWISE["mul"][1]
COMPLEX_DIV = ELEMENTWISE["div"][1]
COMPLEX_RECIPROCAL = ELEMENTWISE["reciprocal"][1]
SOFTMAX_PER_ELEMENT = 5
GUMBEL_OPS_PER_POSITION = 10  # clamp, log, 1-u, log, subtract, add scores, /tau, sigmoid, straight-through (2)


def _f(**families: int) -> Counter:
    return Counter({k: v for k, v in families.items() if v})


def linear(rows: int, fan_in: int, fan_out: int) -> Counter:
    return _f(matmul=2 * rows * fan_in * fan_out, bias=rows * fan_out)


def conv1d_same(batch: int, length: int, c_in: int, c_out: int, kernel: int) -> Counter:
    return _f(matmul=2 * batch * length * c_out * c_in * kernel, bias=batch * length * c_out)


def pointwise(n: int, per: int = 1) -> Counter:
    return _f(elementwise=n * per)


def layer_norm(rows: int, width: int) -> Counter:
    return _f(normalization=layer_norm_flops(rows * width, rows, affine=True))


def dropout(n: int, c: LayerConfig, training: bool) -> Counter:
    """Training-mode dropout: a scale of the random mask and a multiply, per element."""
    return pointwise(n, 2) if training and c.dropout > 0 else Counter()


def scan_steps_work(n: int) -> int:
    """Sum over the Hillis-Steele offsets o = 1, 2, 4, ... < n of the positions combined, n - o."""
    total, offset = 0, 1
    while offset < n:
        total += n - offset
        offset *= 2
    return total


def _combine(b: int, n: int) -> Counter:
    """G = 1 / (d_i - k_i / e_{i+1}): a complex division and subtraction per link, a reciprocal per position."""
    return _f(complex=(COMPLEX_DIV + COMPLEX_ADD) * b * (n - 1) + COMPLEX_RECIPROCAL * b * n)


def _reference_sweeps(b: int, n: int) -> Counter:
    sweeps = 2 * (COMPLEX_DIV + COMPLEX_ADD) * b * (n - 1)
    return _f(complex=COMPLEX_ADD * b * n + sweeps) + _combine(b, n)


def _scan_sweeps(b: int, n: int) -> Counter:
    rows, work = 2 * b, scan_steps_work(n)
    # per combined position: 2x2 complex product (8 mul, 4 add), |re|,|im| of 8 reals, their max,
    # one real reciprocal, and the 4 entries scaled by it (complex x real, promoted: a complex mul)
    per_step = _f(complex=rows * work * (8 * COMPLEX_MUL + 4 * COMPLEX_ADD + 4 * COMPLEX_MUL),
                  elementwise=rows * work * (8 + 1), reduction=rows * work * 8)
    setup = _f(complex=COMPLEX_ADD * b * n + COMPLEX_ADD * rows * (n - 1))  # alpha = diag - z; -k
    ratios = _f(complex=COMPLEX_DIV * rows * n)
    return setup + per_step + ratios + _combine(b, n)


def bk_core(c: LayerConfig, b: int, n: int, device: str = "cpu") -> Counter:
    """v - 2 and k = upper * lower, then what the chosen backend runs."""
    from bkprof.core import resolve_backend

    backend = resolve_backend(c.backend, device)
    around = pointwise(b * n) + pointwise(b * (n - 1))
    if backend.kernel_flops is not None:
        return around + _f(custom=backend.kernel_flops(b, n))
    sweeps = {"reference": _reference_sweeps, "vectorized": _scan_sweeps}[backend.name]
    return around + sweeps(b, n)


def dense_parts(c: LayerConfig, b: int, training: bool, device: str) -> dict[str, Counter]:
    """The dense layer's components for `b` sequences of c.n_seq (the registry's `analytic` of dense)."""
    n = c.n_seq
    d, k, t = c.d_model, c.top_k, b * n
    routed = t * k
    return {
        "gate": linear(t, d, c.num_experts),
        # softmax over all E logits, then each pair's expert output times its probability, summed over slots
        "routing": _f(normalization=SOFTMAX_PER_ELEMENT * t * c.num_experts, elementwise=routed * d,
                      reduction=routed * d),
        "experts": linear(routed, d, 2 * d) + pointwise(routed * 2 * d) + dropout(routed * 2 * d, c, training)
        + linear(routed, 2 * d, d),
        "v_projection": linear(t, d, 1) + pointwise(t),
        "bk_core": bk_core(c, b, n, device),
        "output_projection": pointwise(2 * t) + linear(t, 2, d),
        "residual": pointwise(2 * t * d),
    }


_INTERPOLATION_METHOD = {
    "linear": lambda b, n: pointwise(b * n) + pointwise(2 * b * n, 3),
    "cubic": lambda b, n: pointwise(b * n, 2) + pointwise(2 * b * n, 17),
    "learned": lambda b, n: conv1d_same(b, n, 2, 32, 5) + pointwise(32 * b * n) + conv1d_same(b, n, 32, 32, 5)
    + pointwise(32 * b * n) + conv1d_same(b, n, 32, 2, 5),
}


def sparse_parts(c: LayerConfig, b: int, training: bool, device: str) -> dict[str, Counter]:
    """Dense plus the importance predictor, the mask and the interpolation."""
    n = c.n_seq
    d, h, t = c.d_model, c.d_model // 2, b * n
    parts = dense_parts(c, b, training, device)
    parts["importance_predictor"] = (
        conv1d_same(b, n, d, h, 3) + pointwise(t * h) + conv1d_same(b, n, h, h, 3) + pointwise(t * h)
        + linear(t, h, h) + pointwise(t * h) + dropout(t * h, c, training) + linear(t, h, 1)
    )
    gumbel = pointwise(t, GUMBEL_OPS_PER_POSITION) if training else Counter()
    parts["mask"] = gumbel + _f(reduction=t + 1, elementwise=1)  # mean of the mask, then 1 - mean
    # kept = exact * mask; fill = kept + estimate * (1 - mask)
    parts["interpolation"] = pointwise(2 * t, 3) + pointwise(t) + _INTERPOLATION_METHOD[c.interp](b, n)
    return parts


def _around(c: LayerConfig, b: int, training: bool, device: str, inner) -> dict[str, Counter]:
    """The multi-scale wrapper's components added to those of `inner` at length N/f."""
    n = c.n_seq
    d, f, h, t = c.d_model, c.downsample, c.d_model // 2, b * n
    m = n // f
    coarse = b * m
    outer = {
        "downsample_scorer": linear(t, d, h) + pointwise(t * h) + linear(t, h, 1),
        # softmax over the (N/f, f) pooling logits runs once per call, whatever the batch
        "downsample": _f(normalization=SOFTMAX_PER_ELEMENT * n, elementwise=t * d, reduction=t * d)
        + linear(coarse, d, d) + layer_norm(coarse, d) + pointwise(coarse * d),
        "upsample": linear(coarse, d, f * d) + layer_norm(coarse, f * d) + pointwise(coarse * f * d)
        + linear(coarse, f * d, f * d) + pointwise(t * d),
        "refine": layer_norm(t, d) + linear(t, d, d) + pointwise(t * d) + linear(t, d, d),
        "residual": pointwise(4 * t * d),
    }
    parts = inner(c.inner_config(), b, training, device)
    for name, flops in outer.items():
        parts[name] = parts.get(name, Counter()) + flops
    return parts


def multiscale_parts(c: LayerConfig, b: int, training: bool, device: str) -> dict[str, Counter]:
    """Multi-scale around a dense layer at N/f."""
    return _around(c, b, training, device, dense_parts)


def combined_parts(c: LayerConfig, b: int, training: bool, device: str) -> dict[str, Counter]:
    """Multi-scale around a sparse layer at N/f."""
    return _around(c, b, training, device, sparse_parts)
