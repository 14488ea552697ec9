"""validate's training step (bkprof.validate.step): CPU proxies for what the GPU run relies on.

No CUDA here, so CUDA-graph capture itself cannot run; what can be shown on the CPU is what capture
needs: every variant's forward and loss trace as ONE graph with static shapes (torch.compile
fullgraph, AOTAutograd tracing the backward), no op that reads a tensor back to the host or sizes its
output from data runs in a training step (a dispatch mode that fails on them), the compiled step gives
the eager losses, and the graph mode's warm-up and put-back (with capture stood in for) start training
where an eager run starts.
"""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from bkprof.validate import step as step_module
from bkprof.validate.loop import build_model, train_model
from bkprof.validate.step import Stepper, TrainStep, host_batch, resolve_step, unpack
from bkprof.validate.train import Recipe, RunSpec

TRAIN = "\n".join(["the cat sat on the mat .", "the dog sat on the log .", " = Title = ", ""] * 12)
TEST = "\n".join(["the cat sat on the log .", "a bird sat on the mat ."] * 10)
# every model validate trains: the four BK variants at a setting that uses their mask or downsampling
# (and combined at both), and the Transformer reference
SPECS = [RunSpec("dense", None, None, 0), RunSpec("sparse", 0.6, None, 0), RunSpec("multiscale", None, 2, 0),
         RunSpec("combined", 0.6, 2, 0), RunSpec("transformer", None, None, 0)]
RECIPE = Recipe(d_model=16, n_seq=16, layers=2, batch=4, tokens=4 * 16 * 4)  # 4 steps
# ops that read a tensor's value back to the host, or size their output from data: under a CUDA graph the
# first cannot run (a sync) and the second would freeze one step's size into every replay
SYNCING = {"_local_scalar_dense", "item", "nonzero", "nonzero_static", "masked_select", "_unique", "_unique2",
           "unique_dim", "unique_consecutive", "bincount", "is_nonzero", "equal", "allclose", "repeat_interleave",
           "lift_fresh"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from bkprof.validate.corpus import load_corpus

    folder = tmp_path_factory.mktemp("tiny")
    (folder / "valid.txt").write_text(TRAIN, encoding="utf-8")
    (folder / "test.txt").write_text(TEST, encoding="utf-8")
    return load_corpus(folder)


# indexing ops whose index list may hold a boolean mask: the kernel runs a nonzero inside, unseen by a mode
MASKABLE = {"index", "index_put", "index_put_", "_index_put_impl_"}


def _boolean_index(args) -> bool:
    indices = args[1] if len(args) > 1 and isinstance(args[1], (list, tuple)) else []
    return any(isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8) for i in indices)


class Syncs(TorchDispatchMode):
    """Records every op of SYNCING that runs, and boolean-mask indexing. A mode sees the ops a step
    dispatches, not the ops inside a kernel: an opaque custom op (the grouped experts) counts as one op
    (its CUDA kernels read the routing on the device: tests/test_grouped.py checks them on a GPU)."""

    def __init__(self):
        super().__init__()
        self.seen: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name in SYNCING or (name in MASKABLE and _boolean_index(args)):
            self.seen.append(str(func))
        return func(*args, **(kwargs or {}))


def _step_for(spec: RunSpec, corpus, recipe: Recipe = RECIPE) -> TrainStep:
    torch.manual_seed(20_000 + spec.seed)
    model = build_model(spec, recipe, corpus)
    model.train()
    return TrainStep(model, recipe, spec.sparsity, torch.device("cpu"))


def _batch(corpus, recipe: Recipe = RECIPE, seed: int = 0) -> torch.Tensor:
    return host_batch(corpus.train, recipe, corpus.vocab.mask_id, torch.Generator().manual_seed(seed))


def test_auto_is_graph_on_cuda_and_eager_on_the_cpu():
    assert resolve_step("auto", torch.device("cuda")) == "graph"
    assert resolve_step("auto", torch.device("cpu")) == "eager"
    assert resolve_step("compiled", torch.device("cpu")) == "compiled"
    with pytest.raises(ValueError, match="--step graph needs a CUDA device, got cpu"):
        resolve_step("graph", torch.device("cpu"))
    with pytest.raises(ValueError, match="got 'fast'"):
        resolve_step("fast", torch.device("cpu"))


def test_fixed_hiding_hides_the_same_number_uniformly(corpus):
    """Every batch hides round(4 x 16 / 5) = 13 distinct positions; over many batches each of the 64 positions
    is hidden about 1/5 of the time (binomial, 4000 batches: 5 standard deviations is +-0.032)."""
    generator = torch.Generator().manual_seed(1)
    seen = torch.zeros(64)
    for _ in range(4000):
        packed = host_batch(corpus.train, RECIPE, corpus.vocab.mask_id, generator)
        inputs, hidden, words = unpack(packed, RECIPE)
        assert hidden.shape == (13,) and hidden.unique().numel() == 13
        assert (inputs.flatten()[hidden] == corpus.vocab.mask_id).all()
        seen[hidden] += 1
    assert (seen / 4000 - 0.2).abs().max() < 0.032


def test_logits_by_index_are_the_logits_by_mask(corpus):
    step = _step_for(RunSpec("sparse", 0.6, None, 0), corpus)
    step.model.eval()
    inputs, hidden, _ = unpack(_batch(corpus), RECIPE)
    mask = torch.zeros(inputs.numel(), dtype=torch.bool)
    mask[hidden] = True
    by_index, _ = step.model(inputs, hidden)
    by_mask, _ = step.model(inputs, mask.view_as(inputs))
    assert torch.equal(by_index, by_mask)


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.variant)
def test_a_training_step_runs_no_syncing_op(spec, corpus):
    """Forward, losses, backward, clipping and the records of one step run none of SYNCING. AdamW is left
    out: on the CPU torch refuses capturable=True and the single-tensor form reads its step count with
    .item(); on CUDA the step runs AdamW(capturable=True, foreach=True), made for capture."""
    step = _step_for(spec, corpus)
    batch, row = _batch(corpus), step.row()
    with Syncs() as syncs:
        loss, task, current, counts = step.forward_loss(batch, row)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(step.model.parameters(), RECIPE.clip, foreach=True)
        step.record(row, task, current, counts)
    assert syncs.seen == []
    assert (current is not None) == (spec.sparsity is not None)
    assert (counts is not None) == (spec.variant != "transformer")


def test_the_sync_detector_sees_a_boolean_mask():
    """The control: picking rows by a boolean mask (how the logits were picked before) is a nonzero."""
    from bkprof.validate.model import picked_rows

    hidden, mask = torch.randn(2, 4, 3, requires_grad=True), torch.tensor([[True, False, True, False]] * 2)
    with Syncs() as syncs:
        picked_rows(hidden, mask).sum().backward()
    assert syncs.seen == ["aten.index.Tensor", "aten.index_put.default"]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.variant)
def test_forward_and_loss_trace_as_one_static_graph(spec, corpus):
    """fullgraph=True fails on any graph break (a .item(), a data-dependent shape, Python branching on a
    tensor); aot_eager also traces the backward ahead of time with fake tensors of fixed shapes."""
    torch._dynamo.reset()
    step = _step_for(spec, corpus)
    compiled = torch.compile(step.forward_loss, fullgraph=True, backend="aot_eager", dynamic=False)
    batch, row = _batch(corpus), step.row()
    loss, *_ = compiled(batch, row)
    loss.backward()
    eager = _step_for(spec, corpus)
    expected, *_ = eager.forward_loss(batch, eager.row())
    assert torch.allclose(loss, expected, rtol=1e-5)


def _losses(spec: RunSpec, corpus, mode: str, recipe: Recipe = RECIPE, **options) -> dict:
    torch.manual_seed(20_000 + spec.seed)
    model = build_model(spec, recipe, corpus)
    return train_model(model, spec, recipe, corpus, torch.device("cpu"), step=mode, **options)


def test_compiled_steps_give_the_eager_losses(corpus):
    """The same seed, the same arithmetic (aot_eager keeps the eager ops and the global generator, so the
    Gumbel noise and dropout draw the same numbers): the task losses, the sparsity reached and the expert
    load agree to float rounding. (Inductor, the default backend, draws with its own generator: the
    same distributions, other numbers; that comparison is statistical and waits for the GPU run.)
    Combined, one block: the importance mask, the multi-scale path and the router in one model (13 s
    here, most of it tracing; two blocks took 24 s)."""
    torch._dynamo.reset()
    spec, recipe = SPECS[3], Recipe(**{**RECIPE.as_dict(), "layers": 1})
    eager = _losses(spec, corpus, "eager", recipe)
    compiled = _losses(spec, corpus, "compiled", recipe, compile_options={"backend": "aot_eager"})
    assert compiled["step"] == "compiled" and eager["step"] == "eager"
    assert compiled["curve"]["train_loss"] == pytest.approx(eager["curve"]["train_loss"], rel=1e-5)
    assert compiled["achieved_sparsity"] == pytest.approx(eager["achieved_sparsity"], rel=1e-5)
    assert compiled["expert_load"] == eager["expert_load"]


def test_the_graph_mode_puts_back_what_its_warm_up_changed(corpus, monkeypatch):
    """Graph mode runs real steps before replaying (a sync check, warm-ups); with capture stood in for by
    those steps and a replay by a plain call, a run gives the eager run's losses exactly: the parameters,
    AdamW's state, the records, the step counter and the generator were all put back."""
    def stand_in(step, static):
        for _ in range(5):     # a first step, first_host_sync's and capture's three warm-ups
            step(static)
        return lambda: step(static)

    monkeypatch.setattr(step_module, "_capture", stand_in)
    spec = RunSpec("combined", 0.6, 2, 0)
    eager = _losses(spec, corpus, "eager")
    monkeypatch.setattr(step_module, "resolve_step", lambda step, device: step)  # graph on the CPU
    replayed = _losses(spec, corpus, "graph")
    assert replayed["step"] == "graph" and replayed["setup_s"] > 0
    assert replayed["curve"]["train_loss"] == eager["curve"]["train_loss"]
    assert replayed["achieved_sparsity"] == eager["achieved_sparsity"]
    assert replayed["expert_load"] == eager["expert_load"]


def test_a_step_mode_with_varying_shapes_is_refused(corpus):
    spec = RunSpec("dense", None, None, 0)
    model = build_model(spec, RECIPE, corpus)
    bernoulli = Recipe(**{**RECIPE.as_dict(), "hiding": "bernoulli"})
    with pytest.raises(ValueError, match="--step compiled needs the same number of hidden positions"):
        train_model(model, spec, bernoulli, corpus, torch.device("cpu"), step="compiled")
    assert train_model(model, spec, bernoulli, corpus, torch.device("cpu"), step="eager")["steps"] == 4


def test_the_stepper_copies_each_batch_into_one_static_buffer(corpus):
    """After capture the graph reads one buffer: each step's batch must land in it, not in a new tensor."""
    step = _step_for(RunSpec("dense", None, None, 0), corpus)
    stepper = Stepper(step, "eager")
    stepper.static = torch.zeros_like(_batch(corpus))
    address = stepper.static.data_ptr()
    second = _batch(corpus, seed=5)
    assert stepper._to_device(second).data_ptr() == address and torch.equal(stepper.static, second)


def test_auto_runs_eagerly_where_the_step_cannot_be_captured(corpus, monkeypatch):
    """--step auto means graph on CUDA; a step that cannot be captured (a host sync CUDA would refuse)
    then runs eagerly, the same run as --step eager (the failed attempt's steps put back), and the
    record says so. --step graph asked for by name still fails, naming the reason."""
    from bkprof.profile.timing import NotCapturable

    def refused(step, static):
        step(static)                        # capture's own first steps ran before it was refused
        step(static)
        raise NotCapturable("the training step synchronises with the host (stand-in)")

    monkeypatch.setattr(step_module, "_capture", refused)
    spec = RunSpec("sparse", 0.6, None, 0)
    eager = _losses(spec, corpus, "eager")
    monkeypatch.setattr(step_module, "resolve_step", lambda step, device: "graph")  # what auto is on CUDA
    fell_back = _losses(spec, corpus, "auto")
    assert fell_back["step"] == "eager" and "stand-in" in fell_back["step_fallback"]
    assert fell_back["curve"]["train_loss"] == eager["curve"]["train_loss"]
    assert eager["step_fallback"] is None
    with pytest.raises(NotCapturable, match="stand-in"):
        _losses(spec, corpus, "graph")
