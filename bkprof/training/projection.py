"""FLOPs over a sparsity schedule against training at a fixed sparsity, under both accountings.

Scopes, per variant (each published figure is per sequence, forward, as the source wrote it):
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
from bkprof.variants.config import LayerConfig

SCHEDULE_VARIANTS = ("sparse", "combined")
ACCOUNTINGS = {
    "published_forward": "the source's formula, forward (sparse: G_ii path; combined: its multi-scale formula)",
    "full_forward": "bkprof's full count, eval forward, same scope as the published figure",
    "full_train": "bkprof's full count, train-mode forward + backward, whole layer",
}


@lru_cache(maxsize=4096)
def step_flops(variant: str, config: LayerConfig, batch: int) -> dict[str, float]:
    """FLOPs of one step at `config` (its sparsity is the step's target), per accounting."""
    from bkprof.flops import analytic_components, analytic_flops, published_accounting
    from bkprof.flops.claims import BK_CORE_PATH

    published = published_accounting(config)
    if variant == "sparse":
        scope = analytic_components(variant, config, batch=batch)
        full_forward = sum(scope.get(c, 0) for c in BK_CORE_PATH)
        published_forward = published["sparse_g_ii"]["sparse_total"]
    elif variant == "combined":
        full_forward = analytic_flops(variant, config, batch=batch)
        published_forward = published["multi_scale"]["multi_scale"]
    else:
        raise ValueError(f"the sparsity schedule applies to {' and '.join(SCHEDULE_VARIANTS)}, not {variant!r}")
    return {"published_forward": published_forward * batch, "full_forward": full_forward,
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
                totals[variant, accounting] += value
            if shown:
                rows.append({"step": state.step, "sparsity_target": state.sparsity_target,
                             "loss_weight": state.loss_weight, "variant": variant, **flops})
    summary = []
    for (variant, accounting), total in totals.items():
        at_fixed = steps * step_flops(variant, fixed, batch)[accounting]
        summary.append({"variant": variant, "accounting": accounting, "schedule_total": total,
                        "fixed_total": at_fixed, "schedule_vs_fixed": total / at_fixed})
    return rows, summary
