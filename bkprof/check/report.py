"""The verdict as a bkprof Report: one row per metric, and a JSON document for machines."""

from __future__ import annotations

from pathlib import Path

from bkprof.check.compare import FAIL, PASS, SKIP, Outcome
from bkprof.check.config import shown

COLUMNS = ["metric", "threshold", "baseline", "current", "delta", "rel delta", "status"]
# 12 significant digits: whole FLOP counts in full, ratios to the precision their thresholds use
FORMATS = {"baseline": "{:,.12g}", "current": "{:,.12g}", "delta": "{:+,.12g}", "rel delta": "{:+.3%}"}


def check_report(outcomes: list[Outcome], origin: str, baseline: Path | None, profile: str | None):
    from bkprof.report import Report, Table

    counts = {status: sum(o.status == status for o in outcomes) for status in (PASS, FAIL, SKIP)}
    payload = {
        "passed": counts[FAIL] == 0,
        "counts": counts,
        "thresholds": origin,
        "baseline": str(shown(baseline)) if baseline else None,
        "profile": profile,
        "results": [o.as_dict() for o in outcomes],
    }
    table = Table("bkprof check", _frame(outcomes), FORMATS, _caption(outcomes, counts, origin, baseline))
    return Report(payload=payload, tables=[table], results=table)


def _frame(outcomes: list[Outcome]):
    import pandas as pd

    rows = [[o.metric, o.threshold, o.baseline, o.current, o.delta, o.rel_delta, o.status.upper()] for o in outcomes]
    frame = pd.DataFrame(rows, columns=COLUMNS)
    for column in FORMATS:
        frame[column] = frame[column].astype("float64")
    return frame


def _caption(outcomes: list[Outcome], counts: dict, origin: str, baseline: Path | None) -> str:
    """The verdict, the reason for each failure or skip (too long for a column), and the sources."""
    lines = [f"{counts[PASS]} pass, {counts[FAIL]} fail, {counts[SKIP]} skipped."]
    lines += [f"{o.status.upper()} {o.metric}: {o.reason}" for o in outcomes if o.status != PASS]
    lines.append(f"Thresholds: {origin}." + (f" Baseline: {shown(baseline)}." if baseline else ""))
    lines.append("Values are in the units of their reports (`bkprof flops` states its FLOPs conventions).")
    return "\n".join(lines)
