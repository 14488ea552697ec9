"""Reports: titled tables of results plus a JSON document, rendered as table, JSON, CSV or Markdown."""

from bkprof.report.model import FORMATS, Report, Table
from bkprof.report.render import emit, render
from bkprof.report.io import write_atomic

__all__ = ["FORMATS", "Report", "Table", "emit", "render", "write_atomic"]
