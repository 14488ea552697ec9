"""The interval behind every verdict of `bkprof validate` (pure Python: the report runs without torch).

A setting's test perplexity is summarised over its seeds on the log scale (log PPL = mean NLL, so
log-PPL differences are ratios of perplexities). To compare a setting with a reference at the
reference's training FLOPs per token, the setting's mean log PPL is interpolated on its own curve
across widths, linear in log FLOPs:

    t = (log F_ref - log F_a) / (log F_b - log F_a),   est = (1 - t) m_a + t m_b

with a, b the two widths whose FLOPs bracket F_ref (t = 0 at a width of equal FLOPs; no
extrapolation outside the curve). The difference D = est - m_ref is a linear combination
sum_i c_i m_i of independent seed means, so Var D = sum_i c_i^2 s_i^2 / n_i (s_i^2 the seeds'
sample variance) and the degrees of freedom are Welch-Satterthwaite's,
df = (sum_i c_i^2 s_i^2 / n_i)^2 / sum_i (c_i^2 s_i^2 / n_i)^2 / (n_i - 1). The 95 % interval is
D +- t_{0.975, df} sqrt(Var D), reported as a PPL change exp(D) - 1 with exp(bounds) - 1.
Every term needs at least 2 seeds, else there is no interval.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

LEVEL = 0.95
METHOD = ("95 % interval of the PPL change: Welch t on the seeds' mean log PPL, the setting's mean "
          "interpolated linearly in log FLOPs between its two bracketing widths (weights 1 - t, t; "
          "variances propagated, Welch-Satterthwaite df); change = exp(difference) - 1")


@dataclass(frozen=True)
class Mean:
    """The seeds' mean of log PPL, their sample variance and how many there are."""

    mean: float
    var: float | None    # None with one seed
    n: int

    @classmethod
    def of(cls, log_ppls: list[float]) -> "Mean":
        n = len(log_ppls)
        return cls(statistics.fmean(log_ppls), statistics.variance(log_ppls) if n > 1 else None, n)


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1, a - 1
    c, d = 1.0, 1 - qab * x / qap
    d = 1 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        for aa in (m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1 + aa * d
            d = 1 / (d if abs(d) > tiny else tiny)
            c = 1 + aa / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1) < 1e-15:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta I_x(a, b)."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1) / (a + b + 2):
        return front * _betacf(a, b, x) / a
    return 1 - front * _betacf(b, a, 1 - x) / b


def t_cdf(t: float, df: float) -> float:
    tail = 0.5 * _betainc(df / 2, 0.5, df / (df + t * t))
    return 1 - tail if t >= 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The p-quantile (p > 0.5) of Student's t with df degrees of freedom, by bisection on its CDF."""
    low, high = 0.0, 1.0
    while t_cdf(high, df) < p:
        high *= 2
    for _ in range(200):
        mid = (low + high) / 2
        low, high = (mid, high) if t_cdf(mid, df) < p else (low, mid)
    return (low + high) / 2


def combine(terms: list[tuple[float, Mean]]) -> dict:
    """sum c_i m_i with its 95 % Welch interval: {"diff", "low", "high", "df", "se"} (bounds None when a term
    has one seed)."""
    diff = sum(c * m.mean for c, m in terms)
    out = {"diff": diff, "low": None, "high": None, "df": None, "se": None}
    if any(m.var is None for c, m in terms if c):
        return out
    parts = [(c * c * m.var / m.n, m.n) for c, m in terms if c]
    var = sum(p for p, _ in parts)
    if var == 0:
        return {**out, "low": diff, "high": diff, "df": math.inf, "se": 0.0}
    df = var * var / sum(p * p / (n - 1) for p, n in parts)
    half = t_quantile(0.5 + LEVEL / 2, df) * math.sqrt(var)
    return {"diff": diff, "low": diff - half, "high": diff + half, "df": df, "se": math.sqrt(var)}


def interpolation_weights(curve: list[tuple[float, Mean]], flops: float) -> list[tuple[float, Mean]] | None:
    """The terms (weight, mean) of the curve (points (FLOPs, mean), any order) at `flops`, linear in
    log FLOPs between the two bracketing points; None outside the curve (no extrapolation)."""
    points = sorted(curve, key=lambda p: p[0])
    for f, m in points:
        if math.isclose(f, flops, rel_tol=1e-9):
            return [(1.0, m)]
    for (fa, ma), (fb, mb) in zip(points, points[1:]):
        if fa < flops < fb:
            t = (math.log(flops) - math.log(fa)) / (math.log(fb) - math.log(fa))
            return [(1 - t, ma), (t, mb)]
    return None


def change(curve: list[tuple[float, Mean]], flops: float, reference: Mean) -> dict | None:
    """The setting's PPL at the reference's FLOPs (on its own curve) against the reference's:
    {"change", "low", "high", "df", "weights"} (changes as exp(difference) - 1); None outside the curve."""
    terms = interpolation_weights(curve, flops)
    if terms is None:
        return None
    c = combine(terms + [(-1.0, reference)])
    ratio = lambda v: None if v is None else math.expm1(v)  # noqa: E731
    return {"change": ratio(c["diff"]), "low": ratio(c["low"]), "high": ratio(c["high"]), "df": c["df"],
            "weights": [w for w, _ in terms]}


def verdict(low: float | None, high: float | None, limit: float) -> str:
    """holds: the whole interval is below the limit; fails: the whole interval is above it; else undecided."""
    if low is None or high is None:
        return "undecided"
    if high < limit:
        return "holds"
    if low > limit:
        return "fails"
    return "undecided"
