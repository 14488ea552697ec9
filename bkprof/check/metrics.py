"""Metric paths: `flops.variants.sparse.counted_flops`, `flops.claims.0.holds`, `profile.<...>`.

The first part names the source document; each later part is a key of a JSON object or an index
into a JSON array. Booleans count as 1 and 0, so `holds` flags can take a `min = 1` threshold.
"""

from __future__ import annotations

import math

SOURCES = ("flops", "profile")


class MetricError(LookupError):
    """A path that does not lead to a number in the document; the message says where it stops."""


def number(value: float) -> str:
    """A metric value or bound in text: 12 significant digits, enough for whole FLOP counts and ratios."""
    return f"{value:.12g}"


def metric_value(documents: dict, metric: str) -> float:
    """The number at `metric` in `documents` ({"flops": {...}, "profile": {...}})."""
    node = documents
    walked = []
    for part in metric.split("."):
        node = _step(node, part, ".".join(walked) or "the documents")
        walked.append(part)
    if isinstance(node, bool):
        return float(node)
    if not isinstance(node, (int, float)) or (isinstance(node, float) and math.isnan(node)):
        raise MetricError(f"is {_kind(node)}, not a number")
    return float(node)


def _step(node, part: str, where: str):
    if isinstance(node, dict):
        if part not in node:
            keys = ", ".join(map(str, node)) or "none"
            raise MetricError(f"no key {part!r} in {where} (keys: {_shorten(keys)})")
        return node[part]
    if isinstance(node, list):
        if not part.isdigit() or int(part) >= len(node):
            raise MetricError(f"{part!r} is not an index of {where} (a list of {len(node)})")
        return node[int(part)]
    raise MetricError(f"{where} is {_kind(node)}, it has no {part!r}")


def _kind(node) -> str:
    if isinstance(node, dict):
        return "an object"
    if isinstance(node, list):
        return "a list"
    return f"{node!r}"


def _shorten(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
