"""Compile the triton backend's kernels for many row lengths at once, one process per length and mode,
so the GPU tests and benchmarks that follow find them in Triton's on-disk cache (each kernel variant
takes tens of seconds to compile; a single process compiles them one after another).

    python benchmarks/warm_core_kernels.py [--jobs 16] [--lengths 256,1024,...] [--float64 9,300]
    python benchmarks/warm_core_kernels.py --for-tests [--jobs 16] [--dry-run]

--for-tests warms exactly what the GPU tests (tests/test_triton_backend.py), bkprof profile's defaults
and benchmarks/bench_core.py launch: Triton compiles one binary per layout (the constexprs) and per
specialisation of the integer and pointer arguments (an int equal to 1 or divisible by 16, a pointer
16-byte aligned), and the batch enters those (the forward's e offset B x N x 2, the backward's
pointer to e), so the shapes are taken as the tests use them, and one shape per distinct binary
is compiled. Point TRITON_CACHE_DIR at one folder for this and for the pytest-xdist workers after it:
each binary is then compiled once instead of once per worker that meets it.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bkprof and tests from this checkout

# the benchmark's and the profile's row lengths first, then the tests' layout changes
LENGTHS = [256, 1024, 4096, 16384, 128, 2048, 1, 2, 3, 5, 17, 127, 255, 257, 511, 513, 1000, 1025, 2047, 2049,
           3000, 6145, 65536, 100_003, 262_144]
FLOAT64 = [1, 6, 9, 64, 300, 1500, 5000]
SNIPPET = """
import torch
from bkprof.core import triton_backend as tb
n, dtype, train = {n}, torch.{dtype}, {train}
diag = torch.rand({batch}, n, device="cuda", dtype=dtype) - 3
k = torch.rand({batch}, n - 1, device="cuda", dtype=dtype) + 0.5
if train:
    diag.requires_grad_()
    g = tb.run(diag, k, 1j)
    torch.view_as_real(g).sum().backward()
else:
    tb.run(diag, k, 1j)
torch.cuda.synchronize()
"""


# shapes of the GPU tests outside the grids (tests/test_triton_backend.py), of one training step of each
# variant at B = 2, N = 128 (the multi-scale variants run the BK-Core at N / 2), of `bkprof profile`'s
# defaults (B = 8, N = 256 and 128) and of benchmarks/bench_core.py: (batch, n, dtype, train)
EXTRA_TASKS = [(16, 3000, "float32", False), (2, 9, "float64", True), (2, 6, "float64", True),
               (1, 262_144, "float32", True), (4, 3000, "float32", True), (64, 4096, "float32", True),
               (2, 128, "float32", True), (2, 64, "float32", True), (8, 256, "float32", True),
               (8, 128, "float32", True), (8, 1024, "float32", True), (256, 16384, "float32", True),
               (1024, 16384, "float32", True)]


def test_tasks() -> list[tuple[int, int, str, bool]]:
    """(batch, n, dtype, train) of every BK-Core launch the GPU tests and benchmarks make."""
    from tests import test_triton_backend as t

    tasks = [(b, n, "float32", False) for b, n in t.GRID] + [(b, n, "float64", False) for b, n in t.FLOAT64_SIZES]
    tasks += [(b, n, "float32", True) for b, n in t.GRAD_GRID] + [(b, n, "float64", True) for b, n in t.FLOAT64_GRAD_SIZES]
    return tasks + EXTRA_TASKS


def _int_class(value: int) -> int:
    """Triton's specialisation of an integer argument: 1, divisible by 16 (16), or neither (0)."""
    return 1 if value == 1 else 16 if value % 16 == 0 else 0


def binaries(task: tuple[int, int, str, bool]) -> set[tuple]:
    """The kernel binaries a task compiles: the forward's (layout, SAVE, its ints' classes) and with
    train the backward's (layout, n's class, whether e = ratios[1] starts 16-byte aligned). Fresh
    allocations are aligned, so the other pointers do not vary."""
    from bkprof.core.triton_backend import adjoint_layout, row_layout

    batch, n, dtype, train = task
    size = 8 if dtype == "float64" else 4
    lanes, per_lane, segments = row_layout(n)
    forward = ("forward", lanes, per_lane, segments > 1, dtype, train,
               _int_class(batch * n * 2), _int_class(n), _int_class(segments))
    if not train:
        return {forward}
    backward = ("adjoint", adjoint_layout(n)[0], dtype, _int_class(n), batch * n * 2 * size % 16 == 0)
    return {forward, backward}


def distinct(tasks) -> list[tuple[int, int, str, bool]]:
    """One task per new binary, in the order given (a task whose binaries are all covered is dropped)."""
    seen, kept = set(), []
    for task in tasks:
        new = binaries(task) - seen
        if new:
            kept.append(task)
            seen |= new
    return kept


def warm(task: tuple[int, int, str, bool]) -> str:
    batch, n, dtype, train = task
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", SNIPPET.format(batch=batch, n=n, dtype=dtype, train=train)],
                          capture_output=True, text=True)
    last = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}, nothing on stderr"])[-1]
    status = "ok" if done.returncode == 0 else "failed: " + last[:200]
    return f"{dtype} {batch}x{n} {'train' if train else 'forward'}: {time.perf_counter() - started:.0f} s, {status}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=16)
    parser.add_argument("--lengths", default=",".join(map(str, LENGTHS)))
    parser.add_argument("--float64", default=",".join(map(str, FLOAT64)))
    parser.add_argument("--for-tests", action="store_true", help="the tests' and benchmarks' shapes, one per binary")
    parser.add_argument("--dry-run", action="store_true", help="list the tasks, compile nothing (any machine)")
    args = parser.parse_args()
    if args.for_tests:
        tasks = distinct(test_tasks())
    else:
        tasks = [(2, int(n), "float32", train) for n in args.lengths.split(",") for train in (False, True)]
        tasks += [(2, int(n), "float64", train) for n in args.float64.split(",") if n for train in (False, True)]
    print(f"{len(tasks)} tasks, {len(set().union(*map(binaries, tasks)))} kernel binaries, {args.jobs} at once", flush=True)
    if args.dry_run:
        for task in tasks:
            print(*task)
        return
    with ThreadPoolExecutor(args.jobs) as pool:
        for line in pool.map(warm, tasks):
            print(line, flush=True)


if __name__ == "__main__":
    main()
