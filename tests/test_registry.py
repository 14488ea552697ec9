"""The variant registry: a fifth variant registered in one place shows up in every command."""

from __future__ import annotations

import json

import pytest
from torch import nn
from typer.testing import CliRunner

from bkprof.cli import app
from bkprof.variants import VARIANTS, VariantSpec, registry

runner = CliRunner()
TOY_ARGS = ["--d-model", "16", "--n-seq", "32"]
# By hand, at d = 16, N = 32, one sequence (2 FLOPs per multiply-accumulate, 1 per bias add and per add):
# Linear(16, 16) on 32 rows: 2·32·16·16 = 16,384 matmul + 32·16 = 512 bias; the residual add: 32·16 = 512.
TOY_FLOPS = {"toy_projection": 16_384 + 512, "residual": 512}


class ToyLayer(nn.Module):
    """out = x + Linear(d, d)(x)."""

    def __init__(self, config):
        super().__init__()
        self.proj = nn.Linear(config.d_model, config.d_model)

    def forward(self, x):
        return x + self.proj(x), {}


def toy_parts(config, batch, training, device):
    from bkprof.variants.counts import linear, pointwise

    rows = batch * config.n_seq
    return {"toy_projection": linear(rows, config.d_model, config.d_model),
            "residual": pointwise(rows * config.d_model)}


TOY = VariantSpec("toy", "a residual Linear(d, d): the registry test's fifth variant", ToyLayer, toy_parts,
                  {"": "residual", "proj": "toy_projection"})


@pytest.fixture
def toy():
    with registry.registered(TOY) as spec:
        yield spec
    assert "toy" not in VARIANTS


def _json(result) -> dict:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_toy_variant_in_flops(toy):
    doc = _json(runner.invoke(app, ["flops", "--variant", "toy", *TOY_ARGS, "--format", "json"]))
    counted = doc["variants"]["toy"]
    assert counted["components"] == counted["counted_components"] == TOY_FLOPS
    assert counted["analytic_flops"] == counted["counted_flops"] == sum(TOY_FLOPS.values())
    assert counted["fvcore_macs"] == 32 * 16 * 16  # fvcore: MACs of the Linear only
    # by default every command takes every registered variant, the toy among them
    from bkprof.cli.options import variant_names

    assert variant_names(None) == ["dense", "sparse", "multiscale", "combined", "toy"]


def test_toy_variant_in_profile(toy):
    doc = _json(runner.invoke(app, ["profile", "--device", "cpu", "--variant", "toy", "--mode", "forward",
                                    "--warmup", "0", "--runs", "2", "--batch", "1", "--no-components",
                                    *TOY_ARGS, "--format", "json"]))
    toy_row = next(r for r in doc["rows"] if r["variant"] == "toy")
    assert toy_row["status"] == "ok" and toy_row["median_ms"] > 0
    assert toy_row["gflop"] == pytest.approx(sum(TOY_FLOPS.values()) / 1e9)


def test_toy_variant_in_sweep(toy):
    doc = _json(runner.invoke(app, ["sweep", "--variant", "toy", "--n-seq", "32,64", "--d-model", "16",
                                    "--count", "--format", "json"]))
    rows = {r["n_seq"]: r for r in doc["rows"]}
    assert rows[32]["analytic_flops"] == rows[32]["counted_flops"] == sum(TOY_FLOPS.values())
    assert rows[64]["analytic_flops"] == 2 * sum(TOY_FLOPS.values())  # every term is linear in N
    assert rows[32]["published_flops"] is None  # the source publishes nothing for it


def test_toy_variant_in_check(toy, tmp_path):
    def check(bound: str):
        path = tmp_path / "toy.toml"
        path.write_text(f'[flops]\nvariants = ["toy"]\nd_model = 16\nn_seq = 32\n'
                        f'[metrics]\n"flops.variants.toy.counted_flops" = {{ {bound} }}\n')
        return runner.invoke(app, ["check", "--thresholds", str(path), "--format", "json"])

    passed = _json(check("min = 17408, max = 17408"))
    assert passed["passed"] and passed["results"][0]["current"] == 17408
    failed = check("max = 17407")
    assert failed.exit_code == 1 and json.loads(failed.stdout)["counts"]["fail"] == 1


def test_toy_variant_without_a_mask_has_no_schedule(toy):
    result = runner.invoke(app, ["schedule", "--variant", "toy"])
    assert result.exit_code == 2 and "applies to sparse and combined, got toy" in result.stderr


def test_an_unregistered_variant_is_a_one_line_error():
    result = runner.invoke(app, ["flops", "--variant", "toy"])
    assert result.exit_code == 2
    assert result.stderr.strip() == "bkprof: error: --variant 'toy': must be one of dense, sparse, multiscale, combined"


def test_register_refuses_a_taken_name_a_clash_and_removing_a_builtin(toy):
    with pytest.raises(ValueError, match="already registered"):
        registry.register(TOY)
    clash = VariantSpec("clash", "", ToyLayer, toy_parts, {"proj": "something_else"})
    with pytest.raises(ValueError, match="'proj' counts under 'toy_projection'"):
        registry.register(clash)
    with pytest.raises(ValueError, match="built in"):
        registry.unregister("dense")
    assert tuple(VARIANTS) == ("dense", "sparse", "multiscale", "combined", "toy")


def test_builtin_lazy_references_resolve():
    """Every built-in builder and analytic function names a real function (they load lazily)."""
    import importlib

    for spec in registry.specs():
        for function in (spec.build, spec.analytic):
            module, _, name = function.__name__.partition(":")
            assert callable(getattr(importlib.import_module(module), name)), function.__name__


def test_the_claims_print_the_figures_the_source_printed():
    """The claims' figures are the source's formulas at its configuration; these are the figures as it
    printed them ('Reduction factor: 2.50×', 'Reduction: 45.4%', 'Combined: 4.57× reduction')."""
    from bkprof.flops.claims import published_claims
    from bkprof.flops.published import SOURCE_POINT
    from bkprof.sweep.published import source_figures_at

    assert [c["published"] for c in published_claims()] == ["2.50×", "45.4 %", "4.57×"]
    assert source_figures_at(SOURCE_POINT) == {"dense": (256, 4_199_424), "multiscale": (256, 2_294_784)}
