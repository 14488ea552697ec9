"""Timing done the way triton.testing.do_bench and hyperfine do it: warm-up, repeated runs, median and spread.

A step is a callable taking one input; the inputs rotate over a pre-generated pool so no run is
timed on the very tensors the previous run just left in cache. On the CPU each run is timed with
perf_counter; on CUDA with a pair of CUDA events around the run (device time between the events,
which includes any gaps the host leaves while launching), after the L2 cache is flushed by
overwriting a buffer larger than it, as do_bench does.
"""

from __future__ import annotations

import gc
from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

import torch

# Larger than the L2 of any current GPU (H100: 50 MB), the same size triton.testing.do_bench uses.
L2_FLUSH_BYTES = 256 * 1024 * 1024
# On CUDA the warm-up lasts at least this long (and at least `warmup` runs), so GPU clocks and
# the host's caches settle before timing; do_bench warms up for 25 ms, runs here are milliseconds.
CUDA_WARMUP_SECONDS = 0.2
# Runs of the step before a CUDA graph is captured: cuBLAS/cuDNN workspaces and autograd's
# stream state must exist before capture (the torch.cuda.graphs documentation's recipe).
GRAPH_WARMUP = 3

Step = Callable[[Any], Any]


@dataclass(frozen=True)
class Measurement:
    """Seconds per run over `runs` timed runs that followed `warmup` untimed ones; `clock` names the timer."""

    median: float
    p10: float
    p90: float
    runs: int
    warmup: int
    clock: str

    @classmethod
    def of(cls, seconds: Sequence[float], warmup: int, clock: str) -> "Measurement":
        times = torch.tensor(list(seconds), dtype=torch.float64)
        p10, median, p90 = torch.quantile(times, torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)).tolist()
        return cls(median=median, p10=p10, p90=p90, runs=len(times), warmup=warmup, clock=clock)

    def as_dict(self) -> dict:
        return asdict(self)


class Timer:
    """Times steps on one device; holds the L2-flush buffer on CUDA so it is allocated once."""

    def __init__(self, device: torch.device, warmup: int, runs: int):
        if warmup < 0 or runs < 1:
            raise ValueError(f"need warmup >= 0 and runs >= 1, got warmup={warmup}, runs={runs}")
        self.device = torch.device(device)
        self.warmup = warmup
        self.runs = runs
        self._flush = (torch.empty(L2_FLUSH_BYTES, dtype=torch.int8, device=self.device)
                       if self.device.type == "cuda" else None)

    @property
    def clock(self) -> str:
        return "cuda events" if self.device.type == "cuda" else "perf_counter"

    def measure(self, step: Step, inputs: Sequence[Any], after_warmup: Callable[[], Any] | None = None) -> Measurement:
        """Warm up, call `after_warmup`, then time `runs` runs of `step`, input i taken from `inputs[i % len(inputs)]`.

        Python's garbage collector is off during the timed runs (as in timeit), so a collection
        that the step's garbage triggers lands in no run at random.
        """
        warmed = self._warm_up(step, inputs)
        if after_warmup is not None:
            after_warmup()
        timed = self._time_cuda if self.device.type == "cuda" else self._time_cpu
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            seconds = timed(step, inputs)
        finally:
            if gc_was_enabled:
                gc.enable()
        return Measurement.of(seconds, warmed, self.clock)

    def _warm_up(self, step: Step, inputs: Sequence[Any]) -> int:
        """Untimed runs: `warmup` of them, and on CUDA as many more as fill CUDA_WARMUP_SECONDS; returns how many."""
        from time import perf_counter

        start, done = perf_counter(), 0
        while done < self.warmup or (self.device.type == "cuda" and perf_counter() - start < CUDA_WARMUP_SECONDS):
            step(inputs[done % len(inputs)])
            done += 1
            if self.device.type == "cuda" and done >= self.warmup:
                torch.cuda.synchronize(self.device)
        return done

    def measure_graph(self, step: Step, inputs: Sequence[torch.Tensor | tuple[torch.Tensor, ...]]) -> Measurement:
        """Capture one run of `step` in a CUDA graph, then time replays (each input copied in before the clock starts).

        Raises NotCapturable when a run of the step synchronises with the host (data-dependent
        shapes, say): such a step cannot be captured, and a capture that fails half-way leaves
        PyTorch's CUDA random-number generator unusable for the rest of the process, so the step
        is first run once with synchronisations turned into errors.
        """
        if self.device.type != "cuda":
            raise ValueError("CUDA graphs need a CUDA device")
        sync = first_host_sync(step, inputs[0])
        if sync is not None:
            raise NotCapturable(f"the step synchronises with the host ({sync})")
        static = tuple(t.clone() for t in _tensors(inputs[0]))
        graph = capture(step, static if isinstance(inputs[0], tuple) else static[0])

        def load(x) -> None:
            for target, source in zip(static, _tensors(x)):
                target.copy_(source)

        for i in range(self.warmup):
            load(inputs[i % len(inputs)])
            graph.replay()
        seconds = self._time_cuda(lambda x: graph.replay(), inputs, before=load)
        return Measurement.of(seconds, self.warmup, "cuda events, graph replay")

    def _time_cpu(self, step: Step, inputs: Sequence[Any]) -> list[float]:
        from time import perf_counter

        seconds = []
        for i in range(self.runs):
            x = inputs[i % len(inputs)]
            start = perf_counter()
            step(x)
            seconds.append(perf_counter() - start)
        return seconds

    def _time_cuda(self, step: Step, inputs: Sequence[Any], before: Callable[[Any], Any] | None = None) -> list[float]:
        events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(self.runs)]
        for i, (start, end) in enumerate(events):
            x = inputs[i % len(inputs)]
            if before is not None:
                before(x)
            self._flush.zero_()
            start.record()
            step(x)
            end.record()
        torch.cuda.synchronize(self.device)
        return [start.elapsed_time(end) / 1e3 for start, end in events]


class NotCapturable(RuntimeError):
    """The step cannot be captured in a CUDA graph; the message says why."""


def first_host_sync(step: Step, x) -> str | None:
    """The first host synchronisation in one run of `step` on `x`, as one line, or None when there is none."""
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        step(x)
    except RuntimeError as error:
        return first_line(error)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    return None


def first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _tensors(x) -> tuple[torch.Tensor, ...]:
    return x if isinstance(x, tuple) else (x,)


def capture(step: Step, static_input) -> "torch.cuda.CUDAGraph":
    """A CUDA graph of one run of `step` on `static_input` (warmed up on a side stream first)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(GRAPH_WARMUP):
            step(static_input)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step(static_input)
    return graph
