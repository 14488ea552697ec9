"""The published figures a sweep shows beside the full count.

Which published figure stands for which variant is the registry's (`VariantSpec.published`): the
source publishes a layer total for the dense layer (N·d² + 20·N) and for multi-scale (its BK-Core
term already sparse, (N/f)·20·(1 − s)); for learned sparsity only the G_ii path and a ratio that
leaves the overheads out; for the combination only a ratio. So a sparse or combined layer has no
published layer figure, and bkprof does not invent one.
"""

from __future__ import annotations

from bkprof.flops.published import (SOURCE_POINT, full_reduction, published_layer_flops, published_reduction,
                                    source_config)
from bkprof.variants import registry
from bkprof.variants.config import LayerConfig

__all__ = ["SOURCE_POINT", "full_reduction", "published_layer_flops", "published_reduction", "reduction_rows",
           "reduced_variants", "source_figures_at"]



def source_figures_at(reference: dict) -> dict[str, tuple[int, float]]:
    """variant -> (N, the layer total the source printed) when `reference` is the source's configuration,
    else {}. The totals are the source's formulas at that configuration, which is how it printed them."""
    from bkprof.flops.published import published_accounting

    if any(reference[k] != v for k, v in SOURCE_POINT.items() if k != "n_seq"):
        return {}
    published = published_accounting(source_config())
    figures = {name: published_layer_flops(name, published) for name in registry.names()}
    return {name: (SOURCE_POINT["n_seq"], value) for name, value in figures.items() if value is not None}


def reduced_variants() -> tuple[str, ...]:
    """The variants with a published reduction to compare against the reference layer."""
    return tuple(s.name for s in registry.specs() if s.published and s.name != registry.REFERENCE)


def reduction_rows(config: LayerConfig, sparsities: list[float], variants=None) -> list[dict]:
    """Published and full-count reductions at each sparsity (other fields from `config`), for `variants`
    (default: every variant with a published reduction)."""
    from bkprof.flops import published_accounting

    rows = []
    for s in sparsities:
        c = config.with_(sparsity=s)
        published = published_accounting(c)
        rows += [{"variant": v, "sparsity": s, "published_reduction": published_reduction(v, published),
                  "full_reduction": full_reduction(v, c)} for v in (reduced_variants() if variants is None else variants)]
    return rows
