"""The `bkprof schedule` report: the schedule's steps, training FLOPs totals, and the loss's measured overhead."""

from __future__ import annotations

from dataclasses import dataclass

from bkprof.report import Report, Table
from bkprof.training.losses import DEFAULT_DELTA, LOSS_KINDS
from bkprof.training.overhead import loss_overhead
from bkprof.training.projection import ACCOUNTINGS, project_schedule
from bkprof.training.schedule import AdaptiveSparsityScheduler
from bkprof.variants import registry
from bkprof.variants.config import LayerConfig, config_header

PUBLISHED_OVERHEAD = 0.01  # "Total overhead: <1% of forward pass time"


@dataclass(frozen=True)
class ScheduleSettings:
    """What `bkprof schedule` projects and times besides the scheduler itself: the variants (those with
    an importance mask), training steps, a table row every `every` steps (None: steps/10), sequences per
    batch, the sparsity losses timed with the Huber `delta`, timed runs (0: no timing) and the device."""

    variants: tuple[str, ...]
    steps: int = 2000
    every: int | None = None
    batch: int = 8
    kinds: tuple[str, ...] = LOSS_KINDS
    delta: float = DEFAULT_DELTA
    runs: int = 30
    device: str = "cpu"

    def __post_init__(self) -> None:
        applies = registry.schedule_names()
        if not self.variants or set(self.variants) - set(applies):
            raise ValueError(f"--variant: the sparsity schedule applies to {' and '.join(applies)}, "
                             f"got {', '.join(self.variants) or 'none'}")
        for option, value in (("--steps", self.steps), ("--every", self.every), ("--batch", self.batch)):
            if value is not None and (isinstance(value, bool) or value < 1):
                raise ValueError(f"{option} must be a positive integer, got {value}")
        if not self.delta > 0:  # the Huber loss divides by it; checked here, not after the projection
            raise ValueError(f"--delta must be positive, got {self.delta}")
        if isinstance(self.runs, bool) or self.runs < 0:
            raise ValueError(f"--runs must be a non-negative integer, got {self.runs}")
        from bkprof.sizes import MAX_RUNS, MAX_STEPS

        for option, value, limit in (("--steps", self.steps, MAX_STEPS), ("--runs", self.runs, MAX_RUNS)):
            if value > limit:
                raise ValueError(f"{option} must be at most {limit:,}, got {value:,}")
        for kind in self.kinds:
            if kind not in LOSS_KINDS:
                raise ValueError(f"--loss {kind!r}: must be one of {', '.join(LOSS_KINDS)}")

    @property
    def row_every(self) -> int:
        return self.every if self.every is not None else max(1, self.steps // 10)

    def report(self, scheduler: AdaptiveSparsityScheduler, config: LayerConfig) -> Report:
        return schedule_report(scheduler, self.steps, list(self.variants), config, batch=self.batch,
                               every=self.row_every, kinds=list(self.kinds), delta=self.delta, runs=self.runs,
                               device=self.device)


def schedule_report(scheduler: AdaptiveSparsityScheduler, steps: int, variants: list[str], config: LayerConfig, *,
                    batch: int, every: int, kinds: list[str], delta: float, runs: int, device: str) -> Report:
    import pandas as pd

    rows, totals = project_schedule(scheduler, steps, variants, config, batch, every)
    overhead = [loss_overhead(v, config.with_(sparsity=scheduler.final_sparsity), batch=batch, kind=k,
                              device=device, runs=runs, delta=delta)
                for v in variants for k in kinds] if runs else []
    for row in overhead:
        row["under_1_percent"] = row["overhead"] < PUBLISHED_OVERHEAD
    steps_frame = pd.DataFrame(rows)
    totals_frame = pd.DataFrame(totals)
    tables = [
        Table(f"Sparsity schedule ({scheduler.schedule}, warm-up {scheduler.warmup_steps} of {steps} steps, batch {batch})",
              _in_units(steps_frame, list(ACCOUNTINGS), "MFLOP", 1e6),
              {"step": "{}", "sparsity_target": "{:.4f}", "loss_weight": "{:.5f}"},
              "MFLOP per step, whole batch (2 FLOPs per MAC). "
              + "; ".join(f"{k}: {v}" for k, v in ACCOUNTINGS.items()) + "."),
        Table(f"Training FLOPs over {steps} steps: the schedule against a fixed sparsity of {scheduler.final_sparsity}",
              _in_units(totals_frame, ["schedule_total", "fixed_total"], "GFLOP", 1e9), {"schedule_vs_fixed": "{:.4f}"},
              "The full count does not move with sparsity: exact G_ii at any subset needs both BK-Core sweeps over "
              "every position, so the layer computes them all and the mask only selects."),
    ]
    if overhead:
        tables.append(Table(f"Sparsity loss cost against a train-mode forward (median of {runs} runs, {device})",
                            pd.DataFrame(overhead).drop(columns=["runs", "clock"]),
                            {"forward_ms": "{:.3f}", "loss_ms": "{:.4f}", "overhead": "{:.3%}"},
                            f"loss = balanced_loss (sparsity loss + weighted sum with the task loss), forward only, "
                            f"batch {batch}; clock: {overhead[0]['clock']}. The source claims under 1 % of a forward pass."))
    payload = {
        "config": config_header(config, batch=batch),
        "batch": batch,
        "scheduler": {"initial_sparsity": scheduler.initial_sparsity, "final_sparsity": scheduler.final_sparsity,
                      "initial_weight": scheduler.initial_weight, "final_weight": scheduler.final_weight,
                      "warmup_steps": scheduler.warmup_steps, "schedule": scheduler.schedule,
                      "stages": scheduler.stages, "steps": steps, "backoff": "none (no task loss ahead of training)"},
        "accountings": ACCOUNTINGS,
        "steps": rows,
        "totals": totals,
        "loss_overhead": overhead,
        "published_overhead_claim": PUBLISHED_OVERHEAD,
    }
    return Report(payload, tables, Table("steps", steps_frame))


def _in_units(frame, columns: list[str], unit: str, scale: float):
    """`frame` with `columns` divided by `scale` and renamed "<column> (<unit>)", for the screen."""
    shown = frame.copy()
    for column in columns:
        shown[column] = shown[column] / scale
    return shown.rename(columns={c: f"{c} ({unit})" for c in columns})
