"""The training loop and the scoring of one run (torch): `bkprof.validate.train` holds the recipe,
`bkprof.validate.step` the training step (eager, CUDA graph or compiled).

Every variant gets the same recipe: AdamW, linear warm-up then cosine decay of the learning rate,
gradient clipping, the same batch and token budget. The sparse and combined variants add the
sparsity loss (Huber, `adaptive`) with the adaptive sparsity scheduler. Besides the final numbers a
run records its learning curve (training loss every few steps, test loss at a few checkpoints on a
fixed slice of the test text) and the load of each block's experts over the last tenth of the steps.
"""

from __future__ import annotations

import dataclasses
import math
import time

import torch
import torch.nn.functional as F

from bkprof.validate.model import LanguageModel
from bkprof.validate.objective import eval_plan, hide
from bkprof.validate.train import Recipe, RunSpec

CURVE_POINTS = 64          # at most this many training-loss points per run (each the mean over its steps)
TEST_CHECKPOINTS = 8       # test-loss checkpoints per run, evenly spaced in steps, the last at the end
# the checkpoints score the first min(16, batch) windows of N test tokens (fixed for every run of a grid):
# a checkpoint costs about as much as 5 x windows / (3 x batch) training steps, under 4 % of training in
# the GPU grid (batch 64, 200 steps) but 40 % of the CPU smoke run's at 16 windows (batch 8, 64 steps)
CURVE_TEST_WINDOWS = 16


def checkpoint_steps(steps: int) -> list[int]:
    """The steps (1-based, after that many optimizer steps) at which the test slice is scored."""
    return sorted({max(1, round(steps * i / TEST_CHECKPOINTS)) for i in range(1, TEST_CHECKPOINTS + 1)})


def curve_slice(corpus, recipe: Recipe):
    """The corpus with its test text cut to the learning curve's fixed slice."""
    return dataclasses.replace(corpus, test=corpus.test[:min(CURVE_TEST_WINDOWS, recipe.batch) * recipe.n_seq])


def _window_means(losses: list[float], every: int) -> tuple[list[int], list[float]]:
    """Mean training loss over each run of `every` steps, at the step that ends it (the last one may be short)."""
    steps, means = [], []
    for first in range(0, len(losses), every):
        chunk = losses[first:first + every]
        steps.append(first + len(chunk))
        means.append(sum(chunk) / len(chunk))
    return steps, means


def train_model(model: LanguageModel, spec: RunSpec, recipe: Recipe, corpus, device: torch.device,
                on_step=None, step: str = "auto", compile_options: dict | None = None) -> dict:
    """Train in place; the training record (time, final losses, the sparsity the training masks reached,
    the experts' load, the learning curve). `step`: how each step runs (`bkprof.validate.step`)."""
    from bkprof.validate.step import (Stepper, TrainStep, host_batch, read_records, resolve_step, synchronize,
                                      tail_steps)

    mode = resolve_step(step, device)
    if mode != "eager" and recipe.hiding != "fixed":
        raise ValueError(f"--step {mode} needs the same number of hidden positions every step "
                         f"(hiding 'fixed'), got hiding {recipe.hiding!r}")
    generator = torch.Generator().manual_seed(10_000 + spec.seed)
    stepper = Stepper(TrainStep(model, recipe, spec.sparsity, device), mode, compile_options,
                      eager_if_not_capturable=step == "auto")
    checkpoints, probe = set(checkpoint_steps(recipe.steps)), curve_slice(corpus, recipe)
    test_curve = []
    evaluating = 0.0   # seconds spent on the curve's checkpoints, kept out of the training wall time
    model.train()
    synchronize(device)
    start = time.perf_counter()
    for n in range(recipe.steps):
        stepper(host_batch(corpus.train, recipe, corpus.vocab.mask_id, generator))
        if n + 1 in checkpoints:
            began = time.perf_counter()
            test_curve.append(test_loss(model, probe, recipe, device)["test_nll"])
            model.train()
            evaluating += time.perf_counter() - began
        if on_step is not None:
            on_step(n + 1)
    synchronize(device)
    wall = time.perf_counter() - start - evaluating - stepper.setup_s
    records = read_records(stepper.step)   # one host sync for the whole run
    losses, tail = records["losses"], tail_steps(recipe)
    every = max(1, math.ceil(recipe.steps / CURVE_POINTS))
    train_step, train_loss = _window_means(losses, every)
    return {
        "wall_s": wall,
        "setup_s": stepper.setup_s,
        "step": stepper.mode,
        "step_fallback": stepper.fallback,   # --step auto: why the step ran eagerly, where it could not be captured
        "steps": recipe.steps,
        "train_tokens": recipe.steps * recipe.batch * recipe.n_seq,
        "final_train_loss": sum(losses[-tail:]) / tail,
        "achieved_sparsity": records["achieved_sparsity"],
        "expert_load": records["expert_load"],
        "curve": {"train_every": every, "train_step": train_step, "train_loss": train_loss,
                  "test_step": sorted(checkpoints), "test_loss": test_curve,
                  "test_words": eval_plan(probe.test, recipe.n_seq, recipe.groups).words},
    }


@torch.no_grad()
def test_loss(model: LanguageModel, corpus, recipe: Recipe, device: torch.device, batch: int = 64) -> dict:
    """Mean negative log-likelihood (nats) of every test word, each hidden once, in eval mode."""
    plan = eval_plan(corpus.test, recipe.n_seq, recipe.groups)
    model.eval()
    total = torch.zeros((), dtype=torch.float64, device=device)
    for first in range(0, len(plan.windows), batch):
        tokens = plan.windows[first:first + batch].to(device)
        scored = plan.scored[first:first + batch].to(device)
        group = plan.group[first:first + batch].to(device)
        for g in range(recipe.groups):
            where = (group == g) & scored
            if not where.any():
                continue
            logits, _ = model(hide(tokens, where, corpus.vocab.mask_id), where)
            total += F.cross_entropy(logits.float(), tokens[where], reduction="sum").double()
    nll = float(total) / plan.words
    return {"test_nll": nll, "test_ppl": math.exp(nll), "test_words": plan.words}


def build_model(spec: RunSpec, recipe: Recipe, corpus, device: torch.device | str = "cpu") -> LanguageModel:
    config = spec.layer_config(recipe)
    model = LanguageModel(spec.variant, config, recipe.layers, corpus.vocab.size, corpus.vocab.predictable,
                          seed=spec.seed)
    return model.to(device)
