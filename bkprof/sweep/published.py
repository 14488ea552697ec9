"""Which published figure stands for which variant, and the reductions under both accountings.

The source publishes per-sequence forward FLOPs from short formulas (SPEC section 4):
- a layer total for the dense layer (`multi_scale.standard`, N·d² + 20·N) and for multi-scale
  (`multi_scale.multi_scale`; its BK-Core term is already sparse, (N/2)·20·(1 − s));
- for learned sparsity only the G_ii path (`sparse_g_ii.sparse_total`: importance + sparse compute
  + interpolation) and a ratio that leaves the overheads out (`sparse_g_ii.reduction`);
- for the combination only a ratio (`combined.reduction`).
So a sparse or combined layer has no published layer figure; bkprof does not invent one.
"""

from __future__ import annotations

from bkprof.variants.config import LayerConfig

# The layer totals the source prints (seed 000, "Multi-Scale Processing (N=256, d=128)": "Standard layer:
# 4,199,424 FLOPs", "Multi-scale: 2,294,784 FLOPs"), per sequence, at d=128, E=4, s=0.6, f=2.
SOURCE_FIGURES = {"dense": 4_199_424, "multiscale": 2_294_784}
SOURCE_POINT = {"n_seq": 256, "d_model": 128, "num_experts": 4, "sparsity": 0.6, "downsample": 2, "batch": 1}


def source_figures_at(reference: dict) -> dict[str, tuple[int, int]]:
    """variant -> (N, the figure the source printed) when `reference` is the source's configuration, else {}."""
    if any(reference[k] != v for k, v in SOURCE_POINT.items() if k != "n_seq"):
        return {}
    return {variant: (SOURCE_POINT["n_seq"], figure) for variant, figure in SOURCE_FIGURES.items()}


def published_layer_flops(variant: str, published: dict) -> int | None:
    """The published per-sequence forward FLOPs of the whole `variant` layer, or None where none is published."""
    if variant == "dense":
        return published["multi_scale"]["standard"]
    if variant == "multiscale":
        return published["multi_scale"]["multi_scale"]
    return None


def published_reduction(variant: str, published: dict) -> float:
    """The published × fewer FLOPs than the dense layer (sparse: of the BK-Core, overheads left out)."""
    if variant == "sparse":
        return published["sparse_g_ii"]["reduction"]
    if variant == "multiscale":
        return 1 / (1 - published["multi_scale"]["reduction"])
    if variant == "combined":
        return published["combined"]["reduction"]
    return 1.0


def full_reduction(variant: str, config: LayerConfig) -> float:
    """× fewer forward FLOPs than the dense layer in the full count: the G_ii path for sparse, else the layer."""
    from bkprof.flops import analytic_components, analytic_flops
    from bkprof.flops.claims import BK_CORE_PATH

    if variant == "sparse":
        # the scope of the published 2.50x: the BK-Core and what sparsity adds around it
        dense = analytic_components("dense", config)["bk_core"]
        return dense / sum(analytic_components("sparse", config).get(c, 0) for c in BK_CORE_PATH)
    return analytic_flops("dense", config) / analytic_flops(variant, config)


def reduction_rows(config: LayerConfig, sparsities: list[float], variants=("sparse", "multiscale", "combined")) -> list[dict]:
    """Published and full-count reductions at each sparsity (other fields from `config`)."""
    from bkprof.flops import published_accounting

    rows = []
    for s in sparsities:
        c = config.with_(sparsity=s)
        published = published_accounting(c)
        rows += [{"variant": v, "sparsity": s, "published_reduction": published_reduction(v, published),
                  "full_reduction": full_reduction(v, c)} for v in variants]
    return rows
