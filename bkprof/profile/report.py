"""The `bkprof profile` report: the JSON document, the results table and the top-operator tables."""

from __future__ import annotations

import torch

from bkprof import machine
from bkprof.profile.memory import CPU_MEMORY_NOTE
from bkprof.profile.breakdown import DERIVED_COLUMNS, component_tables, with_rates
from bkprof.profile.ops import PROFILED_RUNS
from bkprof.profile.peaks import roof_for
from bkprof.profile.runner import COLUMN_TYPES, COLUMNS, ProfileResult, ProfileSettings
from bkprof.profile.steps import INPUT_POOL, OPTIMIZER
from bkprof.profile.timing import CUDA_WARMUP_SECONDS, L2_FLUSH_BYTES
from bkprof.report import Report, Table
from bkprof.variants import LayerConfig
from bkprof.variants.config import config_header

_SHOWN = {  # results column -> (heading, format) in the table a person reads; runs and status are in the caption and note
    "variant": ("variant", None),
    "mode": ("mode", None),
    "median_ms": ("median ms", "{:,.3f}"),
    "spread": ("p10–p90 ms", None),
    "tokens_per_s": ("tokens/s", "{:,.0f}"),
    "gflop_per_s": ("GFLOP/s", "{:,.1f}"),
    "bk_core_share": ("BK-Core", "{:.1%}"),
    "time_vs_dense": ("time ÷ dense", "{:.2f}×"),
    "flops_vs_dense": ("FLOPs ÷ dense", "{:.2f}×"),
    "of_peak": ("of peak", "{:.2%}"),
    "peak_mib": ("peak MiB", "{:,.1f}"),
    "graph_ms": ("graph ms", "{:,.3f}"),
    "bk_core_graph_ms": ("BK-Core graph ms", "{:,.3f}"),
    "bk_core_graph_share": ("BK-Core graph", "{:.1%}"),
    "graph_of_peak": ("graph of peak", "{:.2%}"),
    "note": ("note", None),
}


CPU_PEAK_METHOD = ("allocator records: the peak of the running total of every CPU allocation and free that "
                   "torch.profiler(profile_memory=True) saw over the row's profiled runs, plus the storage alive when "
                   "they began (weights, gradients, buffers, optimizer state, input pool); computed per row, so "
                   "nothing carries over between rows")
COMPONENTS_METHOD = ("record_function ranges bkprof/<component> around each component's module (and bkprof/loss, "
                     "bkprof/backward, bkprof/optimizer); forward time = self time of the ops inside the innermost "
                     "range (CUDA: device time of the kernels each op launched; CPU: self CPU time, profiler overhead "
                     "included); backward time = the autograd nodes' evaluate_function events, each attributed by its "
                     "sequence number to the component whose forward created the node; the same method on CPU and CUDA")


def environment(device: torch.device, backend: str) -> dict:
    """What ran the measurement: the device, the resolved BK-Core backend, library versions, the
    cores, torch's CPU threads and the load average when it began."""
    device = torch.device(device)
    on_cuda = device.type == "cuda"
    return {
        "device": device.type,
        "device_name": torch.cuda.get_device_name(device) if on_cuda else "cpu",
        "backend": backend,
        "torch": torch.__version__,
        "cuda": torch.version.cuda if on_cuda else None,
        "cpu_threads": torch.get_num_threads(),
        "cores": machine.cores(),
        "load_average_1m": machine.load_average(),
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32 if on_cuda else None,
    }


def method(settings: ProfileSettings) -> dict:
    on_cuda = settings.device.type == "cuda"
    return {
        "batch": settings.batch,
        "modes": list(settings.modes),
        "warmup_runs": settings.warmup,
        "warmup_min_seconds": CUDA_WARMUP_SECONDS if on_cuda else None,
        "garbage_collector": "off during the timed runs",
        "timed_runs": settings.runs,
        "clock": "CUDA events around each run" if on_cuda else "time.perf_counter around each run",
        "l2_flush": f"{L2_FLUSH_BYTES // 2**20} MiB buffer zeroed before each timed run" if on_cuda else None,
        "inputs": f"{INPUT_POOL} pre-generated standard-normal inputs (seed {settings.seed}), rotated run by run",
        "dtype": "float32",
        "optimizer": OPTIMIZER,
        "train_loss": "mean(out^2)",
        "bk_core_share": "the BK-Core module timed alone on the potentials v the layer fed it, same mode; "
                         "alone, so the CPU timer and the CUDA events time it the same way and no hook "
                         "synchronises inside the layer's timed runs",
        "memory": "torch.cuda.max_memory_allocated over the timed runs (peak reset after the warm-up), minus "
                  "what was allocated before the row began" if on_cuda
                  else CPU_PEAK_METHOD if settings.components else CPU_MEMORY_NOTE,
        "components": COMPONENTS_METHOD if settings.components else None,
        "graphs": settings.graphs,
        "profiled_runs_for_ops": PROFILED_RUNS if (settings.ops or settings.trace_dir) else 0,
    }


def profile_report(result: ProfileResult, config: LayerConfig, settings: ProfileSettings, env: dict,
                   peak_tflops: float | None = None, peak_gbps: float | None = None) -> Report:
    """The report of one run; the roof (device peaks) is the datasheet's unless `peak_tflops`/`peak_gbps` say otherwise."""
    roof = roof_for(env, result.copy_bytes_per_s, peak_tflops, peak_gbps)
    rows = [_plain(row) for row in result.frame.to_dict("records")]
    for row in rows:
        row["of_peak"] = _fraction(None if _missing(row["gflop_per_s"]) else row["gflop_per_s"] * 1e9, roof.flops_per_s)
        row["graph_of_peak"] = _fraction(_per_s(row["gflop"], row["graph_ms"]), roof.flops_per_s)
    payload = {
        "command": "profile",
        "config": config_header(config),
        "environment": env,
        "method": method(settings),
        "roof": roof.as_dict(),
        "columns": {**COLUMNS, **DERIVED_COLUMNS},
        "rows": rows,
        "ops": result.ops,
        "components": {key: with_rates(value, roof) for key, value in result.components.items()},
        "failed": result.failed,
    }
    return report_from_payload(payload)


def report_from_payload(payload: dict) -> Report:
    """The report of a `bkprof profile` JSON document (so a saved run renders again as table or Markdown)."""
    import pandas as pd

    columns = [*COLUMNS, *(c for c in DERIVED_COLUMNS if payload["rows"] and c in payload["rows"][0])]
    frame = pd.DataFrame(payload["rows"], columns=columns).astype({c: COLUMN_TYPES.get(c, "float64") for c in columns})
    tables = [_results_table(frame, payload)] + [_ops_table(key, ops, payload) for key, ops in payload["ops"].items()]
    for key, parts in payload.get("components", {}).items():
        tables += component_tables(key, parts, payload)
    return Report(payload=payload, tables=tables, results=Table("results", frame))


def _results_table(results, payload: dict) -> Table:
    env, how = payload["environment"], payload["method"]
    frame = results.copy()
    frame["spread"] = [_spread(p10, p90) for p10, p90 in zip(frame["p10_ms"], frame["p90_ms"])]
    shown = [c for c in _SHOWN if c in frame.columns and (how["graphs"] or c not in GRAPH_COLUMNS)]
    frame = frame[shown].rename(columns={c: _SHOWN[c][0] for c in shown})
    formats = {_SHOWN[c][0]: _SHOWN[c][1] for c in shown if _SHOWN[c][1]}
    caption = (f"{env['device_name']}, BK-Core backend {env['backend']}, batch {how['batch']}, float32; "
               f"{_warmup_text(how)} + {how['timed_runs']} timed runs per row. Times are per step for the whole batch; "
               "train = forward + backward + Adam step. GFLOP/s: analytic FLOPs (2 per multiply-accumulate; train: "
               "forward + backward, optimizer not counted) over the median. BK-Core: share of the median spent in "
               "the BK-Core, timed alone on the layer's own potentials.")
    roof = payload.get("roof")
    if roof:
        caption += (f" of peak: achieved FLOP/s over the {roof['precision'].upper()} peak, "
                    f"{roof['flops_source']}" + (f"; copy bandwidth measured in this run {roof['copy_bytes_per_s'] / 1e9:,.0f} GB/s"
                                                  if roof.get("copy_bytes_per_s") else "") + ".")
    if env["device"] != "cuda":
        caption += f" peak MiB: {how['memory']}."
    caption += _load_text(env)
    return Table(f"bkprof profile ({env['device']})", frame, formats, caption,
                 essential=("variant", "mode", "median ms", "tokens/s", "BK-Core", "note"))


def _load_text(env: dict) -> str:
    """Threads, cores and the load when the run began (older documents have none of these)."""
    if env.get("cores") is None:
        return ""
    load = env.get("load_average_1m")
    return (f" {env['cpu_threads']} torch CPU threads on {env['cores']} cores"
            + (f", load average {load:.2f} at the start" if load is not None else "") + ".")


def _ops_table(key: str, ops: list[dict], payload: dict) -> Table:
    import pandas as pd

    kind = "device (CUDA kernel)" if payload["environment"]["device"] == "cuda" else "CPU"
    runs = payload["method"]["profiled_runs_for_ops"]
    frame = pd.DataFrame(ops, columns=["op", "calls_per_run", "self_ms_per_run", "share"])
    frame.columns = ["op", "calls/run", "self ms/run", "share"]
    return Table(f"top {len(ops)} ops: {key}", frame, {"calls/run": "{:,.1f}", "self ms/run": "{:,.4f}", "share": "{:.1%}"},
                 f"self {kind} time per run over {runs} profiled runs (torch.profiler); share of all self {kind} time")


GRAPH_COLUMNS = ("graph_ms", "bk_core_graph_ms", "bk_core_graph_share", "graph_of_peak")


def _per_s(gflop, ms):
    return None if _missing(gflop) or _missing(ms) or not ms else gflop * 1e9 / (ms / 1e3)


def _fraction(flops_per_s, peak):
    return None if _missing(flops_per_s) or not peak else flops_per_s / peak


def _warmup_text(how: dict) -> str:
    runs = f"{how['warmup_runs']} warm-up"
    return f"{runs} (at least {how['warmup_min_seconds']} s)" if how.get("warmup_min_seconds") else runs


def _spread(p10, p90) -> str | None:
    if _missing(p10) or _missing(p90):
        return None
    return f"{p10:,.3f}–{p90:,.3f}"


def _missing(value) -> bool:
    import pandas as pd

    return value is None or bool(pd.isna(value))


def _plain(row: dict) -> dict:
    """A JSON-ready row: NaN and pandas' NA become null, numpy scalars become Python numbers."""
    out = {}
    for key, value in row.items():
        if _missing(value):
            out[key] = None
        elif hasattr(value, "item"):
            out[key] = value.item()
        else:
            out[key] = value
    return out
