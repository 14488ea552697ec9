"""The masked-word objective: which positions are predicted in training and in evaluation.

Training hides round(B x N / groups) positions of each batch, drawn uniformly without replacement
(the recipe's `hiding = "fixed"`): the same number every step, so every training step has the same
shapes and can be captured as a CUDA graph or compiled once. The runs before 2026-12-05 hid each
position independently with probability 1/groups (`hiding = "bernoulli"`, at least one per batch): the
same chance per position, but a number of hidden positions (and so a logits shape) that varies per step. Evaluation cuts the test stream into
windows of N and scores every test word exactly once: each window is run `groups` times, pass g
hiding the positions of group g (a fixed random assignment, the same for every variant and seed).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bkprof.validate.train import HIDINGS

EVAL_SEED = 0  # the test windows' group assignment: one fixed draw, shared by every run


def hide(tokens: torch.Tensor, where: torch.Tensor, mask_id: int) -> torch.Tensor:
    return tokens.masked_fill(where, mask_id)


def hidden_count(shape: tuple[int, int], groups: int) -> int:
    """Positions hidden per batch with `hiding = "fixed"`: B x N / groups rounded, at least one."""
    return max(1, round(shape[0] * shape[1] / groups))


def training_positions(shape: tuple[int, int], groups: int, generator: torch.Generator,
                       hiding: str = "fixed") -> torch.Tensor:
    """The hidden positions of one batch as sorted indices into its flattened (B x N) positions, on the
    host (drawn from `generator`, which lives there). Sorted, they pick the rows in the order a
    boolean mask of the same positions would."""
    if hiding == "fixed":
        chosen = torch.randperm(shape[0] * shape[1], generator=generator)[:hidden_count(shape, groups)]
        return chosen.sort().values
    if hiding != "bernoulli":
        raise ValueError(f"hiding must be one of {', '.join(HIDINGS)}, got {hiding!r}")
    where = torch.rand(shape, generator=generator) < 1.0 / groups
    if not where.any():  # at least one per batch, so the loss is defined
        where[0, int(torch.randint(shape[1], (1,), generator=generator))] = True
    return where.flatten().nonzero().squeeze(1)


def training_windows(stream: torch.Tensor, batch: int, n: int, generator: torch.Generator) -> torch.Tensor:
    """`batch` windows of n consecutive tokens at uniform random starts."""
    starts = torch.randint(0, len(stream) - n + 1, (batch,), generator=generator)
    return stream[starts[:, None] + torch.arange(n)]


@dataclass(frozen=True)
class EvalPlan:
    windows: torch.Tensor   # (W, N) token ids
    scored: torch.Tensor    # (W, N) bool: the position is scored (the last window overlaps the one before)
    group: torch.Tensor     # (W, N) int: the pass that hides it

    @property
    def words(self) -> int:
        return int(self.scored.sum())


def eval_plan(stream: torch.Tensor, n: int, groups: int) -> EvalPlan:
    """Consecutive windows of n covering the stream, the last one ending at the stream's end."""
    if len(stream) < n:
        raise ValueError(f"the test text has {len(stream)} tokens, fewer than one sequence of n_seq={n}")
    starts = list(range(0, len(stream) - n + 1, n))
    covered = starts[-1] + n
    if covered < len(stream):
        starts.append(len(stream) - n)
    index = torch.tensor(starts)[:, None] + torch.arange(n)
    scored = torch.ones_like(index, dtype=torch.bool)
    if covered < len(stream):
        scored[-1] = index[-1] >= covered
    generator = torch.Generator().manual_seed(EVAL_SEED)
    group = torch.stack([torch.randperm(n, generator=generator) % groups for _ in starts])
    return EvalPlan(stream[index], scored, group)
