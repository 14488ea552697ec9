"""Regression thresholds for CI: load them from TOML, resolve metric paths in report documents,
compare against min/max bounds and a baseline, and write the verdict as a report or JUnit XML.

Imports nothing heavy: torch and pandas load only where a document or a table is built.
"""

from bkprof.check.compare import Outcome, compare, failures
from bkprof.check.config import Entry, FlopsSource, Thresholds, ThresholdError, find_thresholds, load_thresholds
from bkprof.check.documents import current_documents, load_baseline, profiled_now, write_baseline
from bkprof.check.junit import junit_xml
from bkprof.check.metrics import SOURCES, metric_value
from bkprof.check.report import check_report

__all__ = [
    "SOURCES",
    "Entry",
    "FlopsSource",
    "Outcome",
    "ThresholdError",
    "Thresholds",
    "check_report",
    "compare",
    "current_documents",
    "failures",
    "find_thresholds",
    "junit_xml",
    "load_baseline",
    "load_thresholds",
    "metric_value",
    "profiled_now",
    "write_baseline",
]
