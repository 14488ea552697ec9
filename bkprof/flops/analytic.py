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

from bkprof.variants import registry
from bkprof.variants.config import LayerConfig
# the building blocks and the built-in variants' forward parts live with the variants (their registry
# entries' `analytic`); imported here, they are also this module's public helpers (linear, pointwise, ...)
from bkprof.variants.counts import (COMPLEX_ADD, COMPLEX_DIV, COMPLEX_MUL, COMPLEX_RECIPROCAL,  # noqa: F401
                                    GUMBEL_OPS_PER_POSITION, SOFTMAX_PER_ELEMENT, _combine, _f, bk_core,
                                    combined_parts, conv1d_same, dense_parts, dropout, layer_norm, linear,
                                    multiscale_parts, pointwise, scan_steps_work, sparse_parts)

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
