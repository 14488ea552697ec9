"""The tables of `bkprof flops`, built from its JSON document (one data flow: document -> tables)."""

from __future__ import annotations

import pandas as pd

from bkprof.flops.claims import REASON_MIN_SHARE
from bkprof.flops.formulas import conventions
from bkprof.flops.published import published_layer_flops
from bkprof.report import Report, Table
from bkprof.variants import registry

RESULT_COLUMNS = ["variant", "component", "analytic_flops", "counted_flops", "share", "fvcore_macs"]
TOTAL = "(total)"


def _fmt_factor(value: float) -> str:
    return f"{value:.2f}×" if abs(value) >= 0.1 else f"{value:.3g}×"


def _fmt_metric(value: float, metric: str) -> str:
    return f"{value:.1%}" if metric == "fraction" else _fmt_factor(value)


def published_tables(doc: dict) -> list[Table]:
    p, c = doc["published"], doc["config"]
    s, m = p["sparse_g_ii"], p["multi_scale"]
    f = c["downsample"]
    sparse = pd.DataFrame([
        ("Standard BK-Core", "2·N·10", s["standard"]),
        ("Importance prediction", "N·d·2", s["importance"]),
        ("Sparse BK-Core compute", "(1 − s)·standard", s["sparse_compute"]),
        ("Interpolation", "N·d·2", s["interpolation"]),
        ("Sparse total", "importance + sparse compute + interpolation", s["sparse_total"]),
        ("Reduction factor", "standard / sparse compute", _fmt_factor(s["reduction"])),
    ], columns=["item", "published formula", "value"])
    multi = pd.DataFrame([
        ("Standard layer", "N·d²·E/E + 20·N", m["standard"]),
        ("Multi-scale", f"3·2·N·d + N/{f}·d² + N/{f}·20·(1 − s)", m["multi_scale"]),
        ("Reduction", "1 − multi-scale / standard", f"{m['reduction']:.1%}"),
    ], columns=["item", "published formula", "value"])
    combined = pd.DataFrame([
        ("Sparse G_ii", "standard / sparse compute", _fmt_factor(s["reduction"])),
        ("Multi-scale", "1 / (1 − reduction)", _fmt_factor(1 / (1 - m["reduction"]))),
        ("Combined", "product", _fmt_factor(p["combined"]["reduction"])),
    ], columns=["item", "published formula", "value"])
    unit = "FLOPs per sequence, as the source counts them"
    return [
        Table(f"Published: learned sparsity for G_ii (N={c['n_seq']}, d={c['d_model']}, s={c['sparsity']}; {unit})",
              sparse, {"value": "{:,.0f}"}),
        Table(f"Published: multi-scale processing (N={c['n_seq']} → N/{f}; {unit})", multi, {"value": "{:,.0f}"}),
        Table("Published: combined", combined),
    ]


def totals_table(doc: dict) -> Table:
    variants = doc["variants"]
    dense = variants.get(registry.REFERENCE, {}).get("analytic_flops")
    rows = []
    for name, v in variants.items():
        rows.append({
            "variant": name,
            "published": published_layer_flops(name, doc["published"]),
            "analytic": v["analytic_flops"],
            "op counter": v["counted_flops"],
            "fvcore MACs": v["fvcore_macs"],
            "fvcore skipped ops": sum(v["fvcore_unsupported"].values()) if v["fvcore_macs"] is not None else None,
            "no formula": sum(v["ops_without_formula"].values()) if v["counted_flops"] is not None else None,
            "vs dense": dense / v["analytic_flops"] if dense else None,
        })
    conv = doc["conventions"]
    return Table("Totals per variant (FLOPs; fvcore in MACs)", pd.DataFrame(rows),
                 {"published": "{:,.0f}", "vs dense": "{:.2f}×"},
                 caption=f"{conv['pass']}; {conv['per']}. FLOPs: 2 per MAC. fvcore: {conv['fvcore']}. "
                         "published: the source's layer formula (dense = its 'standard'). "
                         "vs dense: dense / variant, analytic; > 1× means fewer FLOPs than dense."
                         + _not_run_notes(variants))


def _not_run_notes(variants: dict) -> str:
    """One sentence per account that did not run (a config too large for it), naming why."""
    notes = {f"op counter {v['counter_note']}" for v in variants.values() if v.get("counter_note")}
    notes |= {f"fvcore {v['fvcore_note']}" for v in variants.values() if v.get("fvcore_note")}
    return "".join(f" {note}." for note in sorted(notes))


def breakdown_table(doc: dict) -> Table:
    frame = results_frame(doc)
    frame = frame[frame["component"] != TOTAL]
    return Table("Breakdown per component (analytic = op counter)", frame.drop(columns=["fvcore_macs"]),
                 {"share": "{:.1%}"})


def _shares(reasons: list[dict], shown: int) -> str:
    """The first `shown` components with their shares, then how many more and their share together."""
    shown = len(reasons) if len(reasons) <= shown + 1 else shown  # "+1 more" takes the space of the one
    parts = [f"{r['component']}\u00a0{r['share']:.0%}" for r in reasons[:shown]]  # no-break: name and share
    if len(reasons) > shown:
        parts.append(f"+{len(reasons) - shown}\u00a0more,\u00a0{sum(r['share'] for r in reasons[shown:]):.1%}")
    return "; ".join(parts)


def claims_table(doc: dict) -> Table:
    rows = []
    for claim in doc["claims"]:
        reasons = _shares(claim["reasons"], shown=4)
        rows.append({
            "claim": claim["claim"],
            "published": claim["published"],
            "its formula here": _fmt_metric(claim["published_formula"], claim["metric"]),
            "full count": _fmt_metric(claim["full_count"], claim["metric"]),
            "holds": "yes" if claim["holds"] else "NO",
            "explained by (share of counted FLOPs)": reasons,
        })
    return Table("Claims: published figure, its own formula, and the full count", pd.DataFrame(rows),
                 caption="Full count = analytic (equal to the op counter) forward FLOPs at this config. "
                         f"Components under {REASON_MIN_SHARE:.0%} of it are not listed. "
                         "`--format json` gives each component's reason.")


def results_frame(doc: dict) -> pd.DataFrame:
    """One row per (variant, component) plus a total row per variant: the CSV schema."""
    rows = []
    for name, v in doc["variants"].items():
        total = v["analytic_flops"]
        for component, flops in v["components"].items():
            if component == "backward" and "backward_components" in v:
                continue  # split by component below
            rows.append((name, component, flops, v["counted_components"][component], flops / total, None))
        for component, flops in v.get("backward_components", {}).items():
            rows.append((name, f"{component} (backward)", flops, v["counted_backward_components"][component],
                         flops / total, None))
        rows.append((name, TOTAL, total, v["counted_flops"], 1.0, v["fvcore_macs"]))
    return pd.DataFrame(rows, columns=RESULT_COLUMNS)


def conventions_table() -> Table:
    return Table("Counting conventions (the op counter's registry)", pd.DataFrame(conventions()),
                 caption="Ops outside this registry fall back to PyTorch's flop registry (custom kernels), "
                         "else they are listed as ops without a formula.")


def flops_tables(doc: dict, breakdown: bool = False) -> Report:
    """The tables of `bkprof flops` for a `flops_report` document, as a Report any renderer takes.

    >>> from bkprof import LayerConfig, flops_report, flops_tables
    >>> from bkprof.report import render
    >>> report = flops_tables(flops_report(LayerConfig(d_model=16, n_seq=32), ["dense"]))
    >>> [table.title.split(" (")[0] for table in report.tables][-2:]
    ['Totals per variant', 'Claims: published figure, its own formula, and the full count']
    >>> render(report, "csv").splitlines()[0]
    'variant,component,analytic_flops,counted_flops,share,fvcore_macs'
    """
    tables = [*published_tables(doc), totals_table(doc)]
    if breakdown:
        tables.append(breakdown_table(doc))
    tables.append(claims_table(doc))
    return Report(payload=doc, tables=tables, results=Table("results", results_frame(doc)))
