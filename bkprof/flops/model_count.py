"""FLOPs of any nn.Module: `count_flops(model, *inputs)`, by family, per module, per op.

The model runs once under the op counter (`counter.OpCounter`), on fake tensors where it can:
shapes, dtypes and devices without storage, so a model or input of any size counts in the memory
of its Python objects. Where a model cannot run on fake tensors (it reads a value, `.item()`, or
builds a shape from data), it runs on the tensors it was given, and the result says why; the
model's parameters, buffers and gradients are restored afterwards.
Conventions are the registry's (`formulas`): 2 FLOPs per multiply-accumulate, complex results in
real FLOPs; every op without a formula is listed, never counted as 0.
"""

from __future__ import annotations

import logging
import sys
import warnings
from collections import Counter
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn
from torch.utils._pytree import tree_leaves, tree_map_only

from bkprof.flops.counter import ROOT, OpCounter, OpCounts

PHASES = ("forward", "backward")
TENSOR_KINDS = ("auto", "fake", "real")


@dataclass
class ModelCount:
    """What `count_flops` counted. Keys: (phase, module, family, op) for FLOPs, (phase, module, op)
    for calls of ops without a formula, (phase, module) for bytes moved (each op reading its inputs
    and writing its outputs once); module is the dotted name ("" for the model itself, None for
    backward work outside every module: the loss's own gradient, which counts in the model's total)."""

    flops: Counter = field(default_factory=Counter)
    no_formula: Counter = field(default_factory=Counter)
    bytes: Counter = field(default_factory=Counter)
    tensors: str = "real"            # what the model ran on: "fake", "meta" or "real"
    fallback: str | None = None      # why it did not run on fake tensors, when it did not
    created_bytes: int = 0           # bytes of every new tensor of the forward: an upper bound on its activations
    # CPU seconds by (phase, module) spent in long stretches without an aten op: work the counter
    # cannot see (numpy, Python arithmetic, C extensions), so not in the count
    outside_aten: Counter = field(default_factory=Counter)

    def total(self, phase: str = "forward", family: str | None = None) -> int:
        return sum(v for (p, _, f, _), v in self.flops.items() if p == phase and family in (None, f))

    def by_family(self, phase: str = "forward") -> dict[str, int]:
        return _summed(self.flops, phase, lambda module, family, op: family)

    def by_op(self, phase: str = "forward") -> dict[str, int]:
        return _summed(self.flops, phase, lambda module, family, op: op)

    def by_module(self, phase: str = "forward", depth: int | None = None) -> dict[str, int]:
        """FLOPs of each module including its submodules ("" = the whole model), down to `depth`
        levels below the model (None: every level), in the order the modules first ran."""
        out: Counter = Counter({ROOT: 0})
        for (p, module, _, _), v in self.flops.items():
            if p != phase:
                continue
            for name in _ancestors(module, depth):
                out[name] += v
        return dict(out)

    def own_flops(self, phase: str = "forward") -> dict[str, int]:
        """FLOPs of the ops each module runs itself, outside its submodules (None: outside every module)."""
        return _summed(self.flops, phase, lambda module, family, op: module)

    def ops_without_formula(self) -> list[str]:
        return sorted({op for _, _, op in self.no_formula})

    def as_dict(self, depth: int | None = None) -> dict:
        """The JSON form: forward (and backward, when counted) totals, families, modules, ops."""
        doc = {"flops": self.total(), "by_family": self.by_family(), "by_module": self.by_module(depth=depth),
               "by_op": self.by_op(), "no_formula": self.ops_without_formula(),
               "no_formula_calls": {f"{phase} {_shown(module)}: {op}": n
                                    for (phase, module, op), n in self.no_formula.items()},
               "tensors": self.tensors, "fallback": self.fallback,
               "outside_aten_cpu_seconds": {f"{phase} {_shown(module)}": round(seconds, 3)
                                            for (phase, module), seconds in self.outside_aten.items()}}
        if any(p == "backward" for p, *_ in self.flops) or any(p == "backward" for p, *_ in self.no_formula):
            doc.update(backward_flops=self.total("backward"), backward_by_family=self.by_family("backward"),
                       backward_by_module=self.by_module("backward", depth=depth),
                       backward_by_op=self.by_op("backward"))
        return doc


def _summed(flops: Counter, phase: str, key) -> dict[str, int]:
    out: Counter = Counter()
    for (p, module, family, op), v in flops.items():
        if p == phase:
            out[key(module, family, op)] += v
    return dict(out)


def _shown(module: str | None) -> str:
    return "(outside the model)" if module is None else module or "(model)"


def _ancestors(module: str | None, depth: int | None) -> list[str]:
    parts = module.split(".") if module else []
    if depth is not None:
        parts = parts[:depth]
    return [ROOT] + [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def count_flops(model: nn.Module, *inputs, backward: bool = False, loss_fn: Callable | None = None,
                tensors: str = "auto", **kwargs) -> ModelCount:
    """Count the FLOPs of `model(*inputs, **kwargs)`, and with `backward` of the backward pass.

    The outputs may be a tensor or any nesting of tuples, lists and dicts. With `backward`, the
    loss is `loss_fn(outputs)` (a scalar) or the sum of the floating outputs that require grad;
    the loss's own forward is not counted, its backward is. The model's train/eval mode is left
    as it is. `tensors`: "auto" (fake tensors, or the given ones where the model cannot run on
    fake tensors), "fake" (fail instead) or "real". The model and inputs are left as they were:
    fake tensors do not touch them, and after a run on real tensors the parameters, buffers
    (running statistics) and every `.grad` get their values back. Tensors already fake or on the
    meta device are used as they are. A `torch.compile`d model, or one with compiled parts, is
    counted as the eager model (its compiled code runs eagerly while counted). CPU time spent
    outside aten ops in long stretches (numpy, Python arithmetic) is not counted: it is named
    in `outside_aten`, with a warning.

    >>> import torch
    >>> from bkprof import count_flops
    >>> counted = count_flops(torch.nn.Linear(128, 256), torch.randn(4, 128))
    >>> counted.total()                    # 2·4·128·256 matmul + 4·256 bias adds
    263168
    >>> counted.by_family()["matmul"], counted.ops_without_formula()
    (262144, [])
    """

    counts, kind, fallback = count_op_counts(model, inputs, kwargs, backward=backward, loss_fn=loss_fn,
                                             tensors=tensors)
    counted = ModelCount(flops=counts.flops, no_formula=counts.missing, bytes=counts.bytes, tensors=kind,
                         fallback=fallback, created_bytes=counts.created_bytes, outside_aten=counts.outside_aten)
    if counted.outside_aten:
        warnings.warn(outside_aten_note(counted), stacklevel=2)
    return counted


def outside_aten_note(counted: ModelCount) -> str:
    """One sentence on the CPU time spent outside aten ops, by module."""
    where = ", ".join(f"{phase} {_shown(module)} {seconds * 1000:,.0f} ms"
                      for (phase, module), seconds in counted.outside_aten.most_common())
    return (f"CPU time with no aten op running ({where}): work outside aten (numpy, Python arithmetic, "
            f"C extensions) is not counted")


def count_op_counts(model: nn.Module, inputs: tuple, kwargs: dict, *, backward: bool, loss_fn: Callable | None,
                    tensors: str = "auto") -> tuple[OpCounts, str, str | None]:
    """The op counter's raw counts of one run (module None: work outside every module), what the
    model ran on, and why not on fake tensors."""
    model = eager_module(model)

    def measure(run, inputs, kwargs) -> OpCounts:
        counter = OpCounter(model)
        with _grad_for(backward):
            with counter.tracking_modules(), counter:
                out = run(*inputs, **kwargs)
            if backward:
                loss = _loss(out, loss_fn)
                with counter.watching_backward(loss), counter:
                    counter.phase = "backward"
                    loss.backward()
        return counter.counts

    return _execute(model, inputs, kwargs, tensors, measure)


def torch_flop_counter(model: nn.Module, *inputs, backward: bool = False, loss_fn: Callable | None = None,
                       tensors: str = "auto", **kwargs) -> dict[str, int]:
    """PyTorch's own `FlopCounterMode` on the same kind of run as `count_flops`: {"forward": FLOPs,
    and "backward": FLOPs with `backward`}. Its convention: 2 per multiply-accumulate, and only the
    ops in PyTorch's flop registry (matmul, conv, some attention kernels); every other op counts 0."""
    from torch.utils.flop_counter import FlopCounterMode

    model = eager_module(model)

    def measure(run, inputs, kwargs) -> dict[str, int]:
        totals = {}
        with _grad_for(backward):
            with FlopCounterMode(display=False) as forward:
                out = run(*inputs, **kwargs)
            totals["forward"] = forward.get_total_flops()
            if backward:
                loss = _loss(out, loss_fn)
                with FlopCounterMode(display=False) as backward_counter:
                    loss.backward()
                totals["backward"] = backward_counter.get_total_flops()
        return totals

    return _execute(model, inputs, kwargs, tensors, measure)[0]


def _grad_for(backward: bool):
    return torch.enable_grad() if backward else nullcontext()


def _execute(model: nn.Module, inputs, kwargs, tensors: str, measure):
    """`measure(run, inputs, kwargs)` on fake tensors where it can: (its result, "fake" | "meta" |
    "real", why not fake or None)."""
    if tensors not in TENSOR_KINDS:
        raise ValueError(f"tensors must be one of {', '.join(TENSOR_KINDS)}, got {tensors!r}")
    model = eager_module(model)
    with _eager_compiled_code():
        return _execute_eagerly(model, inputs, kwargs, tensors, measure)


def eager_module(model: nn.Module) -> nn.Module:
    """The module a `torch.compile`d one wraps (`_orig_mod`), itself for any other module.

    A compiled module is counted as the eager model it compiles: the same ops, the same FLOPs, and
    module names without the `_orig_mod` prefix."""
    while type(model).__name__ == "OptimizedModule" and isinstance(getattr(model, "_orig_mod", None), nn.Module):
        model = model._orig_mod
    return model


@contextmanager
def _eager_compiled_code():
    """Compiled code inside the model (a compiled submodule, a compiled function its forward calls)
    runs eagerly while it is counted.

    Left to Dynamo, compiled code traces into the counter's dispatch mode and Inductor's kernels run
    on fake tensors without storage: the interpreter crashes (SIGSEGV). `force_eager` runs the
    original Python code instead, so every op reaches the counter as in an eager run. Nothing can be
    compiled unless torch._dynamo has been imported (torch.compile imports it), so it is not imported
    here otherwise (about 2 s)."""
    if "torch._dynamo" not in sys.modules:
        yield
        return
    with torch.compiler.set_stance("force_eager"):
        yield


def _execute_eagerly(model: nn.Module, inputs, kwargs, tensors: str, measure):
    state = _tensors_of(model, inputs, kwargs)
    if any(t.is_meta for t in state):
        return measure(model, inputs, kwargs), "meta", None
    fake_mode = _fake_mode_of(state)
    if fake_mode is not None:
        with fake_mode, quiet_fake_tensor_log():
            return measure(model, inputs, kwargs), "fake", None
    if tensors == "real":
        with _unchanged(model, inputs, kwargs):
            return measure(model, inputs, kwargs), "real", None
    try:
        fake_mode, run, fake_inputs, fake_kwargs = _fake_copy(model, inputs, kwargs)
        with fake_mode, quiet_fake_tensor_log():
            return measure(run, fake_inputs, fake_kwargs), "fake", None
    except Exception as error:  # noqa: BLE001 - whatever fails on fake tensors runs on the real ones
        if tensors == "fake":
            raise
        with _unchanged(model, inputs, kwargs):
            return measure(model, inputs, kwargs), "real", _first_line(error)


@contextmanager
def _unchanged(model: nn.Module, inputs, kwargs):
    """Run the model on its own tensors and leave it, and the inputs, as they were: parameters and
    buffers (BatchNorm's running statistics, its batch counter) get their values back, and every
    `.grad` its old value (None, or the gradient accumulated before). Costs one copy of each."""
    named = dict(model.named_parameters(remove_duplicate=False))
    named.update(model.named_buffers(remove_duplicate=False))
    modules = dict(model.named_modules(remove_duplicate=False))
    saved = {name: t.detach().clone() for name, t in named.items()}
    leaves = [t for t in [*named.values(), *tree_leaves((inputs, kwargs))] if isinstance(t, torch.Tensor)]
    grads = [(t, None if t.grad is None else t.grad.detach().clone()) for t in leaves if t.requires_grad]
    try:
        yield
    finally:
        with torch.no_grad():
            for name, value in saved.items():
                owner, _, attr = name.rpartition(".")
                current = getattr(modules[owner], attr, None)
                if isinstance(current, torch.Tensor) and current.shape == value.shape:
                    current.copy_(value)
                else:  # the forward replaced the tensor (a buffer reassigned): put the old one back
                    setattr(modules[owner], attr, value)
        for tensor, grad in grads:
            tensor.grad = grad


@contextmanager
def quiet_fake_tensor_log():
    """No log from torch's fake tensors while a model runs on them: when an op fails there (the
    model does not fit its input, or reads a value), torch logs the error with its traceback at
    ERROR level; the caller reports it, or falls back to real tensors, in one line of its own."""
    logger = logging.getLogger("torch._subclasses.fake_tensor")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def _first_line(error: Exception) -> str:
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


def _tensors_of(model: nn.Module, inputs, kwargs) -> list[torch.Tensor]:
    state = [*model.parameters(), *model.buffers()]
    return state + [t for t in tree_leaves((inputs, kwargs)) if isinstance(t, torch.Tensor)]


def _fake_mode_of(tensors: list[torch.Tensor]):
    from torch._subclasses.fake_tensor import FakeTensor

    return next((t.fake_mode for t in tensors if isinstance(t, FakeTensor)), None)


def _fake_copy(model: nn.Module, inputs, kwargs):
    """A fake tensor mode, a function that runs `model` on fake copies of its parameters and
    buffers (the model object is not changed), and fake copies of the inputs."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.func import functional_call

    # tensors the model keeps outside its parameters and buffers become fake where they are used
    fake_mode = FakeTensorMode(allow_non_fake_inputs=True)

    def to_fake(t: torch.Tensor) -> torch.Tensor:
        fake = fake_mode.from_tensor(t)
        if t.requires_grad and fake.is_leaf and not fake.requires_grad:
            fake.requires_grad_()
        return fake

    state = {name: to_fake(t) for name, t in [*model.named_parameters(), *model.named_buffers()]}
    fake_inputs, fake_kwargs = tree_map_only(torch.Tensor, to_fake, (inputs, kwargs))

    def run(*args, **kw):
        return functional_call(model, state, args, kw)

    return fake_mode, run, fake_inputs, fake_kwargs


def _loss(out, loss_fn) -> torch.Tensor:
    if loss_fn is not None:
        loss = loss_fn(out)
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
            raise ValueError(f"loss_fn must return a tensor of one element, got "
                             f"{tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__}")
        return loss.reshape(())
    floating = [t for t in tree_leaves(out) if isinstance(t, torch.Tensor) and t.is_floating_point() and t.requires_grad]
    if not floating:
        raise ValueError("backward: no floating output requires grad (is every parameter frozen?)")
    return sum(t.sum() for t in floating)
