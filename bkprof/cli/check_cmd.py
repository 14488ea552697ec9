"""`bkprof check`: compare report metrics with thresholds; exit 0 all pass, 1 any fails, 2 bad configuration."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from bkprof.cli import app
from bkprof.cli.errors import BadInput, Command
from bkprof.cli.options import (FormatOpt, Output, checked_file, checked_file_path, checked_input, emit_report, flag,
                                output_folder_option, text_option, writing)

ThresholdsOpt = Annotated[Optional[Path], text_option(
    "--thresholds", "TOML file of thresholds (default: the tool.bkprof.thresholds table of the nearest pyproject.toml).",
    "FILE", checked_input)]
BaselineOpt = Annotated[Optional[Path], text_option(
    "--baseline", "Baseline document for `rel` thresholds (default: the table's `baseline` key).", "FILE",
    checked_file_path)]
ProfileOpt = Annotated[Optional[Path], text_option(
    "--profile", "A `bkprof profile --format json` report for profile.* metrics (skipped without one).", "FILE",
    checked_input)]
RunProfileOpt = Annotated[bool, flag(
    "--run-profile", "Where torch sees a CUDA device, profile the variants now (bkprof profile's defaults) for profile.* metrics.")]
JunitOpt = Annotated[Optional[Path], text_option("--junit", "Also write JUnit XML here, one testcase per metric.", "FILE",
                                                  checked_file)]
HistoryOpt = Annotated[Optional[Path], text_option(
    "--history", "Append this run's metrics, with the commit and the environment, to this JSON Lines file.", "FILE",
    checked_file)]
TrendOpt = Annotated[Optional[list[str]], text_option(
    "--trend", "Plot this metric run by run from --history into --plot (repeatable).", "METRIC")]
PlotOpt = Annotated[Optional[str], output_folder_option(
    "--plot", "Write trend-<metric>.png for each --trend into this folder", (".png",))]
NoConfigCheckOpt = Annotated[bool, flag(
    "--no-config-check", "Compare with a baseline made for other layers (or with no config recorded) anyway.")]
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
    no_config_check: NoConfigCheckOpt = False,
    format: FormatOpt = "table",
    output: Output = None,
) -> None:
    """Fail the build when a FLOPs or profile number crosses its threshold or drifts from the baseline."""
    from bkprof.check import ThresholdError, failures, junit_xml
    from bkprof.check.run import CheckSettings, run_check
    from bkprof.report import write_atomic
    from bkprof.report.io import output_folders

    if trend and (history is None or plot is None):
        raise BadInput("--trend needs --history FILE (the runs) and --plot FOLDER (where the plots go)")
    try:
        verdict = run_check(CheckSettings(thresholds, baseline, profile, run_profile, update_baseline, history,
                                          config_check=not no_config_check), commit=False)
        # every output is made ready before anything is written: a command that fails writes nothing
        with output_folders([(plot if trend else None, "--plot", (".png",))],
                            {"history": str(history), "metrics": trend},
                            files=[(output, "--output"), (junit, "--junit"), (history, "--history")]) as (folder,):
            if trend:
                _plot_trends(verdict.history, trend, folder)
            junit_text = junit_xml(verdict.outcomes) if junit is not None else None
            verdict.commit()
    except ThresholdError as error:
        raise BadInput(str(error)) from None
    if junit_text is not None:
        with writing(junit, "--junit"):
            write_atomic(junit, junit_text)
    emit_report(verdict.report(), format, output)
    if failures(verdict.outcomes):
        raise typer.Exit(1)


def _plot_trends(records: list[dict], metrics: list[str], folder: Path) -> None:
    import re

    from bkprof.check.history import plot_trend

    for metric in metrics:
        plot_trend(records, metric, folder / f"trend-{re.sub(r'[^A-Za-z0-9_.=-]+', '_', metric)[:150]}.png")
