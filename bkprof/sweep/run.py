"""Running a sweep: the cartesian product of the axes, every variant at every point.

What is measured at a point is a list of measures, each `measure(variant, config, batch) -> {column: value}`.
A point whose config is invalid, or where a measure raises, becomes a row with its `error` and the
sweep goes on.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Callable

from bkprof.sweep.axes import AXES
from bkprof.variants.config import LayerConfig

Measure = Callable[[str, LayerConfig, int], dict]

DEFAULTS = {**{name: getattr(LayerConfig(), name) for name in AXES if name != "batch"}, "batch": 1}


@dataclass
class SweepPlan:
    """`axes`: swept axis -> values (in order); `fixed`: the other axis values; `variants` at every point."""

    axes: dict[str, list]
    variants: list[str]
    fixed: dict = field(default_factory=dict)
    config_extra: dict = field(default_factory=dict)  # LayerConfig fields that are not axes (backend, ...)

    def points(self) -> list[dict]:
        """Every point as a full dict of axis values, the last axis varying fastest."""
        base = {**DEFAULTS, **self.fixed}
        names = list(self.axes)
        return [{**base, **dict(zip(names, values))} for values in itertools.product(*self.axes.values())]

    def reference(self) -> dict:
        """The point plots and ablation tables hold fixed: on each swept axis its default value, else its first."""
        point = self.points()[0]
        for name, values in self.axes.items():
            point[name] = DEFAULTS[name] if DEFAULTS[name] in values else values[0]
        return point

    @property
    def size(self) -> int:
        return len(self.points()) * len(self.variants)


def point_config(point: dict, extra: dict) -> LayerConfig:
    return LayerConfig(**{k: v for k, v in point.items() if k != "batch"}, **extra)


def run_sweep(plan: SweepPlan, measures: list[Measure],
              on_row: Callable[[dict], None] | None = None) -> list[dict]:
    """One row per point and variant: the axis values, the measures' columns, and `error` (None when it ran)."""
    rows = []
    for row, config in planned_rows(plan):
        if config is not None:
            row.update(measured(row["variant"], config, row["batch"], measures))
        rows.append(row)
        if on_row is not None:
            on_row(row)
    return rows


def planned_rows(plan: SweepPlan) -> list[tuple[dict, LayerConfig | None]]:
    """(row, its config) of every point and variant in the plan's order; an invalid point's row has its
    `error` and no config."""
    planned = []
    for point in plan.points():
        try:
            config, problem = point_config(point, plan.config_extra), None
        except ValueError as error:
            config, problem = None, f"invalid config: {error}"
        planned += [({"variant": variant, **point, "error": problem}, config) for variant in plan.variants]
    return planned


def measured(variant: str, config: LayerConfig, batch: int, measures: list[Measure]) -> dict:
    columns: dict = {}
    try:
        for measure in measures:
            columns.update(measure(variant, config, batch))
    except Exception as error:  # a failing point is a row, not the end of the sweep
        columns["error"] = f"{type(error).__name__}: {error}"
    return columns
