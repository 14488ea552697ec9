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
