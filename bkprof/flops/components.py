"""Names of the components FLOPs are reported under, from the module that ran the op.

The map from submodule paths to components is each variant's `components` in the registry.
"""

from __future__ import annotations

from bkprof.variants.registry import component_map, component_names


def component_of(path: str) -> str:
    """`moe.experts.dropout` -> experts, `inner.bk_core` -> bk_core, `` (a layer's own ops) -> residual.

    The longest registered prefix of `path` wins; "" matches only the layer itself, and a submodule
    no variant names counts under its own first name.
    """
    known = component_map()
    parts = path.split(".") if path else []
    for end in range(len(parts), 0, -1):
        prefix = ".".join(parts[:end])
        if prefix in known:
            return known[prefix]
    return known.get("", "residual") if not parts else parts[0]


def __getattr__(name: str):
    if name == "COMPONENTS":  # the registry's components, read when asked (a variant may be registered later)
        return component_names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
