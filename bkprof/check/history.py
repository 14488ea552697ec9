"""The history of `bkprof check` runs: one JSON line per run (metrics, commit, environment), and trend plots.

    {"time": "2026-12-02T07:00:00Z", "commit": "4ab1e8c…", "dirty": false, "passed": true,
     "environment": {"python": "3.12.3", "torch": "2.13.0", "platform": "...", "device": "cpu", ...},
     "metrics": {"flops.variants.dense.counted_flops": 34708144, ...}}

Appending is one write of one line in append mode, so concurrent runs interleave whole lines; a
line that does not parse (a run killed mid-write) is skipped when reading, with its line number.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
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


def append_history(path: str | Path, record: dict) -> Path:
    """Append `record` to the JSON Lines file at `path` (created with its folders if missing)."""
    path = Path(path)
    line = json.dumps(record, sort_keys=True, allow_nan=False) + "\n"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as handle:
            handle.write(line)
    except OSError as error:
        raise ThresholdError(f"--history {path}: cannot append: {error.strerror or error}") from None
    return path


def read_history(path: str | Path) -> list[dict]:
    """The records of a history file, oldest first; unparseable lines are skipped with a note on stderr."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise ThresholdError(f"--history {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ThresholdError(f"--history {path} is not readable: {error}") from None
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            print(f"bkprof: note: {path}:{number} is not a JSON line; skipped", file=sys.stderr)
            continue
        if isinstance(record, dict) and isinstance(record.get("metrics"), dict):
            records.append(record)
    return records


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
    axes.plot(range(len(points)), [p[2] for p in points], marker="o")
    axes.set_xticks(range(len(points)))
    axes.set_xticklabels([f"{(c or '?')[:7]}\n{t[5:16]}" for t, c, _ in points], fontsize=7)
    axes.set_title(metric, fontsize=9)
    axes.set_xlabel("run (commit, time UTC)")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    return write_atomic(path, buffer.getvalue())
