"""validate's training step as one unit: run eagerly, replayed as a CUDA graph, or compiled (torch).

One step is: the batch (input tokens, hidden positions, their words) copied into the device, the
forward pass, the task loss with the sparsity and load-balancing losses, the backward pass, gradient
clipping, AdamW, and the run's records (task loss, sparsity reached, expert load) written on the
device. Every mode runs the same functions in the same order:

- `eager`: they are called step by step (the only mode before 2026-12-05);
- `graph`: one step is captured in a CUDA graph (`bkprof.profile.timing.capture`: warm-up on a side
  stream, then capture) and every step is a replay. Whatever changes from step to step is a tensor the
  graph reads: the batch (copied into static buffers before each replay), the learning rate, the sparsity
  target and weight and the records' tail flag (rows of a per-step schedule on the device, picked by a
  step counter the graph increments), the Gumbel noise and dropout (the default CUDA generator, which
  graph capture registers: each replay draws fresh numbers, as eager steps would from the same state);
- `compiled`: the forward and loss as one `torch.compile(fullgraph=True)` graph (mode
  "reduce-overhead" on CUDA: CUDA graphs through torch.compile), its backward from AOTAutograd, the
  clipping, AdamW and records as a second compiled function. Inductor draws random numbers with its
  own generator: the same distribution as eager, not the same values.

Capture needs static shapes and no host syncs: the batch hides the same number of positions every
step (`hiding = "fixed"`), the logits are picked by index (no boolean mask), the expert counts use
scatter_add (no bincount), the sparsity schedule is a tensor (no float() of it), AdamW is capturable
with a tensor learning rate and clipping uses foreach (no .item()), and losses are read back once, at
the end. The warm-up and capture run real steps; the model, optimizer state, records and CUDA
generator are put back afterwards, so a graph run starts from where an eager one would.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from bkprof.validate.model import LanguageModel, masks_of
from bkprof.validate.objective import hide, training_positions, training_windows
from bkprof.validate.train import STEP_MODES, Recipe, learning_rate, sparsity_scheduler
from bkprof.variants.dense import MoEFFN

# schedule columns: learning rate, sparsity target, sparsity-loss weight, 1.0 in the records' tail
LR, TARGET, WEIGHT, TAIL = range(4)


def resolve_step(step: str, device: torch.device) -> str:
    """The mode `step` stands for on `device` (auto: graph on CUDA, eager elsewhere); ValueError naming it."""
    if step not in STEP_MODES:
        raise ValueError(f"--step must be one of {', '.join(STEP_MODES)}, got {step!r}")
    if step == "auto":
        return "graph" if device.type == "cuda" else "eager"
    if step == "graph" and device.type != "cuda":
        raise ValueError(f"--step graph needs a CUDA device, got {device.type}")
    return step


def tail_steps(recipe: Recipe) -> int:
    """The last tenth of the steps: the sparsity reached and the expert load are averaged over them."""
    return max(1, recipe.steps // 10)


def step_schedule(recipe: Recipe, sparsity: float | None, device: torch.device) -> torch.Tensor:
    """(steps, 4) float32 on `device`: each step's learning rate, sparsity target and weight (0 without
    a mask; the adaptive scheduler's state after that step's call, as the eager loop always used), tail flag."""
    scheduler = sparsity_scheduler(recipe, sparsity) if sparsity is not None else None
    rows = []
    for step in range(recipe.steps):
        state = scheduler.step() if scheduler is not None else None
        rows.append((learning_rate(recipe, step), state.sparsity_target if state else 0.0,
                     state.loss_weight if state else 0.0, float(step >= recipe.steps - tail_steps(recipe))))
    return torch.tensor(rows, dtype=torch.float32).to(device)


def host_batch(stream: torch.Tensor, recipe: Recipe, mask_id: int, generator: torch.Generator) -> torch.Tensor:
    """One training batch packed on the host as one int64 vector (one copy to the device):
    the B x N input tokens with the hidden ones masked, the K hidden positions (flat indices), their words."""
    tokens = training_windows(stream, recipe.batch, recipe.n_seq, generator)
    hidden = training_positions(tuple(tokens.shape), recipe.groups, generator, recipe.hiding)
    where = torch.zeros(tokens.numel(), dtype=torch.bool)
    where[hidden] = True
    inputs = hide(tokens, where.view_as(tokens), mask_id)
    return torch.cat([inputs.flatten(), hidden, tokens.flatten()[hidden]])


def unpack(batch: torch.Tensor, recipe: Recipe) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(inputs (B, N), hidden (K,), words (K,)) as views of a packed batch; K from its length (a shape)."""
    positions = recipe.batch * recipe.n_seq
    k = (batch.shape[0] - positions) // 2
    return batch[:positions].view(recipe.batch, recipe.n_seq), batch[positions:positions + k], batch[positions + k:]


@dataclass
class Records:
    """What the steps leave on the device, read back once at the end."""

    losses: torch.Tensor         # (steps,) task loss of each step
    sparsity_sum: torch.Tensor   # () sum over the tail steps of the sparsity the training masks reached
    counts: torch.Tensor         # (routed blocks, E) int64: tokens routed to each expert over the tail steps

    @classmethod
    def zeros(cls, steps: int, routed: int, experts: int, device: torch.device) -> "Records":
        return cls(torch.zeros(steps, device=device), torch.zeros((), device=device),
                   torch.zeros(routed, experts, dtype=torch.long, device=device))

    def tensors(self) -> list[torch.Tensor]:
        return [self.losses, self.sparsity_sum, self.counts]


def adamw(model: LanguageModel, recipe: Recipe, device: torch.device) -> torch.optim.AdamW:
    """AdamW with a tensor learning rate (set on the device each step). Capturable with foreach on CUDA:
    no .item() of the step count; torch allows capturable on accelerators only, so the CPU runs the
    single-tensor form (the same arithmetic)."""
    lr = torch.tensor(recipe.lr, dtype=torch.float32, device=device)
    if device.type == "cuda":
        return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=recipe.weight_decay,
                                 capturable=True, foreach=True)
    return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=recipe.weight_decay, foreach=False)


class TrainStep:
    """The parts of one training step over a packed batch on the device (see the module docstring)."""

    def __init__(self, model: LanguageModel, recipe: Recipe, sparsity: float | None, device: torch.device):
        self.model, self.recipe, self.device = model, recipe, device
        self.optimizer = adamw(model, recipe, device)
        self.schedule = step_schedule(recipe, sparsity, device)
        self.masked = sparsity is not None         # the variant has a sparsity loss (a structural fact)
        self.counter = torch.zeros((), dtype=torch.long, device=device)
        self.routed = sum(1 for m in model.modules() if isinstance(m, MoEFFN))
        self.records = Records.zeros(recipe.steps, self.routed, model.num_experts, device)

    def index(self) -> torch.Tensor:
        """(1,) this step's number, for indexing on the device. Clamped to the last step: the warm-up before
        a capture may run more steps than a short run has (its records are zeroed afterwards), and an index
        out of range on CUDA is a device-side assert, which ends the process."""
        return self.counter.clamp(max=self.recipe.steps - 1).view(1)

    def row(self) -> torch.Tensor:
        """This step's schedule row, picked on the device by the step counter."""
        return self.schedule.index_select(0, self.index()).squeeze(0)

    def forward_loss(self, batch: torch.Tensor, row: torch.Tensor):
        """(loss to minimise, task loss, sparsity reached or None, the routed blocks' expert counts or None)."""
        inputs, hidden, words = unpack(batch, self.recipe)
        logits, stats = self.model(inputs, hidden)
        task = F.cross_entropy(logits, words)
        loss, current = task, None
        masks = masks_of(stats)
        if self.masked and masks:
            from bkprof.training import balanced_loss

            joined = {"mask": torch.cat([m.flatten() for m in masks])}
            loss, parts = balanced_loss(task, joined, row[TARGET], kind="adaptive", sparsity_weight=row[WEIGHT])
            current = parts["current_sparsity"]
        loss = loss + balance_loss(stats, self.recipe, self.model.num_experts)
        return loss, task.detach(), current, route_table(stats, self.model.num_experts)

    def update(self, row: torch.Tensor, task: torch.Tensor, current, counts) -> None:
        """Clipping, AdamW at this step's learning rate, the records, the step counter."""
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.recipe.clip, foreach=True)
        for group in self.optimizer.param_groups:
            group["lr"].copy_(row[LR])
        self.optimizer.step()
        self.record(row, task, current, counts)

    def record(self, row: torch.Tensor, task: torch.Tensor, current, counts) -> None:
        self.records.losses.index_copy_(0, self.index(), task.view(1))
        if current is not None:
            self.records.sparsity_sum.add_(row[TAIL] * current)
        if counts is not None:
            self.records.counts.add_(row[TAIL].long() * counts)
        self.counter.add_(1)

    def __call__(self, batch: torch.Tensor) -> None:
        """One whole step, eagerly (graph mode captures exactly this)."""
        self.optimizer.zero_grad(set_to_none=True)
        row = self.row()
        loss, task, current, counts = self.forward_loss(batch, row)
        loss.backward()
        self.update(row, task, current, counts)

    def restart(self, snapshot: list[torch.Tensor]) -> None:
        """Back to the state before the warm-up steps: parameters from `snapshot`, AdamW's state, the
        records and the counter zeroed (a fresh AdamW state is zeros), all in place (a graph holds them)."""
        with torch.no_grad():
            for p, saved in zip(self.model.parameters(), snapshot):
                p.copy_(saved)
            for state in self.optimizer.state.values():
                for value in state.values():
                    if isinstance(value, torch.Tensor):
                        value.zero_()
            for t in [*self.records.tensors(), self.counter]:
                t.zero_()


def route_table(stats: list[dict], experts: int) -> torch.Tensor | None:
    """(routed blocks, E): the (token, slot) pairs each block routed to each expert this step."""
    from bkprof.training.losses import route_counts

    counts = [route_counts(s["expert_index"], experts) for s in stats if "expert_index" in s]
    return torch.stack(counts) if counts else None


def balance_loss(stats: list[dict], recipe: Recipe, experts: int):
    """recipe.balance_weight x the load-balancing loss summed over the blocks that route (0 without a router)."""
    routed = [s for s in stats if "router_probs" in s]
    if not routed or not recipe.balance_weight:
        return 0.0
    from bkprof.training.losses import load_balancing_loss

    total = sum(load_balancing_loss(s["router_probs"], s["expert_index"], experts) for s in routed)
    return recipe.balance_weight * total


class Stepper:
    """Runs a TrainStep over host batches in one mode; `setup_s` is the time warm-up and capture took (graph),
    or the first step with its compilation (compiled). With `eager_if_not_capturable` (--step auto), a
    step that cannot be captured runs eagerly instead: `mode` then says eager and `fallback` why."""

    def __init__(self, step: TrainStep, mode: str, compile_options: dict | None = None,
                 eager_if_not_capturable: bool = False):
        self.step, self.mode = step, mode
        self.compile_options = compile_options
        self.eager_if_not_capturable = eager_if_not_capturable
        self.static: torch.Tensor | None = None
        self.run = None
        self.setup_s = 0.0
        self.fallback: str | None = None

    def __call__(self, host: torch.Tensor) -> None:
        if self.run is not None:
            self.run(self._to_device(host))
            return
        import time

        began = time.perf_counter()
        self._prepare(host)
        if self.mode == "compiled":   # torch.compile compiles on the first call: that step is setup too
            self.run(self._to_device(host))
            synchronize(self.step.device)
            self.setup_s = time.perf_counter() - began
            return
        self.setup_s = time.perf_counter() - began
        self.run(self._to_device(host))

    def _to_device(self, host: torch.Tensor) -> torch.Tensor:
        if self.static is None:
            return host.to(self.step.device)
        if self.static.is_cuda:
            # pinned, so the copy is asynchronous; the pinned allocator reuses a block only after its copy ended
            host = host.pin_memory()
        self.static.copy_(host, non_blocking=True)
        return self.static

    def _prepare(self, host: torch.Tensor) -> None:
        if self.mode == "eager":
            self.run = self.step
        elif self.mode == "graph":
            self.run = self._captured(host)
        else:
            self.run = self._compiled()

    def _captured(self, host: torch.Tensor):
        """A replay of the captured step. Capture runs real steps first (a sync check, warm-up); the
        model, AdamW's state, the records and the generator are put back after it, captured or not."""
        from bkprof.profile.timing import NotCapturable

        step = self.step
        self.static = host.to(step.device)
        snapshot = [p.detach().clone() for p in step.model.parameters()]
        rng = _rng_state(step.device)
        try:
            replay = _capture(step, self.static)
        except NotCapturable as refused:
            if not self.eager_if_not_capturable:
                raise
            self.mode, self.fallback, self.static = "eager", str(refused), None
            return step
        finally:
            step.restart(snapshot)
            _set_rng_state(rng, step.device)
        return lambda batch: replay()

    def _compiled(self):
        step = self.step
        options = self.compile_options or ({"mode": "reduce-overhead"} if step.device.type == "cuda" else {})
        forward_loss = torch.compile(step.forward_loss, fullgraph=True, **options)
        # AdamW's step always breaks the graph around itself (torch.optim); the rest is one graph
        update = torch.compile(step.update, **options)

        def run(batch: torch.Tensor) -> None:
            # a new step: CUDA-graph trees may reuse the memory of the last step's outputs (all consumed)
            torch.compiler.cudagraph_mark_step_begin()
            step.optimizer.zero_grad(set_to_none=True)
            row = step.row()
            loss, task, current, counts = forward_loss(batch, row)
            loss.backward()
            update(row, task, current, counts)

        return run


def _capture(step: TrainStep, static: torch.Tensor):
    """The replay of `step` captured as a CUDA graph on `static` (bkprof.profile's capture helper).
    The CPU tests stand in for this one function."""
    from bkprof.profile.timing import NotCapturable, capture, first_host_sync, first_line

    step(static)   # kernels compiled (Triton), AdamW's state made, allocator filled: none of that is a step's own sync
    synchronize(static.device)
    sync = first_host_sync(step, static)   # one step with syncs turned into errors
    if sync is not None:
        raise NotCapturable(f"the training step synchronises with the host ({sync})")
    try:
        return capture(step, static).replay
    except RuntimeError as error:   # an op CUDA refuses while capturing: the message names it
        raise NotCapturable(f"capturing the training step failed: {first_line(error)}") from error


def synchronize(device: torch.device) -> None:
    """Wait for the device (CUDA); nothing to wait for on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _rng_state(device: torch.device) -> torch.Tensor:
    """The state of the generator the step's random draws come from (Gumbel noise, dropout)."""
    return torch.cuda.get_rng_state(device) if device.type == "cuda" else torch.get_rng_state()


def _set_rng_state(state: torch.Tensor, device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.set_rng_state(state, device)
    else:
        torch.set_rng_state(state)


def read_records(step: TrainStep) -> dict:
    """The records on the host (one sync): task losses, mean sparsity over the tail, expert load fractions."""
    tail = tail_steps(step.recipe)
    losses, sparsity_sum, counts = (t.cpu() for t in step.records.tensors())
    fractions = [(c.double() / c.sum()).tolist() for c in counts] if step.routed else None
    return {"losses": losses.double().tolist(),
            "achieved_sparsity": float(sparsity_sum) / tail if step.masked else None,
            "expert_load": fractions}
