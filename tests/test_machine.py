"""The machine-load record that flags CPU timings taken on a busy machine."""

import subprocess
import sys
import time

import pytest

from bkprof import machine
from bkprof.machine import CpuSample


def test_other_processes_cpu_time_is_all_cpu_time_less_our_own():
    # 2 s of wall time, 3 CPU-seconds used by all processes, 1 of them ours: others used 2 / 2 = 1 core
    before, after = CpuSample(10.0, 100.0, 5.0), CpuSample(12.0, 103.0, 6.0)
    assert machine.others_busy_cores(before, after) == pytest.approx(1.0)


def test_counter_rounding_never_gives_negative_or_more_than_every_core():
    # our own CPU time read a tick ahead of the system's: -0.01 s over 1 s is 0, not negative
    assert machine.others_busy_cores(CpuSample(0.0, 10.0, 1.0), CpuSample(1.0, 10.5, 1.51)) == 0.0
    huge = machine.others_busy_cores(CpuSample(0.0, 0.0, 0.0), CpuSample(1.0, 1e6, 0.0))
    assert huge == machine.cores()


def test_unknown_counters_give_none_and_never_mark_a_row():
    assert machine.others_busy_cores(CpuSample(0.0, None, 0.0), CpuSample(1.0, None, 1.0)) is None
    assert not machine.is_busy(None)
    assert machine.is_busy(0.51) and not machine.is_busy(0.5)


def test_a_spinning_process_beside_us_is_seen():
    spinner = subprocess.Popen([sys.executable, "-c", "import time\nend = time.time() + 10\nwhile time.time() < end: pass"])
    try:
        time.sleep(0.3)  # past the interpreter's start
        before = machine.sample()
        time.sleep(1.0)
        others = machine.others_busy_cores(before, machine.sample())
    finally:
        spinner.kill()
        spinner.wait(timeout=10)
    if others is None:
        pytest.skip("no /proc/stat here")
    # the spinner alone is one whole core (less what the scheduler gave others)
    assert others > 0.7


def test_default_threads_leave_busy_cores_alone():
    assert 1 <= machine.default_threads() <= machine.cores()
