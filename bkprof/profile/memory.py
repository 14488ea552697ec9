"""Peak memory of one profiled row, and recognising out-of-memory failures."""

from __future__ import annotations

import gc

import torch

MIB = 1024 * 1024

CPU_MEMORY_NOTE = ("CPU peak memory is not measured: PyTorch keeps no allocation counters for CPU tensors, "
                   "and the process's resident-set high-water mark cannot be reset between variants")

_CPU_OOM_MESSAGES = ("DefaultCPUAllocator: can't allocate memory", "DefaultCPUAllocator: not enough memory")


class PeakMemory:
    """Peak bytes allocated on a CUDA device while a block runs, above what was allocated when it began.

    Memory held before the block (the harness's L2-flush buffer, say) is left out, so the peak is
    what the block's own model, optimizer state, inputs and steps needed at once. `forget_peak`
    after the warm-up keeps one-off allocations (lazy initialisation, kernel tuning) out of it
    while everything still alive stays in. On the CPU it is None.
    """

    def __init__(self, device: torch.device):
        self.device = torch.device(device)
        self.base = 0

    def start(self) -> None:
        release(self.device)
        if self.device.type == "cuda":
            self.base = torch.cuda.memory_allocated(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)

    def forget_peak(self) -> None:
        """Start the peak afresh from what is allocated now (one-off warm-up allocations drop out)."""
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)

    def peak_mib(self) -> float | None:
        if self.device.type != "cuda":
            return None
        return (torch.cuda.max_memory_allocated(self.device) - self.base) / MIB


def release(device: torch.device) -> None:
    """Return freed blocks to the device so one row's tensors never count in the next row's peak."""
    gc.collect()
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()


def is_out_of_memory(error: BaseException) -> bool:
    if isinstance(error, torch.OutOfMemoryError):
        return True
    return isinstance(error, RuntimeError) and any(m in str(error) for m in _CPU_OOM_MESSAGES)


def cuda_peak_blocks(step, inputs, device, runs: int = 2, top: int = 8) -> dict:
    """What is allocated at the peak of `runs` runs of `step`, from the CUDA caching allocator's own
    trace (`torch.cuda.memory._record_memory_history`): the blocks live at the peak, grouped by the
    innermost bkprof frame (else the innermost frame) of the Python stack that allocated them.

    The trace holds every alloc and free_completed with address, size and stack; replaying it in
    order gives the allocated total at every moment, the same count `max_memory_allocated` keeps.
    """
    device = torch.device(device)
    torch.cuda.synchronize(device)
    torch.cuda.memory._record_memory_history(enabled="all", context="all", stacks="python", max_entries=200_000)
    try:
        for i in range(runs):
            step(inputs[i % len(inputs)])
        torch.cuda.synchronize(device)
        snapshot = torch.cuda.memory._snapshot()
    finally:
        torch.cuda.memory._record_memory_history(enabled=None)
    trace = snapshot["device_traces"][device.index or 0]
    peak, at_peak = peak_of_trace(trace)
    groups: dict[str, list[int]] = {}
    for entry in at_peak.values():
        where = _allocated_at(entry.get("frames", []))
        groups.setdefault(where, []).append(entry["size"])
    ranked = sorted(groups.items(), key=lambda kv: sum(kv[1]), reverse=True)[:top]
    return {"method": "torch.cuda.memory._record_memory_history (alloc / free_completed replayed in order)",
            "runs": runs, "trace_entries": len(trace), "peak_mib_above_start": peak / MIB,
            "at_peak": [{"allocated_at": where, "mib": sum(sizes) / MIB, "blocks": len(sizes),
                         "largest_mib": max(sizes) / MIB} for where, sizes in ranked]}


def peak_of_trace(trace: list[dict]) -> tuple[int, dict]:
    """(peak bytes, {address: alloc entry} live at the peak) of an allocator trace replayed in order."""
    live, total, peak, at_peak = {}, 0, 0, {}
    for entry in trace:
        action = entry.get("action")
        if action == "alloc":
            live[entry["addr"]] = entry
            total += entry["size"]
            if total > peak:
                peak, at_peak = total, dict(live)
        elif action == "free_completed" and entry["addr"] in live:
            total -= live.pop(entry["addr"])["size"]
    return peak, at_peak


def _allocated_at(frames: list[dict]) -> str:
    """The innermost frame in bkprof (else in torch.nn, else the innermost) as file:line function."""
    def shown(frame):
        name = frame.get("filename", "?")
        cut = name.rfind("bkprof/")
        cut = cut if cut >= 0 else max(name.rfind("torch/"), 0)
        return f"{name[cut:]}:{frame.get('line', '?')} {frame.get('name', '?')}"

    for wanted in ("bkprof/", "torch/nn/"):
        for frame in frames:
            if wanted in frame.get("filename", "") and "bkprof/profile/" not in frame.get("filename", ""):
                return shown(frame)
    return shown(frames[0]) if frames else "(no stack)"
