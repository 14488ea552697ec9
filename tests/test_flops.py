import json

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from bkprof.flops import analytic_flops, published_accounting
from bkprof.flops.analytic import analytic_family_totals, forward_families
from bkprof.flops.counter import count_layer_flops
from bkprof.flops.fvcore_count import fvcore_count
from bkprof.flops.report import flops_report
from bkprof.variants import VARIANTS, LayerConfig, build


@st.composite
def configs(draw, min_half_width=1, min_coarse=2):
    f = draw(st.integers(1, 4))
    n = f * draw(st.integers(min_coarse, min_coarse + 9))
    d = 2 * draw(st.integers(min_half_width, min_half_width + 11))
    experts = draw(st.integers(1, 4))
    fields = dict(d_model=d, n_seq=n, num_experts=experts, top_k=draw(st.integers(1, experts)),
                  sparsity=draw(st.floats(0, 0.8)), downsample=f, interp=draw(st.sampled_from(["learned", "linear", "cubic"])),
                  dropout=draw(st.sampled_from([0.0, 0.1])), backend=draw(st.sampled_from(["vectorized", "reference"])))
    try:
        config = LayerConfig(**fields)
    except ValueError:
        assume(False)
    return config, draw(st.integers(1, 3))


def _counted_by_component(result, phase="forward"):
    out = {}
    for (p, component, family, _), flops in result.flops.items():
        if p == phase and flops:
            out.setdefault(component, {}).setdefault(family, 0)
            out[component][family] += flops
    return out


# one test per variant, so parallel workers share the search; 30 configs each
@pytest.mark.parametrize("name", VARIANTS)
@settings(max_examples=30, suppress_health_check=[HealthCheck.too_slow])
@given(configs())
def test_analytic_equals_counted_forward_per_component(name, case):
    config, batch = case
    result = count_layer_flops(build(name, config), torch.randn(batch, config.n_seq, config.d_model))
    assert not result.missing
    analytic = {k: {f: v for f, v in fam.items() if v} for k, fam in forward_families(name, config, batch=batch).items()}
    assert _counted_by_component(result) == {k: v for k, v in analytic.items() if v}
    assert result.total() == analytic_flops(name, config, batch=batch)


@pytest.mark.parametrize("name", VARIANTS)
@settings(max_examples=8, suppress_health_check=[HealthCheck.too_slow])
@given(configs(min_half_width=8, min_coarse=16))
def test_backward_matmul_exact_and_total_within_two_percent(name, case):
    """Autograd's elementwise work is estimated (2x forward); matmuls must dominate for 2 %: d, N/f >= 16."""
    config, batch = case
    result = count_layer_flops(build(name, config), torch.randn(batch, config.n_seq, config.d_model), backward=True)
    assert not result.missing
    families = analytic_family_totals(name, config, batch=batch, backward=True)
    assert result.total(family="matmul") == families["matmul"]
    total = analytic_flops(name, config, batch=batch, backward=True)
    assert abs(total - result.total()) <= 0.02 * result.total()


# (d, N, f, backend): small layers, where the non-matmul families weigh most
_BACKWARD_CONFIGS = [LayerConfig(d_model=32, n_seq=64), LayerConfig(d_model=32, n_seq=48, downsample=3, interp="cubic"),
                     LayerConfig(d_model=16, n_seq=32, num_experts=2, top_k=2, backend="reference")]


@pytest.mark.parametrize("config", _BACKWARD_CONFIGS, ids=lambda c: f"d{c.d_model}-n{c.n_seq}-f{c.downsample}-{c.backend}")
@pytest.mark.parametrize("name", VARIANTS)
def test_backward_ratios_estimate_the_non_matmul_backward_within_12_percent(name, config):
    """BACKWARD_RATIO against an independent count: the op counter on the real backward.

    The total is dominated by the (exact) matmuls, so the 2 % test above barely sees the ratios; here
    everything but the matmuls is compared. Measured when written: analytic/counted 0.91-1.09 over
    the four variants at these and similar configs (per family the estimate is further off, e.g.
    the counter files a bias gradient under reduction)."""
    result = count_layer_flops(build(name, config), torch.randn(2, config.n_seq, config.d_model), backward=True)
    analytic = analytic_flops(name, config, batch=2, backward=True)
    analytic -= analytic_family_totals(name, config, batch=2, backward=True)["matmul"]
    counted = result.total() - result.total(family="matmul")
    assert abs(analytic - counted) <= 0.12 * counted, (analytic, counted)


@pytest.mark.parametrize("name", VARIANTS)
def test_counts_are_the_same_under_no_grad_and_inference_mode(name):
    config = LayerConfig(d_model=16, n_seq=24, sparsity=0.5)
    x = torch.randn(2, 24, 16)
    plain = _counted_by_component(count_layer_flops(build(name, config), x))
    with torch.no_grad():
        no_grad = _counted_by_component(count_layer_flops(build(name, config), x))
    with torch.inference_mode():
        inference = _counted_by_component(count_layer_flops(build(name, config), x))
    assert plain == no_grad == inference


@pytest.mark.parametrize("interp", ["learned", "linear", "cubic"])
@pytest.mark.parametrize("name", VARIANTS)
def test_fvcore_matmul_macs_times_two_equal_analytic_matmul_flops(name, interp):
    config = LayerConfig(d_model=24, n_seq=36, num_experts=3, top_k=2, downsample=3, interp=interp)
    count = fvcore_count(build(name, config), torch.randn(2, 36, 24))
    assert 2 * count.matmul_macs == analytic_family_totals(name, config, batch=2)["matmul"]


def test_fvcore_keeps_results_used_only_as_statistics():
    """The downsample scorer feeds only the returned statistics; a plain jit trace would drop it."""
    config = LayerConfig(d_model=16, n_seq=16)
    count = fvcore_count(build("multiscale", config), torch.randn(1, 16, 16))
    scorer = forward_families("multiscale", config)["downsample_scorer"]["matmul"]
    assert 2 * count.matmul_macs == analytic_family_totals("multiscale", config)["matmul"]
    assert scorer > 0


def test_published_tables_at_the_defaults_match_the_source():
    p = published_accounting(LayerConfig())
    s, m = p["sparse_g_ii"], p["multi_scale"]
    assert (s["standard"], s["importance"], s["sparse_compute"], s["interpolation"], s["sparse_total"]) == (
        5120, 65536, 2048, 65536, 133120)
    assert round(s["reduction"], 2) == 2.50
    assert (m["standard"], m["multi_scale"]) == (4199424, 2294784)
    assert round(100 * m["reduction"], 1) == 45.4
    assert round(p["combined"]["reduction"], 2) == 4.57


def test_published_formulas_follow_the_config():
    p = published_accounting(LayerConfig(d_model=64, n_seq=512, sparsity=0.5, downsample=4, num_experts=2))
    # by hand at N = 512, d = 64, s = 0.5, f = 4 (N/f = 128), from the source's formulas (SPEC section 4):
    # standard BK-Core 2·512·10 = 10,240; reduction 1 / (1 - 0.5) = 2
    assert p["sparse_g_ii"]["standard"] == 10_240
    assert p["sparse_g_ii"]["reduction"] == pytest.approx(2.0)
    # standard layer 512·64² + 20·512 = 2,097,152 + 10,240 = 2,107,392; multi-scale 3 × 2·512·64 (down,
    # up, refine) + 128·64² + 128·20·0.5 = 196,608 + 524,288 + 1,280 = 722,176; 1 - 722,176 / 2,107,392
    assert p["multi_scale"]["standard"] == 2_107_392
    assert p["multi_scale"]["multi_scale"] == pytest.approx(722_176)
    assert p["multi_scale"]["reduction"] == pytest.approx(0.6573129, abs=1e-7)


def test_report_document_and_claims():
    doc = flops_report(LayerConfig(d_model=32, n_seq=32), ["dense", "sparse"], batch=2)
    assert set(doc) >= {"config", "published", "variants", "claims"}
    assert doc["config"]["batch"] == 2
    for v in doc["variants"].values():
        assert v["analytic_flops"] == v["counted_flops"]
        assert set(v) >= {"fvcore_macs", "fvcore_by_operator", "fvcore_unsupported", "components"}
        assert not v["ops_without_formula"]
    sparse_claim = doc["claims"][0]
    assert sparse_claim["holds"] is False
    assert {"importance_predictor", "interpolation", "bk_core"} <= {r["component"] for r in sparse_claim["reasons"]}
    json.dumps(doc)


def test_batch_multiplies_per_token_work():
    config = LayerConfig(d_model=16, n_seq=16)
    assert analytic_flops("dense", config, batch=3) == 3 * analytic_flops("dense", config)
    # the pooling softmax of the multi-scale layer runs once per call, not once per sequence
    assert analytic_flops("multiscale", config, batch=3) < 3 * analytic_flops("multiscale", config)


def _triton_on_cuda() -> bool:
    from bkprof.core import available_backends

    return torch.cuda.is_available() and "triton" in available_backends("cuda")


@pytest.mark.skipif(not _triton_on_cuda(), reason="needs CUDA and triton")
@pytest.mark.parametrize("name", VARIANTS)
def test_triton_kernel_is_counted_by_its_own_formula(name):
    """An opaque kernel counts 0 in a dispatch-level counter unless its custom op carries a formula."""
    config = LayerConfig(d_model=32, n_seq=1024, backend="triton")
    result = count_layer_flops(build(name, config).cuda(), torch.randn(2, 1024, 32, device="cuda"))
    assert not result.missing
    assert result.by_component()["bk_core"] == sum(forward_families(name, config, batch=2, device="cuda")["bk_core"].values())
    assert result.total() == analytic_flops(name, config, batch=2, device="cuda")


def test_counting_leaves_the_callers_thread_count_alone(monkeypatch):
    """The library must not call torch.set_num_threads in a caller's process: after it, MKL's batched
    complex LU fails on multi-threaded calls (pytorch/pytorch#141358), so a user's own
    torch.linalg.inv would break after bkprof counted something."""
    calls = []
    monkeypatch.setattr(torch, "set_num_threads", calls.append)
    flops_report(LayerConfig(d_model=16, n_seq=32), ["dense", "combined"], backward=True)
    assert calls == []
