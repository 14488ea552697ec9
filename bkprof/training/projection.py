"""FLOPs over a sparsity schedule against training at a fixed sparsity, under both accountings.

Scopes, per variant, from the registry (each published figure is per sequence, forward, as the source wrote it):
- sparse: the G_ii path. Published: `sparse_g_ii.sparse_total` (importance + (1 - s)·BK-Core
  + interpolation); full count: the bk_core, importance_predictor, mask and interpolation components.
- combined: the whole layer. Published: the source's multi-scale formula, whose BK-Core term at
  N/f is already sparse, (N/f)·20·(1 − s) (the source publishes only a ratio for "combined");
  full count: every component.
Training FLOPs are the full count of a train-mode forward + backward of the whole layer (the source
has no training formula). All counts are for the whole batch; the scheduler runs without back-off
(no task loss is known ahead of training).
"""

from __future__ import annotations

from functools import lru_cache

from bkprof.training.schedule import AdaptiveSparsityScheduler
from bkprof.variants import registry
from bkprof.variants.config import LayerConfig

ACCOUNTINGS = {
    "published_forward": "the source's formula, forward (sparse: G_ii path; combined: its multi-scale formula)",
    "full_forward": "bkprof's full count, eval forward, same scope as the published figure",
    "full_train": "bkprof's full count, train-mode forward + backward, whole layer",
}


@lru_cache(maxsize=4096)
def step_flops(variant: str, config: LayerConfig, batch: int) -> dict[str, float | None]:
    """FLOPs of one step at `config` (its sparsity is the step's target), per accounting, over the scope
    of the variant's published figures (registry: `published.scope` and `published.scope_flops`)."""
    from bkprof.flops import analytic_components, analytic_flops, published_accounting

    spec = registry.get(variant)
    if not spec.sparsity_mask:
        raise ValueError(f"the sparsity schedule applies to {' and '.join(registry.schedule_names())}, not {variant!r}")
    published = spec.published
    full_forward = registry.covered(analytic_components(variant, config, batch=batch), registry.scope_of(variant))
    published_forward = (published.scope_flops(published_accounting(config)) * batch
                         if published and published.scope_flops else None)
    return {"published_forward": published_forward, "full_forward": full_forward,
            "full_train": analytic_flops(variant, config, batch=batch, backward=True)}


def project_schedule(scheduler: AdaptiveSparsityScheduler, steps: int, variants, config: LayerConfig,
                     batch: int, every: int) -> tuple[list[dict], list[dict]]:
    """(a row per variant every `every` steps, and at the first and last; totals per variant and accounting).

    Totals add up every step 1..steps of the schedule, against `steps` steps at its final sparsity.
    """
    scheduler.reset()
    fixed = config.with_(sparsity=scheduler.final_sparsity)
    totals = {(v, a): 0.0 for v in variants for a in ACCOUNTINGS}
    rows = []
    for _ in range(steps):
        state = scheduler.step()
        at = config.with_(sparsity=state.sparsity_target)
        shown = state.step % every == 0 or state.step in (1, steps)
        for variant in variants:
            flops = step_flops(variant, at, batch)
            for accounting, value in flops.items():
                # a variant without a published figure has no published total either
                totals[variant, accounting] = None if value is None or totals[variant, accounting] is None \
                    else totals[variant, accounting] + value
            if shown:
                rows.append({"step": state.step, "sparsity_target": state.sparsity_target,
                             "loss_weight": state.loss_weight, "variant": variant, **flops})
    summary = []
    for (variant, accounting), total in totals.items():
        per_step = step_flops(variant, fixed, batch)[accounting]
        at_fixed = None if per_step is None else steps * per_step
        summary.append({"variant": variant, "accounting": accounting, "schedule_total": total,
                        "fixed_total": at_fixed, "schedule_vs_fixed": None if total is None else total / at_fixed})
    return rows, summary
