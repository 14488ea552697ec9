"""The adaptive sparsity scheduler of the second source document (docs/sweeps.md).

The scheduler keeps a position p on the schedule, an integer from 0 to warmup_steps. Its
progress is p / warmup_steps (1 when warmup_steps is 0), shaped by the schedule:

- linear: progress;
- cosine: (1 - cos(pi * progress)) / 2;
- step:   floor(progress * stages) / stages (`stages` equal plateaus, the last one the final value).

The sparsity target and the loss weight both move from their initial to their final value along
that shaped progress. Back-off: each `step(task_loss)` with task_loss > loss_threshold moves p
back by backoff_steps (not below 0), so the target and the weight fall back towards their easier
initial values; any other step moves p forward by one (not beyond warmup_steps).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

SCHEDULES = ("linear", "cosine", "step")


@dataclass(frozen=True)
class ScheduleState:
    step: int             # calls to step() so far
    position: int         # p, 0..warmup_steps
    progress: float       # shaped progress in [0, 1]
    sparsity_target: float
    loss_weight: float
    backed_off: bool      # whether the last step() moved p back

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def shaped_progress(fraction: float, schedule: str, stages: int = 4) -> float:
    """The schedule's value in [0, 1] at `fraction` (clamped to [0, 1]) of the warm-up."""
    fraction = min(max(fraction, 0.0), 1.0)
    if schedule == "linear":
        return fraction
    if schedule == "cosine":
        return (1 - math.cos(math.pi * fraction)) / 2
    if schedule == "step":
        return math.floor(fraction * stages) / stages
    raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")


class AdaptiveSparsityScheduler:
    def __init__(self, initial_sparsity: float = 0.2, final_sparsity: float = 0.5,
                 initial_weight: float = 0.001, final_weight: float = 0.01, warmup_steps: int = 1000,
                 schedule: str = "cosine", loss_threshold: float | None = None,
                 backoff_steps: int | None = None, stages: int = 4):
        for name, value in (("initial_sparsity", initial_sparsity), ("final_sparsity", final_sparsity)):
            if not 0 <= value < 1:
                raise ValueError(f"{name} must be in [0, 1), got {value}")
        for name, value in (("initial_weight", initial_weight), ("final_weight", final_weight)):
            if value < 0:
                raise ValueError(f"{name} must be non-negative, got {value}")
        if warmup_steps < 0:
            raise ValueError(f"warmup_steps must be non-negative, got {warmup_steps}")
        if stages < 1:
            raise ValueError(f"stages must be a positive integer, got {stages}")
        shaped_progress(0.0, schedule)  # rejects an unknown schedule now rather than at the first step
        self.initial_sparsity, self.final_sparsity = initial_sparsity, final_sparsity
        self.initial_weight, self.final_weight = initial_weight, final_weight
        self.warmup_steps, self.schedule, self.stages = warmup_steps, schedule, stages
        self.loss_threshold = loss_threshold
        self.backoff_steps = max(1, warmup_steps // 10) if backoff_steps is None else backoff_steps
        if self.backoff_steps < 0:
            raise ValueError(f"backoff_steps must be non-negative, got {backoff_steps}")
        self.reset()

    def reset(self) -> None:
        self._step, self._position, self._backed_off = 0, 0, False

    def progress(self) -> float:
        fraction = self._position / self.warmup_steps if self.warmup_steps else 1.0
        return shaped_progress(fraction, self.schedule, self.stages)

    def state(self) -> ScheduleState:
        p = self.progress()
        return ScheduleState(
            step=self._step,
            position=self._position,
            progress=p,
            sparsity_target=self.initial_sparsity + (self.final_sparsity - self.initial_sparsity) * p,
            loss_weight=self.initial_weight + (self.final_weight - self.initial_weight) * p,
            backed_off=self._backed_off,
        )

    def step(self, task_loss: float | None = None) -> ScheduleState:
        """Advance one training step (or back off, see the module docstring); the new state."""
        self._step += 1
        self._backed_off = (self.loss_threshold is not None and task_loss is not None
                            and float(task_loss) > self.loss_threshold)
        if self._backed_off:
            self._position = max(0, self._position - self.backoff_steps)
        else:
            self._position = min(self.warmup_steps, self._position + 1)
        return self.state()
