"""Training FLOPs per token of a whole language model, from bkprof's op counter.

Counted on the CPU (BK-Core backend `vectorized`), one sequence, train mode: forward from the
embedded input to the logits of the hidden positions (1 in `groups`, as in training), plus the
backward pass. 2 FLOPs per multiply-accumulate. Not counted: the embedding lookup and its gradient
(a gather and a scatter-add of N x d), the loss (log-softmax and NLL over the hidden positions'
logits) and the optimizer step. Divided by N: per input position ("per training token").
"""

from __future__ import annotations

from collections import Counter

CONVENTION = ("FLOPs = 2 per multiply-accumulate (bkprof op counter, CPU, vectorized BK-Core), train mode, "
              "forward + backward of one sequence divided by its N positions; embedding lookup, loss and "
              "optimizer step not counted")


# torch loads inside the functions: the report (summary.py) reads CONVENTION without it
def counting_positions(n: int, groups: int):
    """The hidden positions of the counted sequence: every `groups`-th one (n // groups of them, at least 1)."""
    import torch

    where = torch.zeros(1, n, dtype=torch.bool)
    where[0, ::groups] = True
    return where


def _train_step_flops(module, x):
    """Forward + backward under the op counter (`bkprof.count_flops`), train mode;
    the loss is the sum of the first output, whose own backward (an expand of the scalar seed) is
    free: every counted op is the model's forward or backward."""
    from bkprof.flops.model_count import count_flops

    module.train()
    # where the model runs on real tensors (its routing's nonzero has no fake form), an existing
    # .grad would turn each gradient write into a counted accumulation
    module.zero_grad(set_to_none=True)
    # the embedded input requires grad, as in training (the embedding table learns from it)
    counted = count_flops(module, x.detach().requires_grad_(), backward=True, loss_fn=lambda out: out[0].sum())
    module.zero_grad(set_to_none=True)
    return counted


def _step_total(counted) -> int:
    return counted.total("forward") + counted.total("backward")


def train_flops_per_token(spec, recipe, vocab) -> dict:
    """Whole model and blocks only, forward + backward, per token; ops the counter has no formula for."""
    import torch

    from bkprof.validate.model import FromEmbeddings, LanguageModel, StackOnly

    config = spec.layer_config(recipe).with_(backend="vectorized")
    model = LanguageModel(spec.variant, config, recipe.layers, vocab.size, vocab.predictable, seed=spec.seed)
    x = torch.randn(1, recipe.n_seq, recipe.d_model, generator=torch.Generator().manual_seed(0))
    whole = _train_step_flops(FromEmbeddings(model, counting_positions(recipe.n_seq, recipe.groups)), x)
    blocks = _train_step_flops(StackOnly(model.stack), x)
    missing = Counter()
    for (_, _, op), calls in whole.no_formula.items():
        missing[op] += calls
    return {
        "train_flops_per_token": _step_total(whole) / recipe.n_seq,
        "blocks_train_flops_per_token": _step_total(blocks) / recipe.n_seq,
        "ops_without_formula": dict(missing),
    }


def layer_claims(spec, recipe) -> list[dict]:
    """bkprof flops' claims (published formula against the full forward count of one layer) at the run's config."""
    from bkprof.flops.analytic import analytic_components
    from bkprof.flops.claims import evaluate_claims
    from bkprof.flops.published import published_accounting
    from bkprof.variants import VARIANTS

    # counted with vectorized on the CPU, whatever backend the runs trained with (triton runs on CUDA only)
    config = spec.layer_config(recipe).with_(backend="vectorized")
    return evaluate_claims(published_accounting(config), {name: analytic_components(name, config) for name in VARIANTS})
