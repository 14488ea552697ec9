"""Compile the triton backend's kernels for many row lengths at once, one process per length and mode,
so the GPU tests and benchmarks that follow find them in Triton's on-disk cache (each kernel variant
takes tens of seconds to compile; a single process compiles them one after another).

    python benchmarks/warm_core_kernels.py [--jobs 16] [--lengths 256,1024,...] [--float64 9,300]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

# the benchmark's and the profile's row lengths first, then the tests' layout changes
LENGTHS = [256, 1024, 4096, 16384, 128, 2048, 1, 2, 3, 5, 17, 127, 255, 257, 511, 513, 1000, 1025, 2047, 2049,
           3000, 6145, 65536, 100_003, 262_144]
FLOAT64 = [1, 6, 9, 64, 300, 1500, 5000]
SNIPPET = """
import torch
from bkprof.core import triton_backend as tb
n, dtype, train = {n}, torch.{dtype}, {train}
diag = torch.rand(2, n, device="cuda", dtype=dtype) - 3
k = torch.rand(2, n - 1, device="cuda", dtype=dtype) + 0.5
if train:
    diag.requires_grad_()
    g = tb.run(diag, k, 1j)
    torch.view_as_real(g).sum().backward()
else:
    tb.run(diag, k, 1j)
torch.cuda.synchronize()
"""


def warm(task: tuple[int, str, bool]) -> str:
    n, dtype, train = task
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", SNIPPET.format(n=n, dtype=dtype, train=train)],
                          capture_output=True, text=True)
    status = "ok" if done.returncode == 0 else "failed: " + done.stderr.strip().splitlines()[-1][:200]
    return f"{dtype} n={n} {'train' if train else 'forward'}: {time.perf_counter() - started:.0f} s, {status}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=16)
    parser.add_argument("--lengths", default=",".join(map(str, LENGTHS)))
    parser.add_argument("--float64", default=",".join(map(str, FLOAT64)))
    args = parser.parse_args()
    tasks = [(int(n), "float32", train) for n in args.lengths.split(",") for train in (False, True)]
    tasks += [(int(n), "float64", train) for n in args.float64.split(",") if n for train in (False, True)]
    with ThreadPoolExecutor(args.jobs) as pool:
        for line in pool.map(warm, tasks):
            print(line, flush=True)


if __name__ == "__main__":
    main()
