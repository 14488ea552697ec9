"""FLOPs of the variants (the published formulas, a closed-form count, the op counter and fvcore),
and of any nn.Module (`count_flops`, the op counter of `model_count`).

The names below load their modules (and torch) on first use.
"""

from __future__ import annotations

import importlib

_SOURCES = {
    "analytic_components": "bkprof.flops.analytic",
    "analytic_flops": "bkprof.flops.analytic",
    "count_flops": "bkprof.flops.model_count",
    "flops_report": "bkprof.flops.report",
    "flops_tables": "bkprof.flops.tables",
    "published_accounting": "bkprof.flops.published",
}

__all__ = list(_SOURCES)


def __getattr__(name: str):
    if name not in _SOURCES:
        raise AttributeError(f"module 'bkprof.flops' has no attribute {name!r}")
    value = getattr(importlib.import_module(_SOURCES[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_SOURCES))
