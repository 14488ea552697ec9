"""Sparsity training: the losses and the adaptive scheduler of the second source document (docs/sweeps.md)."""

from bkprof.training.losses import (DEFAULT_DELTA, LOSS_KINDS, balanced_loss, current_sparsity, sparsity_loss,
                                    stats_sparsity, stats_sparsity_loss)
from bkprof.training.schedule import SCHEDULES, AdaptiveSparsityScheduler, ScheduleState, shaped_progress

__all__ = ["DEFAULT_DELTA", "LOSS_KINDS", "SCHEDULES", "AdaptiveSparsityScheduler", "ScheduleState",
           "balanced_loss", "current_sparsity", "shaped_progress", "sparsity_loss", "stats_sparsity",
           "stats_sparsity_loss"]
