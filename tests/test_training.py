import math

import pytest
import torch

from bkprof.training import (AdaptiveSparsityScheduler, balanced_loss, current_sparsity, shaped_progress,
                             sparsity_loss, stats_sparsity_loss)
from bkprof.variants import LayerConfig, build


def mask_with_sparsity(zeros: int, n: int = 256) -> torch.Tensor:
    mask = torch.ones(1, n)
    mask[0, :zeros] = 0
    return mask


# The source's demo: current sparsity 0.387 (99 of 256 skipped), target 0.5.
SOURCE_DEMO = {"l2": 0.012833, "l1": 0.113281, "kl": 0.026347, "adaptive": 0.006328}


@pytest.mark.parametrize("kind", SOURCE_DEMO)
def test_losses_reproduce_the_source_demo(kind):
    current = current_sparsity(mask_with_sparsity(99))
    assert sparsity_loss(current, 0.5, kind).item() == pytest.approx(SOURCE_DEMO[kind], abs=5e-7)


def test_loss_values_by_formula():
    c, t = torch.tensor(0.3, dtype=torch.float64), 0.6
    assert sparsity_loss(c, t, "l2").item() == pytest.approx(0.09)
    assert sparsity_loss(c, t, "l1").item() == pytest.approx(0.3)
    assert sparsity_loss(c, t, "kl").item() == pytest.approx(0.6 * math.log(2) + 0.4 * math.log(0.4 / 0.7))
    # Huber: quadratic inside delta, linear outside
    assert sparsity_loss(c, t, "adaptive", delta=0.5).item() == pytest.approx(0.5 * 0.09)
    assert sparsity_loss(c, t, "adaptive", delta=0.1).item() == pytest.approx(0.1 * (0.3 - 0.05))


@pytest.mark.parametrize("kind", ["l2", "l1", "kl", "adaptive"])
def test_every_loss_is_zero_on_target_and_finite_at_the_edges(kind):
    assert sparsity_loss(torch.tensor(0.4), 0.4, kind).item() == pytest.approx(0.0, abs=1e-6)
    for current in (0.0, 1.0):
        for target in (0.0, 0.5, 1.0):
            assert math.isfinite(sparsity_loss(torch.tensor(current), target, kind).item())


def test_kl_is_asymmetric():
    forward = sparsity_loss(torch.tensor(0.2), 0.5, "kl").item()
    backward = sparsity_loss(torch.tensor(0.5), 0.2, "kl").item()
    assert forward != pytest.approx(backward, rel=1e-3)


@pytest.mark.parametrize("kind", ["l2", "l1", "kl", "adaptive"])
def test_gradient_pushes_sparsity_towards_target(kind):
    current = torch.tensor(0.3, requires_grad=True)
    sparsity_loss(current, 0.6, kind).backward()
    assert current.grad.item() < 0  # raising sparsity lowers the loss
    current = torch.tensor(0.8, requires_grad=True)
    sparsity_loss(current, 0.6, kind).backward()
    assert current.grad.item() > 0


def test_l2_gradient_value():
    current = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    sparsity_loss(current, 0.6, "l2").backward()
    assert current.grad.item() == pytest.approx(2 * (0.3 - 0.6))


def test_bad_loss_inputs_are_rejected():
    with pytest.raises(ValueError, match="kind"):
        sparsity_loss(torch.tensor(0.3), 0.5, "l3")
    with pytest.raises(ValueError, match="target"):
        sparsity_loss(torch.tensor(0.3), 1.5, "l2")
    with pytest.raises(ValueError, match="mask"):
        stats_sparsity_loss({"expert_index": None}, 0.5)


def test_balanced_loss_breakdown():
    stats = {"mask": mask_with_sparsity(99)}
    task = torch.tensor(2.5)
    total, parts = balanced_loss(task, stats, 0.5, kind="l2", sparsity_weight=0.1, accuracy_weight=2.0)
    assert total.item() == pytest.approx(2.0 * 2.5 + 0.1 * (99 / 256 - 0.5) ** 2)
    assert parts["total_loss"].item() == pytest.approx(total.item())
    assert parts["current_sparsity"].item() == pytest.approx(99 / 256)
    assert parts["accuracy_loss"].item() == 2.5 and parts["target_sparsity"] == 0.5
    assert parts["sparsity_loss"].item() == pytest.approx((99 / 256 - 0.5) ** 2)


@pytest.mark.parametrize("variant", ["sparse", "combined"])
@pytest.mark.parametrize("kind", ["l2", "l1", "kl", "adaptive"])
def test_backward_through_a_train_mode_variant(variant, kind):
    config = LayerConfig(d_model=16, n_seq=32, num_experts=2, sparsity=0.6)
    model = build(variant, config, seed=1).train()
    x = torch.randn(2, 32, 16, generator=torch.Generator().manual_seed(0))
    out, stats = model(x)
    total, parts = balanced_loss(out.square().mean(), stats, 0.6, kind=kind, sparsity_weight=1.0)
    total.backward()
    importance = model.importance if variant == "sparse" else model.inner.importance
    grads = [p.grad for p in importance.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)  # the sparsity loss reaches the importance predictor


def test_sparsity_loss_alone_reaches_the_importance_predictor():
    config = LayerConfig(d_model=16, n_seq=32, num_experts=2, sparsity=0.6)
    model = build("sparse", config, seed=2).train()
    _, stats = model(torch.randn(2, 32, 16))
    stats_sparsity_loss(stats, 0.9, "l2").backward()
    assert model.importance.head[-1].weight.grad.abs().sum() > 0
    assert model.moe.gate.weight.grad is None  # and nowhere it has no path to


def test_shaped_progress():
    assert [shaped_progress(f, "linear") for f in (0, 0.25, 1)] == [0, 0.25, 1]
    assert shaped_progress(0.5, "cosine") == pytest.approx(0.5)
    assert shaped_progress(0.25, "cosine") == pytest.approx((1 - math.cos(math.pi / 4)) / 2)
    assert [shaped_progress(f, "step", 4) for f in (0, 0.24, 0.25, 0.99, 1)] == [0, 0, 0.25, 0.75, 1]
    assert shaped_progress(2.0, "linear") == 1 and shaped_progress(-1.0, "cosine") == 0


@pytest.mark.parametrize("schedule", ["linear", "cosine", "step"])
def test_scheduler_endpoints(schedule):
    s = AdaptiveSparsityScheduler(0.2, 0.5, 0.001, 0.01, warmup_steps=100, schedule=schedule)
    start = s.state()
    assert (start.sparsity_target, start.loss_weight, start.step) == (0.2, 0.001, 0)
    states = [s.step() for _ in range(150)]
    assert states[99].sparsity_target == pytest.approx(0.5) and states[99].loss_weight == pytest.approx(0.01)
    assert states[-1].sparsity_target == pytest.approx(0.5) and states[-1].position == 100
    targets = [st.sparsity_target for st in states]
    assert targets == sorted(targets)  # never decreases without back-off


def test_scheduler_midpoints():
    linear = AdaptiveSparsityScheduler(0.2, 0.6, 0.0, 1.0, warmup_steps=10, schedule="linear")
    for _ in range(5):
        state = linear.step()
    assert state.sparsity_target == pytest.approx(0.4) and state.loss_weight == pytest.approx(0.5)
    step = AdaptiveSparsityScheduler(0.2, 0.6, warmup_steps=8, schedule="step", stages=2)
    targets = [step.step().sparsity_target for _ in range(8)]
    assert targets == pytest.approx([0.2, 0.2, 0.2, 0.4, 0.4, 0.4, 0.4, 0.6])


def test_scheduler_backs_off_above_the_threshold():
    s = AdaptiveSparsityScheduler(0.2, 0.6, 0.0, 1.0, warmup_steps=10, schedule="linear",
                                  loss_threshold=3.0, backoff_steps=3)
    for _ in range(6):
        s.step(task_loss=2.0)
    assert s.state().position == 6
    backed = s.step(task_loss=3.5)
    assert backed.backed_off and backed.position == 3
    assert backed.sparsity_target == pytest.approx(0.2 + 0.4 * 0.3) and backed.loss_weight == pytest.approx(0.3)
    assert not s.step(task_loss=3.0).backed_off  # the threshold itself is not exceeded
    for _ in range(5):
        s.step(task_loss=10.0)
    assert s.state().position == 0 and s.state().sparsity_target == 0.2  # never below the start
    assert s.state().step == 13


def test_scheduler_without_threshold_never_backs_off_and_resets():
    s = AdaptiveSparsityScheduler(warmup_steps=4, schedule="linear")
    assert not any(s.step(task_loss=1e9).backed_off for _ in range(4))
    assert s.state().sparsity_target == pytest.approx(0.5)
    s.reset()
    assert s.state().position == 0 and s.state().step == 0


def test_scheduler_zero_warmup_starts_at_final():
    s = AdaptiveSparsityScheduler(0.2, 0.5, warmup_steps=0)
    assert s.state().sparsity_target == 0.5


@pytest.mark.parametrize("kwargs", [dict(schedule="exp"), dict(initial_sparsity=1.0), dict(warmup_steps=-1),
                                    dict(final_weight=-0.1), dict(stages=0), dict(backoff_steps=-2)])
def test_scheduler_rejects_bad_settings(kwargs):
    with pytest.raises(ValueError):
        AdaptiveSparsityScheduler(**kwargs)


# ---- FLOPs over a schedule, the loss overhead, `bkprof schedule` ----

def test_projection_totals_follow_the_published_formula():
    from bkprof.training.projection import project_schedule

    config = LayerConfig(d_model=16, n_seq=32, num_experts=2)
    scheduler = AdaptiveSparsityScheduler(0.2, 0.6, warmup_steps=4, schedule="linear")
    rows, totals = project_schedule(scheduler, 6, ["sparse", "combined"], config, batch=3, every=2)
    assert [r["step"] for r in rows if r["variant"] == "sparse"] == [1, 2, 4, 6]
    targets = [0.3, 0.4, 0.5, 0.6, 0.6, 0.6]
    # published sparse G_ii path: importance N*d*2 + (1 - s) * 2*N*10 + interpolation N*d*2, per sequence
    expected = sum(3 * (2 * 32 * 16 * 2 + (1 - s) * 2 * 32 * 10) for s in targets)
    by = {(t["variant"], t["accounting"]): t for t in totals}
    assert by["sparse", "published_forward"]["schedule_total"] == pytest.approx(expected)
    assert by["sparse", "published_forward"]["schedule_vs_fixed"] > 1  # lower sparsity early costs more
    for variant in ("sparse", "combined"):
        for accounting in ("full_forward", "full_train"):
            assert by[variant, accounting]["schedule_total"] == by[variant, accounting]["fixed_total"]
    assert by["combined", "full_train"]["fixed_total"] > by["combined", "full_forward"]["fixed_total"]


def test_loss_overhead_is_measured():
    from bkprof.training.overhead import loss_overhead

    result = loss_overhead("sparse", LayerConfig(d_model=16, n_seq=32, num_experts=2), batch=2, kind="kl",
                           warmup=0, runs=2)
    assert result["forward_ms"] > 0 and result["loss_ms"] > 0
    # the loss is a handful of elementwise ops on 2 x 32 mask values; the layer's forward runs the
    # experts' matmuls, the BK-Core scan and the convolutions: tens of times more work, so the
    # measured overhead is well under 1 whatever the machine's load (both are timed under it)
    assert result["overhead"] < 0.5


def test_schedule_command(tmp_path):
    import json

    from typer.testing import CliRunner

    from bkprof.cli import app

    args = ["schedule", "--d-model", "16", "--n-seq", "32", "--experts", "2", "--batch", "2", "--steps", "20",
            "--warmup", "10", "--schedule", "step", "--stages", "2", "--runs", "2", "--loss", "l1",
            "--format", "json", "--output", str(tmp_path / "s.json")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "s.json").read_text())
    targets = [r["sparsity_target"] for r in doc["steps"] if r["variant"] == "sparse"]
    # steps 1, 2, 4, ..., 20; two plateaus over a 10-step warm-up: 0.2 below step 5, 0.4 below 10, then 0.6
    assert targets == pytest.approx([0.2, 0.2, 0.2, 0.4, 0.4, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6])
    assert [(r["variant"], r["loss"]) for r in doc["loss_overhead"]] == [("sparse", "l1"), ("combined", "l1")]
    bad = CliRunner().invoke(app, ["schedule", "--variant", "dense"])
    assert bad.exit_code == 2 and "applies to sparse and combined" in bad.stderr
    bad = CliRunner().invoke(app, ["schedule", "--final-sparsity", "1.0"])
    assert bad.exit_code == 2 and "sparsity must be in [0, 1), got 1.0" in bad.stderr


def test_load_balancing_loss_by_hand():
    from bkprof.training import expert_load, load_balancing_loss

    probs = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.4, 0.6], [0.7, 0.3]])
    index = torch.tensor([[0], [0], [1], [0]])
    # f = (3/4, 1/4), P = (2.8/4, 1.2/4) = (0.7, 0.3): 2 * (0.75 * 0.7 + 0.25 * 0.3) = 1.2
    assert torch.allclose(expert_load(index, 2), torch.tensor([0.75, 0.25]))
    assert load_balancing_loss(probs, index, 2).item() == pytest.approx(1.2)
    # uniform probabilities and an even split: the minimum, 1
    assert load_balancing_loss(torch.full((4, 2), 0.5), torch.tensor([[0], [1], [0], [1]]), 2).item() == pytest.approx(1.0)


def test_load_balancing_gradient_moves_probability_off_the_busiest_expert():
    from bkprof.training import load_balancing_loss

    logits = torch.tensor([[2.0, 0.0], [1.0, 0.0], [0.5, 0.0]], requires_grad=True)
    probs = logits.softmax(-1)
    load_balancing_loss(probs, probs.argmax(-1, keepdim=True), 2).backward()
    # every token went to expert 0: raising its logit raises the loss
    assert (logits.grad[:, 0] > 0).all() and (logits.grad[:, 1] < 0).all()


def test_load_balancing_loss_names_a_wrong_expert_count():
    from bkprof.training import load_balancing_loss

    with pytest.raises(ValueError, match="3 experts"):
        load_balancing_loss(torch.full((2, 3), 1 / 3), torch.zeros(2, 1, dtype=torch.long), 4)
