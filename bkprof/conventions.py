"""bkprof's counting conventions for elementwise work: the real FLOPs per element of each op, and of
its complex form, and the layer-norm rule. One table, read by the op counter's formulas
(`bkprof.flops.formulas`) and by the closed-form counts of the variants (`bkprof.variants.counts`),
so the two agree by construction. Standard library only.
"""

from __future__ import annotations

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
    "atan2": (1, None), "remainder": (1, None), "fmod": (1, None),   # one libm-style op, as exp or sin
    "xlogy": (2, None),              # x·log(y) (the x = 0 case a comparison, 0)
    "hardsigmoid": (3, None),        # clamp(x + 3, 0, 6) / 6: add, clamp, divide
    "hardswish": (4, None),          # x·clamp(x + 3, 0, 6) / 6: add, clamp, multiply, divide
    "hardsigmoid_backward": (2, None),   # g / 6 inside (-3, 3): the range test, multiply
    "hardswish_backward": (5, None),     # g·(2x + 3) / 6 inside (-3, 3): 2x, + 3, / 6, × g, the range test
    "mish": (5, None),               # x·tanh(softplus(x)): softplus 3, tanh, multiply
    "mish_backward": (11, None),     # softplus 3, tanh, sigmoid, then g·(t + x·σ·(1 - t²)): 6
    "glu": (2, None),                # a·σ(b) per output element (half the input): sigmoid, multiply
    "glu_backward": (3, None),       # per grad_input element: g·σ(b) (2) and g·a·σ·(1 - σ) (4) over two elements
    "_prelu_kernel": (2, None),      # x > 0 ? x : w·x: the test, multiply
    "_prelu_kernel_backward": (3, None),  # grad_input g or w·g (2), grad_weight's term x·g (1); its sum is a sum op
    "log_sigmoid_forward": (6, None),    # min(x, 0) − log1p(exp(−|x|)): abs, negate, exp, log1p, min, subtract
    "log_sigmoid_backward": (4, None),   # g·(1 − σ(x)) from the saved exp(−|x|): 1 + b, divide, sign select, × g
    "_conj_physical": (0, 1),        # a real input is copied; complex: the imaginary part negated
    "softplus_backward": (4, None),  # g·σ(x): σ from exp, add, divide (as softplus counts exp, add, log), × g
}
# complex forms of the activations (real FLOPs per element, from the complex ops above):
#   sigmoid  1 / (1 + e^−z): negate 2, exp 5, + 1 (real part) 1, reciprocal 5          13
#   tanh     (e^2z − 1) / (e^2z + 1): 2z 2, exp 5, − 1 and + 1 (real parts) 2, divide 11   20
#   pow      exp(w·log z): log 6, multiply 6, exp 5                                      17
#   sigmoid_backward  g·conj(y·(1 − y)): 1 − y 1, multiply 6, conjugate 1, × g 6          14
#   tanh_backward     g·conj(1 − y²): square 6, 1 − 1, conjugate 1, × g 6                 14
ELEMENTWISE.update({"sigmoid": (1, 13), "tanh": (1, 20), "pow": (1, 17),
                    "sigmoid_backward": (3, 14), "tanh_backward": (3, 14)})


def layer_norm_flops(numel: int, rows: int, affine: bool) -> int:
    """5 per element (mean, subtract, square, sum, scale) + 2 per row (rsqrt of var + eps) + 2 per element if affine."""
    return 5 * numel + 2 * rows + (2 * numel if affine else 0)
