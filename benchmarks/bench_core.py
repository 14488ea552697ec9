"""Time the BK-Core on a CUDA GPU: forward, backward and forward + backward, with bkprof's own Timer.

    python benchmarks/bench_core.py --out DIR [--name bench-core] [--sizes 8x256,...] [--backends triton,vectorized]

Writes DIR/NAME.json and DIR/NAME.md. Every number is float32 and for the whole batch, on the backend's
own entry (`Backend.run(diag, k, z)`, k = upper * lower precomputed, z = i). The gradient is that of
loss = sum(Re G) + sum(Im G) with respect to diag, fed as grad_outputs = 1 + i to `torch.autograd.grad`
(made once per input set, outside the timed call, so the call runs no kernel of the loss's):

* forward: `run` with no gradient needed (the inference path);
* backward: `torch.autograd.grad` over a forward recorded once (retain_graph), the backward alone;
* forward + backward: the forward that records the graph (for triton: the kernel that also saves the
  ratios d and e) and its backward.

Timing is `bkprof.profile.timing.Timer`: median, p10 and p90 of CUDA events per call after warm-up,
the L2 cache flushed before every call, inputs rotated among several sets; for rows of at most
GRAPH_POSITIONS positions also replays of the call captured as a CUDA graph, so host launch time
does not hide the kernels. "× floor" is the median over the time of 12 bytes per position (4 read
for diag, 8 written for complex64 G) at the device-to-device copy bandwidth measured in the same run;
"B/pos" is the bytes each call reads and writes once (unique tensors, not cache traffic).

For triton, at every size: the autograd node the forward records (`_EagerResolventBackward` is the
eager fast path, the custom ops' node otherwise), the bytes it saves for the backward per position
(saved_tensors_hooks: tensors it allocated, and inputs it keeps a reference to), and the CUDA kernels
of one eager forward + backward by name and count (torch.profiler), fills named apart.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bkprof.core import BACKENDS, triton_backend  # noqa: E402
from bkprof.profile.timing import Timer  # noqa: E402
from bkprof.report import Report, Table, render, write_atomic  # noqa: E402

SIZES = [(8, 256), (8, 1024), (64, 4096), (256, 16384), (1024, 16384)]
BACKEND_NAMES = ["triton", "vectorized"]
MODES = ["forward", "backward", "forward+backward"]
FLOOR_BYTES_PER_POSITION = 12
ROTATE_BYTES = 512 << 20   # rotate input sets until they cover this much (at most MAX_SETS)
MAX_SETS = 8
GRAPH_POSITIONS = 1 << 18  # rows up to 64 x 4096 are also timed as CUDA-graph replays
SLOW_POSITIONS = 1 << 18   # backends made of aten ops are timed only up to this many positions
WARMUP, RUNS = 5, 50
DEVICE = "cuda"            # a plumbing check of the triton parts on the CPU sets "cpu" (Triton's interpreter)
Z = 1j
# bytes per position that each call reads and writes once, float32 (k counted per position: N - 1 ~ N)
TRITON_BYTES = {"forward": 4 + 4 + 8,                          # diag, k in; G out
                "backward": 8 + 16 + 4 + 4 + 4,                # grad of G, d and e, k in; grads of diag, k out
                "forward+backward": (4 + 4 + 8 + 16) + (8 + 16 + 4 + 4 + 4)}


def copy_bandwidth(timer: Timer) -> dict:
    """Device-to-device copy of a 1 GiB float32 tensor: bytes read + written per second."""
    src = torch.rand(1 << 28, device="cuda")
    dst = torch.empty_like(src)
    m = timer.measure(lambda x: dst.copy_(x), [src])
    moved = 2 * src.numel() * src.element_size()
    return {"bytes_moved": moved, "median_s": m.median, "runs": m.runs, "bytes_per_s": moved / m.median}


def input_sets(batch: int, n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Random chains like the layer's (diag in [-5, 1], positive couplings), several copies."""
    per_set = 4 * batch * (2 * n - 1)
    count = max(1, min(MAX_SETS, math.ceil(ROTATE_BYTES / per_set)))
    gen = torch.Generator(DEVICE).manual_seed(batch * 100_003 + n)
    sets = []
    for _ in range(count):
        diag = torch.rand(batch, n, device=DEVICE, generator=gen) * 6 - 5
        k = (0.05 + 2 * torch.rand(batch, n - 1, device=DEVICE, generator=gen)) * (
            0.05 + 2 * torch.rand(batch, n - 1, device=DEVICE, generator=gen))
        sets.append((diag, k, torch.full((batch, n), 1 + 1j, device=DEVICE)))
    return sets


def steps(run) -> dict:
    """The three timed calls of a backend's `run`, each taking one input set (diag, k)."""
    def forward(x):
        return run(x[0], x[1], Z)

    def forward_backward(x):
        leaf = x[0].detach().requires_grad_()
        g = run(leaf, x[1], Z)
        return torch.autograd.grad(g, leaf, x[2])[0]

    return {"forward": forward, "forward+backward": forward_backward}


def recorded(run, sets) -> list[tuple]:
    """One recorded forward per input set, for timing the backward alone."""
    out = []
    for diag, k, grad in sets:
        leaf = diag.detach().requires_grad_()
        out.append((run(leaf, k, Z), leaf, grad))
    return out


def backward_only(x):
    g, leaf, grad = x
    return torch.autograd.grad(g, leaf, grad, retain_graph=True)[0]


def measure_size(name: str, batch: int, n: int, timer: Timer, floor_us: float) -> list[dict]:
    run = BACKENDS[name].run
    sets = input_sets(batch, n)
    calls = steps(run)
    rows = []
    for mode in MODES:
        m = timer.measure(backward_only, recorded(run, sets)) if mode == "backward" else timer.measure(calls[mode], sets)
        row = {"backend": name, "batch": batch, "n": n, "mode": mode, "median_us": 1e6 * m.median,
               "p10_us": 1e6 * m.p10, "p90_us": 1e6 * m.p90, "runs": m.runs, "warmup_runs": m.warmup,
               "input_sets": len(sets), "over_floor": 1e6 * m.median / floor_us}
        if name == "triton":
            row["bytes_per_position"] = TRITON_BYTES[mode]
            row["gb_per_s"] = TRITON_BYTES[mode] * batch * n / m.median / 1e9
        if batch * n <= GRAPH_POSITIONS and mode != "backward":
            g = timer.measure_graph(calls[mode], sets)
            row.update(graph_median_us=1e6 * g.median, graph_p10_us=1e6 * g.p10, graph_p90_us=1e6 * g.p90)
        rows.append(row)
        print(f"{name:>10} B={batch:<5} N={n:<6} {mode:>16} median {row['median_us']:>10.1f} us "
              f"(p10 {row['p10_us']:.1f}, p90 {row['p90_us']:.1f})"
              + (f", graph {row['graph_median_us']:.1f} us" if "graph_median_us" in row else ""), flush=True)
    del sets, calls
    torch.cuda.empty_cache()
    return rows


def accuracy(batch: int, n: int) -> dict:
    """The triton gradient (float32) against the vectorized closed form in float64, relative max-norm."""
    diag, k, _ = input_sets(batch, n)[0]
    grads = []
    for name, dtype in (("triton", torch.float32), ("vectorized", torch.float64)):
        leaf = diag.to(dtype).requires_grad_()
        g = BACKENDS[name].run(leaf, k.to(dtype), Z)
        grads.append((g, torch.autograd.grad(g, leaf, torch.full_like(g, 1 + 1j))[0]))
    (g32, d32), (g64, d64) = grads
    return {"g_rel_error": ((g32.to(torch.complex128) - g64).abs().max() / g64.abs().max()).item(),
            "grad_rel_error": ((d32.double() - d64).abs().max() / d64.abs().max()).item()}


FILL_MARKS = ("Fill", "fill", "zero", "Zero", "memset")


def step_anatomy(batch: int, n: int) -> dict:
    """One triton forward + backward: the autograd node, the bytes saved per position, and the CUDA
    kernels launched (name -> count, from torch.profiler), with the fills among them."""
    from torch.profiler import ProfilerActivity, profile

    diag, k, grad = input_sets(batch, n)[0]
    leaf = diag.detach().requires_grad_()
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        g = BACKENDS["triton"].run(leaf, k, Z)
    inputs = {leaf.data_ptr(), k.data_ptr()}
    made = sum(t.numel() * t.element_size() for t in saved if t.data_ptr() not in inputs)
    kept = sum(t.numel() * t.element_size() for t in saved if t.data_ptr() in inputs)
    node = g.grad_fn.name()
    del g, saved
    step = steps(BACKENDS["triton"].run)["forward+backward"]
    step((diag, k, grad))
    _sync()
    on_gpu = DEVICE == "cuda"  # on the CPU (plumbing check) the aten ops stand in for the kernels
    with profile(activities=[ProfilerActivity.CUDA if on_gpu else ProfilerActivity.CPU]) as prof:
        step((diag, k, grad))
        _sync()
    kernels = {e.key: e.count for e in prof.key_averages()
               if (e.device_time_total > 0 if on_gpu else e.key.startswith("aten::"))}
    return {"batch": batch, "n": n, "node": node,
            "saved_made_b_per_pos": made / (batch * n), "saved_inputs_b_per_pos": kept / (batch * n),
            "kernels": kernels, "fills": {name: c for name, c in kernels.items() if any(m in name for m in FILL_MARKS)}}


def _sync() -> None:
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def kernel_breakdown(batch: int, n: int, calls: int = 10) -> dict[str, float]:
    """Mean device µs per forward + backward of each kernel, from the profiler (L2 warm)."""
    from torch.profiler import ProfilerActivity, profile

    step = steps(BACKENDS["triton"].run)["forward+backward"]
    x = input_sets(batch, n)[0]
    step(x)
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(calls):
            step(x)
        torch.cuda.synchronize()
    return {e.key: e.device_time_total / calls for e in prof.key_averages() if e.device_time_total > 0}


def measure(sizes, backends) -> dict:
    timer = Timer(torch.device("cuda"), warmup=WARMUP, runs=RUNS)
    copy = copy_bandwidth(timer)
    rows, errors, anatomy = [], [], []
    for batch, n in sizes:
        floor_us = FLOOR_BYTES_PER_POSITION * batch * n / copy["bytes_per_s"] * 1e6
        for name in backends:
            if name != "triton" and batch * n > SLOW_POSITIONS:
                continue
            rows.extend(measure_size(name, batch, n, timer, floor_us))
        if "triton" in backends:
            errors.append({"batch": batch, "n": n, **accuracy(batch, n)})
            anatomy.append(step_anatomy(batch, n))
    for row in rows:
        forward = next(r for r in rows if (r["backend"], r["batch"], r["n"], r["mode"]) ==
                       (row["backend"], row["batch"], row["n"], "forward"))
        row["over_forward"] = row["median_us"] / forward["median_us"]
        if "graph_median_us" in row:
            row["graph_over_forward"] = row["graph_median_us"] / forward["graph_median_us"]
    largest = max(sizes, key=lambda s: s[0] * s[1])
    return {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "triton": _triton_version(),
            "dtype": "float32", "z": str(Z), "copy_bandwidth": copy, "rows": rows, "accuracy": errors,
            "steps": anatomy,
            "kernels_at_largest": {"batch": largest[0], "n": largest[1],
                                   "mean_device_us": kernel_breakdown(*largest) if "triton" in backends else {}},
            "flops": [{"batch": b, "n": n, "forward": triton_backend.kernel_flops(b, n),
                       "backward": triton_backend.backward_kernel_flops(b, n)} for b, n in sizes]}


def _triton_version() -> str | None:
    return getattr(triton_backend.triton, "__version__", None)


def report(payload: dict) -> Report:
    import pandas as pd

    frame = pd.DataFrame(payload["rows"])
    columns = {"backend": "backend", "batch": "B", "n": "N", "mode": "mode", "median_us": "median µs",
               "p10_us": "p10 µs", "p90_us": "p90 µs", "over_forward": "× forward", "graph_median_us": "graph µs",
               "graph_over_forward": "graph × forward", "bytes_per_position": "B/pos", "over_floor": "× floor"}
    table = frame.reindex(columns=list(columns)).rename(columns=columns)
    copy = payload["copy_bandwidth"]
    caption = (f"{payload['device']}, torch {payload['torch']}, triton {payload['triton']}; float32, whole batch, "
               f"z = {payload['z']}; gradient of sum(Re G) + sum(Im G) with respect to diag. Median/p10/p90: CUDA "
               f"events per call ({RUNS} runs after warm-up), L2 flushed before each call, inputs rotated. "
               "Graph: replays of the call captured as a CUDA graph (host launch time removed), shown up to "
               f"{GRAPH_POSITIONS:,} positions. × forward: over the same backend's forward median. B/pos: bytes "
               f"read and written once per position (triton). × floor: over {FLOOR_BYTES_PER_POSITION} B/position "
               f"at the copy bandwidth {copy['bytes_per_s'] / 1e9:,.0f} GB/s measured in this run.")
    formats = {c: "{:,.1f}" for c in ("median µs", "p10 µs", "p90 µs", "graph µs")}
    formats.update({"× forward": "{:,.2f}", "graph × forward": "{:,.2f}", "× floor": "{:,.2f}", "B/pos": "{:,.0f}"})
    main = Table("BK-Core forward, backward, forward + backward", table, formats, caption)
    work = pd.DataFrame(payload["flops"]).merge(pd.DataFrame(payload["accuracy"], columns=["batch", "n", "g_rel_error", "grad_rel_error"]),
                                              on=["batch", "n"], how="left")
    work = work.rename(columns={"batch": "B", "n": "N", "forward": "forward FLOPs", "backward": "backward FLOPs",
                                "g_rel_error": "G rel. error", "grad_rel_error": "dL/ddiag rel. error"})
    extra = Table("triton: kernel FLOPs and float32 accuracy", work,
                  {"B": "{:,.0f}", "N": "{:,.0f}", "forward FLOPs": "{:,.0f}", "backward FLOPs": "{:,.0f}",
                   "G rel. error": "{:.2e}", "dL/ddiag rel. error": "{:.2e}"},
                  "FLOPs from triton_backend.kernel_flops and backward_kernel_flops (real FLOPs the kernels "
                  "execute, whole batch). Errors: max |x - x64| / max |x64| against the vectorized backend in "
                  "float64 (its gradient is the closed form, tested against the dense inverse).")
    kernels = payload["kernels_at_largest"]
    split = pd.DataFrame([{"kernel": k, "mean device µs": v} for k, v in kernels["mean_device_us"].items()])
    parts = Table(f"kernels of one forward + backward at B={kernels['batch']}, N={kernels['n']}", split,
                  {"mean device µs": "{:,.1f}"}, "torch.profiler, device time per call, mean of 10 calls (L2 warm).")
    return Report(payload, [main, extra, parts, anatomy_table(payload["steps"])], main)


def anatomy_table(anatomy: list[dict]) -> Table:
    import pandas as pd

    frame = pd.DataFrame([{"B": a["batch"], "N": a["n"], "autograd node": a["node"],
                           "saved B/pos": a["saved_made_b_per_pos"], "+ inputs kept B/pos": a["saved_inputs_b_per_pos"],
                           "kernels": sum(a["kernels"].values()), "fill kernels": sum(a["fills"].values()),
                           "names": ", ".join(f"{name[:40]} x{c}" for name, c in a["kernels"].items())}
                          for a in anatomy])
    return Table("triton: one eager forward + backward", frame,
                 {"saved B/pos": "{:,.1f}", "+ inputs kept B/pos": "{:,.1f}"},
                 "Node: the autograd node the forward records (_EagerResolventBackward: the eager fast path). "
                 "Saved: bytes per position the forward allocates for the backward, and inputs it keeps a "
                 "reference to (k), from saved_tensors_hooks. Kernels: CUDA kernels of one call (torch.profiler).")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="folder for NAME.json and NAME.md")
    parser.add_argument("--name", default="bench-core", help="file name stem (default bench-core)")
    parser.add_argument("--backends", default=",".join(BACKEND_NAMES), help="comma-separated backends")
    parser.add_argument("--sizes", default=",".join(f"{b}x{n}" for b, n in SIZES), help="BxN,BxN,...")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench_core: error: needs a CUDA GPU (benchmarks/bench_core_cpu.py times the CPU)")
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    payload = measure(sizes, args.backends.split(","))
    result = report(payload)
    write_atomic(args.out / f"{args.name}.json", json.dumps(payload, indent=2) + "\n")
    write_atomic(args.out / f"{args.name}.md", f"# BK-Core benchmark ({payload['device']})\n\n" + render(result, "markdown"))
    print(render(result, "markdown"))


if __name__ == "__main__":
    main()
