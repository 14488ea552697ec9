"""`bkprof flops --model PKG.MODULE:FACTORY`: the count of a user's module as one JSON document.

The factory is called, and the inputs made, on fake tensors (no storage), so a model of any size
counts without its memory; where the factory or the model's forward cannot run on fake tensors (it
loads weights, reads a value), they run on real ones and the document says why. A torch.compile'd
module counts as the eager module it wraps. Beside bkprof's count: PyTorch's
FlopCounterMode on the same run and fvcore (which traces real tensors, so it runs only when they fit
in FVCORE_MEMORY_LIMIT). Bad input (a module that does not import, a missing attribute, a factory
that raises, a malformed shape) is a ModelInputError with one line naming it.
"""

from __future__ import annotations

import importlib
import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn
from torch.utils._pytree import tree_leaves

from bkprof.flops.fvcore_count import FvcoreCount, fvcore_analysis
from bkprof.flops.model_count import (ModelCount, count_flops, eager_module, quiet_fake_tensor_log,
                                      torch_flop_counter)

DTYPES = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16, "bfloat16": torch.bfloat16}
FVCORE_MEMORY_LIMIT = 1 << 30  # fvcore traces real tensors: parameters, inputs and every activation
# a model that fails on fake tensors is built again on real ones only if its parameters and inputs fit
REAL_FALLBACK_LIMIT = 4 << 30


class ModelInputError(ValueError):
    """A --model, --inputs, --input-shape, --dtype or --device the counter cannot use (one line)."""


def load_object(spec: str, option: str = "--model"):
    """`PKG.MODULE:ATTR` (ATTR may be dotted) imported and looked up."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ModelInputError(f"{option} {spec!r}: expected PKG.MODULE:NAME")
    try:
        obj = importlib.import_module(module_name)
    except Exception as error:  # noqa: BLE001 - whatever the import raises is the user's to see, in one line
        raise ModelInputError(f"{option} {spec!r}: cannot import {module_name}: {_one_line(error)}") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ModelInputError(f"{option} {spec!r}: {module_name} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return obj


def parse_shape(text: str) -> tuple[int, ...]:
    """`2x256x128` -> (2, 256, 128): positive integers joined by x."""
    parts = text.lower().split("x")
    if not text or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise ModelInputError(f"--input-shape {text!r}: expected positive integers joined by x, like 2x256x128")
    return tuple(int(p) for p in parts)


def _one_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


@dataclass
class ModelSpec:
    """What to count: the factory (or module) spec, the inputs, and where they live."""

    model: str
    input_shapes: tuple[tuple[int, ...], ...] = ()
    inputs: str | None = None
    dtype: str = "float32"
    device: str = "cpu"
    backward: bool = False
    depth: int | None = 2


def _build(spec: ModelSpec, factory) -> tuple[nn.Module, tuple, dict]:
    """The module (eval for a forward count, train with backward) and its inputs, on the current mode."""
    dtype = DTYPES[spec.dtype]
    # parameters are made in the dtype and on the device (a .to() of fake parameters cannot swap them)
    with torch.device(spec.device), _default_dtype(dtype):
        model = factory() if not isinstance(factory, nn.Module) else factory
        if not isinstance(model, nn.Module):
            raise ModelInputError(f"--model {spec.model!r}: returned {type(model).__name__}, not an nn.Module")
        args, kwargs = _inputs(spec, dtype)
    return model.train(spec.backward), args, kwargs


@contextmanager
def _default_dtype(dtype: torch.dtype):
    before = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(before)


def _inputs(spec: ModelSpec, dtype: torch.dtype) -> tuple[tuple, dict]:
    if spec.inputs is not None:
        made = _call(load_object(spec.inputs, "--inputs"), "--inputs", spec.inputs)
        if isinstance(made, dict):
            return (), made
        return (made if isinstance(made, tuple) else (made,)), {}
    requires_grad = spec.backward  # as inside a network: the input's gradient is part of the backward pass
    return tuple(torch.randn(shape, dtype=dtype, requires_grad=requires_grad) for shape in spec.input_shapes), {}


def _call(obj, option: str, text: str):
    if not callable(obj):
        raise ModelInputError(f"{option} {text!r}: is a {type(obj).__name__}, not callable")
    try:
        return obj()
    except ModelInputError:
        raise
    except Exception as error:  # noqa: BLE001 - the factory's own failure, named in one line
        raise ModelInputError(f"{option} {text!r} raised {_one_line(error)}") from None


def _factory(spec: ModelSpec):
    obj = load_object(spec.model)
    if isinstance(obj, nn.Module):
        return obj
    if not callable(obj):
        raise ModelInputError(f"--model {spec.model!r}: is a {type(obj).__name__}, neither a module nor callable")
    return lambda: _call(obj, "--model", spec.model)


def _check(spec: ModelSpec) -> None:
    if spec.dtype not in DTYPES:
        raise ModelInputError(f"--dtype {spec.dtype!r}: must be one of {', '.join(DTYPES)}")
    try:
        device = torch.device(spec.device)
    except RuntimeError:
        raise ModelInputError(f"--device {spec.device!r}: not a device (cpu, cuda, cuda:1, ...)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ModelInputError(f"--device {spec.device!r}: CUDA is not available on this machine")
    if spec.inputs is not None and spec.input_shapes:
        raise ModelInputError("--inputs and --input-shape: give one or the other")
    if spec.inputs is None and not spec.input_shapes:
        raise ModelInputError("--input-shape or --inputs: the model needs an input")
    if spec.depth is not None and spec.depth < 0:
        raise ModelInputError(f"--depth must be a non-negative integer, got {spec.depth}")


def _build_on_fake_tensors(spec: ModelSpec, factory):
    """(model, args, kwargs, None) built on fake tensors, or built on real ones and why not fake."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    try:
        with FakeTensorMode(allow_non_fake_inputs=True), quiet_fake_tensor_log():
            return (*_build(spec, factory), None)
    except Exception as error:  # noqa: BLE001 - whatever fails on fake tensors is tried on real ones
        fallback = _one_line(error)
    try:
        return (*_build(spec, factory), fallback)
    except ModelInputError:
        raise
    except Exception as error:  # noqa: BLE001 - the model's construction failed: one line naming it
        raise ModelInputError(f"--model {spec.model!r}: building it and its inputs raised {_one_line(error)}") from None


def _run(what: str, count: Callable):
    try:
        return count()
    except ModelInputError:
        raise
    except Exception as error:  # noqa: BLE001 - the model's forward failed on these inputs
        raise ModelInputError(f"{what} raised {_one_line(error)}") from None


def model_report(spec: ModelSpec) -> dict:
    """The JSON document of `bkprof flops --model`: its top-level "model" object holds bkprof's
    count (forward and, with backward, backward), PyTorch's and fvcore's, by family, module and op."""
    _check(spec)
    factory = _factory(spec)
    model, args, kwargs, built_real = _build_on_fake_tensors(spec, factory)
    model = eager_module(model)  # a torch.compile'd module counts as the eager one it wraps
    where = f"--model {spec.model!r} on {_describe(args, kwargs)}"
    try:
        counted = count_flops(model, *args, backward=spec.backward, **kwargs)
    except Exception as error:  # noqa: BLE001 - on fake tensors: the model may read a value; try real ones
        needed = _real_bytes(model, args, kwargs, None)
        if built_real is not None or needed > REAL_FALLBACK_LIMIT:
            raise ModelInputError(f"{where} raised {_one_line(error)}") from None
        # the same fallback as the API's: the model and its inputs built again on real tensors
        fallback = _one_line(error)
        model, args, kwargs = _build(spec, factory)
        model, built_real = eager_module(model), fallback
        counted = _run(where, lambda: count_flops(model, *args, backward=spec.backward, **kwargs))
        counted.fallback = counted.fallback or fallback
    theirs = _run(where, lambda: torch_flop_counter(model, *args, backward=spec.backward, **kwargs))
    built = (model, args, kwargs, built_real)
    fv, fvcore_note = _fvcore(spec, factory, built, counted)
    doc = counted.as_dict(depth=spec.depth)
    doc.update(
        factory=spec.model, inputs=_describe(args, kwargs), dtype=spec.dtype, device=spec.device,
        mode="train" if spec.backward else "eval", depth=spec.depth,
        built_on_real_tensors=built_real, parameters=parameter_count(model),
        module_types={name: type(m).__name__ for name, m in model.named_modules()
                      if spec.depth is None or name.count(".") < spec.depth},
        torch_flop_counter=theirs["forward"], fvcore_macs=fv.total_macs if fv else None,
        fvcore_unsupported=fv.unsupported if fv else {}, fvcore_note=fvcore_note,
    )
    if spec.backward:
        doc["torch_flop_counter_backward"] = theirs["backward"]
    return {"model": doc, "conventions": model_conventions(spec.backward)}


def model_conventions(backward: bool) -> dict:
    return {
        "flops": "bkprof: FLOPs = 2 per multiply-accumulate, every op with a formula (`bkprof flops --conventions`); "
                 "complex results in real FLOPs",
        "torch_flop_counter": "PyTorch FlopCounterMode: FLOPs = 2 per multiply-accumulate, only matmul, conv and "
                              "the attention kernels in its registry; every other op counts 0",
        "fvcore": "fvcore FlopCountAnalysis, forward only: MACs (1 per multiply-accumulate) for matmul, linear, "
                  "conv and einsum, plus its own per-element counts for batch/group/layer/instance norm, adaptive "
                  "average pooling, bilinear and nearest upsampling and grid_sample; every other op counts 0 "
                  "(listed as skipped)",
        "pass": "forward + backward (train mode, float inputs require grad)" if backward else "forward (eval mode)",
        "per": "the whole input (every batch element)",
    }


def _describe(args, kwargs) -> str:
    shown = [_tensor_text(a) for a in args] + [f"{k}={_tensor_text(v)}" for k, v in kwargs.items()]
    return ", ".join(shown) or "no inputs"


def _tensor_text(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"{'x'.join(map(str, value.shape)) or 'scalar'} {str(value.dtype).replace('torch.', '')}"
    return type(value).__name__


def _real_bytes(model: nn.Module, args, kwargs, counted: ModelCount | None) -> int:
    """Parameters, buffers, inputs and every tensor the forward creates (when counted): what a real
    run would hold at most."""
    tensors = [*model.parameters(), *model.buffers(), *(t for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor))]
    return sum(t.numel() * t.element_size() for t in tensors) + (counted.created_bytes if counted else 0)


def _fvcore(spec: ModelSpec, factory, built, counted: ModelCount) -> tuple[FvcoreCount | None, str | None]:
    """fvcore's MACs on real tensors (the model built again for real unless it already is), or why not."""
    model, args, kwargs, built_real = built
    needed = _real_bytes(model, args, kwargs, counted)
    if needed > FVCORE_MEMORY_LIMIT:
        return None, (f"not run: fvcore traces real tensors, about {needed / 2**30:,.1f} GiB "
                      f"(limit {FVCORE_MEMORY_LIMIT / 2**30:.0f} GiB)")
    if spec.device != "cpu":
        return None, "not run: fvcore traces on the CPU"
    try:
        if built_real is None:  # built on fake tensors
            model, args, kwargs = _build(spec, factory)
        model = eager_module(model)  # fvcore's jit trace of a compiled module would trace Dynamo
        return fvcore_analysis(model.eval(), args, kwargs), None
    except Exception as error:  # noqa: BLE001 - fvcore's trace fails on some models: say so, keep the rest
        return None, f"not run: fvcore failed: {_one_line(error)}"


def parameter_count(model: nn.Module) -> int:
    return sum(math.prod(p.shape) for p in model.parameters())
