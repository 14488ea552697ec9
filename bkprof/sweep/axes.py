"""Sweep axes: which config fields can be swept, and how their command-line values are read.

A value list is comma-separated items; an item is one value or an inclusive range
`start:stop:step` (arithmetic; decimal arithmetic, so 0.4:0.7:0.1 gives exactly 0.4, 0.5, 0.6, 0.7)
or `start:stop:xR` (geometric, each value R times the last, R > 1). A range holds every value from
start up to stop that the step lands on, stop included when it lands there.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from bkprof.variants.config import INTERPOLATIONS, MAX_SIZE
from bkprof.variants.fields import FIELDS

# More values than this on one axis is a typo (a step of 0.0001, say), not a sweep.
MAX_VALUES = 10_000


@dataclass(frozen=True)
class Axis:
    name: str      # the LayerConfig field, or "batch"
    kind: type     # int, float or str
    choices: tuple[str, ...] = ()
    minimum: int | None = None  # for an axis LayerConfig does not check itself (batch)

    @property
    def option(self) -> str:
        """The command-line option that sets it (the same in every command)."""
        return FIELDS[self.name].option


AXES: dict[str, Axis] = {a.name: a for a in (
    Axis("n_seq", int),
    Axis("d_model", int),
    Axis("num_experts", int),
    Axis("top_k", int),
    Axis("sparsity", float),
    Axis("downsample", int),
    Axis("interp", str, INTERPOLATIONS),
    Axis("batch", int, minimum=1),
)}


def parse_axis(name: str, text: str) -> list:
    """The values `text` stands for on axis `name`, in order, without repeats; ValueError naming the bad item."""
    axis = AXES[name]
    values: list = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            raise ValueError(f"{axis.option} {text!r}: empty item")
        values += _parse_item(axis, item)
    unique = list(dict.fromkeys(values))
    low = next((v for v in unique if axis.minimum is not None and v < axis.minimum), None)
    if low is not None:
        raise ValueError(f"{axis.option} {text!r}: {low} is below {axis.minimum}")
    if len(unique) > MAX_VALUES:
        raise ValueError(f"{axis.option} {text!r} gives {len(unique)} values, more than {MAX_VALUES}")
    return unique


def _parse_item(axis: Axis, item: str) -> list:
    if axis.kind is str:
        if axis.choices and item not in axis.choices:
            raise ValueError(f"{axis.option} {item!r}: must be one of {', '.join(axis.choices)}")
        return [item]
    parts = item.split(":")
    if len(parts) == 1:
        return [_convert(axis, _number(axis, item, item))]
    if len(parts) != 3:
        raise ValueError(f"{axis.option} {item!r}: a range is start:stop:step or start:stop:xR")
    start, stop = _number(axis, parts[0], item), _number(axis, parts[1], item)
    if stop < start:
        raise ValueError(f"{axis.option} {item!r}: stop {parts[1]} is below start {parts[0]}")
    step = parts[2].strip()
    if step[:1] in ("x", "*"):
        values = _geometric(axis, item, start, stop, _number(axis, step[1:], item, as_int=False))
    else:
        values = _arithmetic(axis, item, start, stop, _number(axis, step, item))
    return [_convert(axis, v) for v in values]


def _arithmetic(axis: Axis, item: str, start: Decimal, stop: Decimal, step: Decimal) -> list[Decimal]:
    if step <= 0:
        raise ValueError(f"{axis.option} {item!r}: the step must be positive")
    if stop - start >= step * MAX_VALUES:  # checked before dividing: (stop - start) / 1e-99999999 overflows
        _check_count(axis, item, MAX_VALUES + 1)
    count = int((stop - start) / step) + 1
    _check_count(axis, item, count)
    return [start + i * step for i in range(count)]


def _geometric(axis: Axis, item: str, start: Decimal, stop: Decimal, ratio: Decimal) -> list[Decimal]:
    if ratio <= 1 or start <= 0:
        raise ValueError(f"{axis.option} {item!r}: a geometric range needs a ratio above 1 and a positive start")
    values = [start]
    while values[-1] * ratio <= stop:
        values.append(values[-1] * ratio)
        _check_count(axis, item, len(values))
    return values


def _check_count(axis: Axis, item: str, count: int) -> None:
    if count > MAX_VALUES:
        raise ValueError(f"{axis.option} {item!r} gives more than {MAX_VALUES} values")


def _number(axis: Axis, text: str, item: str, as_int: bool | None = None) -> Decimal:
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise ValueError(f"{axis.option} {item!r}: {text.strip()!r} is not a number") from None
    if not value.is_finite():
        raise ValueError(f"{axis.option} {item!r}: {text.strip()!r} is not a finite number")
    if value.copy_abs() > MAX_SIZE:  # copy_abs: no rounding, so no decimal.Overflow on 1e999999999
        raise ValueError(f"{axis.option} {item!r}: {text.strip()!r} is too large (at most {MAX_SIZE:,})")
    if (axis.kind is int if as_int is None else as_int) and value != value.to_integral_value():
        raise ValueError(f"{axis.option} {item!r}: {text.strip()!r} is not an integer")
    return value


def _convert(axis: Axis, value: Decimal):
    if axis.kind is int:
        if value != value.to_integral_value():
            raise ValueError(f"{axis.option}: the range reaches {value}, which is not an integer")
        return int(value)
    return float(value)
