"""The training loop and the scoring of one run (torch): `bkprof.validate.train` holds the recipe.

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

from bkprof.validate.model import LanguageModel, masks_of
from bkprof.validate.objective import eval_plan, hide, training_positions, training_windows
from bkprof.validate.train import Recipe, RunSpec, learning_rate, sparsity_scheduler

CURVE_POINTS = 64          # at most this many training-loss points per run (each the mean over its steps)
TEST_CHECKPOINTS = 8       # test-loss checkpoints per run, evenly spaced in steps, the last at the end
# the checkpoints score the first min(16, batch) windows of N test tokens (fixed for every run of a grid):
# a checkpoint costs about as much as 5 x windows / (3 x batch) training steps, under 4 % of training in
# the GPU grid (batch 64, 200 steps) but 40 % of the CPU smoke run's at 16 windows (batch 8, 64 steps)
CURVE_TEST_WINDOWS = 16


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


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


class ExpertLoad:
    """Tokens routed to each expert of each block, summed over the steps it is fed."""

    def __init__(self):
        self.counts: list[torch.Tensor] | None = None

    def add(self, stats: list[dict], experts: int) -> None:
        # scatter_add, not bincount: bincount reads the largest index back to the host (a sync on CUDA)
        counts = [torch.zeros(experts, dtype=torch.long, device=s["expert_index"].device).scatter_add_(
                      0, s["expert_index"].flatten(), torch.ones_like(s["expert_index"].flatten()))
                  for s in stats if "expert_index" in s]
        self.counts = counts if self.counts is None else [a + b for a, b in zip(self.counts, counts)]

    def fractions(self) -> list[list[float]] | None:
        if not self.counts:
            return None
        return [(c.double() / c.sum()).tolist() for c in self.counts]


def _training_loss(model, recipe: Recipe, scheduler, task, stats, tail: bool, sparsities):
    """Task loss plus the sparsity loss (variants with a mask) and the router's load-balancing loss."""
    loss = task
    masks = masks_of(stats)
    if scheduler is not None and masks:
        from bkprof.training import balanced_loss

        state = scheduler.step()
        joined = {"mask": torch.cat([m.flatten() for m in masks])}
        loss, parts = balanced_loss(task, joined, state.sparsity_target, kind="adaptive",
                                    sparsity_weight=state.loss_weight)
        if tail:
            sparsities.append(parts["current_sparsity"])
    return loss + balance_loss(stats, recipe, model.num_experts)


def balance_loss(stats: list[dict], recipe: Recipe, experts: int):
    """recipe.balance_weight x the load-balancing loss summed over the blocks that route (0 without a router)."""
    routed = [s for s in stats if "router_probs" in s]
    if not routed or not recipe.balance_weight:
        return 0.0
    from bkprof.training.losses import load_balancing_loss

    total = sum(load_balancing_loss(s["router_probs"], s["expert_index"], experts) for s in routed)
    return recipe.balance_weight * total


def train_model(model: LanguageModel, spec: RunSpec, recipe: Recipe, corpus, device: torch.device,
                on_step=None) -> dict:
    """Train in place; the training record (time, final losses, the sparsity the training masks reached,
    the experts' load, the learning curve)."""
    generator = torch.Generator().manual_seed(10_000 + spec.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    scheduler = sparsity_scheduler(recipe, spec.sparsity) if spec.sparsity is not None else None
    stream, mask_id = corpus.train, corpus.vocab.mask_id
    tail = max(1, recipe.steps // 10)  # sparsity reached and expert load: over the last tenth of the steps
    checkpoints, probe = set(checkpoint_steps(recipe.steps)), curve_slice(corpus, recipe)
    sparsities, task_losses, test_curve, load = [], [], [], ExpertLoad()
    evaluating = 0.0   # seconds spent on the curve's checkpoints, kept out of the training wall time
    model.train()
    _sync(device)
    start = time.perf_counter()
    for step in range(recipe.steps):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(recipe, step)
        tokens = training_windows(stream, recipe.batch, recipe.n_seq, generator).to(device)
        where = training_positions(tuple(tokens.shape), recipe.groups, generator, device)
        logits, stats = model(hide(tokens, where, mask_id), where)
        task = F.cross_entropy(logits, tokens[where])
        in_tail = step >= recipe.steps - tail
        loss = _training_loss(model, recipe, scheduler, task, stats, in_tail, sparsities)
        task_losses.append(task.detach())
        if in_tail:
            load.add(stats, model.num_experts)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.clip)
        optimizer.step()
        if step + 1 in checkpoints:
            began = time.perf_counter()
            test_curve.append(test_loss(model, probe, recipe, device)["test_nll"])
            model.train()
            evaluating += time.perf_counter() - began
        if on_step is not None:
            on_step(step + 1)
    _sync(device)
    wall = time.perf_counter() - start - evaluating
    losses = torch.stack(task_losses).float().tolist()   # one host sync for the whole curve
    every = max(1, math.ceil(recipe.steps / CURVE_POINTS))
    train_step, train_loss = _window_means(losses, every)
    return {
        "wall_s": wall,
        "steps": recipe.steps,
        "train_tokens": recipe.steps * recipe.batch * recipe.n_seq,
        "final_train_loss": sum(losses[-tail:]) / tail,
        "achieved_sparsity": float(torch.stack(sparsities).mean()) if sparsities else None,
        "expert_load": load.fractions(),
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
