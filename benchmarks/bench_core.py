"""Time the BK-Core backends on a CUDA GPU: reference, vectorized and triton.

    python benchmarks/bench_core.py --out DIR [--name bench-core-H100]

Writes DIR/NAME.json and DIR/NAME.md. Every number is float32, forward only, for the whole batch,
timed on the backend's own entry (`Backend.run(diag, k, z)`, k = upper * lower precomputed):

* median / p10 / p90 µs per call from CUDA events around each call, after warm-up, with the L2
  cache flushed (a 256 MiB write) before every call and the inputs rotated among several sets;
* "back-to-back" µs per call: many calls queued with no flush, divided by the count, so host
  launch overhead shows where it is the bound;
* GB/s at 12 bytes per position (4 read for v, 8 written for complex64 G: the floor convention)
  against the device-to-device copy bandwidth measured in the same run (bytes read + written);
* the triton backend's FLOPs from `kernel_flops` and its error against the vectorized backend in
  float64.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bkprof.core import BACKENDS, triton_backend  # noqa: E402
from bkprof.report import Report, Table, render, write_atomic  # noqa: E402

SIZES = [(8, 256), (8, 1024), (64, 4096), (256, 16384), (1024, 16384)]
BACKEND_NAMES = ["reference", "vectorized", "triton"]
FLOOR_BYTES_PER_POSITION = 12
FLUSH_BYTES = 256 << 20
ROTATE_BYTES = 512 << 20   # rotate input sets until they cover this much (at most MAX_SETS)
MAX_SETS = 16
# seconds of timed calls per (backend, size); the reference gets at least MIN_RUNS however slow
BUDGET_S = {"reference": 6.0, "vectorized": 2.0, "triton": 1.0}
MIN_RUNS, MAX_RUNS = 3, 300
Z = 1j


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def copy_bandwidth() -> dict:
    """Device-to-device copy of a 1 GiB float32 tensor: bytes read + written per second."""
    src = torch.rand(1 << 28, device="cuda")
    dst = torch.empty_like(src)
    for _ in range(3):
        dst.copy_(src)
    times = []
    for _ in range(20):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        dst.copy_(src)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    moved = 2 * src.numel() * src.element_size()
    return {"bytes_moved": moved, "median_s": statistics.median(times), "runs": len(times),
            "bytes_per_s": moved / statistics.median(times)}


def input_sets(batch: int, n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Random chains like the layer's (|v| <= 3 around -2, positive couplings), several copies."""
    per_set = 4 * batch * (2 * n - 1)
    count = max(1, min(MAX_SETS, math.ceil(ROTATE_BYTES / per_set)))
    gen = torch.Generator("cuda").manual_seed(batch * 100_003 + n)
    sets = []
    for _ in range(count):
        diag = torch.rand(batch, n, device="cuda", generator=gen) * 6 - 5
        k = (0.05 + 2 * torch.rand(batch, n - 1, device="cuda", generator=gen)) * (
            0.05 + 2 * torch.rand(batch, n - 1, device="cuda", generator=gen))
        sets.append((diag, k))
    return sets


def time_backend(run, sets, budget_s: float) -> dict:
    flush = torch.empty(FLUSH_BYTES // 4, device="cuda")
    run(*sets[0], Z)  # compilation, allocator, caches
    torch.cuda.synchronize()
    started = time.perf_counter()
    run(*sets[1 % len(sets)], Z)
    torch.cuda.synchronize()
    first_s = time.perf_counter() - started
    warmup = 2 if first_s > 0.05 else 10
    for i in range(warmup - 2):
        run(*sets[i % len(sets)], Z)
    runs = int(min(MAX_RUNS, max(MIN_RUNS, budget_s / max(first_s, 1e-6))))
    events = []
    for i in range(runs):
        flush.zero_()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        run(*sets[i % len(sets)], Z)
        end.record()
        events.append((start, end))
    torch.cuda.synchronize()
    times_us = [s.elapsed_time(e) * 1e3 for s, e in events]
    queued = min(runs, 50)
    torch.cuda.synchronize()
    began = time.perf_counter()
    for i in range(queued):
        run(*sets[i % len(sets)], Z)
    torch.cuda.synchronize()
    return {"median_us": statistics.median(times_us), "p10_us": percentile(times_us, 0.1),
            "p90_us": percentile(times_us, 0.9), "runs": runs, "warmup_runs": warmup, "input_sets": len(sets),
            "back_to_back_us": (time.perf_counter() - began) / queued * 1e6, "back_to_back_runs": queued}


def triton_error(diag: torch.Tensor, k: torch.Tensor) -> float:
    """max |G_triton - G| / max |G| with G from the vectorized backend in float64."""
    ours = BACKENDS["triton"].run(diag, k, Z).to(torch.complex128)
    truth = BACKENDS["vectorized"].run(diag.double(), k.double(), Z)
    return ((ours - truth).abs().max() / truth.abs().max()).item()


def kernel_breakdown(diag: torch.Tensor, k: torch.Tensor, calls: int = 20) -> dict[str, float]:
    """Mean device µs per call of each Triton kernel, from the profiler."""
    from torch.profiler import ProfilerActivity, profile

    run = BACKENDS["triton"].run
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(calls):
            run(diag, k, Z)
        torch.cuda.synchronize()
    return {e.key: e.device_time_total / calls for e in prof.key_averages() if e.key.startswith("_")}


def measure(sizes, backends) -> dict:
    copy = copy_bandwidth()
    rows = []
    for batch, n in sizes:
        sets = input_sets(batch, n)
        positions = batch * n
        floor_us = FLOOR_BYTES_PER_POSITION * positions / copy["bytes_per_s"] * 1e6
        for name in backends:
            timing = time_backend(BACKENDS[name].run, sets, BUDGET_S[name])
            row = {"backend": name, "batch": batch, "n": n, **timing,
                   "gb_per_s": FLOOR_BYTES_PER_POSITION * positions / timing["median_us"] / 1e3,
                   "floor_us": floor_us, "over_floor": timing["median_us"] / floor_us}
            if name == "triton":
                row["kernel_flops"] = triton_backend.kernel_flops(batch, n)
                row["gflop_per_s"] = row["kernel_flops"] / timing["median_us"] / 1e3
                row["rel_error_vs_float64"] = triton_error(*sets[0])
            rows.append(row)
            print(f"{name:>10} B={batch:<5} N={n:<6} median {timing['median_us']:>12.1f} us "
                  f"(p10 {timing['p10_us']:.1f}, p90 {timing['p90_us']:.1f}, {timing['runs']} runs), "
                  f"back-to-back {timing['back_to_back_us']:.1f} us", flush=True)
        del sets
        torch.cuda.empty_cache()
    for row in rows:
        ref = next((r for r in rows if r["backend"] == "reference" and (r["batch"], r["n"]) == (row["batch"], row["n"])), None)
        row["speedup_vs_reference"] = ref["median_us"] / row["median_us"] if ref else None
        row["speedup_vs_reference_back_to_back"] = ref["back_to_back_us"] / row["back_to_back_us"] if ref else None
    largest = max(sizes, key=lambda s: s[0] * s[1])
    breakdown = kernel_breakdown(*input_sets(*largest)[0]) if "triton" in backends else {}
    return {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "triton": _triton_version(),
            "dtype": "float32", "z": str(Z), "copy_bandwidth": copy, "rows": rows,
            "triton_kernels_at_largest": {"batch": largest[0], "n": largest[1], "mean_device_us": breakdown}}


def _triton_version() -> str | None:
    return getattr(triton_backend.triton, "__version__", None)


def report(payload: dict) -> Report:
    import pandas as pd

    frame = pd.DataFrame(payload["rows"])
    columns = {"backend": "backend", "batch": "B", "n": "N", "median_us": "median µs", "p10_us": "p10 µs",
               "p90_us": "p90 µs", "runs": "runs", "warmup_runs": "warm-up", "back_to_back_us": "back-to-back µs",
               "gb_per_s": "GB/s (12 B/pos)", "over_floor": "× floor", "speedup_vs_reference": "× vs reference"}
    table = frame[list(columns)].rename(columns=columns)
    copy = payload["copy_bandwidth"]
    caption = (f"{payload['device']}, torch {payload['torch']}, triton {payload['triton']}; float32, forward, whole batch, "
               f"z = {payload['z']}. Median/p10/p90: CUDA events per call, L2 flushed before each call, inputs rotated. "
               "Back-to-back: mean over up to 50 calls queued with no flush (host launch overhead included). "
               f"GB/s and × floor: {FLOOR_BYTES_PER_POSITION} B/position, floor = that over the copy bandwidth "
               f"{copy['bytes_per_s'] / 1e9:,.0f} GB/s measured in this run (1 GiB device copy, read + written). "
               "× vs reference: ratio of medians.")
    formats = {c: "{:,.1f}" for c in ("median µs", "p10 µs", "p90 µs", "back-to-back µs", "GB/s (12 B/pos)")}
    formats.update({"× floor": "{:,.2f}", "× vs reference": "{:,.0f}"})
    main = Table("BK-Core backends", table, formats, caption)
    tri = pd.DataFrame([r for r in payload["rows"] if r["backend"] == "triton"],
                       columns=["batch", "n", "kernel_flops", "gflop_per_s", "rel_error_vs_float64"])
    tri = tri.rename(columns={"batch": "B", "n": "N", "kernel_flops": "kernel FLOPs", "gflop_per_s": "GFLOP/s",
                              "rel_error_vs_float64": "rel. error vs float64"})
    extra = Table("triton backend: work and accuracy", tri,
                  {"B": "{:,.0f}", "N": "{:,.0f}", "kernel FLOPs": "{:,.0f}", "GFLOP/s": "{:,.0f}",
                   "rel. error vs float64": "{:.2e}"},
                  "FLOPs from triton_backend.kernel_flops (real FLOPs the kernels execute); error against the "
                  "vectorized backend in float64, first input set.")
    kernels = payload["triton_kernels_at_largest"]
    split = pd.DataFrame([{"kernel": k, "mean device µs": v} for k, v in kernels["mean_device_us"].items()])
    parts = Table(f"triton kernels at B={kernels['batch']}, N={kernels['n']}", split, {"mean device µs": "{:,.1f}"},
                  "torch.profiler, device time per call, averaged over 20 calls (L2 warm).")
    return Report(payload, [main, extra, parts], main)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="folder for NAME.json and NAME.md")
    parser.add_argument("--name", default="bench-core", help="file name stem (default bench-core)")
    parser.add_argument("--backends", default=",".join(BACKEND_NAMES), help="comma-separated backends")
    parser.add_argument("--sizes", default=",".join(f"{b}x{n}" for b, n in SIZES), help="BxN,BxN,...")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench_core: error: needs a CUDA GPU (the CPU numbers are measured elsewhere)")
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    payload = measure(sizes, args.backends.split(","))
    result = report(payload)
    write_atomic(args.out / f"{args.name}.json", json.dumps(payload, indent=2) + "\n")
    write_atomic(args.out / f"{args.name}.md", f"# BK-Core benchmark ({payload['device']})\n\n" + render(result, "markdown"))
    print(render(result, "markdown"))


if __name__ == "__main__":
    main()
