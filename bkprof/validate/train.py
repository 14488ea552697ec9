"""The recipe and the run specification of `bkprof validate` (no torch: the report reads them too).

Every variant gets the same recipe: AdamW, linear warm-up then cosine decay of the learning rate,
gradient clipping, the same batch and token budget. The sparse and combined variants add the
sparsity loss (Huber, `adaptive`) with the adaptive sparsity scheduler: target and weight rise
along a cosine from their initial values to the run's sparsity and the final weight over the first
half of training, then stay there. The training loop itself is `bkprof.validate.loop` (torch); its
names load from here on first use.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from bkprof._lazy import lazy_exports
from bkprof.variants.config import LayerConfig

REFERENCE = "transformer"  # the reference model of validate (not a registered BK variant)
# how each training step runs (bkprof.validate.step): auto = graph on CUDA, eager elsewhere. Not part of
# the recipe: like the device, it changes how fast a run goes, not what it computes
STEP_MODES = ("auto", "eager", "graph", "compiled")
# how training picks the hidden positions (bkprof.validate.objective): fixed = the same number every step
HIDINGS = ("fixed", "bernoulli")


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
    balance_weight: float = 0.01  # the router's load-balancing loss (Switch Transformer), summed over blocks
    hiding: str = "fixed"        # how training picks the hidden positions (bkprof.validate.objective)

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


def sparsity_scheduler(recipe: Recipe, target: float):
    from bkprof.training import AdaptiveSparsityScheduler

    # back-off is off: a fixed task-loss threshold means nothing across vocabularies and budgets
    return AdaptiveSparsityScheduler(
        initial_sparsity=min(recipe.initial_sparsity, target), final_sparsity=target,
        initial_weight=recipe.initial_weight, final_weight=recipe.final_weight,
        warmup_steps=int(recipe.steps * recipe.sparsity_warmup_fraction), schedule="cosine", loss_threshold=None)


__getattr__, __dir__ = lazy_exports(__name__, globals(), {name: "bkprof.validate.loop" for name in (
    "train_model", "test_loss", "build_model")})
