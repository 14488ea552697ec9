"""Scaling exponents: the slope of log(metric) against log(N), fitted by least squares."""

from __future__ import annotations

import math
from typing import Iterable, Sequence


def power_law_exponent(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """k in y ~ c * x^k, the least-squares slope on log-log axes.

    None when it is not defined: fewer than two distinct x, or a non-positive or missing value.
    """
    pairs = [(x, y) for x, y in zip(xs, ys) if x is not None and y is not None]
    if len(pairs) != len(xs) or any(x <= 0 or y <= 0 or math.isnan(y) for x, y in pairs):
        return None
    lx = [math.log(x) for x, _ in pairs]
    ly = [math.log(y) for _, y in pairs]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    spread = sum((a - mx) ** 2 for a in lx)
    if spread == 0:
        return None
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / spread


def scaling_rows(rows: Iterable[dict], metrics: Sequence[str], group_by: Sequence[str],
                 x: str = "n_seq") -> list[dict]:
    """One row per variant and combination of the `group_by` values: the exponent of each metric versus `x`.

    Rows with an error are left out; a group needs two distinct x values for an exponent.
    """
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        if row.get("error"):
            continue
        key = (row["variant"], *(row[name] for name in group_by))
        groups.setdefault(key, []).append(row)
    out = []
    for key, members in groups.items():
        members.sort(key=lambda r: r[x])
        fitted = {"variant": key[0], **dict(zip(group_by, key[1:])),
                  "points": len(members), f"{x}_range": f"{members[0][x]}..{members[-1][x]}"}
        for metric in metrics:
            fitted[f"k_{metric}"] = power_law_exponent([r[x] for r in members],
                                                       [r.get(metric) for r in members])
        out.append(fitted)
    return out
