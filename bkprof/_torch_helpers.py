"""Keeping `bkprof flops` fast: no torch._dynamo import, no thread pool for tiny counting runs."""

from __future__ import annotations

from contextlib import contextmanager


def skip_dynamo_guard(guarded) -> None:
    """torch wraps some functions (a dispatch mode's __torch_dispatch__, a custom op's kernels) in
    `torch._disable_dynamo`, which imports torch._dynamo (about 2 s on a 2-core CPU) on the first call
    to build the disabled form. bkprof's counter and kernels are never traced by torch.compile (a
    custom op is opaque to it), so mark the wrapped function as its own disabled form."""
    raw = getattr(guarded, "__wrapped__", None)
    if raw is not None:
        raw.__dynamo_disable = raw


@contextmanager
def one_thread():
    """Run torch ops on one CPU thread, then restore the thread count. Counting runs are thousands of
    tiny ops: handing each to a thread pool costs more than it saves (on a shared 2-core machine,
    ten times the CPU time), and the counts do not depend on it.

    For bkprof's own processes only (the CLI): once torch.set_num_threads has been called, MKL's
    batched LU can fail on later multi-threaded calls in that process (pytorch/pytorch#141358; seen
    with torch 2.13: a 3 x 512 x 512 complex128 torch.linalg.inv raises "Pivots given to lu_solve"),
    so the library never changes the thread count of a caller's process."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
