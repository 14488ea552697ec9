"""Sizes: memory estimated before a step allocates, bounds on counts, and out-of-memory as one line."""

import pytest
from typer.testing import CliRunner

from bkprof.cli import app
from bkprof.sizes import GIB, step_bytes
from bkprof.variants import LayerConfig

runner = CliRunner()


def test_the_estimate_holds_at_least_the_weights_the_input_and_the_output():
    c = LayerConfig(d_model=16, n_seq=32, num_experts=2)
    # dense weights by hand: gate 16*2+2; experts 2*(16*32+32 + 32*16+16); v_proj 16+1; out_proj 2*16+16; bk_scale 1
    parameters = (16 * 2 + 2 + 2 * (16 * 32 + 32 + 32 * 16 + 16) + 16 + 1 + 2 * 16 + 16 + 1) * 4
    tokens = 3 * 32 * 16 * 4  # input (and, as much again, the output) of a batch of 3
    forward = step_bytes("dense", c, 3, train=False)
    assert forward >= parameters + 2 * tokens
    # train: gradients and Adam's two moments are three more copies of the weights, and activations are kept
    assert step_bytes("dense", c, 3, train=True) >= forward + 3 * parameters


def test_many_experts_are_extrapolated_close_to_the_built_layer():
    from bkprof.sizes import _meta_step_bytes

    c = LayerConfig(d_model=16, n_seq=32, num_experts=64, top_k=2)
    for train in (False, True):
        extrapolated, built = step_bytes("dense", c, 2, train=train), _meta_step_bytes("dense", c, 2, train=train)
        # linear in E from 16 and 32 experts; the train step's peak grows a little faster (measured -10 % here)
        assert 0.85 * built <= extrapolated <= built


@pytest.mark.parametrize("args", [["--batch", "10000000"], ["--experts", "1000000"], ["--d-model", "1000000"]])
def test_a_profile_that_cannot_fit_is_refused_before_it_allocates(args):
    result = runner.invoke(app, ["profile", "--device", "cpu", "--variant", "dense", "--mode", "forward", *args])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "needs an estimated" in lines[0] and "GiB, more than the" in lines[0]
    # 10 million sequences of 256 x 128 float32 are 1.2 TiB as input alone: far above any limit here
    assert float(lines[0].split("needs an estimated ")[1].split(" GiB")[0].replace(",", "")) > 1000 / 1024 * 1


@pytest.mark.parametrize("command, args, message", [
    ("profile", ["--runs", "99999999999999999999"], "--runs '99999999999999999999': too large"),
    ("profile", ["--runs", "100001"], "--runs must be at most 100,000, got 100,001"),
    ("sweep", ["--profile", "--runs", "100001"], "--runs must be at most 100,000, got 100,001"),
    ("schedule", ["--steps", "1000001"], "--steps must be at most 1,000,000, got 1,000,001"),
    ("schedule", ["--delta", "nan"], "--delta 'nan': not a finite number"),
    ("schedule", ["--final-weight", "inf"], "--final-weight 'inf': not a finite number"),
    ("sweep", ["--n-seq", "1e99999999"], "is too large"),
    ("sweep", ["--sparsity", "0:0.5:1e-99999999"], "gives more than"),
])
def test_counts_have_upper_bounds(command, args, message):
    result = runner.invoke(app, [command, *args])
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1
    assert message in result.stderr


def test_a_sweep_point_too_large_for_memory_is_a_row_with_its_error():
    import json

    result = runner.invoke(app, ["sweep", "--variant", "dense", "--n-seq", "32", "--d-model", "16",
                                 "--batch", "1,100000000", "--count", "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = {row["batch"]: row for row in json.loads(result.stdout)["rows"]}
    assert rows[1]["error"] is None and rows[1]["counted_flops"] > 0
    assert "needs an estimated" in rows[100000000]["error"]


def test_an_allocator_failure_anywhere_is_one_line(monkeypatch):
    import bkprof.flops.report

    def out_of_memory(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory: "
                           "you tried to allocate 1099511627776 bytes.\nmore detail")

    monkeypatch.setattr(bkprof.flops.report, "flops_report", out_of_memory)
    result = runner.invoke(app, ["flops"])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "bkprof: error: out of memory: [enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate "
        "memory: you tried to allocate 1099511627776 bytes.; lower the sizes or the batch"]
