"""`bkprof check`: compare report metrics with thresholds; exit 0 all pass, 1 any fails, 2 bad configuration."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from bkprof.cli import app
from bkprof.cli.errors import BadInput, Command
from bkprof.cli.options import FormatOpt, Output, checked_file, flag, output_folder_option, text_option

ThresholdsOpt = Annotated[Optional[Path], text_option(
    "--thresholds", "TOML file of thresholds (default: the tool.bkprof.thresholds table of the nearest pyproject.toml).",
    "FILE")]
BaselineOpt = Annotated[Optional[Path], text_option(
    "--baseline", "Baseline document for `rel` thresholds (default: the table's `baseline` key).", "FILE")]
ProfileOpt = Annotated[Optional[Path], text_option(
    "--profile", "A `bkprof profile --format json` report for profile.* metrics (skipped without one).", "FILE")]
RunProfileOpt = Annotated[bool, flag(
    "--run-profile", "Where torch sees a CUDA device, profile the variants now (bkprof profile's defaults) for profile.* metrics.")]
JunitOpt = Annotated[Optional[Path], text_option("--junit", "Also write JUnit XML here, one testcase per metric.", "FILE",
                                                  checked_file)]
HistoryOpt = Annotated[Optional[Path], text_option(
    "--history", "Append this run's metrics, with the commit and the environment, to this JSON Lines file.", "FILE")]
TrendOpt = Annotated[Optional[list[str]], text_option(
    "--trend", "Plot this metric run by run from --history into --plot (repeatable).", "METRIC")]
PlotOpt = Annotated[Optional[str], output_folder_option(
    "--plot", "Write trend-<metric>.png for each --trend into this folder", (".png",))]
UpdateOpt = Annotated[bool, flag(
    "--update-baseline", "Rewrite the baseline (atomically) with the current documents, then check against it.")]


@app.command("check", cls=Command)
def check(
    thresholds: ThresholdsOpt = None,
    baseline: BaselineOpt = None,
    profile: ProfileOpt = None,
    run_profile: RunProfileOpt = False,
    junit: JunitOpt = None,
    update_baseline: UpdateOpt = False,
    history: HistoryOpt = None,
    trend: TrendOpt = None,
    plot: PlotOpt = None,
    format: FormatOpt = "table",
    output: Output = None,
) -> None:
    """Fail the build when a FLOPs or profile number crosses its threshold or drifts from the baseline."""
    from bkprof.check import check_report, failures, junit_xml
    from bkprof.report import emit, write_atomic

    if profile is not None and run_profile:
        raise BadInput("give --profile PATH or --run-profile, not both")
    if trend and (history is None or plot is None):
        raise BadInput("--trend needs --history FILE (the runs) and --plot FOLDER (where the plots go)")
    outcomes, used = _outcomes(thresholds, baseline, profile, run_profile, update_baseline, history)
    if trend:
        _plot_trends(history, trend, plot)
    if junit is not None:
        write_atomic(junit, junit_xml(outcomes))
    emit(check_report(outcomes, *used), format, output)
    if failures(outcomes):
        raise typer.Exit(1)


def _plot_trends(history: Path, metrics: list[str], plot: str) -> None:
    import re

    from bkprof.check import ThresholdError
    from bkprof.check.history import plot_trend, read_history
    from bkprof.report.io import output_folders

    try:
        records = read_history(history)
        with output_folders([(plot, "--plot", (".png",))], {"history": str(history), "metrics": metrics}) as (folder,):
            for metric in metrics:
                plot_trend(records, metric, folder / f"trend-{re.sub(r'[^A-Za-z0-9_.=-]+', '_', metric)[:150]}.png")
    except ThresholdError as error:
        raise BadInput(str(error)) from None


def _outcomes(thresholds_path, baseline_path, profile, run_profile, update_baseline, history=None):
    """The outcomes and (thresholds origin, baseline path, profile path); bad configuration is exit 2."""
    from bkprof.check import (ThresholdError, compare, current_documents, find_thresholds, load_baseline,
                              load_thresholds, profiled_now, write_baseline)

    from bkprof.report.io import check_output

    try:
        thresholds = load_thresholds(thresholds_path or find_thresholds())
        baseline_given = baseline_path is not None
        baseline_path = baseline_path or thresholds.baseline
        if update_baseline and baseline_path is None:
            raise ThresholdError(f"--update-baseline needs a baseline path: set baseline = \"PATH\" in {thresholds.origin} or pass --baseline")
        if update_baseline:
            check_output(baseline_path, "--baseline" if baseline_given else "baseline")
        documents = current_documents(thresholds.flops, profile)
        measured = profiled_now(thresholds.flops) if run_profile else None
        if measured is not None:
            documents["profile"] = measured
            profile = "measured now (--run-profile)"
        reference = documents if update_baseline else load_baseline(thresholds, documents, baseline_path)
        outcomes = compare(thresholds.entries, documents, reference)
    except ThresholdError as error:
        raise BadInput(str(error)) from None
    if update_baseline:  # only once every metric path resolved, so a bad entry leaves the old baseline alone
        write_baseline(baseline_path, documents)
    if history is not None:
        from bkprof.check.history import append_history, history_record

        try:
            append_history(history, history_record(outcomes, documents))
        except ThresholdError as error:
            raise BadInput(str(error)) from None
    return outcomes, (thresholds.origin, baseline_path, str(profile) if profile else None)
