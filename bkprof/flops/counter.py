"""The op counter: sees every aten op the modules execute and attributes its FLOPs to a component."""

from __future__ import annotations

from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from bkprof.flops.components import component_of
from bkprof.flops.formulas import count_op, has_formula


@dataclass
class CountResult:
    """FLOPs keyed by (phase, component, family, op); ops without a formula and their call counts."""

    flops: Counter = field(default_factory=Counter)
    missing: Counter = field(default_factory=Counter)

    def total(self, phase: str | None = None, family: str | None = None) -> int:
        return sum(v for (p, _, f, _), v in self.flops.items()
                   if (phase is None or p == phase) and (family is None or f == family))

    def by_component(self, phase: str = "forward") -> dict[str, int]:
        out: Counter = Counter()
        for (p, component, _, _), v in self.flops.items():
            if p == phase:
                out[component] += v
        return dict(out)

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

    @contextmanager
    def tracking_modules(self):
        """Keep the stack of running submodules (hooks live outside the mode, which re-enters itself)."""
        hooks = []
        for name, module in self.model.named_modules():
            hooks.append(module.register_forward_pre_hook(lambda m, a, name=name: self._enter_module(name)))
            hooks.append(module.register_forward_hook(lambda m, a, o: self._leave_module()))
        try:
            yield self
        finally:
            for hook in hooks:
                hook.remove()

    def _enter_module(self, name: str) -> None:
        self._stack.append(name)

    def _leave_module(self) -> None:
        self._stack.pop()

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
        counts = count_op(func, args, kwargs, out)
        if counts is None:
            self.result.missing[op] += 1
            return out
        component = "backward" if self.phase == "backward" else component_of(self._stack[-1])
        for family, flops in counts.items():
            self.result.flops[(self.phase, component, family, op)] += flops
        return out


def count_flops(model: nn.Module, x: torch.Tensor, *, backward: bool = False) -> CountResult:
    """Run `model` on `x` under the counter: eval-mode forward, or a train-mode forward + backward.

    With `backward`, x requires grad (as it does inside a network), and the backward pass is seeded
    with a gradient made outside the counter, so only autograd's own ops are counted.
    """
    model.train(backward)
    if backward:
        x = x.detach().requires_grad_()
    counter = OpCounter(model)
    with counter.tracking_modules(), counter:
        out, _ = model(x)
    if backward:
        seed = torch.ones_like(out)
        with counter:
            counter.phase = "backward"
            out.backward(seed)
    return counter.result


def _skip_dynamo_guard(mode_class: type) -> None:
    """torch wraps every mode's __torch_dispatch__ to keep torch.compile out, importing torch._dynamo
    (about 2 s) on the first op. The counter never runs under torch.compile: mark the wrapped function
    as its own disabled form so that import is not needed."""
    raw = getattr(mode_class.__torch_dispatch__, "__wrapped__", None)
    if raw is not None:
        raw.__dynamo_disable = raw


_skip_dynamo_guard(OpCounter)
