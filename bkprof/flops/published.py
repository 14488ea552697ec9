"""The published accounting, formula by formula, evaluated at any config, and which figure stands for which variant.

These are the source document's own formulas (`count_flops_sparse_g_ii` and
`count_flops_multi_scale`), per sequence with no batch factor. They are reproduced as written,
including what they leave out, so that their provenance is visible beside the full count.
"""

from __future__ import annotations

from bkprof.variants import registry
from bkprof.variants.config import LayerConfig

# BK-Core cost per position and sweep in the published formulas
BK_FLOPS_PER_POSITION = 10
# The configuration the source printed its figures at (per sequence): d=128, E=4, s=0.6, f=2, N=256.
SOURCE_POINT = {"n_seq": 256, "d_model": 128, "num_experts": 4, "sparsity": 0.6, "downsample": 2, "batch": 1}


def source_config() -> LayerConfig:
    """The LayerConfig of SOURCE_POINT: the source's formulas there give the figures it printed."""
    return LayerConfig(**{k: v for k, v in SOURCE_POINT.items() if k != "batch"})


def sparse_g_ii(c: LayerConfig) -> dict:
    n, d, s = c.n_seq, c.d_model, c.sparsity
    standard = 2 * n * BK_FLOPS_PER_POSITION
    importance = n * d * 2
    interpolation = n * d * 2
    sparse_compute = (1 - s) * standard
    return {
        "standard": standard,
        "importance": importance,
        "sparse_compute": sparse_compute,
        "interpolation": interpolation,
        "sparse_total": importance + sparse_compute + interpolation,
        # the overheads are left out of the ratio: that is how the figure was derived
        "reduction": standard / sparse_compute,
    }


def multi_scale(c: LayerConfig) -> dict:
    """The published N/2 is the downsampled length, N/f in general."""
    n, d, e, s = c.n_seq, c.d_model, c.num_experts, c.sparsity
    coarse = n / c.downsample
    standard = n * d * d * e / e + 2 * BK_FLOPS_PER_POSITION * n
    down = up = refine = 2 * n * d
    low_res = coarse * d * d + coarse * 2 * BK_FLOPS_PER_POSITION * (1 - s)
    multi = down + low_res + up + refine
    return {"standard": standard, "multi_scale": multi, "reduction": 1 - multi / standard}


def published_accounting(c: LayerConfig) -> dict:
    """The source's formulas at `c`, per sequence, forward: {"sparse_g_ii": {...}, "multi_scale": {...},
    "combined": {"reduction": ...}}.

    >>> from bkprof import LayerConfig, published_accounting
    >>> published = published_accounting(LayerConfig(n_seq=512, sparsity=0.5))
    >>> published["sparse_g_ii"]["standard"]        # 2·N·10: both sweeps, 10 FLOPs per position
    10240
    >>> published["sparse_g_ii"]["reduction"]       # standard / ((1 − s)·standard)
    2.0
    """
    sparse, multi = sparse_g_ii(c), multi_scale(c)
    return {
        "sparse_g_ii": sparse,
        "multi_scale": multi,
        "combined": {"reduction": sparse["reduction"] * 1 / (1 - multi["reduction"])},
    }


def published_layer_flops(variant: str, published: dict) -> float | None:
    """The source's per-sequence forward FLOPs of the whole `variant` layer (from `published_accounting`),
    or None where it publishes none (the registry's `published.layer_flops`)."""
    spec = registry.get(variant).published
    return spec.layer_flops(published) if spec and spec.layer_flops else None


def published_reduction(variant: str, published: dict) -> float | None:
    """× fewer forward FLOPs than the reference layer as the source derives it (sparse: of the BK-Core,
    overheads left out); None where the source publishes nothing for `variant`."""
    spec = registry.get(variant).published
    return spec.reduction(published) if spec else None


def full_reduction(variant: str, config: LayerConfig) -> float:
    """× fewer forward FLOPs than the reference layer in bkprof's full count, over the components the
    published reduction covers (sparse: the G_ii path; the others: the whole layer)."""
    from bkprof.flops.analytic import analytic_components

    scope = registry.scope_of(variant)
    reference = registry.covered(analytic_components(registry.REFERENCE, config), scope)
    return reference / registry.covered(analytic_components(variant, config), scope)
