import pytest
import torch

from bkprof.variants import VARIANTS, LayerConfig, build
from bkprof.variants.sparse import CubicInterpolator, LinearInterpolator, kept_neighbours

SMALL = LayerConfig(d_model=16, n_seq=24, num_experts=3, top_k=2, sparsity=0.5, downsample=2)


@pytest.mark.parametrize(
    "fields, named",
    [
        ({"n_seq": 10, "downsample": 4}, "divisible by downsample"),
        ({"d_model": 7}, "d_model must be even"),
        ({"sparsity": 1.0}, "sparsity must be in"),
        ({"sparsity": -0.1}, "sparsity must be in"),
        ({"n_seq": 4, "sparsity": 0.9}, "keeps no position"),
        ({"num_experts": 0}, "num_experts"),
        ({"top_k": 5}, "top_k"),
        ({"top_k": 0}, "top_k"),
        ({"d_model": -2}, "d_model"),
        ({"n_seq": 0}, "n_seq"),
        ({"downsample": 0}, "downsample"),
        ({"n_seq": 2, "downsample": 2}, "at least 2"),
        ({"interp": "spline"}, "interp"),
        ({"tau": 0.0}, "tau"),
    ],
)
def test_config_names_the_bad_field(fields, named):
    with pytest.raises(ValueError, match=named):
        LayerConfig(**fields)


def test_defaults_follow_the_spec():
    c = LayerConfig()
    assert (c.d_model, c.n_seq, c.num_experts, c.top_k, c.sparsity, c.downsample, c.interp, c.z, c.tau) == (
        128, 256, 4, 1, 0.6, 2, "learned", 1j, 1.0)
    assert c.kept == 102


@pytest.mark.parametrize("interp", ["learned", "linear", "cubic"])
@pytest.mark.parametrize("name", VARIANTS)
def test_forward_and_backward(name, interp):
    c = SMALL.with_(interp=interp)
    model = build(name, c)
    x = torch.randn(2, c.n_seq, c.d_model)
    out, stats = model.eval()(x)
    assert out.shape == x.shape and torch.isfinite(out).all()
    model.train()
    out, stats = model(x)
    out.square().mean().backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert all(torch.isfinite(g).all() for g in grads.values())
    assert any("out_proj" in n for n in grads) and any("experts" in n for n in grads)


@pytest.mark.parametrize("name", ["sparse", "combined"])
def test_inference_keeps_exactly_int_n_times_one_minus_sparsity(name):
    c = LayerConfig(d_model=16, n_seq=40, sparsity=0.65)
    _, stats = build(name, c).eval()(torch.randn(3, 40, 16))
    length = 40 if name == "sparse" else 20
    assert stats["mask"].shape == (3, length)
    assert (stats["mask"].sum(-1) == int(length * (1 - 0.65))).all()
    assert stats["importance"].shape == (3, length)


@pytest.mark.parametrize("name", VARIANTS)
def test_eval_is_deterministic_for_a_seed(name):
    x = torch.randn(2, SMALL.n_seq, SMALL.d_model)
    a, _ = build(name, SMALL, seed=7).eval()(x)
    b, _ = build(name, SMALL, seed=7).eval()(x)
    c, _ = build(name, SMALL, seed=8).eval()(x)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("name", VARIANTS)
def test_backend_is_selectable_per_module(name):
    x = torch.randn(2, SMALL.n_seq, SMALL.d_model, dtype=torch.float64)
    outs = [build(name, SMALL.with_(backend=b)).double().eval()(x)[0] for b in ("reference", "vectorized")]
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-9, atol=1e-9)


def test_multiscale_returns_downsample_importance():
    _, stats = build("multiscale", SMALL).eval()(torch.randn(2, 24, 16))
    assert stats["downsample_importance"].shape == (2, 24)
    assert stats["expert_index"].shape == (2, 12, 2)


def test_every_token_runs_through_top_k_experts():
    model = build("dense", SMALL).eval()
    _, stats = model(torch.randn(2, 24, 16))
    index = stats["expert_index"]
    assert index.shape == (2, 24, 2) and (index[..., 0] != index[..., 1]).all()


def _mask(*kept, n=9):
    m = torch.zeros(1, n)
    m[0, list(kept)] = 1.0
    return m


def test_kept_neighbours_fall_back_at_the_edges():
    before, after = kept_neighbours(_mask(2, 5))
    assert before.tolist() == [[2, 2, 2, 2, 2, 5, 5, 5, 5]]
    assert after.tolist() == [[2, 2, 2, 5, 5, 5, 5, 5, 5]]


def test_linear_interpolation_is_exact_on_lines():
    mask = _mask(1, 4, 8)
    line = torch.arange(9.0)[None, :, None].repeat(1, 1, 2) * 0.5 + 1
    estimate = LinearInterpolator()(line * mask[..., None], mask)
    torch.testing.assert_close(estimate[0, 1:9], line[0, 1:9])


def test_cubic_interpolation_is_exact_on_lines_with_even_spacing():
    mask = _mask(0, 2, 4, 6, 8)
    line = torch.arange(9.0)[None, :, None].repeat(1, 1, 2) * -2 + 3
    estimate = CubicInterpolator()(line * mask[..., None], mask)
    torch.testing.assert_close(estimate[0, 2:7], line[0, 2:7])


def test_build_rejects_unknown_variant():
    with pytest.raises(ValueError, match="variant"):
        build("sparse-ish", SMALL)


@pytest.mark.parametrize("name", VARIANTS)
@pytest.mark.parametrize("top_k", [1, 2])
def test_the_router_gets_a_gradient(name, top_k):
    # with the chosen experts used at weight 1 the gate's gradient was exactly 0 (issue 19)
    model = build(name, SMALL.with_(top_k=top_k)).train()
    out, _ = model(torch.randn(2, 24, 16))
    out.square().mean().backward()
    gates = [p.grad for n, p in model.named_parameters() if n.endswith("gate.weight")]
    assert gates and all(g is not None and g.abs().sum() > 0 for g in gates)

