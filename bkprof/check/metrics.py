"""Metric paths: `flops.variants.sparse.counted_flops`, `flops.claims.0.holds`,
`profile.rows[variant=combined,mode=forward].median_ms`.

The first part names the source document; each later part is a key of a JSON object, an index
into a JSON array, or a `[field=value,...]` selector that picks the one object of an array whose
fields have those values. Booleans count as 1 and 0, so `holds` flags can take a `min = 1`.
"""

from __future__ import annotations

import difflib
import json
import math
import re

SOURCES = ("flops", "profile")
_PART = re.compile(r"\[[^\]]*\]|[^.\[\]]+")


class MetricError(LookupError):
    """A path that does not lead to a number in the document; the message says where it stops."""


def number(value: float) -> str:
    """A metric value or bound in text: 12 significant digits, enough for whole FLOP counts and ratios."""
    return f"{value:.12g}"


def parts(metric: str) -> list[str]:
    """The parts of a path, selectors kept in their brackets: a.b[k=v].c -> [a, b, [k=v], c]."""
    found = [match.group(0) for match in _PART.finditer(metric)]
    if not found or joined(found) != metric:
        raise MetricError("is not a path of keys, indices and [field=value] selectors joined by dots")
    return found


def joined(found: list[str]) -> str:
    path = ""
    for part in found:
        path += part if part.startswith("[") or not path else f".{part}"
    return path


def metric_value(documents: dict, metric: str) -> float:
    """The number at `metric` in `documents` ({"flops": {...}, "profile": {...}})."""
    node = documents
    path = parts(metric)
    for step, part in enumerate(path):
        node = _step(node, part, joined(path[:step]) or "the documents")
    if isinstance(node, bool):
        return float(node)
    if not isinstance(node, (int, float)):
        raise MetricError(f"is {_kind(node)}, not a number")
    if not finite(node):
        raise MetricError(f"is {_kind(node)}, not a finite number")
    return float(node)


def ratio_value(documents: dict, metric: str, per: str) -> float:
    """metric / per, both read from `documents` (a ratio measured within one run)."""
    denominator = metric_value(documents, per)
    if denominator == 0:
        raise MetricError(f"per {per} is 0, so the ratio is undefined")
    numerator = metric_value(documents, metric)
    try:
        ratio = numerator / denominator
    except OverflowError:  # int / int past a float's range
        ratio = math.inf
    if not math.isfinite(ratio):
        raise MetricError(f"{number(numerator)} / {number(denominator)} (per {per}) is out of a float's range")
    return ratio


def finite(value: int | float) -> bool:
    """Whether `value` is a number a float holds finitely (an int too large for a float is not)."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _step(node, part: str, where: str):
    if part.startswith("["):
        return _select(node, part, where)
    if isinstance(node, dict):
        if part not in node:
            raise MetricError(f"no key {part!r} in {where} ({_suggest(part, list(map(str, node)))})")
        return node[part]
    if isinstance(node, list):
        if not part.isdigit() or int(part) >= len(node):
            raise MetricError(f"{part!r} is not an index of {where} (a list of {len(node)})")
        return node[int(part)]
    raise MetricError(f"{where} is {_kind(node)}, it has no {part!r}")


def _select(node, part: str, where: str):
    """The one object of the list `node` whose fields match `[field=value,...]`."""
    if not isinstance(node, list):
        raise MetricError(f"{where} is {_kind(node)}, not a list to select {part} from")
    wanted = dict(_condition(c, part) for c in part[1:-1].split(","))
    found = [item for item in node if isinstance(item, dict) and all(
        field in item and _text(item[field]) == value for field, value in wanted.items())]
    if len(found) != 1:
        raise MetricError(f"{len(found)} items of {where} match {part}, not 1")
    return found[0]


def _condition(condition: str, part: str) -> tuple[str, str]:
    field, equals, value = condition.partition("=")
    if not equals or not field.strip():
        raise MetricError(f"selector {part} needs field=value conditions separated by commas")
    return field.strip(), value.strip()


def _text(value) -> str:
    """How a selector writes a field's value: strings as they are, other values as JSON (true, 2, null)."""
    return value if isinstance(value, str) else json.dumps(value)


def _suggest(part: str, keys: list[str]) -> str:
    close = difflib.get_close_matches(part, keys, n=1)
    return f"did you mean {close[0]!r}?" if close else f"keys: {_shorten(', '.join(keys) or 'none')}"


def _kind(node) -> str:
    if isinstance(node, dict):
        return "an object"
    if isinstance(node, list):
        return "a list"
    return f"{node!r}"


def _shorten(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
