"""The zoo (tests/zoo.py): 23 real models, each counted forward and backward (train mode, float inputs
requiring grad, the loss the sum of the outputs): no op without a formula, and on every op PyTorch's
FlopCounterMode knows, bkprof's matmul FLOPs equal its count exactly. bkprof counts more matmul work
where PyTorch counts none (the CPU flash-attention kernel, the CPU LSTM kernel, _trilinear, mv...).

Small shapes: the whole zoo takes about 11 s of CPU on one core, 15-22 s of wall time on a shared
2-core machine (pytest --durations lists each model)."""

import time
from collections import Counter

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode, flop_registry

from bkprof import count_flops
from tests.zoo import ZOO

PYTORCH_OPS = {str(op) for op in flop_registry}


def _built(name):
    torch.manual_seed(0)
    model, inputs = ZOO[name]()
    inputs = tuple(x.detach().requires_grad_() if x.is_floating_point() else x for x in inputs)
    return model.train(), inputs


def _loss(out):
    return out.sum() if out.dim() else out


def _pytorch(model, inputs) -> dict[str, Counter]:
    """FlopCounterMode's FLOPs by op, forward and backward, on the real tensors."""
    counts = {}
    with FlopCounterMode(display=False) as forward:
        out = model(*inputs)
    with FlopCounterMode(display=False) as backward:
        _loss(out).backward()
    for phase, mode in (("forward", forward), ("backward", backward)):
        counts[phase] = Counter({str(op): n for op, n in mode.get_flop_counts()["Global"].items() if n})
    return counts


def _matmul_on_pytorch_ops(counted, phase) -> Counter:
    out = Counter()
    for (p, _, family, op), flops in counted.flops.items():
        if p == phase and family == "matmul" and op in PYTORCH_OPS and flops:
            out[op] += flops
    return out


@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_model_counts_every_op_and_agrees_with_pytorch_on_its_ops(name):
    model, inputs = _built(name)
    started = time.perf_counter()
    counted = count_flops(model, *inputs, backward=True, loss_fn=_loss)
    seconds = time.perf_counter() - started
    assert counted.ops_without_formula() == [], counted.no_formula
    assert counted.total() > 0 and counted.total("backward") > 0
    theirs = _pytorch(model, inputs)
    for phase in ("forward", "backward"):
        assert _matmul_on_pytorch_ops(counted, phase) == theirs[phase], phase
    assert seconds < 20, f"{name}: {seconds:.1f} s to count"


def test_the_zoo_has_the_kinds_of_model_asked_for():
    assert len(ZOO) >= 20
    for kind in ("resnet", "depthwise", "grouped", "dilated", "transposed", "vit", "gpt2", "encoder_decoder",
                 "lstm", "gru", "unet", "gnn"):
        assert any(kind in name for name in ZOO), kind
