"""The op counter: sees every aten op the modules execute and attributes its FLOPs to a component.

Forward ops belong to the innermost running submodule. Backward ops belong to the component whose
forward created the autograd node being evaluated: autograd numbers the nodes it creates on a thread
in order (sequence numbers), so the number at each module boundary splits them by component
(`SequenceComponents`), and a pre-hook on every node of the forward's graph says, as autograd starts
the node, whose backward runs (also when that backward runs autograd itself, as a recomputation does).
"""

from __future__ import annotations

import bisect
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from bkprof._torch_helpers import skip_dynamo_guard
from bkprof.flops.components import component_of
from bkprof.flops.formulas import count_op, has_formula

# backward work of nodes no component's forward created (the gradient seed's, AccumulateGrad)
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
    """Which component created each autograd node: (first sequence number, component) at every boundary."""

    def __init__(self):
        self._starts: list[int] = []
        self._names: list[str] = []

    def mark(self, component: str) -> None:
        """Nodes created from now on (until the next mark) belong to `component`."""
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


@contextmanager
def removed_after(hooks: list):
    """Remove the hook handles when the block ends, however it ends."""
    try:
        yield
    finally:
        for hook in hooks:
            hook.remove()


@dataclass
class CountResult:
    """FLOPs keyed by (phase, component, family, op); bytes by (phase, component); ops without a formula.

    Backward entries carry the component whose forward created the autograd node, or
    UNATTRIBUTED_BACKWARD. Bytes: each op reads its tensor inputs and writes its outputs once
    (`op_bytes`), summed over the ops, with no reuse between ops (what eager execution does).
    """

    flops: Counter = field(default_factory=Counter)
    missing: Counter = field(default_factory=Counter)
    bytes: Counter = field(default_factory=Counter)

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


class OpCounter(TorchDispatchMode):
    """A TorchDispatchMode that counts each executed op with the registry in `formulas`.

    Forward ops are attributed to the innermost running submodule of `model` (module hooks keep
    the stack); everything run while `phase` is "backward" counts as the backward pass.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.result = CountResult()
        self.phase = "forward"
        self._stack: list[str] = [""]
        self.nodes = SequenceComponents()
        self._running: str | None = None  # in backward: the component of the forward node autograd runs

    @contextmanager
    def tracking_modules(self):
        """Keep the stack of running submodules (hooks live outside the mode, which re-enters itself)."""
        hooks = []
        for name, module in self.model.named_modules():
            hooks.append(module.register_forward_pre_hook(lambda m, a, name=name: self._enter_module(name)))
            hooks.append(module.register_forward_hook(lambda m, a, o: self._leave_module()))
        with removed_after(hooks):
            yield self

    def _enter_module(self, name: str) -> None:
        self._stack.append(name)
        self.nodes.mark(component_of(name))

    def _leave_module(self) -> None:
        self._stack.pop()
        self.nodes.mark(component_of(self._stack[-1]))

    def _backward_component(self) -> str:
        return self._running or UNATTRIBUTED_BACKWARD

    @contextmanager
    def watching_backward(self, out: torch.Tensor):
        """While backward runs from `out`: each node of the forward's graph, as autograd starts it,
        names the component that created it (a pre-hook per node), so ops of a backward that runs
        autograd itself (a recomputation) count for the node whose backward it is."""
        hooks, seen, stack = [], set(), [out.grad_fn]
        while stack:
            node = stack.pop()
            if node is None or node in seen:
                continue
            seen.add(node)
            component = self.nodes.component(node._sequence_nr()) or UNATTRIBUTED_BACKWARD
            try:
                hooks.append(node.register_prehook(lambda grads, c=component: self._run_node(c)))
            except (RuntimeError, AttributeError):  # a node kind without pre-hooks (none seen so far)
                pass
            stack.extend(next_node for next_node, _ in node.next_functions)
        with removed_after(hooks):
            yield self

    def _run_node(self, component: str) -> None:
        self._running = component

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if not has_formula(func):
            # Composite ops (linear, softmax, dropout...) reach the mode whole under inference_mode;
            # counting their decomposition gives the same ops as with autograd on.
            with self:
                out = func.decompose(*args, **kwargs)
            if out is not NotImplemented:
                return out
        out = func(*args, **kwargs)
        op = f"{func.namespace}.{func.overloadpacket.__name__}"
        component = self._backward_component() if self.phase == "backward" else component_of(self._stack[-1])
        self.result.bytes[(self.phase, component)] += op_bytes(func, args, kwargs, out)
        counts = count_op(func, args, kwargs, out)
        if counts is None:
            self.result.missing[op] += 1
            return out
        for family, flops in counts.items():
            self.result.flops[(self.phase, component, family, op)] += flops
        return out


def count_flops(model: nn.Module, x: torch.Tensor, *, backward: bool = False) -> CountResult:
    """Run `model` on `x` under the counter: eval-mode forward, or a train-mode forward + backward.

    With `backward`, x requires grad (as it does inside a network), and the backward pass is seeded
    with a gradient made outside the counter, so only autograd's own ops are counted.

    >>> import torch
    >>> from bkprof import LayerConfig, analytic_flops, build, count_flops
    >>> config = LayerConfig(d_model=16, n_seq=32)
    >>> counted = count_flops(build("sparse", config), torch.randn(1, 32, 16))
    >>> counted.total() == analytic_flops("sparse", config)      # 2 FLOPs per multiply-accumulate
    True
    >>> counted.by_component()["bk_core"] > 0
    True
    """
    model.train(backward)
    if backward:
        x = x.detach().requires_grad_()
    counter = OpCounter(model)
    with counter.tracking_modules(), counter:
        out, _ = model(x)
    if backward:
        seed = torch.ones_like(out)
        with counter.watching_backward(out), counter:
            counter.phase = "backward"
            out.backward(seed)
    return counter.result


skip_dynamo_guard(OpCounter.__torch_dispatch__)
