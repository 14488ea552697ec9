"""What one timed run does, per mode, for a whole layer and for its BK-Core alone.

forward: eval mode under torch.no_grad, one forward pass.
train:   train mode, forward, backward of mean(out^2), one Adam step (gradients set to None first).
The BK-Core alone runs on the very potentials v the layer fed it (recorded by a forward pre-hook),
forward only, or forward and backward of the sum of [Re G, Im G] with respect to v.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from bkprof.profile.modes import MODES
from bkprof.variants.dense import BKCore

OPTIMIZER = "Adam(lr=1e-4), capturable on CUDA so the step can be graph-captured"
INPUT_POOL = 4


def input_pool(shape: tuple[int, ...], device: torch.device, seed: int, count: int = INPUT_POOL) -> list[torch.Tensor]:
    """`count` standard-normal inputs, drawn on the CPU from `seed` so every device sees the same values."""
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=generator).to(device) for _ in range(count)]


def layer_step(model: nn.Module, mode: str) -> Callable[[torch.Tensor], object]:
    """One run of `model` in `mode`; puts the model in eval or train mode accordingly."""
    if mode == "forward":
        model.eval()
        return _no_grad(model)
    if mode == "train":
        model.train()
        device = next(model.parameters()).device
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, capturable=device.type == "cuda")
        return _train_step(model, optimizer)
    raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")


def _no_grad(model: nn.Module):
    def step(x: torch.Tensor):
        with torch.no_grad():
            return model(x)[0]

    return step


def _train_step(model: nn.Module, optimizer: torch.optim.Optimizer):
    """The train step, its parts outside the layer in `bkprof/` ranges (see `components`)."""
    from bkprof.profile.components import step_range

    def step(x: torch.Tensor):
        with step_range("optimizer"):
            optimizer.zero_grad(set_to_none=True)
        out, _ = model(x)
        with step_range("loss"):
            loss = out.square().mean()
        with step_range("backward"):
            loss.backward()
        with step_range("optimizer"):
            optimizer.step()
        return loss

    step.optimizer = optimizer  # its state counts in the row's memory
    return step


def bk_core_inputs(model: nn.Module, pool: list[torch.Tensor]) -> tuple[list[BKCore], list[tuple[torch.Tensor, ...]]]:
    """The BK-Cores of `model`, and for each input of `pool` the potentials v they received from it."""
    cores = [module for module in model.modules() if isinstance(module, BKCore)]
    seen: dict[int, torch.Tensor] = {}
    hooks = [core.register_forward_pre_hook(lambda module, args, i=i: seen.__setitem__(i, args[0].detach().clone()))
             for i, core in enumerate(cores)]
    potentials = []
    try:
        with torch.no_grad():
            for x in pool:
                model(x)
                potentials.append(tuple(seen[i] for i in range(len(cores))))
    finally:
        for hook in hooks:
            hook.remove()
    return cores, potentials


def bk_core_step(cores: list[BKCore], mode: str) -> Callable[[tuple[torch.Tensor, ...]], object]:
    """One run of every BK-Core on its potential, in `mode` (train: forward and backward with respect to v)."""
    if mode == "forward":
        def forward(potentials):
            with torch.no_grad():
                return [core(v) for core, v in zip(cores, potentials)]

        return forward

    def forward_backward(potentials):
        grads = []
        for core, v in zip(cores, potentials):
            v = v.detach().requires_grad_()
            grads.append(torch.autograd.grad(torch.view_as_real(core(v)).sum(), v)[0])
        return grads

    return forward_backward
