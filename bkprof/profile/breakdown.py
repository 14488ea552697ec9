"""The per-component tables of `bkprof profile`: where a row's time, FLOPs, bytes and memory go."""

from __future__ import annotations

from bkprof.profile.peaks import Roof
from bkprof.report import Table

# results columns the report derives from the measured ones and the roof
DERIVED_COLUMNS = {
    "of_peak": "gflop_per_s over the device's peak FLOP/s (the report's `roof` says which peak)",
    "graph_of_peak": "--graphs: gflop over graph_ms, over the device's peak FLOP/s",
}

PART_COLUMNS = {
    "phase": "forward, backward or optimizer",
    "component": "the component (names of `bkprof flops --breakdown`), or a part of the step outside the layer",
    "flops": "FLOPs of the component in one step, whole batch (op counter at the run's config; 2 per multiply-accumulate)",
    "flop_share": "flops over the row's counted FLOPs",
    "time_ms": "time per run attributed to the component (profiled runs; see `clock`)",
    "time_share": "time_ms over the row's attributed time",
    "gflop_per_s": "achieved: flops / time_ms",
    "bytes": "bytes the component's aten ops read and write, each op its tensor inputs and outputs once, "
             "from their shapes (no reuse between ops: what an eager step does)",
    "intensity": "arithmetic intensity: flops / bytes (FLOPs per byte)",
    "of_peak": "gflop_per_s over the peak FLOP/s",
    "of_roof": "gflop_per_s over the roofline at this intensity: min(peak FLOP/s, intensity x peak bandwidth)",
}


def _ratio(a, b):
    return a / b if a is not None and b else None


def with_rates(breakdown: dict, roof: Roof) -> dict:
    """`breakdown` (from `components.breakdown`) with shares, achieved FLOP/s, intensity and fractions of the roof."""
    parts = breakdown["parts"]
    total_flops = sum(p["flops"] or 0 for p in parts)
    total_ms = sum(p["time_ms"] or 0 for p in parts)
    rated = []
    for p in parts:
        achieved = _ratio(p["flops"], (p["time_ms"] or 0) / 1e3)
        intensity = _ratio(p["flops"], p["bytes"])
        attainable = roof.attainable(intensity) if intensity is not None else None
        rated.append({**p, "flop_share": _ratio(p["flops"], total_flops), "time_share": _ratio(p["time_ms"], total_ms),
                      "gflop_per_s": achieved / 1e9 if achieved is not None else None, "intensity": intensity,
                      "of_peak": _ratio(achieved, roof.flops_per_s), "of_roof": _ratio(achieved, attainable)})
    return {**breakdown, "parts": rated, "columns": PART_COLUMNS}


def component_tables(key: str, breakdown: dict, payload: dict) -> list[Table]:
    """Two tables per row: time/FLOPs/bytes per (phase, component), and memory at the peak."""
    import pandas as pd

    roof = payload.get("roof") or {}
    frame = pd.DataFrame(breakdown["parts"], columns=list(PART_COLUMNS))
    frame["flops"] = frame["flops"].astype("float64") / 1e6
    frame["bytes"] = frame["bytes"].astype("float64") / 1e6
    frame = frame.rename(columns={"flops": "MFLOP", "flop_share": "FLOPs %", "time_ms": "ms/run", "time_share": "time %",
                                  "gflop_per_s": "GFLOP/s", "bytes": "MB", "intensity": "FLOP/B",
                                  "of_peak": "of peak", "of_roof": "of roof"})
    formats = {"MFLOP": "{:,.3f}", "FLOPs %": "{:.1%}", "ms/run": "{:,.4f}", "time %": "{:.1%}", "GFLOP/s": "{:,.2f}",
               "MB": "{:,.3f}", "FLOP/B": "{:,.2f}", "of peak": "{:.2%}", "of roof": "{:.2%}"}
    caption = (f"{breakdown['profiled_runs']} profiled runs (torch.profiler), time = {breakdown['clock']}; "
               "backward work goes to the component whose forward created the autograd node (sequence numbers). "
               "MFLOP and MB: op counter, one step, whole batch; MB = each op's tensor inputs and outputs once. "
               f"Peak: {roof.get('flops_source', 'unknown')}; bandwidth: {roof.get('bytes_source', 'unknown')}.")
    tables = [Table(f"components: {key}", frame, formats, caption,
                    essential=("phase", "component", "MFLOP", "FLOPs %", "ms/run", "time %"))]
    memory = breakdown["memory"]
    mem = pd.DataFrame(memory["at_peak"], columns=["phase", "component", "mib"])
    mem = mem.rename(columns={"mib": "MiB at peak (net)"})
    largest = "; ".join(f"{r['mib']:,.1f} MiB in {r['op']} ({r['component']}, {r['phase']})" for r in memory["largest"][:3])
    tables.append(Table(
        f"memory: {key}", mem, {"MiB at peak (net)": "{:,.2f}"},
        f"peak {memory['peak_mib']:,.2f} MiB = {memory['alive_at_start_mib']:,.2f} MiB alive when the profiled runs "
        "began (weights, gradients, optimizer state, inputs) + what each (component, phase) had allocated and not "
        "freed at the peak (allocator records of torch.profiler(profile_memory=True), each at the op that made it; "
        f"a free counts where it happens). Largest allocations: {largest or 'none'}."))
    return tables
