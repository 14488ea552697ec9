"""FLOPs of the variants (the published formulas, a closed-form count, the op counter and fvcore),
and of any nn.Module (`count_flops`, the op counter of `model_count`).

The names below load their modules (and torch) on first use.
"""

from __future__ import annotations

from bkprof._lazy import lazy_exports

_SOURCES = {
    "analytic_components": "bkprof.flops.analytic",
    "analytic_flops": "bkprof.flops.analytic",
    "count_flops": "bkprof.flops.model_count",
    "flops_report": "bkprof.flops.report",
    "flops_tables": "bkprof.flops.tables",
    "published_accounting": "bkprof.flops.published",
}

__all__ = list(_SOURCES)
__getattr__, __dir__ = lazy_exports(__name__, globals(), _SOURCES)
