"""Time the bkprof command line as a user runs it: `bkprof --help` and `bkprof flops` at the defaults.

    python benchmarks/bench_cli.py --out reports/cli-speed/cpu-2026-12-02 [--runs 10] [--warmup 1] [--tree PATH ...]

Each run is a fresh `python -m bkprof ...` process (imports included, output to /dev/null), timed
hyperfine-style with bkprof's own Timer: untimed warm-up runs (they fill the OS file cache), then
`--runs` timed runs; wall-clock median, p10, p90, min and max, and the median CPU time (user + sys)
of the child process, which a machine shared with other jobs inflates less than the wall clock.
The load average before and after is recorded with the results: on a loaded machine the wall
clock measures the other jobs too. `--tree` times other checkouts of bkprof too (an older commit, to
compare), each with the same Python. Writes OUT/cli-speed.json and OUT/cli-speed.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
from pathlib import Path
from time import perf_counter

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bkprof.profile.timing import Timer  # noqa: E402
from bkprof.report import Report, Table, render, write_atomic  # noqa: E402

COMMANDS = (("bkprof --help", ["--help"]), ("bkprof flops", ["flops"]))
# the goal for `bkprof flops` at the defaults on a 2-core machine
FLOPS_GOAL_S = 3.0


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def time_command(tree: Path, args: list[str], warmup: int, runs: int) -> dict:
    """Wall and CPU seconds of `python -m bkprof ARGS` in checkout `tree` over `runs` runs after `warmup`."""
    env = {**os.environ, "PYTHONPATH": str(tree), "COLUMNS": "100", "NO_COLOR": "1"}
    walls, cpus = [], []

    def run_once(_):
        cpu, start = _children_cpu(), perf_counter()
        subprocess.run([sys.executable, "-m", "bkprof", *args], env=env, cwd=tree, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        walls.append(perf_counter() - start)
        cpus.append(_children_cpu() - cpu)

    m = Timer(torch.device("cpu"), warmup=warmup, runs=runs).measure(run_once, [None])
    walls, cpus = walls[m.warmup:], cpus[m.warmup:]  # the warm-up runs were recorded too
    return {"median_s": m.median, "p10_s": m.p10, "p90_s": m.p90, "min_s": min(walls), "max_s": max(walls),
            "cpu_median_s": statistics.median(cpus), "runs": m.runs, "warmup": m.warmup, "clock": m.clock}


def _commit(tree: Path) -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=tree, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--tree", type=Path, action="append", default=[], help="another checkout to time too")
    args = parser.parse_args()
    trees = [ROOT, *(t.resolve() for t in args.tree)]
    load_before = os.getloadavg()
    rows = [{"commit": _commit(tree), "command": name, **time_command(tree, argv, args.warmup, args.runs)}
            for tree in trees for name, argv in COMMANDS]
    load_after = os.getloadavg()
    payload = {
        "what": "wall-clock seconds of a fresh `python -m bkprof` process (imports included), output to /dev/null",
        "commit": _commit(ROOT), "python": platform.python_version(), "torch": torch.__version__,
        "cpus": os.cpu_count(), "machine": platform.machine(),
        "load_average_1_5_15_before": list(load_before), "load_average_1_5_15_after": list(load_after),
        "flops_goal_s": FLOPS_GOAL_S, "rows": rows,
    }
    import pandas as pd

    frame = pd.DataFrame(rows).drop(columns=["clock"])
    load = f"{load_before[0]:.1f} before, {load_after[0]:.1f} after"
    table = Table("bkprof start-up and `bkprof flops` at the defaults (seconds per run, fresh process)", frame,
                  {c: "{:.2f}" for c in ("median_s", "p10_s", "p90_s", "min_s", "max_s", "cpu_median_s")},
                  caption=f"{os.cpu_count()} CPUs, Python {platform.python_version()}, torch {torch.__version__}, "
                          f"this checkout at {payload['commit']}; 1-minute load average {load}. Wall clock: perf_counter "
                          "around the process; cpu: its user + sys time. Goal for `bkprof flops`: "
                          f"under {FLOPS_GOAL_S:.0f} s on an otherwise idle 2-core machine.")
    report = Report(payload, [table], table)
    args.out.mkdir(parents=True, exist_ok=True)
    write_atomic(args.out / "cli-speed.json", json.dumps(payload, indent=2) + "\n")
    write_atomic(args.out / "cli-speed.md", render(report, "markdown"))
    print(render(report, "markdown"))


if __name__ == "__main__":
    main()
