"""How busy the CPU is while bkprof measures: a timing on a shared machine is not a timing of the code.

On a 2-core machine one other busy process makes torch's CPU steps 7 to 150 times slower (its
OpenMP threads spin against the other process). The operating system's counters tell how much CPU
time every process used in an interval; less this process's own CPU time (all its threads), what
remains is the other processes' use, in cores. That is what a report records beside each CPU
timing, and what marks it as untrustworthy. Standard library only (the command line reads it
before torch loads).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass

# other processes' busy cores above which a timing is marked: half a core taken from a 2-core
# machine already slows a two-thread torch step several times
BUSY_CORES = 0.5
IDLE_WINDOW_S = 0.25


@dataclass(frozen=True)
class CpuSample:
    wall: float               # time.monotonic()
    all_busy: float | None    # CPU seconds every process has used since boot (/proc/stat); None where unknown
    own: float                # CPU seconds this process has used, every thread


def _all_busy_seconds() -> float | None:
    """user + nice + system + irq + softirq + steal of the `cpu` line of /proc/stat, in seconds."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = stat.readline().split()
        ticks = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError):
        return None
    if not fields or fields[0] != "cpu" or len(fields) < 8:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, *rest = (int(f) for f in fields[1:])
    steal = rest[0] if rest else 0
    return (user + nice + system + irq + softirq + steal) / ticks


def sample() -> CpuSample:
    return CpuSample(time.monotonic(), _all_busy_seconds(), time.process_time())


def cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def others_busy_cores(before: CpuSample, after: CpuSample) -> float | None:
    """Cores' worth of CPU time the other processes used between two samples (None where unknown)."""
    wall = after.wall - before.wall
    if before.all_busy is None or after.all_busy is None or wall <= 0:
        return None
    others = (after.all_busy - before.all_busy) - (after.own - before.own)
    # the counters tick at 100 Hz: clamp the rounding below zero, and above every core
    return min(float(cores()), max(0.0, others / wall))


def idle_cores(window_s: float = IDLE_WINDOW_S) -> float | None:
    """Cores the other processes leave idle, sampled over `window_s` now (None where unknown)."""
    before = sample()
    time.sleep(window_s)
    others = others_busy_cores(before, sample())
    return None if others is None else max(0.0, cores() - others)


def default_threads() -> int:
    """Threads that do not oversubscribe the machine: the cores other processes leave idle, rounded
    down (a thread sharing a core with a busy process spins against it), at least 1."""
    idle = idle_cores()
    return max(1, math.floor(idle + 0.25) if idle is not None else cores())


def is_busy(others: float | None) -> bool:
    return others is not None and others > BUSY_CORES


def load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


BUSY_NOTE = "busy: others used {others:.1f} cores"


def busy_note(others: float) -> str:
    """The mark on a row measured while other processes used more than BUSY_CORES."""
    return BUSY_NOTE.format(others=others)
