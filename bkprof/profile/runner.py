"""Profile each (variant, mode): time, memory and the derived columns, one DataFrame row each."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch

from bkprof import machine
from bkprof.flops.counter import count_layer_flops
from bkprof.profile.components import ComponentRanges, attribute, breakdown, live_bytes
from bkprof.profile.memory import MIB, PeakMemory, is_out_of_memory, release
from bkprof.profile.ops import PROFILED_RUNS, profile_ops
from bkprof.profile.modes import MODES
from bkprof.profile.steps import bk_core_inputs, bk_core_step, input_pool, layer_step
from bkprof.profile.timing import Measurement, NotCapturable, Timer, first_line
from bkprof.variants import REFERENCE, LayerConfig, build

# The fixed schema of the results, one row per (variant, mode), and what each column means.
COLUMNS = {
    "variant": "layer variant",
    "mode": "forward (eval, no_grad) or train (forward + backward + Adam step)",
    "status": "ok, or out of memory",
    "median_ms": "median time of one step over the timed runs, milliseconds, whole batch",
    "p10_ms": "10th percentile of the step time, milliseconds",
    "p90_ms": "90th percentile of the step time, milliseconds",
    "runs": "timed runs (after the untimed warm-up runs; on CUDA the warm-up lasts at least 0.2 s)",
    "tokens_per_s": "batch x n_seq tokens divided by the median step time",
    "gflop": "analytic FLOPs of one step, whole batch, in GFLOP (2 per multiply-accumulate; "
             "forward, or forward + backward in train mode; the optimizer step is not counted)",
    "gflop_per_s": "achieved GFLOP/s: gflop divided by the median step time",
    "bk_core_ms": "median time of the layer's BK-Core alone on the potentials the layer fed it, "
                  "same mode (train: forward + backward with respect to v), milliseconds",
    "bk_core_share": "bk_core_ms / median_ms",
    "time_vs_dense": "median_ms / dense median_ms, same mode",
    "flops_vs_dense": "gflop / dense gflop, same mode",
    "peak_mib": "CUDA: peak memory allocated during the timed runs (weights, optimizer state, the input pool, "
                "activations), MiB; CPU: not measured",
    "graph_ms": "--graphs: median time of one replay of the step captured as a CUDA graph, milliseconds",
    "bk_core_graph_ms": "--graphs: the same for the BK-Core alone",
    "bk_core_graph_share": "--graphs: bk_core_graph_ms / graph_ms, the BK-Core's share of the step's device time "
                           "(graph replays carry no host launch time, which the eager share includes)",
    "others_busy_cores": "CPU time other processes used while the row was measured, in cores (all processes' CPU "
                         "time from /proc/stat less this process's own); above 0.5 the row's note marks the machine "
                         "busy: on a shared CPU a step can run many times slower",
    "note": "why a column is empty, or that the machine was busy",
}

TEXT_COLUMNS = ("variant", "mode", "status", "note")
COLUMN_TYPES = {c: ("str" if c in TEXT_COLUMNS else "Int64" if c == "runs" else "float64") for c in COLUMNS}


@dataclass(frozen=True)
class ProfileSettings:
    """How `profile_variants` measures: where, which modes, batch, warm-up and timed runs, and extras.

    >>> import torch
    >>> from bkprof import ProfileSettings
    >>> ProfileSettings(torch.device("cpu")).modes, ProfileSettings(torch.device("cpu")).runs
    (('forward', 'train'), 20)
    """

    device: torch.device
    modes: tuple[str, ...] = MODES
    batch: int = 8
    warmup: int = 3
    runs: int = 20
    graphs: bool = False
    ops: int = 0
    trace_dir: Path | None = None
    seed: int = 0
    components: bool = True  # per-component time, FLOPs, bytes and memory (one profiled pass per row)


@dataclass
class ProfileResult:
    frame: object  # pandas DataFrame with COLUMNS
    ops: dict[str, list[dict]] = field(default_factory=dict)  # "variant/mode" -> top operators
    components: dict[str, dict] = field(default_factory=dict)  # "variant/mode" -> `breakdown` of the row
    copy_bytes_per_s: float | None = None  # device copy bandwidth measured in this run

    @property
    def failed(self) -> bool:
        return bool((self.frame["status"] != "ok").any())


def profile_variants(config: LayerConfig, variants: Sequence[str], settings: ProfileSettings,
                     on_row: Callable[[str, str], None] | None = None) -> ProfileResult:
    """Profile every variant in every mode of `settings`; `on_row(variant, mode)` is called as each row starts.

    >>> import torch
    >>> from bkprof import LayerConfig, ProfileSettings, profile_variants
    >>> settings = ProfileSettings(torch.device("cpu"), modes=("forward",), batch=1, warmup=0, runs=2, components=False)
    >>> result = profile_variants(LayerConfig(d_model=16, n_seq=32), ["dense"], settings)
    >>> row = result.frame.iloc[0]
    >>> row["variant"], row["mode"], row["status"], bool(row["median_ms"] > 0)
    ('dense', 'forward', 'ok', True)
    """
    import pandas as pd

    from bkprof.profile.peaks import copy_bandwidth

    timer = Timer(settings.device, settings.warmup, settings.runs)
    rows, ops, components = [], {}, {}
    for name in variants:
        for mode in settings.modes:
            if on_row is not None:
                on_row(name, mode)
            before = machine.sample()
            row, extras = _profile_row(name, config, mode, settings, timer)
            _mark_load(row, machine.others_busy_cores(before, machine.sample()))
            rows.append(row)
            if extras.get("ops") is not None:
                ops[f"{name}/{mode}"] = extras["ops"]
            if extras.get("components") is not None:
                components[f"{name}/{mode}"] = extras["components"]
    frame = pd.DataFrame(rows, columns=list(COLUMNS)).astype(COLUMN_TYPES)
    _add_ratios_vs_dense(frame, config, settings)
    return ProfileResult(frame, ops, components, copy_bandwidth(settings.device))


class _Row(dict):
    """A result row filled in as the measurement goes, with the phase it is in (for failure notes)."""

    def __init__(self, variant: str, mode: str):
        super().__init__({c: None for c in COLUMNS}, variant=variant, mode=mode, status="ok", note="")
        self.phase = "setup"

    def add_note(self, text: str) -> None:
        self["note"] = "; ".join(filter(None, [self["note"], text]))


def _mark_load(row: dict, others: float | None) -> None:
    row["others_busy_cores"] = others
    if machine.is_busy(others):
        row["note"] = "; ".join(filter(None, [row["note"], machine.busy_note(others)]))


def _profile_row(name, config, mode, settings, timer) -> tuple[dict, dict]:
    row = _Row(name, mode)
    row["gflop"] = analytic_gflop(name, config, settings.batch, mode, settings.device)
    memory = PeakMemory(settings.device)
    memory.start()
    extras: dict = {}
    try:
        _measure_row(row, name, config, mode, settings, timer, memory, extras)
    except Exception as error:  # noqa: BLE001 - only out-of-memory is handled; the rest re-raises
        if not is_out_of_memory(error):
            raise
        row["status"] = "out of memory"
        row.add_note(f"out of memory during {row.phase}")
    # the model and its tensors are gone once _measure_row and the exception are
    release(settings.device)
    return dict(row), extras


def _measure_row(row: _Row, name, config, mode, settings: ProfileSettings, timer: Timer,
                 memory: PeakMemory, extras: dict) -> None:
    """Fill `row`; `extras` gets the top operators ("ops") and the per-component breakdown ("components")."""
    device = settings.device
    model = build(name, config, seed=settings.seed).to(device)
    step = layer_step(model, mode)
    pool = input_pool((settings.batch, config.n_seq, config.d_model), device, settings.seed)

    row.phase = "timing"
    _fill_timing(row, timer.measure(step, pool, after_warmup=memory.forget_peak), settings.batch * config.n_seq)
    row["peak_mib"] = memory.peak_mib()
    if settings.graphs:
        row.phase = "graph capture"
        row["graph_ms"] = _graph_ms(row, "layer", timer, step, pool)

    row.phase = "BK-Core timing"
    cores, potentials = bk_core_inputs(model, pool)
    core_step = bk_core_step(cores, mode)
    row["bk_core_ms"] = timer.measure(core_step, potentials).median * 1e3
    row["bk_core_share"] = row["bk_core_ms"] / row["median_ms"]
    if settings.graphs:
        row.phase = "BK-Core graph capture"
        row["bk_core_graph_ms"] = _graph_ms(row, "BK-Core", timer, core_step, potentials)
        if row["bk_core_graph_ms"] is not None and row["graph_ms"]:
            row["bk_core_graph_share"] = row["bk_core_graph_ms"] / row["graph_ms"]

    if not (settings.components or settings.ops or settings.trace_dir):
        return
    row.phase = "torch.profiler"
    trace = settings.trace_dir / f"{name}-{mode}.json" if settings.trace_dir else None
    ranges = ComponentRanges(model)
    base = _bytes_alive(model, step, pool, memory)
    found: dict = {}
    with ranges:
        extras["ops"] = profile_ops(step, pool, device, settings.ops, trace, inspect=lambda prof: found.setdefault(
            "attribution", attribute(prof, ranges.nodes, device, base)))
    if not settings.ops:
        extras["ops"] = None
    if settings.components:
        row.phase = "counting FLOPs and bytes"
        counted = count_layer_flops(model, pool[0], backward=mode == "train")
        extras["components"] = breakdown(found["attribution"], counted, PROFILED_RUNS)
        if device.type != "cuda":
            row["peak_mib"] = found["attribution"].peak_bytes / MIB


def _bytes_alive(model, step, pool, memory: PeakMemory) -> int:
    """What the row holds when its profiled runs start: CUDA, the allocator's count above the row's
    start; CPU, the storage of the weights, gradients, buffers, optimizer state and input pool."""
    if memory.device.type == "cuda":
        return torch.cuda.memory_allocated(memory.device) - memory.base
    optimizer = getattr(step, "optimizer", None)
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    return live_bytes(list(model.parameters()), grads, list(model.buffers()),
                      optimizer.state if optimizer is not None else {}, pool)


def _fill_timing(row: _Row, m: Measurement, tokens: int) -> None:
    row.update(median_ms=m.median * 1e3, p10_ms=m.p10 * 1e3, p90_ms=m.p90 * 1e3, runs=m.runs,
               tokens_per_s=tokens / m.median)
    row["gflop_per_s"] = row["gflop"] / m.median


def _graph_ms(row: _Row, what: str, timer: Timer, step, inputs) -> float | None:
    """The graph-replay median in ms, or None with a note saying why the step could not be captured."""
    try:
        return timer.measure_graph(step, inputs).median * 1e3
    except NotCapturable as error:
        row.add_note(f"{what} graph not capturable: {error}")
    except RuntimeError as error:
        if is_out_of_memory(error):
            raise
        row.add_note(f"{what} graph capture failed: {first_line(error)}")
    return None


def analytic_gflop(name: str, config: LayerConfig, batch: int, mode: str, device: torch.device) -> float:
    """The closed-form FLOPs of one step in GFLOP, for the BK-Core backend that runs on `device`."""
    from bkprof.flops.analytic import analytic_flops

    return analytic_flops(name, config, batch=batch, backward=mode == "train", device=device.type) / 1e9


def _add_ratios_vs_dense(frame, config: LayerConfig, settings: ProfileSettings) -> None:
    for mode in frame["mode"].unique():
        rows = frame["mode"] == mode
        dense_gflop = analytic_gflop(REFERENCE, config, settings.batch, mode, settings.device)
        frame.loc[rows, "flops_vs_dense"] = frame.loc[rows, "gflop"] / dense_gflop
        dense = frame[rows & (frame["variant"] == REFERENCE) & (frame["status"] == "ok")]
        if len(dense) and dense["median_ms"].notna().all():
            frame.loc[rows, "time_vs_dense"] = frame.loc[rows, "median_ms"] / dense["median_ms"].iloc[0]
