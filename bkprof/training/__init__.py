"""Sparsity training: the losses and the adaptive scheduler of the second source document (docs/sweeps.md).

Names load their modules (and torch) on first use: the command line reads the choice tuples without torch."""

from bkprof._lazy import lazy_exports

_SOURCES = {
    **{name: "bkprof.training.losses" for name in ("DEFAULT_DELTA", "balanced_loss", "current_sparsity", "expert_load",
                                                   "load_balancing_loss", "sparsity_loss", "stats_sparsity",
                                                   "stats_sparsity_loss")},
    "LOSS_KINDS": "bkprof.training.kinds",
    **{name: "bkprof.training.schedule" for name in ("SCHEDULES", "AdaptiveSparsityScheduler", "ScheduleState",
                                                     "shaped_progress")},
}
__all__ = sorted(_SOURCES)
__getattr__, __dir__ = lazy_exports(__name__, globals(), _SOURCES)
