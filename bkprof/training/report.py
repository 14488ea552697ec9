"""The `bkprof schedule` report: the schedule's steps, training FLOPs totals, and the loss's measured overhead."""

from __future__ import annotations

from bkprof.report import Report, Table
from bkprof.training.overhead import loss_overhead
from bkprof.training.projection import ACCOUNTINGS, project_schedule
from bkprof.training.schedule import AdaptiveSparsityScheduler
from bkprof.variants.config import LayerConfig, config_header

PUBLISHED_OVERHEAD = 0.01  # "Total overhead: <1% of forward pass time"


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
