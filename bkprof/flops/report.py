"""`bkprof flops`: every accounting of every variant in one document, and the tables that show it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from bkprof.flops.analytic import analytic_components, analytic_family_totals, backward_components
from bkprof.flops.claims import claim_variants, evaluate_claims
from bkprof.flops.counter import count_layer_flops
from bkprof.flops.fvcore_count import FvcoreCount, fvcore_count
from bkprof.flops.published import published_accounting
from bkprof.variants import VARIANTS, LayerConfig, build, registry
from bkprof.variants.config import config_header

SEED = 0


@dataclass(frozen=True)
class FlopsSettings:
    """What `bkprof flops` counts at a config: which variants (None: every registered one), sequences
    per batch, forward + backward or forward only, and whether the per-component table is shown."""

    variants: tuple[str, ...] | None = None
    batch: int = 1
    backward: bool = False
    breakdown: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.batch, bool) or not isinstance(self.batch, int) or self.batch < 1:
            raise ValueError(f"--batch must be a positive integer, got {self.batch!r}")
        for name in self.variants or ():
            registry.get(name)  # ValueError naming the registered variants

    def report(self, config: LayerConfig):
        """The `bkprof flops` Report at `config`: its document and tables."""
        from bkprof.flops.tables import flops_tables

        doc = flops_report(config, self.variants, batch=self.batch, backward=self.backward)
        return flops_tables(doc, self.breakdown)


def conventions_note(batch: int, backward: bool) -> dict:
    return {
        "flops": "FLOPs = 2 per multiply-accumulate; elementwise 1 per element; complex ops in real FLOPs "
                 "(`bkprof flops --conventions`)",
        "fvcore": "MACs (1 per multiply-accumulate), forward only; ops without an fvcore handle count 0",
        "pass": "forward + backward (train mode, input requires grad)" if backward else "forward (eval mode)",
        "per": f"a batch of {batch} sequence(s); published figures are per sequence",
    }


# The op counter builds each variant on the meta device (no storage) and runs it there, so its
# memory does not grow with N, d or the batch. Two things still grow with the config, and past
# these limits the analytic count (exact in the forward pass, tested) stands alone:
MAX_COUNTED_EXPERTS = 4096       # the experts are built one nn.Linear pair at a time (~0.4 ms each)
MAX_REFERENCE_SWEEP_N = 16384    # the reference backend runs ~6 ops per position, one at a time
FVCORE_MEMORY_LIMIT = 1 << 30    # fvcore traces real tensors: parameters + every activation


def _input(c: LayerConfig, batch: int) -> torch.Tensor:
    return torch.randn(batch, c.n_seq, c.d_model, generator=torch.Generator().manual_seed(SEED))


def counter_skipped(name: str, c: LayerConfig) -> str | None:
    """Why the op counter does not run this variant at this config, or None."""
    from bkprof.core import resolve_backend

    if c.num_experts > MAX_COUNTED_EXPERTS:
        return (f"not run: {c.num_experts:,} experts are built one by one (limit {MAX_COUNTED_EXPERTS:,}); "
                "the analytic count stands")
    if resolve_backend(c.backend, "cpu").name == "reference" and c.n_seq > MAX_REFERENCE_SWEEP_N:
        return (f"not run: the reference backend runs N={c.n_seq:,} positions one at a time "
                f"(limit {MAX_REFERENCE_SWEEP_N:,}); the analytic count stands")
    return None


def _real_bytes_estimate(c: LayerConfig, batch: int) -> int:
    """A generous bound on a real run's bytes, from the config alone: the experts' weights (twice, for
    a multi-scale layer's inner one) and 64 tensors the size of the input."""
    return 4 * (2 * 4 * c.num_experts * c.d_model ** 2 + 64 * batch * c.n_seq * c.d_model)


def _meta_count(name: str, c: LayerConfig, batch: int, backward: bool):
    """The op counter's count, on real tensors where they fit in FVCORE_MEMORY_LIMIT, else on the
    meta device; and the bytes a real run needs (parameters, input and every tensor the forward
    creates: an upper bound)."""
    real = _real_bytes_estimate(c, batch) <= FVCORE_MEMORY_LIMIT
    with torch.device("cpu" if real else "meta"):
        model = build(name, c, seed=SEED)
        x = _input(c, batch) if real else torch.empty(batch, c.n_seq, c.d_model)
    counted = count_layer_flops(model, x, backward=backward, tensors="real" if real else "auto")
    state_bytes = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers(), x])
    return counted, state_bytes + counted.created_bytes


def _fvcore(name: str, c: LayerConfig, batch: int, real_bytes: int | None) -> tuple[FvcoreCount | None, str | None]:
    if real_bytes is None:
        return None, "not run: the op counter did not run, so the memory a real run needs is not known"
    if real_bytes > FVCORE_MEMORY_LIMIT:
        return None, (f"not run: tracing needs real tensors, about {real_bytes / 2**30:,.1f} GiB "
                      f"(limit {FVCORE_MEMORY_LIMIT / 2**30:.0f} GiB)")
    return fvcore_count(build(name, c, seed=SEED), _input(c, batch)), None


def count_variant(name: str, c: LayerConfig, batch: int, backward: bool) -> dict:
    """The analytic, op-counter and fvcore accounts of one variant."""
    skipped = counter_skipped(name, c)
    counted, real_bytes = _meta_count(name, c, batch, backward) if skipped is None else (None, None)
    fv, fvcore_note = _fvcore(name, c, batch, real_bytes)
    components = analytic_components(name, c, batch=batch, backward=backward)
    counted_components = {}
    if counted is not None:
        counted_components = counted.by_component("forward")
        if backward:
            counted_components["backward"] = counted.total("backward")
    account = {
        "analytic_flops": sum(components.values()),
        "counted_flops": counted.total() if counted is not None else None,
        "counter_note": skipped,
        "fvcore_macs": fv.total_macs if fv else None,
        "fvcore_matmul_macs": fv.matmul_macs if fv else None,
        "fvcore_by_operator": fv.by_operator if fv else {},
        "fvcore_unsupported": fv.unsupported if fv else {},
        "fvcore_note": fvcore_note,
        "components": components,
        "counted_components": {k: counted_components.get(k, 0) if counted is not None else None for k in components},
        "families": dict(analytic_family_totals(name, c, batch=batch, backward=backward)),
        "ops_without_formula": dict(counted.missing) if counted is not None else {},
    }
    if backward:  # the backward lump of `components`, split by the component whose forward it differentiates
        analytic_backward = backward_components(name, c, batch=batch)
        counted_backward = counted.by_component("backward") if counted is not None else {}
        account["backward_components"] = analytic_backward
        account["counted_backward_components"] = {k: counted_backward.get(k, 0) if counted is not None else None
                                                  for k in analytic_backward}
    return account


def flops_report(config: LayerConfig, variants: Sequence[str] | None = None, *, batch: int = 1,
                 backward: bool = False) -> dict:
    """The JSON document of `bkprof flops`: for each of `variants` (default: every registered one)
    the analytic, op-counter and fvcore counts, beside the published accounting and the claims.
    FLOPs: 2 per multiply-accumulate, for `batch` sequences; fvcore in MACs.

    >>> from bkprof import LayerConfig, flops_report
    >>> doc = flops_report(LayerConfig(d_model=16, n_seq=32), ["dense"])
    >>> dense = doc["variants"]["dense"]
    >>> dense["analytic_flops"] == dense["counted_flops"]
    True
    >>> [claim["id"] for claim in doc["claims"]]
    ['sparse_g_ii', 'multi_scale', 'combined']
    """
    published = published_accounting(config)
    variants = VARIANTS if variants is None else variants
    forward_components = {name: analytic_components(name, config) for name in claim_variants()}
    return {
        "config": config_header(config, batch=batch, backward=backward),
        "conventions": conventions_note(batch, backward),
        "published": published,
        "variants": {name: count_variant(name, config, batch, backward) for name in variants},
        "claims": evaluate_claims(published, forward_components),
    }
