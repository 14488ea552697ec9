"""Each threshold against the current documents (and the baseline): pass, fail or skip, and why."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from bkprof.check.config import Entry
from bkprof.check.errors import ThresholdError
from bkprof.check.metrics import MetricError, metric_value, number, ratio_value

PASS, FAIL, SKIP = "pass", "fail", "skip"


@dataclass(frozen=True)
class Outcome:
    metric: str
    threshold: str
    current: float | None
    baseline: float | None
    status: str
    reason: str

    @property
    def delta(self) -> float | None:
        """current - baseline, in the metric's own unit."""
        if self.current is None or self.baseline is None:
            return None
        return self.current - self.baseline

    @property
    def rel_delta(self) -> float | None:
        """(current - baseline) / |baseline|; None where the baseline is 0 and the value moved."""
        delta = self.delta
        if delta is None or (self.baseline == 0 and delta != 0):
            return None
        return 0.0 if delta == 0 else delta / abs(self.baseline)

    def as_dict(self) -> dict:
        return {**asdict(self), "delta": self.delta, "rel_delta": self.rel_delta}


def compare(entries: tuple[Entry, ...], documents: dict, baseline: dict | None) -> list[Outcome]:
    """One Outcome per entry. Entries whose source document is absent (no profile report) are skipped."""
    return [_outcome(entry, documents, baseline) for entry in entries]


def failures(outcomes: list[Outcome]) -> list[Outcome]:
    return [o for o in outcomes if o.status == FAIL]


def _outcome(entry: Entry, documents: dict, baseline: dict | None) -> Outcome:
    if entry.source not in documents:
        return Outcome(entry.key, entry.describe(), None, None, SKIP, f"no {entry.source} document (--profile PATH, or --run-profile with a CUDA device)")
    current = _value(entry, documents)
    before = _value(entry, baseline, baseline=True) if entry.rel is not None else None
    broken = _broken_bounds(entry, current, before)
    return Outcome(entry.key, entry.describe(), current, before, FAIL if broken else PASS, "; ".join(broken))


def _value(entry: Entry, documents: dict, baseline: bool = False) -> float:
    try:
        if entry.per is not None:
            return ratio_value(documents, entry.metric, entry.per)
        return metric_value(documents, entry.metric)
    except MetricError as error:
        if baseline:
            raise ThresholdError(f"threshold {entry.metric}: the baseline: {error} (if the report changed shape on purpose,"
                                 " rerun with --update-baseline)") from None
        raise ThresholdError(f"threshold {entry.metric}: {error}") from None


def _broken_bounds(entry: Entry, current: float, baseline: float | None) -> list[str]:
    broken = []
    if entry.min is not None and current < entry.min:
        broken.append(f"{number(current)} < min {number(entry.min)}")
    if entry.max is not None and current > entry.max:
        broken.append(f"{number(current)} > max {number(entry.max)}")
    if baseline is not None and abs(current - baseline) > entry.rel * abs(baseline):
        broken.append(f"moved {current - baseline:+.12g} from baseline {number(baseline)} (allowed ± {number(entry.rel * abs(baseline))})")
    return broken
