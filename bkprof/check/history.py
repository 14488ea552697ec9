"""The history of `bkprof check` runs: one JSON line per run (metrics, commit, environment), and trend plots.

    {"time": "2026-12-02T07:00:00Z", "commit": "4ab1e8c…", "dirty": false, "passed": true,
     "environment": {"python": "3.12.3", "torch": "2.13.0", "platform": "...", "device": "cpu", ...},
     "metrics": {"flops.variants.dense.counted_flops": 34708144, ...}}

A record is appended as one whole line under an exclusive lock of the file (bkprof.report.records),
so concurrent runs never interleave or glue lines; a line that is not JSON (a run killed mid-write)
is set aside when reading, with a warning naming it; a line that is JSON but not a history record,
or a file that is not a history at all (a TOML file, say), is a ThresholdError naming the file,
the line and the field.
"""

from __future__ import annotations

import os
import platform
import subprocess
from datetime import datetime, timezone
from pathlib import Path

from bkprof.check.errors import ThresholdError


def git_commit(folder: str | Path = ".") -> tuple[str | None, bool | None]:
    """(HEAD's commit, whether the tree has uncommitted changes) of the repository at `folder`, or (None, None)."""
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return None, None
    status = git("status", "--porcelain", "--untracked-files=no")
    return commit.strip(), bool(status.strip()) if status is not None else None


def environment_of(documents: dict) -> dict:
    """Where the metrics came from: Python, platform, and the profile's device when there is one."""
    env = {"python": platform.python_version(), "platform": platform.platform(), "cpu_count": os.cpu_count()}
    try:
        import torch

        env["torch"] = torch.__version__
    except ImportError:  # pragma: no cover - torch is a dependency
        env["torch"] = None
    profile_env = (documents.get("profile") or {}).get("environment")
    if profile_env:
        env["profile"] = profile_env
    return env


def history_record(outcomes, documents: dict, folder: str | Path | None = None, now: datetime | None = None) -> dict:
    """One run's line: every checked metric's current value, with the commit and the environment.

    The commit is that of the repository at `folder`; by default the working folder's, else the
    one bkprof itself is running from.
    """
    if folder is None:
        commit, dirty = git_commit(".")
        if commit is None:
            commit, dirty = git_commit(Path(__file__).resolve().parent)
    else:
        commit, dirty = git_commit(folder)
    now = now or datetime.now(timezone.utc)
    return {
        "time": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "commit": commit,
        "dirty": dirty,
        "passed": not any(o.status == "fail" for o in outcomes),
        "environment": environment_of(documents),
        "metrics": {o.metric: o.current for o in outcomes if o.current is not None},
    }


HISTORY_SCHEMA = {"time": ("text", False), "commit": ("text", True), "metrics": ("object", False)}
MAX_TICKS = 12  # labelled runs on a trend plot's x axis: 20,000 labels take a minute to lay out


def _history_record(value, where: str) -> dict:
    from bkprof.report.records import RecordError, check_fields

    record = check_fields(value, HISTORY_SCHEMA, where)
    for metric, number in record["metrics"].items():
        if not isinstance(number, (int, float)) or isinstance(number, bool):
            raise RecordError(f"{where}: field 'metrics.{metric}' must be a number, got {type(number).__name__}")
    return record


def append_history(path: str | Path, record: dict) -> Path:
    """Append `record` to the JSON Lines file at `path` (created with its folders if missing): one
    whole line under a lock, or nothing (a full disk leaves the file as it was)."""
    from bkprof.report.records import append_line

    path = Path(path)
    try:
        append_line(path, record, f"--history {path}")
    except OSError as error:
        raise ThresholdError(f"--history {path}: cannot append: {error.strerror or error}") from None
    except ValueError as error:  # a non-finite metric: refused, the file is left as it was
        raise ThresholdError(f"--history {path}: cannot append: {error}") from None
    return path


def read_history(path: str | Path) -> list[dict]:
    """The records of a history file, oldest first; torn lines set aside with a warning on stderr;
    anything else that is not a history record is a ThresholdError naming the file, line and field."""
    from bkprof.report.records import RecordError, read_lines

    path = Path(path)
    try:
        return read_lines(path, f"--history {path}", _history_record)
    except RecordError as error:
        raise ThresholdError(str(error)) from None


def existing_history(path: str | Path) -> list[dict]:
    """The records already in the history at `path` (none when it is missing or empty), read before
    any work: a file that is not a history is refused before anything is appended to it."""
    path = Path(path)
    if not path.exists() or (path.is_file() and path.stat().st_size == 0):
        return []
    if not path.is_file():
        return []  # /dev/null, a FIFO: written in place, nothing to read back
    return read_history(path)


def trend(records: list[dict], metric: str) -> list[tuple[str, str | None, float]]:
    """(time, commit, value) of `metric` in every record that has it."""
    points = [(r.get("time", ""), r.get("commit"), r["metrics"][metric]) for r in records
              if isinstance(r["metrics"].get(metric), (int, float))]
    if not points:
        known = sorted({m for r in records for m in r["metrics"]})
        raise ThresholdError(f"--trend {metric}: no run in the history has it (metrics: {', '.join(known[:8]) or 'none'})")
    return points


def plot_trend(records: list[dict], metric: str, path: str | Path) -> Path:
    """A PNG of `metric` run by run (x: run, labelled with the short commit), written atomically."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bkprof.report import write_atomic

    points = trend(records, metric)
    figure, axes = plt.subplots(figsize=(8, 4))
    axes.plot(range(len(points)), [p[2] for p in points], marker="o" if len(points) <= 200 else None)
    ticks = sorted({round(i * (len(points) - 1) / (MAX_TICKS - 1)) for i in range(MAX_TICKS)}) if len(points) > MAX_TICKS \
        else range(len(points))
    axes.set_xticks(list(ticks))
    axes.set_xticklabels([f"{(points[i][1] or '?')[:7]}\n{points[i][0][5:16]}" for i in ticks], fontsize=7)
    axes.set_title(metric, fontsize=9)
    axes.set_xlabel("run (commit, time UTC)")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    return write_atomic(path, buffer.getvalue())
