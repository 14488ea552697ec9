"""Names of the components FLOPs are reported under, from the module that ran the op."""

from __future__ import annotations

# module attribute (first level below a layer) -> component
_LAYER_PARTS = {
    "v_proj": "v_projection", "bk_core": "bk_core", "out_proj": "output_projection",
    "importance": "importance_predictor", "mask": "mask", "interpolation": "interpolation",
    "up": "upsample", "refine": "refine",
}

COMPONENTS = (
    "gate", "routing", "experts", "v_projection", "bk_core", "output_projection", "importance_predictor",
    "mask", "interpolation", "downsample_scorer", "downsample", "upsample", "refine", "residual",
)


def component_of(path: str) -> str:
    """`moe.experts.dropout` -> experts, `inner.bk_core` -> bk_core, `` (a layer's own ops) -> residual."""
    parts = [p for p in path.split(".") if p and p != "inner"]
    if not parts:
        return "residual"
    head, rest = parts[0], parts[1:]
    if head == "moe":
        return {"gate": "gate", "experts": "experts"}.get(rest[0] if rest else "", "routing")
    if head == "down":
        return "downsample_scorer" if rest[:1] == ["scorer"] else "downsample"
    return _LAYER_PARTS[head]
