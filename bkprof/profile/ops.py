"""The top operators of a step from torch.profiler, and Chrome/Perfetto trace files."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from bkprof._torch_helpers import quiet_native_stderr

# Profiled runs per row: enough to average out one-off costs, few enough that the profiler's
# own overhead (it records every op) stays a small part of the command's time.
PROFILED_RUNS = 3


def profile_ops(step: Callable[[Any], Any], inputs: Sequence[Any], device: torch.device, top: int,
                trace_path: Path | None = None, inspect: Callable[[Any], Any] | None = None) -> list[dict]:
    """The `top` operators by self time per run (device time on CUDA, CPU time on the CPU).

    The step must be warmed up already. With `trace_path`, the Chrome trace of the profiled runs
    is written there whole or not at all. Allocations and frees are recorded too
    (`profile_memory`); `inspect(prof)` is called with the finished profiler.
    """
    from torch.profiler import ProfilerActivity, profile

    on_cuda = torch.device(device).type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_cuda else [])
    with quiet_native_stderr(), profile(activities=activities, profile_memory=True) as prof:
        for i in range(PROFILED_RUNS):
            step(inputs[i % len(inputs)])
        if on_cuda:
            torch.cuda.synchronize(device)
    if trace_path is not None:
        _export_trace_atomic(prof, trace_path)
    if inspect is not None:
        inspect(prof)
    return top_ops(prof.key_averages(), top, on_cuda)


def top_ops(averages, top: int, on_cuda: bool) -> list[dict]:
    """Operators ranked by self time per run; `share` is their part of all self time of that kind.

    On CUDA an operator's self device time is the time of the kernels it launched itself; the
    kernels are also listed by the profiler as events of their own, which are left out here (they
    would count the same time twice) but give the total the shares are taken of. Where the
    profiler tied no kernel to an operator, the kernels themselves are ranked.
    """
    from torch.autograd import DeviceType

    operators = [e for e in averages if e.device_type == DeviceType.CPU]
    kernels = [e for e in averages if e.device_type == DeviceType.CUDA]
    if on_cuda:
        def self_us(event) -> float:
            return event.self_device_time_total

        total = sum(self_us(e) for e in kernels)
        if not any(self_us(e) > 0 for e in operators):
            operators = kernels
    else:
        def self_us(event) -> float:
            return event.self_cpu_time_total

        total = sum(self_us(e) for e in operators)
    ranked = sorted((e for e in operators if self_us(e) > 0), key=self_us, reverse=True)[:top]
    return [{"op": e.key, "calls_per_run": e.count / PROFILED_RUNS,
             "self_ms_per_run": self_us(e) / 1e3 / PROFILED_RUNS,
             "share": self_us(e) / total if total else None} for e in ranked]


def _export_trace_atomic(prof, path: Path) -> None:
    from bkprof.report import write_atomic

    with tempfile.TemporaryDirectory() as scratch:
        raw = Path(scratch) / "trace.json"
        prof.export_chrome_trace(str(raw))
        write_atomic(path, raw.read_text(encoding="utf-8"))
