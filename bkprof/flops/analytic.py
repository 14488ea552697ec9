"""Closed-form FLOPs of every component of every variant, from the config alone.

Conventions are those of `formulas` (the op counter's registry): 2 FLOPs per multiply-accumulate,
bias adds and activations 1 per element, complex results in real FLOPs. Counts are for the whole
batch; `batch=1` gives the per-sequence figure. The forward pass is counted in eval mode (what
inference runs); with `backward=True` the train-mode forward (dropout, Gumbel noise) plus the
backward pass. Backward matmul/conv work is exact (grad_input and grad_weight: 2 x forward); the
other families are estimated with the per-family ratios in BACKWARD_RATIO, because autograd's own
elementwise kernels vary between PyTorch versions (the ratios were read off PyTorch 2.13's
autograd with the op counter; tests hold the total within 2 % for d, N/f >= 16).
"""

from __future__ import annotations

from collections import Counter

from bkprof.flops.formulas import ELEMENTWISE, layer_norm_flops
from bkprof.variants import registry
from bkprof.variants.config import LayerConfig

COMPLEX_ADD = ELEMENTWISE["add"][1]
COMPLEX_MUL = ELEMENTWISE["mul"][1]
COMPLEX_DIV = ELEMENTWISE["div"][1]
COMPLEX_RECIPROCAL = ELEMENTWISE["reciprocal"][1]
SOFTMAX_PER_ELEMENT = 5
GUMBEL_OPS_PER_POSITION = 10  # clamp, log, 1-u, log, subtract, add scores, /tau, sigmoid, straight-through (2)
# components whose outputs are statistics only, so no gradient flows back through them
STATISTICS_ONLY = ("downsample_scorer",)
# backward FLOPs per forward FLOP, by family: matmul exact (grad_input + grad_weight); a bias add's
# gradient is one sum per element; the rest measured on PyTorch 2.13 (complex mul/div backward
# needs conj products for both operands; layer norm 11/7 and softmax 4/5 by the registry's rules)
BACKWARD_RATIO = {"matmul": 2.0, "bias": 1.0, "complex": 2.4, "elementwise": 1.6, "index": 1.0,
                  "normalization": 1.2, "reduction": 1.0}
# autograd through the reference backend's sequential sweeps (mostly divisions, whose gradient costs a
# little more per forward FLOP); the other backends' BK-Core backward is counted by `bk_core_backward`
BK_CORE_COMPLEX_BACKWARD_RATIO = {"reference": 2.5}


def reference_stack_gradient(b: int, n: int) -> int:
    """Autograd's price for the reference sweeps' torch.stack of 2N one-position slices: each slice's
    gradient is a zero-padded full (B, N) complex tensor, and all 2N are summed: O(N^2)."""
    return 2 * n * b * n * COMPLEX_ADD


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


def _closed_form_backward(b: int, n: int) -> Counter:
    """The vectorized backend's backward with respect to diag (bkprof.core.adjoint): G again, c = conj(v) G^2,
    the factors r and s (a square and a division each per link), two log-depth affine recurrences
    (2 complex mul + 1 add per combined position) and Re(c - U - V)."""
    links = b * (n - 1)
    recurrences = 2 * b * scan_steps_work(n) * (2 * COMPLEX_MUL + COMPLEX_ADD)
    return _combine(b, n) + _f(complex=2 * COMPLEX_MUL * b * n + 2 * (COMPLEX_MUL + COMPLEX_DIV) * links
                               + recurrences + 2 * COMPLEX_ADD * b * n)


def bk_core_backward(c: LayerConfig, b: int, n: int, device: str = "cpu") -> Counter | None:
    """The BK-Core's backward in the layer (gradient for diag only; the couplings are constants) where it
    is known exactly: the closed form's aten ops, or the custom backward op's own formula; None where
    autograd differentiates the backend's ops (estimated by BACKWARD_RATIO)."""
    from bkprof.core import resolve_backend

    backend = resolve_backend(c.backend, device)
    if backend.backward_flops is not None:
        return _f(custom=backend.backward_flops(b, n))
    return _closed_form_backward(b, n) if backend.name == "vectorized" else None


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


def forward_families(name: str, c: LayerConfig, *, batch: int = 1, training: bool = False,
                     device: str = "cpu") -> dict[str, Counter]:
    """{component: {family: FLOPs}} of one forward pass (eval mode unless `training`), from the
    variant's registered `analytic` parts."""
    return registry.get(name).analytic(c, batch, training, device)


def backward_families_by_component(name: str, c: LayerConfig, *, batch: int = 1,
                                   device: str = "cpu") -> dict[str, Counter]:
    """{component: {family: FLOPs}} of the backward pass after a train-mode forward (see the module
    docstring): each component's backward is the gradient of its own forward work.

    Families are those of the forward work they differentiate (the counter files a bias gradient
    under `reduction`), and estimates are rounded to whole FLOPs.
    """
    from bkprof.core import resolve_backend

    ratios = dict(BACKWARD_RATIO)
    backend = resolve_backend(c.backend, device).name
    bk_ratios = {**ratios, "complex": BK_CORE_COMPLEX_BACKWARD_RATIO.get(backend, 2.4)}
    out: dict[str, Counter] = {}
    core_n = registry.get(name).bk_core_length(c)
    exact_core = bk_core_backward(c, batch, core_n, device)
    for component, flops in forward_families(name, c, batch=batch, training=True, device=device).items():
        if component in STATISTICS_ONLY:
            out[component] = Counter()
            continue
        if component == "bk_core" and exact_core is not None:
            out[component] = exact_core
            continue
        ratio = bk_ratios if component == "bk_core" else ratios
        out[component] = Counter({family: round(ratio.get(family, 1.0) * v) for family, v in flops.items()})
    if backend == "reference" and "bk_core" in out:
        out["bk_core"]["complex"] += reference_stack_gradient(batch, core_n)
    return out


def backward_families(name: str, c: LayerConfig, *, batch: int = 1, device: str = "cpu") -> Counter:
    """{family: FLOPs} of the whole backward pass (the sum over `backward_families_by_component`)."""
    total = Counter()
    for flops in backward_families_by_component(name, c, batch=batch, device=device).values():
        total.update(flops)
    return total


def backward_components(name: str, config: LayerConfig, *, batch: int = 1, device: str = "cpu") -> dict[str, int]:
    """Backward FLOPs per component (the component whose forward work each gradient differentiates)."""
    parts = backward_families_by_component(name, config, batch=batch, device=device)
    return {component: sum(flops.values()) for component, flops in parts.items()}


def analytic_components(name: str, config: LayerConfig, *, batch: int = 1, backward: bool = False,
                        device: str = "cpu") -> dict[str, int]:
    """FLOPs per component (2 per multiply-accumulate, `batch` sequences); with `backward`, the
    train-mode forward per component plus a `backward` entry.

    >>> from bkprof import LayerConfig, analytic_components
    >>> parts = analytic_components("dense", LayerConfig(d_model=16, n_seq=32))
    >>> parts["gate"]          # Linear(16, 4) on 32 tokens: 2·32·16·4 + 32·4 (the bias adds)
    4224
    >>> sorted(parts)[:3]
    ['bk_core', 'experts', 'gate']
    """
    parts = forward_families(name, config, batch=batch, training=backward, device=device)
    out = {component: sum(flops.values()) for component, flops in parts.items()}
    if backward:
        out["backward"] = sum(backward_families(name, config, batch=batch, device=device).values())
    return out


def analytic_flops(name: str, config: LayerConfig, *, batch: int = 1, backward: bool = False,
                   device: str = "cpu") -> int:
    """Total FLOPs of `name` at `config` for `batch` sequences (forward, or forward + backward),
    2 per multiply-accumulate, for the BK-Core backend that runs on `device`.

    >>> from bkprof import LayerConfig, analytic_flops
    >>> analytic_flops("combined", LayerConfig())            # per sequence, forward, at the defaults
    80804914
    >>> analytic_flops("dense", LayerConfig(), batch=8) == 8 * analytic_flops("dense", LayerConfig())
    True
    """
    return sum(analytic_components(name, config, batch=batch, backward=backward, device=device).values())


def analytic_family_totals(name: str, config: LayerConfig, *, batch: int = 1, backward: bool = False,
                           device: str = "cpu") -> Counter:
    """{family: FLOPs} over all components (forward, plus backward when asked)."""
    total = Counter()
    for flops in forward_families(name, config, batch=batch, training=backward, device=device).values():
        total.update(flops)
    if backward:
        total.update(backward_families(name, config, batch=batch, device=device))
    return total
