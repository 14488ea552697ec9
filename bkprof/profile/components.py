"""Where a step's time and memory go, by component, forward and backward.

`ComponentRanges` opens a `record_function` range `bkprof/<component>` around each component's
module (the names of `bkprof flops --breakdown`), so torch.profiler, Perfetto and, under
`torch.autograd.profiler.emit_nvtx`, Nsight Systems group the kernels by component. The train step
adds `bkprof/loss`, `bkprof/backward` and `bkprof/optimizer`.

Attribution of one profiled run (`attribute`), the same on the CPU and on CUDA:
- forward: each op's self time (CPU: self CPU time; CUDA: device time of the kernels it launched)
  goes to the innermost `bkprof/` range around it;
- backward: autograd's engine runs each node inside an `autograd::engine::evaluate_function` event
  that carries the node's sequence number; `ComponentRanges` notes the sequence number at every
  module boundary of the forward, so the number names the component whose forward created the node
  (this works on the CUDA autograd thread too, where no forward range is open);
- memory: every allocation and free the allocator reports to the profiler (`profile_memory`), at
  its moment, goes to the (component, phase) of the innermost op or range around it.
"""

from __future__ import annotations

import bisect
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import torch
from torch import nn

from bkprof.flops.components import component_of
from bkprof.flops.counter import SequenceComponents

RANGE_PREFIX = "bkprof/"  # not "bkprof::": that is the namespace of our custom ops
EVALUATE_PREFIX = "autograd::engine::evaluate_function: "
PHASES = ("forward", "backward", "optimizer")
# parts of a train step outside the layer, each with the phase it belongs to
STEP_PARTS = {"loss": "forward", "optimizer": "optimizer"}
# autograd work no component created: the gradient seed, AccumulateGrad, the engine between nodes
AUTOGRAD_OTHER = "(autograd)"
OUTSIDE = "(outside)"  # work in a profiled run outside every range (the profiler's own, say)


class ComponentRanges:
    """While entered: a `bkprof/<component>` range around each component's module, and the
    sequence numbers of the autograd nodes each component's forward creates."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.nodes = SequenceComponents()
        self._stack: list[tuple[str, object]] = []
        self._hooks: list = []

    def __enter__(self) -> "ComponentRanges":
        for name, module in self.model.named_modules():
            component = component_of(name)
            self._hooks.append(module.register_forward_pre_hook(lambda m, a, c=component: self._enter(c)))
            self._hooks.append(module.register_forward_hook(lambda m, a, o: self._leave()))
        return self

    def __exit__(self, *exc) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks.clear()
        while self._stack:  # a forward that raised leaves its ranges open
            self._leave()

    def _enter(self, component: str) -> None:
        opened = None
        if not self._stack or self._stack[-1][0] != component:
            opened = torch.autograd.profiler.record_function(RANGE_PREFIX + component)
            opened.__enter__()
        self._stack.append((component, opened))
        self.nodes.mark(component)

    def _leave(self) -> None:
        _, opened = self._stack.pop()
        if opened is not None:
            opened.__exit__(None, None, None)
        # nodes created after the layer returns are the loss's: nothing else of a step runs autograd
        self.nodes.mark(self._stack[-1][0] if self._stack else "loss")


def step_range(part: str):
    """The range of a part of the train step outside the layer: loss, backward or optimizer."""
    return torch.autograd.profiler.record_function(RANGE_PREFIX + part)


@dataclass
class Attribution:
    """Per (phase, component): self time in microseconds over the profiled runs, allocated bytes,
    and the memory timeline's peak with the split of what was live at it."""

    time_us: Counter = field(default_factory=Counter)
    allocated: Counter = field(default_factory=Counter)
    at_peak: Counter = field(default_factory=Counter)
    peak_bytes: int = 0
    largest: list[dict] = field(default_factory=list)
    clock: str = ""


def _owner(event, nodes: SequenceComponents) -> tuple[str, str] | None:
    """(phase, component) of the innermost range or autograd node that `event` itself is, or None."""
    name = event.name
    if name.startswith(RANGE_PREFIX):
        part = name[len(RANGE_PREFIX):]
        if part == "backward":
            return "backward", AUTOGRAD_OTHER
        return STEP_PARTS.get(part, "forward"), part
    if name.startswith(EVALUATE_PREFIX):
        component = nodes.component(event.sequence_nr) if event.sequence_nr >= 0 else None
        return "backward", component or AUTOGRAD_OTHER
    return None


def owner_of(event, nodes: SequenceComponents, cache: dict) -> tuple[str, str]:
    """(phase, component) of `event` (itself included): the outermost autograd node around it, else
    the innermost range. Outermost, because a node's backward may run autograd itself (the Triton
    BK-Core's backward recomputes through the scan): those inner nodes are that node's work."""
    chain, found, found_at, current = [], None, None, event
    while current is not None:
        if current.id in cache:
            cached, from_node = cache[current.id]
            if found is None or from_node:
                found, found_at = (cached, from_node), len(chain)
            break
        chain.append(current)
        owner = _owner(current, nodes)
        if owner is not None and current.name.startswith(EVALUATE_PREFIX):
            found, found_at = (owner, True), len(chain)  # keep walking: an outer node wins
        elif owner is not None and found is None:
            found, found_at = (owner, False), len(chain)
        current = current.cpu_parent
    if found is None:
        return "other", OUTSIDE
    for e in chain[:found_at]:  # what lies above the owner has an owner of its own
        cache[e.id] = found
    return found[0]


def attribute(prof, nodes: SequenceComponents, device: torch.device, base_bytes: int) -> Attribution:
    """Time and memory of a finished torch.profiler run, by (phase, component)."""
    from torch.autograd import DeviceType

    on_cuda = torch.device(device).type == "cuda"
    events = [e for e in prof.events() if e.device_type == DeviceType.CPU]
    cache: dict = {}
    out = Attribution(clock="device time of the kernels each op launched (CUDA)" if on_cuda
                      else "self CPU time of each op and range")
    for event in events:
        if on_cuda:
            if event.name.startswith(RANGE_PREFIX):
                continue  # a range launches no kernel itself; its GPU-side annotation is no kernel either
            spent = event.self_device_time_total
        else:
            spent = event.self_cpu_time_total
        if spent:
            out.time_us[owner_of(event, nodes, cache)] += spent
    _attribute_memory(prof, events, nodes, cache, device, base_bytes, out)
    return out


def _attribute_memory(prof, events, nodes, cache, device, base_bytes: int, out: Attribution) -> None:
    """The allocator's records in time order: peak of the running total, and who allocated what."""
    from torch.autograd import DeviceType

    wanted = DeviceType.CUDA if torch.device(device).type == "cuda" else DeviceType.CPU
    start_ns = prof.profiler.kineto_results.trace_start_ns()
    records = sorted(((r.start_ns(), r.nbytes(), r.start_thread_id()) for r in prof.profiler.kineto_results.events()
                      if r.name() == "[memory]" and r.device_type() == wanted), key=lambda r: r[0])
    by_thread: dict[int, list] = defaultdict(list)
    for event in events:
        by_thread[event.thread].append(event)
    starts = {}
    for thread, listed in by_thread.items():
        listed.sort(key=lambda e: e.time_range.start)
        starts[thread] = [e.time_range.start for e in listed]
    running, peak, net, at_peak = 0, 0, Counter(), Counter()
    largest = []
    for ns, nbytes, thread in records:
        t = (ns - start_ns) / 1e3
        op = _innermost(by_thread.get(thread, []), starts.get(thread, []), t)
        owner = owner_of(op, nodes, cache) if op is not None else ("other", OUTSIDE)
        running += nbytes
        net[owner] += nbytes
        if nbytes > 0:
            out.allocated[owner] += nbytes
            largest.append({"bytes": nbytes, "op": op.name if op is not None else None,
                            "phase": owner[0], "component": owner[1]})
        if running > peak:
            peak, at_peak = running, Counter(net)
    out.peak_bytes = base_bytes + peak
    out.at_peak = at_peak
    out.largest = sorted(largest, key=lambda r: r["bytes"], reverse=True)[:5]


def _innermost(listed: list, starts: list, t: float):
    """The innermost event of one thread whose time range holds `t` (events nest on a thread)."""
    i = bisect.bisect_right(starts, t) - 1
    event = listed[i] if i >= 0 else None
    while event is not None and event.time_range.end < t:
        event = event.cpu_parent
    return event


def live_bytes(*groups) -> int:
    """Storage bytes of the distinct tensors in `groups` (iterables of tensors, or dicts holding tensors)."""
    seen, total = set(), 0
    for group in groups:
        for tensor in _tensors_in(group):
            storage = tensor.untyped_storage()
            if storage.data_ptr() not in seen:
                seen.add(storage.data_ptr())
                total += storage.nbytes()
    return total


def _tensors_in(value):
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors_in(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _tensors_in(item)


def _order(key: tuple[str, str]) -> tuple:
    from bkprof.flops.components import COMPONENTS

    phase, component = key
    phase_rank = PHASES.index(phase) if phase in PHASES else len(PHASES)
    rank = COMPONENTS.index(component) if component in COMPONENTS else len(COMPONENTS)
    return phase_rank, rank, component


def breakdown(found: Attribution, counted, runs: int) -> dict:
    """The JSON of one row's breakdown: per (phase, component) time per run (profiled), FLOPs and
    bytes per step (op counter), and the memory split; derived columns come in the report."""
    flops, moved = {}, {}
    for phase in ("forward", "backward"):
        for component, value in counted.by_component(phase).items():
            flops[(phase, component)] = value
        for component, value in counted.bytes_by_component(phase).items():
            moved[(phase, component)] = value
    keys = sorted(set(found.time_us) | set(flops) | set(moved), key=_order)
    parts = [{"phase": phase, "component": component,
              "time_ms": found.time_us.get((phase, component), 0.0) / 1e3 / runs,
              "flops": flops.get((phase, component)), "bytes": moved.get((phase, component))}
             for phase, component in keys]
    mib = float(2**20)
    at_peak = [{"phase": p, "component": c, "mib": v / mib} for (p, c), v in sorted(found.at_peak.items(), key=lambda kv: _order(kv[0]))
               if v]
    allocated = [{"phase": p, "component": c, "mib_per_run": v / mib / runs}
                 for (p, c), v in sorted(found.allocated.items(), key=lambda kv: _order(kv[0]))]
    return {
        "profiled_runs": runs,
        "clock": found.clock,
        "parts": parts,
        "memory": {
            "peak_mib": found.peak_bytes / mib,
            "alive_at_start_mib": (found.peak_bytes - sum(found.at_peak.values())) / mib,
            "at_peak": at_peak,
            "allocated": allocated,
            "largest": [{**r, "mib": r.pop("bytes") / mib} for r in [dict(x) for x in found.largest]],
        },
    }
