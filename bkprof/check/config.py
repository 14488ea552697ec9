"""Thresholds from TOML: `[tool.bkprof.thresholds]` of a pyproject.toml, or a standalone file.

The shape (docs/ci.md):

    [tool.bkprof.thresholds]
    baseline = "ci/baseline.json"             # for `rel`; relative to the file that names it
    [tool.bkprof.thresholds.flops]            # what the current flops document is computed for
    batch = 1
    backward = false
    variants = ["dense", "sparse"]            # default: all four
    n_seq = 256                               # any LayerConfig field; the rest keep their defaults
    [tool.bkprof.thresholds.metrics]
    "flops.published.combined.reduction" = { min = 4.5 }
    "flops.variants.sparse.counted_flops" = { rel = 0.0 }

A standalone file (`--thresholds PATH`) holds the same keys, either under `[tool.bkprof.thresholds]`
or at its top level. Every problem is a ThresholdError: one line naming the file or the entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from bkprof.check.errors import ThresholdError, read_text
from bkprof.check.metrics import SOURCES, MetricError, finite, number, parts

BOUNDS = ("min", "max", "rel")
RATIO = "per"  # `per = "PATH"`: the bounds hold metric / PATH, both read from the same run's document
TABLE_KEYS = ("baseline", "flops", "metrics")
FLOPS_KEYS = ("batch", "backward", "variants")


@dataclass(frozen=True)
class Entry:
    """One metric and its bounds: min <= current <= max, |current - baseline| <= rel * |baseline|.

    With `per`, current (and baseline) are the metric divided by the `per` metric of the same
    document, so a ratio measured within one run (a variant's time over dense's) is what is held.
    """

    metric: str
    min: float | None = None
    max: float | None = None
    rel: float | None = None
    per: str | None = None

    @property
    def source(self) -> str:
        return parts(self.metric)[0]

    def describe(self) -> str:
        bounds = []
        if self.min is not None:
            bounds.append(f">= {number(self.min)}")
        if self.max is not None:
            bounds.append(f"<= {number(self.max)}")
        if self.rel is not None:
            bounds.append(f"rel <= {number(self.rel)}")
        return ", ".join(bounds)

    @property
    def key(self) -> str:
        """What the entry holds, as reports name it: the metric, or `metric ÷ per` for a ratio."""
        return f"{self.metric} ÷ {self.per}" if self.per else self.metric


@dataclass(frozen=True)
class FlopsSource:
    """The arguments of `flops_report` for the current document: LayerConfig fields, batch, etc."""

    config: object = None  # a LayerConfig; None means the defaults
    batch: int = 1
    backward: bool = False
    variants: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Thresholds:
    origin: str
    entries: tuple[Entry, ...]
    flops: FlopsSource = FlopsSource()
    baseline: Path | None = None


def find_thresholds(start: str | Path = ".") -> Path:
    """The nearest pyproject.toml from `start` upward (the one the thresholds are read from)."""
    start = Path(start).resolve()
    for folder in (start, *start.parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            return candidate
    raise ThresholdError(f"no pyproject.toml in {start} or above it; pass --thresholds PATH")


def load_thresholds(path: str | Path) -> Thresholds:
    path = Path(path)
    document = _read_toml(path)
    table = document.get("tool", {}).get("bkprof", {}).get("thresholds")
    origin = f"the tool.bkprof.thresholds table of {shown(path)}"
    if table is None:
        if path.name == "pyproject.toml":
            raise ThresholdError(f"{shown(path)} has no [tool.bkprof.thresholds] table; add one or pass --thresholds PATH")
        table, origin = document, f"thresholds file {shown(path)}"
    return _thresholds(table, origin, path.parent)


def shown(path: Path) -> Path:
    """`path` as a person reads it: relative to the working folder when it lies under it."""
    try:
        return path.resolve().relative_to(Path.cwd())
    except ValueError:
        return path


def _read_toml(path: Path) -> dict:
    text = read_text(path, f"thresholds file {path}")
    try:
        return tomllib.loads(text)
    except (ValueError, RecursionError) as error:  # TOMLDecodeError, and a 5000-digit integer's ValueError
        raise ThresholdError(f"thresholds file {path} is not valid TOML: {str(error).splitlines()[0]}") from None


def _thresholds(table: dict, origin: str, folder: Path) -> Thresholds:
    _only_known(table, TABLE_KEYS, origin)
    metrics = table.get("metrics")
    if not isinstance(metrics, dict) or not metrics:
        raise ThresholdError(f"{origin}: no metrics; add a [metrics] table of entries like \"flops.x.y\" = {{ max = 1 }}")
    baseline = table.get("baseline")
    if baseline is not None and (not isinstance(baseline, str) or not baseline):
        raise ThresholdError(f"{origin}: baseline must be a path string, got {baseline!r}")
    return Thresholds(
        origin=origin,
        entries=tuple(_entry(metric, bounds) for metric, bounds in _flatten(metrics)),
        flops=_flops_source(table.get("flops", {}), origin),
        baseline=folder / baseline if baseline else None,
    )


def _only_known(table: dict, known: tuple[str, ...], where: str) -> None:
    for key in table:
        if key not in known:
            raise ThresholdError(f"{where}: unknown key {key!r} (known: {', '.join(known)})")


def _flatten(table: dict, prefix: tuple[str, ...] = ()):
    """(metric, bounds) pairs; an unquoted dotted key (flops.a.b = {...}) arrives as nested tables."""
    for key, value in table.items():
        path = (*prefix, key)
        metric = ".".join(path)
        if not isinstance(value, dict):
            raise ThresholdError(f"threshold {metric}: must be a table like {{ min = 1.0 }}, got {value!r}")
        if value and all(isinstance(v, dict) for v in value.values()):
            yield from _flatten(value, path)
        else:
            yield metric, value


def _entry(metric: str, bounds: dict) -> Entry:
    try:
        path = parts(metric)
    except MetricError as error:
        raise ThresholdError(f"threshold {metric}: {error}") from None
    if path[0] not in SOURCES or len(path) < 2:
        raise ThresholdError(f"threshold {metric}: the path must start with {' or '.join(s + '.' for s in SOURCES)}")
    _only_known(bounds, (*BOUNDS, RATIO), f"threshold {metric}")
    bounds = dict(bounds)
    per = _ratio_of(metric, path[0], bounds.pop(RATIO, None))
    if not bounds:
        raise ThresholdError(f"threshold {metric}: give min, max or rel")
    for key, value in bounds.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not finite(value):
            raise ThresholdError(f"threshold {metric}: {key} must be a finite number, got {value!r}")
    entry = Entry(metric, **{k: float(v) for k, v in bounds.items()}, per=per)
    if entry.min is not None and entry.max is not None and entry.min > entry.max:
        raise ThresholdError(f"threshold {metric}: min {number(entry.min)} > max {number(entry.max)}")
    if entry.rel is not None and entry.rel < 0:
        raise ThresholdError(f"threshold {metric}: rel must be >= 0, got {number(entry.rel)}")
    return entry


def _ratio_of(metric: str, source: str, per) -> str | None:
    """The `per` path of an entry: a metric path of the same document (a ratio within one run), or None."""
    if per is None:
        return None
    if not isinstance(per, str):
        raise ThresholdError(f"threshold {metric}: per must be a metric path string, got {per!r}")
    try:
        per_parts = parts(per)
    except MetricError as error:
        raise ThresholdError(f"threshold {metric}: per {per!r} {error}") from None
    if per_parts[0] != source:
        raise ThresholdError(f"threshold {metric}: per {per!r} must be in the same document ({source}.), "
                             "so the ratio is measured within one run")
    return per


def _flops_source(table, origin: str) -> FlopsSource:
    where = f"{origin}, flops"
    if not isinstance(table, dict):
        raise ThresholdError(f"{where}: must be a table, got {table!r}")
    from bkprof.variants.config import VARIANTS, LayerConfig, field_names

    _only_known(table, (*FLOPS_KEYS, *field_names()), where)
    batch = table.get("batch", 1)
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ThresholdError(f"{where}: batch must be a positive integer, got {batch!r}")
    backward = table.get("backward", False)
    if not isinstance(backward, bool):
        raise ThresholdError(f"{where}: backward must be true or false, got {backward!r}")
    variants = table.get("variants")
    if variants is not None:
        if not isinstance(variants, list) or not variants or any(v not in VARIANTS for v in variants):
            raise ThresholdError(f"{where}: variants must be a list drawn from {', '.join(VARIANTS)}, got {variants!r}")
        variants = tuple(dict.fromkeys(variants))
    try:
        config = LayerConfig(**{k: v for k, v in table.items() if k not in FLOPS_KEYS})
    except ValueError as error:
        raise ThresholdError(f"{where}: {error}") from None
    return FlopsSource(config=config, batch=batch, backward=backward, variants=variants)
