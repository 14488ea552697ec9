"""fvcore's FlopCountAnalysis on a variant: total, by operator and unsupported ops, in MACs.

fvcore traces the module with torch.jit, which drops results nobody uses; every variant returns
its statistics (masks, importance scores) only in a dict, so the module is wrapped to return every
tensor of its output as one tuple and nothing it computes is dropped from the trace. The MoE experts' grouped linear
(`bkprof::grouped_linear`, a custom op the trace keeps whole) gets its own handle.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils._pytree import tree_leaves

# fvcore operators that are matmul / linear / conv work (the same work as bkprof's matmul family)
MATMUL_OPERATORS = ("addmm", "linear", "matmul", "mm", "bmm", "einsum", "conv", "_convolution", "grouped_linear")


class _FlatOutputs(nn.Module):
    """Every tensor the model returns, as one flat tuple (a trace returns tensors and tuples only),
    its keyword inputs bound (a trace takes positional inputs only)."""

    def __init__(self, model: nn.Module, kwargs: dict):
        super().__init__()
        self.model, self.kwargs = model, kwargs

    def forward(self, *inputs):
        return tuple(t for t in tree_leaves(self.model(*inputs, **self.kwargs)) if isinstance(t, torch.Tensor))


@dataclass
class FvcoreCount:
    total_macs: int
    by_operator: dict[str, int]
    unsupported: dict[str, int]

    @property
    def matmul_macs(self) -> int:
        return sum(v for op, v in self.by_operator.items() if op in MATMUL_OPERATORS)


def _grouped_linear_macs(inputs, outputs) -> int:
    """bkprof::grouped_linear(x (R, in), ends, weight, bias) -> (R, out): R·in·out multiply-accumulates."""
    from fvcore.nn.jit_handles import get_shape

    rows, fan_in = get_shape(inputs[0])
    return rows * fan_in * get_shape(outputs[0])[1]


def fvcore_count(model: nn.Module, x: torch.Tensor) -> FvcoreCount:
    """A variant layer in eval mode on x (B, N, d)."""
    return fvcore_analysis(model.eval(), (x,))


def fvcore_analysis(model: nn.Module, inputs: tuple, kwargs: dict | None = None) -> FvcoreCount:
    """fvcore on any module, in the mode it is in, returning any nesting of tensors."""
    from fvcore.nn import FlopCountAnalysis

    analysis = FlopCountAnalysis(_FlatOutputs(model, kwargs or {}), tuple(inputs))
    analysis.set_op_handle("bkprof::grouped_linear", _grouped_linear_macs)
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
    return FvcoreCount(
        total_macs=int(analysis.total()),
        by_operator={op: int(v) for op, v in sorted(analysis.by_operator().items())},
        unsupported={op: int(v) for op, v in sorted(analysis.unsupported_ops().items())},
    )
