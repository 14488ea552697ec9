"""FLOPs of the four variants: the published formulas, a closed-form count, an op counter and fvcore."""

from bkprof.flops.analytic import analytic_components, analytic_flops
from bkprof.flops.published import published_accounting


def flops_report(*args, **kwargs):
    """The JSON document of `bkprof flops` (see `bkprof.flops.report.flops_report`)."""
    from bkprof.flops.report import flops_report as build_report

    return build_report(*args, **kwargs)


__all__ = ["analytic_components", "analytic_flops", "flops_report", "published_accounting"]
