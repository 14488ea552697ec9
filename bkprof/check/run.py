"""`bkprof check` as one call: its settings, and the verdict from the thresholds, documents and baseline."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from bkprof.check.errors import ThresholdError


@dataclass(frozen=True)
class CheckSettings:
    """Where the thresholds, the baseline and a profile report come from, and what to do besides checking.

    `thresholds`: a TOML file (None: the nearest pyproject.toml); `baseline`: the baseline document
    (None: the thresholds' `baseline` key); `profile`: a `bkprof profile --format json` report, or
    `run_profile` to measure one now on a CUDA device; `update_baseline`: rewrite the baseline with
    the current documents first; `history`: a JSON Lines file this run's metrics are appended to;
    `config_check=False`: compare with a baseline made for other layers, or with no config recorded.
    """

    thresholds: Path | None = None
    baseline: Path | None = None
    profile: Path | None = None
    run_profile: bool = False
    update_baseline: bool = False
    history: Path | None = None
    config_check: bool = True

    def __post_init__(self) -> None:
        if self.profile is not None and self.run_profile:
            raise ThresholdError("give --profile PATH or --run-profile, not both")


@dataclass(frozen=True)
class Verdict:
    """The outcomes, and where the thresholds, the baseline and the profile came from (for the report).

    `history` holds the records already in --history followed by this run's; `writes` are the writes
    still to do (the baseline, the history line) when run_check was told not to do them yet.
    """

    outcomes: list
    origin: str
    baseline: Path | None
    profile: str | None
    history: list = field(default_factory=list)
    writes: tuple = ()

    def commit(self) -> None:
        """Do the writes run_check(commit=False) left: the baseline, then the history line."""
        for write in self.writes:
            write()

    def report(self):
        from bkprof.check.report import check_report

        return check_report(self.outcomes, self.origin, self.baseline, self.profile)


def run_check(settings: CheckSettings, commit: bool = True) -> Verdict:
    """Every threshold against the current documents (and the baseline); ThresholdError for a bad configuration.

    The baseline and the history are checked to be bkprof documents of their kind before any work
    (a pyproject.toml given as either is refused, never overwritten or appended to). They are
    written only once every metric resolved; with `commit=False` not at all: the caller does
    `verdict.commit()` once its own outputs are ready, so a command that fails writes nothing.
    """
    from bkprof.check.compare import compare
    from bkprof.check.config import find_thresholds, load_thresholds
    from bkprof.check.documents import current_documents, existing_baseline, load_baseline, profiled_now
    from bkprof.check.history import existing_history
    from bkprof.report.io import check_output

    thresholds = load_thresholds(settings.thresholds or find_thresholds())
    baseline = settings.baseline or thresholds.baseline
    if settings.update_baseline:
        if baseline is None:
            raise ThresholdError(f"--update-baseline needs a baseline path: set baseline = \"PATH\" in "
                                 f"{thresholds.origin} or pass --baseline")
        check_output(baseline, "--baseline" if settings.baseline is not None else "baseline")
        existing_baseline(baseline)
    history = []
    if settings.history is not None:
        check_output(settings.history, "--history")
        history = existing_history(settings.history)
    profile = settings.profile
    documents = current_documents(thresholds.flops, profile)
    measured = profiled_now(thresholds.flops) if settings.run_profile else None
    if measured is not None:
        documents["profile"] = measured
        profile = "measured now (--run-profile)"
    reference = documents if settings.update_baseline else \
        load_baseline(thresholds, documents, baseline, settings.config_check)
    outcomes = compare(thresholds.entries, documents, reference)
    writes = []
    if settings.update_baseline:
        writes.append(lambda: _write_baseline(baseline, documents))
    if settings.history is not None:
        from bkprof.check.history import append_history, history_record

        record = history_record(outcomes, documents)
        history.append(record)
        writes.append(lambda: append_history(settings.history, record))
    verdict = Verdict(outcomes, thresholds.origin, baseline, str(profile) if profile else None, history, tuple(writes))
    if commit:
        verdict.commit()
        verdict = Verdict(outcomes, verdict.origin, baseline, verdict.profile, history)
    return verdict


def _write_baseline(path: Path, documents: dict) -> None:
    from bkprof.check.documents import write_baseline

    try:
        write_baseline(path, documents)
    except OSError as error:  # after the path was checked: a full disk, say
        raise ThresholdError(f"cannot write the baseline {path}: {error.strerror or error}") from None
