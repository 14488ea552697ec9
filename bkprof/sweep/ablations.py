"""One table per ablated axis: that axis varied, every other axis held at its reference value.

Ratios are × fewer forward FLOPs than the dense layer, in the scopes of `bkprof.sweep.published`
(sparse: the BK-Core and what sparsity adds around it, as the published 2.50× counts; the others:
the whole layer).
"""

from __future__ import annotations

from bkprof.report import Table
from bkprof.sweep.axes import AXES
from bkprof.sweep.run import SweepPlan, point_config
from bkprof.variants.registry import REFERENCE

ABLATION_COLUMNS = ("published_flops", "analytic_flops", "g_ii_error", "median_ms")


def ablation_rows(rows: list[dict], plan: SweepPlan, reference: dict, axis: str) -> list[dict]:
    """The rows where only `axis` moves away from `reference`, with the published and full-count ratios."""
    from bkprof.flops import published_accounting
    from bkprof.sweep.published import full_reduction, published_reduction

    out = []
    for row in rows:
        if any(row[name] != value for name, value in reference.items() if name != axis):
            continue
        entry = {axis: row[axis], "variant": row["variant"],
                 **{c: row.get(c) for c in ABLATION_COLUMNS if any(r.get(c) is not None for r in rows)}}
        if not row["error"] and row["variant"] != REFERENCE:
            config = point_config({name: row[name] for name in AXES}, plan.config_extra)
            entry["published_x"] = published_reduction(row["variant"], published_accounting(config))
            entry["full_count_x"] = full_reduction(row["variant"], config)
        if any(r["error"] for r in rows):
            entry["error"] = row["error"]
        out.append(entry)
    return out


def ablation_tables(rows: list[dict], scaling: list[dict], plan: SweepPlan, reference: dict) -> list[Table]:
    """A table per ablated axis, then the scaling exponents at the reference point."""
    import pandas as pd

    tables = []
    for axis, values in plan.axes.items():
        if len(values) < 2:
            continue
        frame = pd.DataFrame(ablation_rows(rows, plan, reference, axis))
        formats = {"published_flops": "{:,.0f}", "analytic_flops": "{:,.0f}", "g_ii_error": "{:.4f}",
                   "median_ms": "{:.3f}", "published_x": "{:.3f}", "full_count_x": "{:.4f}", axis: "{}"}
        held = ", ".join(f"{k}={v}" for k, v in reference.items() if k != axis)
        tables.append(Table(f"Ablation: {axis} ({held})", frame, formats,
                            "published_x / full_count_x: × fewer forward FLOPs than dense, published accounting / "
                            "bkprof's full count (sparse: BK-Core scope, as the published 2.50×; others: the layer)."))
    at_reference = [f for f in scaling if all(f[k] == reference[k] for k in f if k in reference and k != "n_seq")]
    if at_reference:
        frame = pd.DataFrame(at_reference)
        tables.append(Table("Scaling with N at the reference point (log-log slope: metric ~ N^k)", frame,
                            {c: "{:.3f}" for c in frame.columns if c.startswith("k_")},
                            "Every combination's exponents are in scaling.csv and the JSON."))
    return tables
