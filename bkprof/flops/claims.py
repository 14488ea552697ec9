"""Each published claim beside its own formula and the full count, with the components that explain the gap."""

from __future__ import annotations

import json
from pathlib import Path

from bkprof.variants import registry
from bkprof.variants.registry import covered

# Why a component's full-count FLOPs are missing from (or differ in) the published formulas.
WHY = {
    "experts": "the formula counts d² per token; an expert is Linear(d,2d)+Linear(2d,d) = 4d² MACs = 8d² FLOPs",
    "importance_predictor": "left out of the ratio; really two Conv1d(k=3) and two Linear, not N·d·2",
    "interpolation": "left out of the ratio; the interpolator runs on every position",
    "bk_core": "exact G_ii at any subset needs both sweeps over every position: nothing is skipped",
    "mask": "left out: top-k / Gumbel mask and its statistics",
    "gate": "left out: the MoE gate Linear(d, E)",
    "routing": "left out: softmax of the top-k logits, sorting tokens by expert, weighting and summing expert outputs",
    "v_projection": "left out: Linear(d, 1) and clamp",
    "output_projection": "left out: Linear(2, d) and clamp",
    "residual": "left out: residual adds and learned scales",
    "downsample_scorer": "left out: Linear(d,d/2)+Linear(d/2,1) on all N positions (scores only returned)",
    "downsample": "counted as 2·N·d; really pooling plus Linear(d,d)+LayerNorm+GELU at N/f",
    "upsample": "counted as 2·N·d; really Linear(d,fd)+LayerNorm(fd)+GELU+Linear(fd,fd) at N/f",
    "refine": "counted as 2·N·d; really LayerNorm+Linear(d,d)+GELU+Linear(d,d) at N",
}
REASON_MIN_SHARE = 0.01


def published_claims() -> list[dict]:
    """The source's claims, each with `published`: the figure as the source printed it, which is its own
    formula at the configuration it printed it for (SOURCE_POINT), in the source's format."""
    from bkprof.flops.published import published_accounting, source_config

    at_source = published_accounting(source_config())
    claims = json.loads((Path(__file__).with_name("claims.json")).read_text(encoding="utf-8"))
    return [{**claim, "published": printed(at_source[claim["id"]]["reduction"], claim["metric"])} for claim in claims]


def printed(value: float, metric: str) -> str:
    """A reduction as the source prints it: a fraction saved as "x.x %", a factor as "x.xx×"."""
    return f"{value * 100:.1f} %" if metric == "fraction" else f"{value:.2f}×"


def _reasons(components: dict[str, int]) -> list[dict]:
    total = sum(components.values())
    rows = [{"component": name, "flops": flops, "share": flops / total, "why": WHY.get(name, "")}
            for name, flops in components.items() if total and flops / total >= REASON_MIN_SHARE]
    return sorted(rows, key=lambda r: -r["flops"])


def full_count_value(metric: str, variant: dict[str, int], reference: dict[str, int], scope) -> float:
    """The claim's figure from the full count: × fewer FLOPs ("factor") or the fraction saved ("fraction")
    against the reference layer, both over the components `scope` covers."""
    ours, theirs = covered(variant, scope), covered(reference, scope)
    return 1 - ours / theirs if metric == "fraction" else theirs / ours


def evaluate_claims(published: dict, components: dict[str, dict[str, int]]) -> list[dict]:
    """`published` is `published_accounting(config)`; `components` the analytic forward components of
    the reference variant and of every variant a claim is about (registry: `published.claim`)."""
    about = registry.claimed()
    out = []
    for claim in published_claims():
        if claim["id"] not in about:
            continue  # no registered variant makes this claim
        spec = about[claim["id"]]
        scope = spec.published.scope
        formula_value = published[claim["id"]]["reduction"]
        full_value = full_count_value(claim["metric"], components[spec.name], components[registry.REFERENCE], scope)
        explaining = {k: v for k, v in components[spec.name].items() if scope is None or k in scope}
        out.append({
            "id": claim["id"],  # a stable name for paths such as claims[id=combined] (bkprof check)
            "claim": claim["claim"],
            "published": claim["published"],
            "metric": claim["metric"],
            "published_formula": formula_value,
            "full_count": full_value,
            "holds": full_value >= formula_value * (1 - 1e-9),
            "reasons": _reasons(explaining),
            "quoted_from": claim["quoted_from"],
        })
    return out


def claim_variants() -> list[str]:
    """The variants whose components `evaluate_claims` needs: the reference and every claimed one."""
    return list(dict.fromkeys([registry.REFERENCE, *(s.name for s in registry.claimed().values())]))
