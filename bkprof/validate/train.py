"""One run: train a small ResNet-BK LM of one variant, setting and seed, then score it on the test text.

Every variant gets the same recipe: AdamW, linear warm-up then cosine decay of the learning rate,
gradient clipping, the same batch and token budget. The sparse and combined variants add the
sparsity loss (Huber, `adaptive`) with the adaptive sparsity scheduler: target and weight rise
along a cosine from their initial values to the run's sparsity and the final weight over the first
half of training, then stay there.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from bkprof.training import AdaptiveSparsityScheduler, balanced_loss
from bkprof.validate.model import LanguageModel, masks_of
from bkprof.validate.objective import eval_plan, hide, training_positions, training_windows
from bkprof.variants import LayerConfig


@dataclass(frozen=True)
class Recipe:
    """Training settings shared by every run of a grid."""

    d_model: int = 32
    n_seq: int = 64
    layers: int = 2
    tokens: int = 16_384         # training budget: input positions seen (batch x n_seq per step)
    batch: int = 8
    lr: float = 3e-3
    weight_decay: float = 0.01
    warmup_fraction: float = 0.05
    min_lr_fraction: float = 0.1
    clip: float = 1.0
    groups: int = 5              # 1 in `groups` positions is hidden and predicted
    initial_sparsity: float = 0.2
    initial_weight: float = 0.01
    final_weight: float = 0.1    # 0.01 left the training masks short of the target in short runs
    sparsity_warmup_fraction: float = 0.5
    dropout: float = 0.1
    backend: str = "auto"        # the BK-Core backend the runs train with (FLOPs are counted with vectorized)

    @property
    def steps(self) -> int:
        return max(1, math.ceil(self.tokens / (self.batch * self.n_seq)))

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class RunSpec:
    variant: str
    sparsity: float | None     # None: the variant has no sparsity setting
    downsample: int | None     # None: the variant has no downsampling setting
    seed: int

    def layer_config(self, recipe: Recipe) -> LayerConfig:
        fields = {"d_model": recipe.d_model, "n_seq": recipe.n_seq, "dropout": recipe.dropout,
                  "backend": recipe.backend}
        if self.sparsity is not None:
            fields["sparsity"] = self.sparsity
        if self.downsample is not None:
            fields["downsample"] = self.downsample
        return LayerConfig(**fields)

    def key(self) -> dict:
        return {"variant": self.variant, "sparsity": self.sparsity, "downsample": self.downsample, "seed": self.seed}


def learning_rate(recipe: Recipe, step: int) -> float:
    """Linear warm-up to recipe.lr, then cosine down to min_lr_fraction of it at the last step."""
    warmup = max(1, int(recipe.steps * recipe.warmup_fraction))
    if step < warmup:
        return recipe.lr * (step + 1) / warmup
    fraction = (step - warmup) / max(1, recipe.steps - warmup)
    floor = recipe.min_lr_fraction
    return recipe.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * fraction)))


def sparsity_scheduler(recipe: Recipe, target: float) -> AdaptiveSparsityScheduler:
    # back-off is off: a fixed task-loss threshold means nothing across vocabularies and budgets
    return AdaptiveSparsityScheduler(
        initial_sparsity=min(recipe.initial_sparsity, target), final_sparsity=target,
        initial_weight=recipe.initial_weight, final_weight=recipe.final_weight,
        warmup_steps=int(recipe.steps * recipe.sparsity_warmup_fraction), schedule="cosine", loss_threshold=None)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_model(model: LanguageModel, spec: RunSpec, recipe: Recipe, corpus, device: torch.device,
                on_step=None) -> dict:
    """Train in place; the training record (time, final losses, the sparsity the training masks reached)."""
    generator = torch.Generator().manual_seed(10_000 + spec.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    scheduler = sparsity_scheduler(recipe, spec.sparsity) if spec.sparsity is not None else None
    stream, mask_id = corpus.train, corpus.vocab.mask_id
    tail = max(1, recipe.steps // 10)  # the achieved sparsity is averaged over the last tenth of the steps
    sparsities, task_losses = [], []
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
        loss = task
        masks = masks_of(stats)
        if scheduler is not None and masks:
            state = scheduler.step()
            joined = {"mask": torch.cat([m.flatten() for m in masks])}
            loss, parts = balanced_loss(task, joined, state.sparsity_target, kind="adaptive",
                                        sparsity_weight=state.loss_weight)
            if step >= recipe.steps - tail:
                sparsities.append(parts["current_sparsity"])
        if step >= recipe.steps - tail:
            task_losses.append(task.detach())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.clip)
        optimizer.step()
        if on_step is not None:
            on_step(step + 1)
    _sync(device)
    wall = time.perf_counter() - start
    return {
        "wall_s": wall,
        "steps": recipe.steps,
        "train_tokens": recipe.steps * recipe.batch * recipe.n_seq,
        "final_train_loss": float(torch.stack(task_losses).mean()),
        "achieved_sparsity": float(torch.stack(sparsities).mean()) if sparsities else None,
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
