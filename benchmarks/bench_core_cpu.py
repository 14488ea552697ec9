"""Time the CPU backends of the BK-Core (reference, vectorized) with bkprof's own Timer.

    python benchmarks/bench_core_cpu.py --out reports [--runs 15] [--sizes 8x256,8x4096] [--grad]

float32, whole batch, the layer's chain (diag = v - 2 with |v| <= 3, unit couplings); median, p10 and
p90 of perf_counter over the timed runs after warm-up, inputs rotated among 4 sets. Forward only, or
with --grad forward + backward (gradient of sum(Re G) + sum(Im G) with respect to diag) of the
vectorized backend, whose backward is the closed form, against autograd through the same scan
(`sweeps.scan_sweeps`). Writes OUT/bench-core-cpu.json and .md (with --grad: bench-core-cpu-grad.*).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bkprof.core import sweeps, tridiag_resolvent_diagonal  # noqa: E402
from bkprof.profile.timing import Timer  # noqa: E402
from bkprof.report import Report, Table, render, write_atomic  # noqa: E402


def layer_chain(batch: int, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    v = torch.empty(batch, n).uniform_(-3, 3, generator=torch.Generator().manual_seed(seed))
    return v - 2, torch.ones(batch, n - 1)


def measure(sizes, backends, runs: int) -> list[dict]:
    rows = []
    for batch, n in sizes:
        inputs = [layer_chain(batch, n, seed) for seed in range(4)]
        for backend in backends:
            timer = Timer(torch.device("cpu"), warmup=2, runs=runs)
            m = timer.measure(lambda x: tridiag_resolvent_diagonal(x[0], x[1], x[1], backend=backend), inputs)
            rows.append({"backend": backend, "B": batch, "N": n, "median_ms": 1e3 * m.median, "p10_ms": 1e3 * m.p10,
                         "p90_ms": 1e3 * m.p90, "runs": m.runs, "warmup": m.warmup})
    return rows


def forward_backward(fn):
    def step(x):
        leaf = x[0].detach().requires_grad_()
        torch.view_as_real(fn(leaf, x[1])).sum().backward()
    return step


GRAD_CASES = {
    "vectorized, closed-form backward": lambda d, ones: tridiag_resolvent_diagonal(d, ones, ones, backend="vectorized"),
    "vectorized, autograd through the scan": lambda d, ones: sweeps.scan_sweeps(d, ones * ones, 1j),
}


def measure_grad(sizes, runs: int) -> list[dict]:
    rows = []
    for batch, n in sizes:
        inputs = [layer_chain(batch, n, seed) for seed in range(4)]
        for case, fn in GRAD_CASES.items():
            m = Timer(torch.device("cpu"), warmup=2, runs=runs).measure(forward_backward(fn), inputs)
            rows.append({"backend": case, "B": batch, "N": n, "median_ms": 1e3 * m.median, "p10_ms": 1e3 * m.p10,
                         "p90_ms": 1e3 * m.p90, "runs": m.runs, "warmup": m.warmup})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--sizes", default="8x256,8x4096")
    parser.add_argument("--grad", action="store_true", help="forward + backward instead of forward only")
    args = parser.parse_args()
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    rows = measure_grad(sizes, args.runs) if args.grad else measure(sizes, ["reference", "vectorized"], args.runs)
    what = "forward + backward (d/ddiag of sum Re G + sum Im G)" if args.grad else "forward"
    name = "bench-core-cpu-grad" if args.grad else "bench-core-cpu"
    payload = {"what": f"BK-Core {what}, float32, whole batch, CPU, perf_counter",
               "torch": torch.__version__, "threads": torch.get_num_threads(), "machine": platform.machine(),
               "processor": platform.processor() or platform.machine(),
               "load_average_1_5_15_min": os.getloadavg(), "rows": rows}
    frame = pd.DataFrame(rows)
    report = Report(payload, [Table(f"BK-Core {what} on the CPU (ms per call, whole batch)", frame,
                                    {c: "{:.3f}" for c in ("median_ms", "p10_ms", "p90_ms")})],
                    Table("rows", frame))
    write_atomic(args.out / f"{name}.json", json.dumps(payload, indent=2) + "\n")
    write_atomic(args.out / f"{name}.md", render(report, "markdown"))
    print(render(report, "markdown"))


if __name__ == "__main__":
    main()
