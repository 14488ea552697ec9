"""The variant registry: one `VariantSpec` per layer variant, read by every command.

A spec holds everything bkprof knows about a variant: how to build it, its closed-form FLOPs per
component, which component each of its submodules counts under, and what the source publishes
for it. Adding a variant is one `register(VariantSpec(...))`; `bkprof flops`, `profile`, `sweep`,
`check` and (for a variant with a sparsity mask) `schedule` pick it up from here.

Nothing in this module imports torch: the built-in variants name their builders and analytic
parts with `lazy("module:function")`, so the command line can list the variants at start-up.
"""

from __future__ import annotations

import importlib
from contextlib import contextmanager
from collections.abc import Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import TYPE_CHECKING, Callable, Mapping

if TYPE_CHECKING:
    from collections import Counter

    from torch import nn

    from bkprof.variants.config import LayerConfig

# The variant every "vs dense" and "× fewer FLOPs" ratio compares against.
REFERENCE = "dense"


def lazy(target: str) -> Callable:
    """A function that imports `"package.module:name"` on its first call and calls it."""
    module, _, name = target.partition(":")

    def call(*args, **kwargs):
        return getattr(importlib.import_module(module), name)(*args, **kwargs)

    call.__name__ = call.__qualname__ = target
    return call


def figure(section: str, key: str) -> Callable[[dict], float]:
    """The figure `published[section][key]` of `bkprof.flops.published_accounting(config)`."""

    def read(published: dict) -> float:
        return published[section][key]

    read.__name__ = read.__qualname__ = f"published[{section!r}][{key!r}]"
    return read


@dataclass(frozen=True)
class Published:
    """What the source publishes for a variant. Every figure is read from `published_accounting(config)`
    (the source's own formulas evaluated at the config: per sequence, forward, 2 FLOPs per MAC as
    the source counts), never written down here.

    `reduction(published)`: × fewer forward FLOPs than the reference layer, as the source derives it.
    `scope`: the components the reduction covers in the full count (None: the whole layer).
    `layer_flops(published)`: the source's formula for the whole layer; None where it publishes none.
    `scope_flops(published)`: the source's forward FLOPs over `scope` (the published accounting of
    the sparsity schedule); None where it has none.
    `claim`: the id of the variant's claim in `bkprof/flops/claims.json`, None if it has none.

    >>> from bkprof import LayerConfig, published_accounting
    >>> from bkprof.variants.registry import get
    >>> sparse = get("sparse").published
    >>> sparse.scope, sparse.reduction(published_accounting(LayerConfig()))
    (('bk_core', 'importance_predictor', 'mask', 'interpolation'), 2.5)
    """

    covers: str
    reduction: Callable[[dict], float]
    scope: tuple[str, ...] | None = None
    layer_flops: Callable[[dict], float] | None = None
    scope_flops: Callable[[dict], float] | None = None
    claim: str | None = None


def covered(components: Mapping[str, int], scope: tuple[str, ...] | None) -> int:
    """The FLOPs of `components` ({component: FLOPs}) that `scope` covers (None: all of them)."""
    return sum(components.values()) if scope is None else sum(components.get(c, 0) for c in scope)


def scope_of(name: str) -> tuple[str, ...] | None:
    """The components a variant's published reduction covers (None: the whole layer, also without one)."""
    published = get(name).published
    return published.scope if published else None


@dataclass(frozen=True)
class VariantSpec:
    """One layer variant.

    `build(config)`: the module, mapping x (B, N, d) to (out (B, N, d), stats dict).
    `analytic(config, batch, training, device)`: {component: Counter({family: FLOPs})} of one forward
    pass for `batch` sequences (train mode when `training`), for the BK-Core backend that runs on `device`.
    `components`: submodule path prefix -> the component its ops count under; the longest matching
    prefix wins, and "" (the layer's own ops) matches only the layer itself.
    `bk_core_length(config)`: the sequence length the BK-Core runs at.
    `published`: what the source publishes for it, or None.
    `sparsity_mask`: its stats hold the importance "mask", so the sparsity losses and schedule apply.

    A fifth variant, x + Linear(d, d)(x), in one spec (`registered` removes it again after the block):

    >>> from torch import nn
    >>> from bkprof import LayerConfig, VariantSpec, analytic_flops, build, registered
    >>> from bkprof.variants.counts import linear, pointwise
    >>> class Residual(nn.Module):
    ...     def __init__(self, config):
    ...         super().__init__()
    ...         self.proj = nn.Linear(config.d_model, config.d_model)
    ...     def forward(self, x):
    ...         return x + self.proj(x), {}
    >>> def parts(config, batch, training, device):
    ...     rows = batch * config.n_seq
    ...     return {"projection": linear(rows, config.d_model, config.d_model), "residual": pointwise(rows * config.d_model)}
    >>> spec = VariantSpec("residual", "x + Linear(d, d)(x)", Residual, parts, {"proj": "projection", "": "residual"})
    >>> with registered(spec):
    ...     analytic_flops("residual", LayerConfig(d_model=16, n_seq=32))   # 2·32·16·16 + 32·16 + 32·16
    17408
    """

    name: str
    summary: str
    build: Callable[[LayerConfig], nn.Module]
    analytic: Callable[[LayerConfig, int, bool, str], dict[str, Counter]]
    components: Mapping[str, str]
    bk_core_length: Callable[[LayerConfig], int] = attrgetter("n_seq")
    published: Published | None = None
    sparsity_mask: bool = False
    builtin: bool = field(default=False, repr=False)


_REGISTRY: dict[str, VariantSpec] = {}


def register(spec: VariantSpec) -> VariantSpec:
    """Add `spec`; ValueError when its name is taken or a submodule path already counts under another
    component. Every command reads the registry, so the variant is counted, profiled, swept and
    gated from now on (`VariantSpec` has a whole example).

    >>> from bkprof import VariantSpec, register, unregister
    >>> import bkprof
    >>> spec = register(VariantSpec("copy", "the dense layer once more", lambda c: None, lambda *a: {}, {}))
    >>> "copy" in bkprof.VARIANTS
    True
    >>> unregister("copy")
    """
    if spec.name in _REGISTRY:
        raise ValueError(f"variant {spec.name!r} is already registered")
    if not spec.name.isidentifier():
        raise ValueError(f"a variant name must be a plain word (letters, digits, _), got {spec.name!r}")
    merged = component_map()
    for path, component in spec.components.items():
        if merged.get(path, component) != component:
            raise ValueError(f"variant {spec.name!r}: submodule path {path!r} counts under {merged[path]!r} "
                             f"in another variant, not {component!r}")
    _REGISTRY[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    """Remove a variant registered with `register` (the built-in four stay).

    >>> from bkprof import unregister
    >>> unregister("dense")
    Traceback (most recent call last):
    ...
    ValueError: variant 'dense' is built in and cannot be removed
    """
    found = get(name)
    if found.builtin:
        raise ValueError(f"variant {name!r} is built in and cannot be removed")
    del _REGISTRY[name]


@contextmanager
def registered(spec: VariantSpec):
    """`register(spec)` for the length of a `with` block, then `unregister` (tests, experiments).

    >>> from bkprof import VARIANTS, VariantSpec, registered
    >>> with registered(VariantSpec("scratch", "", lambda c: None, lambda *a: {}, {})):
    ...     "scratch" in VARIANTS
    True
    >>> "scratch" in VARIANTS
    False
    """
    register(spec)
    try:
        yield spec
    finally:
        unregister(spec.name)


def get(name: str) -> VariantSpec:
    """The spec of variant `name`; ValueError naming the registered variants when there is none."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"variant must be one of {', '.join(_REGISTRY)}, got {name!r}") from None


def specs() -> tuple[VariantSpec, ...]:
    return tuple(_REGISTRY.values())


def names() -> tuple[str, ...]:
    """The registered variant names, in registration order."""
    return tuple(_REGISTRY)


def schedule_names() -> tuple[str, ...]:
    """The variants the sparsity losses and schedule apply to (those with an importance mask)."""
    return tuple(s.name for s in _REGISTRY.values() if s.sparsity_mask)


def claimed() -> dict[str, VariantSpec]:
    """claim id (in claims.json) -> the variant the claim is about."""
    return {s.published.claim: s for s in _REGISTRY.values() if s.published and s.published.claim}


def component_map() -> dict[str, str]:
    """Every registered variant's submodule path -> component (register keeps them from contradicting)."""
    merged: dict[str, str] = {}
    for spec in _REGISTRY.values():
        merged.update(spec.components)
    return merged


def component_names() -> tuple[str, ...]:
    """Every component a registered variant reports, in the order tables list them (the layer's own ops last)."""
    found = dict.fromkeys(component for spec in _REGISTRY.values() for component in spec.components.values())
    own = component_map().get("")
    return (*(c for c in found if c != own), *((own,) if own else ()))


class _Names(Sequence):
    """The registered variant names as a live, read-only sequence (`VARIANTS`).

    >>> from bkprof import VARIANTS
    >>> list(VARIANTS)
    ['dense', 'sparse', 'multiscale', 'combined']
    """

    def __getitem__(self, index):
        return names()[index]

    def __len__(self) -> int:
        return len(_REGISTRY)

    def __eq__(self, other) -> bool:
        return isinstance(other, Sequence) and tuple(self) == tuple(other)

    def __hash__(self) -> int:
        return hash(names())

    def __repr__(self) -> str:
        return repr(names())


VARIANTS: Sequence[str] = _Names()


def build(name: str, config: LayerConfig | Mapping | None = None, *, seed: int = 0) -> nn.Module:
    """The `name` variant for `config` (a LayerConfig or a mapping of its fields; default: `LayerConfig()`),
    its parameters drawn from `seed`
    (same seed, same module). Every variant maps x (B, N, d) to (out (B, N, d), stats dict).

    >>> import torch
    >>> from bkprof.variants import LayerConfig, build
    >>> layer = build("sparse", LayerConfig(d_model=16, n_seq=32)).eval()
    >>> out, stats = layer(torch.randn(2, 32, 16))
    >>> tuple(out.shape), sorted(stats)
    ((2, 32, 16), ['expert_index', 'importance', 'mask', 'router_probs', 'sparsity'])
    """
    import torch

    from bkprof.variants.config import as_config

    spec = get(name)
    config = as_config(config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return spec.build(config)


# ---- the four built-in variants -------------------------------------------------------------

# the components the published sparse ratio (2·N·10 / ((1 − s)·2·N·10)) speaks of: the G_ii path
G_II_PATH = ("bk_core", "importance_predictor", "mask", "interpolation")

_DENSE_PARTS = {
    "moe.gate": "gate", "moe": "routing", "moe.experts": "experts", "v_proj": "v_projection", "bk_core": "bk_core",
    "out_proj": "output_projection", "": "residual",
}
_SPARSE_PARTS = {**_DENSE_PARTS, "importance": "importance_predictor", "mask": "mask",
                 "interpolation": "interpolation"}


def _around(inner: Mapping[str, str]) -> dict[str, str]:
    """The multi-scale wrapper's parts, with the inner layer's under `inner.`."""
    outer = {"down.scorer": "downsample_scorer", "down": "downsample", "up": "upsample", "refine": "refine",
             "": "residual"}
    return {**outer, **{f"inner.{path}".rstrip("."): component for path, component in inner.items()}}


def _multi_scale_factor(published: dict) -> float:
    """The published multi-scale reduction (a fraction of the layer saved) as × fewer FLOPs."""
    return 1 / (1 - published["multi_scale"]["reduction"])


def _reference_reduction(published: dict) -> float:
    return 1.0


def _register_builtins() -> None:
    layer_formula = figure("multi_scale", "multi_scale")
    for spec in (
        VariantSpec(
            "dense", "MoE-FFN, then the BK-Core over all N positions",
            lazy("bkprof.variants.dense:DenseLayer"), lazy("bkprof.variants.counts:dense_parts"), _DENSE_PARTS,
            published=Published("the whole layer (the source's 'standard' layer: N·d²·E/E + 20·N)",
                                _reference_reduction, layer_flops=figure("multi_scale", "standard"),
                                scope_flops=figure("multi_scale", "standard")),
            builtin=True),
        VariantSpec(
            "sparse", "dense, with G_ii kept at the learned mask's positions and interpolated elsewhere",
            lazy("bkprof.variants.sparse:SparseLayer"), lazy("bkprof.variants.counts:sparse_parts"), _SPARSE_PARTS,
            published=Published("the G_ii path only: importance + (1 − s)·BK-Core + interpolation; its ratio "
                                "counts the BK-Core alone and leaves the overheads out",
                                figure("sparse_g_ii", "reduction"), scope=G_II_PATH,
                                scope_flops=figure("sparse_g_ii", "sparse_total"), claim="sparse_g_ii"),
            sparsity_mask=True, builtin=True),
        VariantSpec(
            "multiscale", "N -> N/f -> N around a dense layer at N/f",
            lazy("bkprof.variants.multiscale:multiscale_layer"), lazy("bkprof.variants.counts:multiscale_parts"),
            _around(_DENSE_PARTS), attrgetter("coarse_n"),
            published=Published("the whole layer (its BK-Core term at N/f is already sparse: (N/f)·20·(1 − s))",
                                _multi_scale_factor, layer_flops=layer_formula, scope_flops=layer_formula,
                                claim="multi_scale"),
            builtin=True),
        VariantSpec(
            "combined", "N -> N/f -> N around a sparse layer at N/f",
            lazy("bkprof.variants.multiscale:combined_layer"), lazy("bkprof.variants.counts:combined_parts"),
            _around(_SPARSE_PARTS), attrgetter("coarse_n"),
            published=Published("a ratio only (sparse × multi-scale); no layer total. The sparsity schedule "
                                "stands in the multi-scale formula, whose BK-Core term is already sparse",
                                figure("combined", "reduction"), scope_flops=layer_formula, claim="combined"),
            sparsity_mask=True, builtin=True),
    ):
        register(spec)


_register_builtins()
