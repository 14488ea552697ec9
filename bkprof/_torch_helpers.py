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
def torch_threads(count: int):
    """Run torch ops on `count` CPU threads, then restore the thread count.

    For bkprof's own processes only (the CLI): once torch.set_num_threads has been called, MKL's
    batched LU can fail on later multi-threaded calls in that process (pytorch/pytorch#141358; seen
    with torch 2.13: a 3 x 512 x 512 complex128 torch.linalg.inv raises "Pivots given to lu_solve"),
    so the library never changes the thread count of a caller's process."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def one_thread():
    """One CPU thread: counting runs are thousands of tiny ops, and handing each to a thread pool
    costs more than it saves (on a shared 2-core machine, ten times the CPU time); the counts do
    not depend on it. The CLI's only (see `torch_threads`)."""
    return torch_threads(1)


# what torch.profiler's native code prints to the process's stderr on every start and stop: not
# bkprof's to show (kineto's USDT trace points; c10's note on blocks allocated before profiling)
NATIVE_CHATTER = ("USDT:", "Memory block of unknown size was allocated before the profiling started")


@contextmanager
def quiet_native_stderr():
    """Catch what native code writes to file descriptor 2 inside the block and pass on every line
    except torch.profiler's known chatter (NATIVE_CHATTER). Python's own stderr writes in the block
    (a progress bar's refresh) are caught and passed on too, whole lines, after the block."""
    import os
    import sys
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            kept = [line for line in caught.read().decode(errors="replace").splitlines(keepends=True)
                    if line.strip() and not any(mark in line for mark in NATIVE_CHATTER)]
            if kept:
                sys.stderr.write("".join(kept))
