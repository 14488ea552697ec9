"""The op counter: sees every aten op a module executes and attributes its FLOPs to a submodule.

Forward ops belong to the innermost running submodule (module hooks keep the stack). Backward ops
belong to the submodule whose forward created the autograd node being evaluated: autograd numbers
the nodes it creates on a thread in order (sequence numbers), so the number at each module
boundary splits them by module (`SequenceComponents`), and a pre-hook on every node of the
forward's graph says, as autograd starts the node, whose backward runs (also when that backward runs
autograd itself, as a recomputation does). Work outside every module (the loss's own gradient, the
gradient seed) has no module: None.
"""

from __future__ import annotations

import bisect
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from bkprof._torch_helpers import skip_dynamo_guard
from bkprof.flops.components import component_of
from bkprof.flops.formulas import count_op, has_formula

ROOT = ""  # the module name of the model itself
# backward work of nodes no component's forward created (the gradient seed, AccumulateGrad)
UNATTRIBUTED_BACKWARD = "backward"


def next_sequence_nr() -> int:
    """The sequence number autograd gives the next node created on this thread."""
    peek = getattr(torch._C._autograd, "_get_sequence_nr", None)
    if peek is not None:
        return peek()
    with torch.enable_grad():  # older torch: make one node and read its number
        probe = torch.zeros((), requires_grad=True).view(())
    return probe.grad_fn._sequence_nr() + 1


class SequenceComponents:
    """Which module (or component) created each autograd node: (first sequence number, name) at every boundary."""

    def __init__(self):
        self._starts: list[int] = []
        self._names: list[str | None] = []

    def mark(self, component: str | None) -> None:
        """Nodes created from now on (until the next mark) belong to `component` (None: to no module)."""
        seq = next_sequence_nr()
        if self._starts and self._starts[-1] == seq:
            self._names[-1] = component
        else:
            self._starts.append(seq)
            self._names.append(component)

    def component(self, sequence_nr: int) -> str | None:
        i = bisect.bisect_right(self._starts, sequence_nr) - 1
        return self._names[i] if i >= 0 else None


def tensor_bytes(value) -> int:
    """Bytes a tensor occupies (an expanded tensor: its storage, not its logical size); 0 for anything else."""
    if not isinstance(value, torch.Tensor):
        return 0
    logical = value.numel() * value.element_size()
    try:
        return min(logical, value.untyped_storage().nbytes())
    except (RuntimeError, NotImplementedError):  # tensors without storage
        return logical


def op_bytes(func, args, kwargs, out) -> int:
    """Bytes one op moves if it reads each tensor input and writes each output once (views move none)."""
    if getattr(func, "is_view", False):
        return 0
    flat = [*args, *kwargs.values(), *(out if isinstance(out, (tuple, list)) else (out,))]
    total = 0
    for item in flat:
        for value in (item if isinstance(item, (tuple, list)) else (item,)):
            total += tensor_bytes(value)
    return total


def created_bytes(func, out) -> int:
    """Bytes of the op's outputs that are new tensors (not views of, or writes into, an input)."""
    outs = out if isinstance(out, (tuple, list)) else (out,)
    schema = getattr(func, "_schema", None)  # higher-order operators have none: their outputs are new
    returns = schema.returns if schema is not None else [None] * len(outs)
    return sum(value.numel() * value.element_size() for ret, value in zip(returns, outs)
               if (ret is None or ret.alias_info is None) and isinstance(value, torch.Tensor))


@contextmanager
def removed_after(hooks: list):
    """Remove the hook handles when the block ends, however it ends."""
    try:
        yield
    finally:
        for hook in hooks:
            hook.remove()


def _without_compile_wrappers(name: str) -> str:
    """`block._orig_mod.fc` -> `block.fc`: a compiled submodule (torch.compile's OptimizedModule)
    and the module it wraps are one module for the count."""
    return ".".join(part for part in name.split(".") if part != "_orig_mod")


@dataclass
class OpCounts:
    """FLOPs keyed by (phase, module, family, op); bytes moved by (phase, module); calls of ops without
    a formula by (phase, module, op); bytes of the tensors the forward created (views excluded)."""

    flops: Counter = field(default_factory=Counter)
    bytes: Counter = field(default_factory=Counter)
    missing: Counter = field(default_factory=Counter)
    created_bytes: int = 0
    # CPU seconds spent between two aten ops (or before the first, after the last) in long stretches,
    # by (phase, module): work the counter cannot see (numpy, Python arithmetic, a C extension)
    outside_aten: Counter = field(default_factory=Counter)


# A stretch of CPU time this long with no aten op is reported (process time, so a process waiting
# for a shared core does not count): far above the Python between two ops of any module (microseconds),
# below a numpy matmul of a few hundred rows.
OUTSIDE_ATEN_SECONDS = 0.01


class OpCounter(TorchDispatchMode):
    """A TorchDispatchMode that counts each executed op with the registry in `formulas`.

    Higher-order operators (flex_attention) reach it too: one with a formula runs as it would
    without the counter and is counted whole; any other runs uncounted and is listed as an op
    without a formula."""

    supports_higher_order_operators = True

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.counts = OpCounts()
        self.phase = "forward"
        self._stack: list[str | None] = [None]
        self.nodes = SequenceComponents()
        self._running: str | None = None  # in backward: the module of the forward node autograd runs
        self._last_op_end = time.process_time()

    def __enter__(self):
        self._last_op_end = time.process_time()
        return super().__enter__()

    def __exit__(self, *exc):
        self.mark_outside_aten()
        return super().__exit__(*exc)

    def mark_outside_aten(self) -> None:
        """Book the CPU time since the last aten op to the running module when it is a long stretch."""
        now = time.process_time()
        if now - self._last_op_end >= OUTSIDE_ATEN_SECONDS:
            self.counts.outside_aten[(self.phase, self._module())] += now - self._last_op_end
        self._last_op_end = now

    @contextmanager
    def tracking_modules(self):
        """Keep the stack of running submodules (hooks live outside the mode, which re-enters itself)."""
        hooks = []
        for name, module in self.model.named_modules():
            name = _without_compile_wrappers(name)
            hooks.append(module.register_forward_pre_hook(partial(self._enter_module, name)))
            hooks.append(module.register_forward_hook(partial(self._leave_module, name)))
        with removed_after(hooks):
            yield self

    def _enter_module(self, name: str, *_) -> None:
        self.mark_outside_aten()
        self._stack.append(name)
        self.nodes.mark(name)

    def _leave_module(self, name: str, *_) -> None:
        self.mark_outside_aten()
        self._stack.pop()
        self.nodes.mark(self._stack[-1])

    def _module(self) -> str | None:
        return self._stack[-1] if self.phase == "forward" else self._running

    @contextmanager
    def watching_backward(self, out: torch.Tensor):
        """While backward runs from `out`: each node of the forward's graph, as autograd starts it,
        names the module that created it (a pre-hook per node), so ops of a backward that runs
        autograd itself (a recomputation) count for the node whose backward it is."""
        hooks, seen, stack = [], set(), [out.grad_fn]
        while stack:
            node = stack.pop()
            if node is None or node in seen:
                continue
            seen.add(node)
            module = self.nodes.component(node._sequence_nr())
            try:
                hooks.append(node.register_prehook(lambda grads, m=module: self._run_node(m)))
            except (RuntimeError, AttributeError):  # a node kind without pre-hooks (none seen so far)
                pass
            stack.extend(next_node for next_node, _ in node.next_functions)
        with removed_after(hooks):
            yield self

    def _run_node(self, module: str | None) -> None:
        self._running = module

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func.namespace == "prim":  # device and layout queries of tensor subclasses (fake tensors)
            return func(*args, **kwargs)
        self.mark_outside_aten()
        try:
            return self._dispatch(func, args, kwargs)
        finally:
            self._last_op_end = time.process_time()

    def _dispatch(self, func, args, kwargs):
        if isinstance(func, torch._ops.HigherOrderOperator):
            return self._count(func, args, kwargs, func(*args, **kwargs), f"higher_order.{func.name()}")
        if not has_formula(func):
            # Composite ops (linear, softmax, dropout...) reach the mode whole under inference_mode;
            # counting their decomposition gives the same ops as with autograd on.
            with self:
                out = func.decompose(*args, **kwargs)
            if out is not NotImplemented:
                return out
        out = func(*args, **kwargs)
        return self._count(func, args, kwargs, out, f"{func.namespace}.{func.overloadpacket.__name__}")

    def _count(self, func, args, kwargs, out, op: str):
        module = self._module()
        self.counts.bytes[(self.phase, module)] += op_bytes(func, args, kwargs, out)
        if self.phase == "forward":
            self.counts.created_bytes += created_bytes(func, out)
        counts = count_op(func, args, kwargs, out)
        if counts is None:
            self.counts.missing[(self.phase, module, op)] += 1
            return out
        for family, flops in counts.items():
            self.counts.flops[(self.phase, module, family, op)] += flops
        return out


skip_dynamo_guard(OpCounter.__torch_dispatch__)


# ---- the four variants: each module's FLOPs under its component's name ----

@dataclass
class CountResult:
    """A variant's FLOPs keyed by (phase, component, family, op); bytes by (phase, component); ops
    without a formula and their calls.

    Backward entries carry the component whose forward created the autograd node, or
    UNATTRIBUTED_BACKWARD. Bytes: each op reads its tensor inputs and writes its outputs once
    (`op_bytes`), summed over the ops, with no reuse between ops (what eager execution does).
    """

    flops: Counter = field(default_factory=Counter)
    missing: Counter = field(default_factory=Counter)
    bytes: Counter = field(default_factory=Counter)
    created_bytes: int = 0  # bytes of every new tensor of the forward: an upper bound on its activations

    def total(self, phase: str | None = None, family: str | None = None) -> int:
        return sum(v for (p, _, f, _), v in self.flops.items()
                   if (phase is None or p == phase) and (family is None or f == family))

    def by_component(self, phase: str = "forward") -> dict[str, int]:
        out: Counter = Counter()
        for (p, component, _, _), v in self.flops.items():
            if p == phase:
                out[component] += v
        return dict(out)

    def bytes_by_component(self, phase: str = "forward") -> dict[str, int]:
        return {component: v for (p, component), v in self.bytes.items() if p == phase}

    def by_op(self) -> dict[str, int]:
        out: Counter = Counter()
        for (_, _, _, op), v in self.flops.items():
            out[op] += v
        return dict(out)


def _component(module: str | None) -> str:
    return UNATTRIBUTED_BACKWARD if module is None else component_of(module)


def count_layer_flops(layer: nn.Module, x: torch.Tensor, *, backward: bool = False, tensors: str = "auto") -> CountResult:
    """A variant layer on `x` under the op counter of `bkprof.count_flops`, per component: eval-mode
    forward, or a train-mode forward + backward from the layer's output (its statistics get no gradient).

    With `backward`, x requires grad (as it does inside a network). `tensors`: as in `bkprof.count_flops`.
    """
    from bkprof.flops.model_count import count_op_counts

    layer.train(backward)
    if backward:
        x = x.detach().requires_grad_()
    counts, _, _ = count_op_counts(layer, (x,), {}, backward=backward, loss_fn=lambda out: out[0].sum(),
                                   tensors=tensors)
    result = CountResult(created_bytes=counts.created_bytes)
    for (phase, module, family, op), flops in counts.flops.items():
        result.flops[(phase, _component(module), family, op)] += flops
    for (phase, module), moved in counts.bytes.items():
        result.bytes[(phase, _component(module))] += moved
    for (_, _, op), calls in counts.missing.items():
        result.missing[op] += calls
    return result
