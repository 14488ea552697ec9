"""bkprof profile: timing, memory, derived columns, failures, CLI. CPU on small configs; CUDA paths guarded."""

from __future__ import annotations

import json
import pytest
import torch
from typer.testing import CliRunner

from bkprof.cli import app
from bkprof.flops.analytic import analytic_flops
from bkprof.profile import COLUMNS, MODES, Measurement, ProfileSettings, Timer, profile_variants
from bkprof.profile.breakdown import DERIVED_COLUMNS
from bkprof.profile.steps import bk_core_inputs, bk_core_step, input_pool, layer_step
from bkprof.variants import VARIANTS, LayerConfig, build, grouped

SMALL = LayerConfig(d_model=16, n_seq=32, num_experts=2)
SMALL_ARGS = ["--d-model", "16", "--n-seq", "32", "--experts", "2", "--batch", "2", "--runs", "2", "--warmup", "1"]
CPU = torch.device("cpu")
cuda_only = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
runner = CliRunner()


@pytest.fixture(scope="module")
def small_profile():
    settings = ProfileSettings(CPU, batch=2, warmup=1, runs=2)
    return profile_variants(SMALL, VARIANTS, settings)


def test_measurement_quantiles_interpolate_linearly():
    m = Measurement.of([float(i) for i in range(10, 0, -1)], warmup=2, clock="test")
    assert (m.median, m.runs, m.warmup) == (5.5, 10, 2)
    assert m.p10 == pytest.approx(1.9) and m.p90 == pytest.approx(9.1)


def test_timer_warms_up_then_times_rotating_inputs():
    seen = []
    m = Timer(CPU, warmup=2, runs=5).measure(seen.append, ["a", "b", "c"], after_warmup=lambda: seen.append("|"))
    assert seen == ["a", "b", "|", "a", "b", "c", "a", "b"]
    assert m.runs == 5 and m.clock == "perf_counter" and 0 <= m.p10 <= m.median <= m.p90


def test_garbage_collector_is_off_only_during_the_timed_runs():
    import gc

    seen = []
    Timer(CPU, warmup=1, runs=2).measure(lambda x: seen.append(gc.isenabled()), [0])
    assert seen == [True, False, False] and gc.isenabled()


@pytest.mark.parametrize("warmup, runs", [(-1, 3), (0, 0)])
def test_timer_rejects_bad_counts(warmup, runs):
    with pytest.raises(ValueError, match="warmup"):
        Timer(CPU, warmup, runs)


def test_one_row_per_variant_and_mode_with_the_fixed_schema(small_profile):
    frame = small_profile.frame
    assert list(frame.columns) == list(COLUMNS)
    assert [(r.variant, r.mode) for r in frame.itertuples()] == [(v, m) for v in VARIANTS for m in MODES]
    assert (frame["status"] == "ok").all() and not small_profile.failed
    assert (frame["runs"] == 2).all()
    assert ((frame["p10_ms"] <= frame["median_ms"]) & (frame["median_ms"] <= frame["p90_ms"])).all()


def test_derived_columns_follow_from_the_median_and_the_analytic_count(small_profile):
    for row in small_profile.frame.itertuples():
        seconds = row.median_ms / 1e3
        flops = analytic_flops(row.variant, SMALL, batch=2, backward=row.mode == "train")
        dense = analytic_flops("dense", SMALL, batch=2, backward=row.mode == "train")
        assert row.tokens_per_s == pytest.approx(2 * 32 / seconds)
        assert row.gflop == pytest.approx(flops / 1e9)
        assert row.gflop_per_s == pytest.approx(flops / 1e9 / seconds)
        assert row.flops_vs_dense == pytest.approx(flops / dense)
        assert row.bk_core_ms > 0 and row.bk_core_share == pytest.approx(row.bk_core_ms / row.median_ms)
    frame = small_profile.frame
    for mode in MODES:
        rows = frame[frame["mode"] == mode]
        dense_ms = rows[rows["variant"] == "dense"]["median_ms"].iloc[0]
        assert rows["time_vs_dense"].tolist() == pytest.approx((rows["median_ms"] / dense_ms).tolist())


def test_cpu_rows_leave_graph_columns_empty_and_peak_above_what_the_row_holds(small_profile):
    frame = small_profile.frame
    assert frame["graph_ms"].isna().all()
    for row in frame.itertuples():
        # at least the weights and the 4 inputs of 2 x 32 x 16 float32 (4 bytes) are alive throughout
        weights = sum(p.numel() for p in build(row.variant, SMALL).parameters()) * 4
        assert row.peak_mib * 2**20 >= weights + 4 * 2 * 32 * 16 * 4


@pytest.mark.parametrize("name, length", [("dense", 32), ("combined", 16)])
def test_bk_core_is_timed_on_the_potentials_the_layer_fed_it(name, length):
    model = build(name, SMALL).eval()
    pool = input_pool((2, 32, 16), CPU, seed=0, count=2)
    cores, potentials = bk_core_inputs(model, pool)
    assert len(cores) == 1 and [v[0].shape for v in potentials] == [(2, length)] * 2
    assert all(v[0].abs().max() <= 3 for v in potentials)
    assert not torch.equal(potentials[0][0], potentials[1][0])
    grads = bk_core_step(cores, "train")(potentials[0])
    assert grads[0].shape == (2, length) and torch.isfinite(grads[0]).all()
    torch.testing.assert_close(bk_core_step(cores, "forward")(potentials[0])[0], cores[0](potentials[0][0]))


def test_train_step_updates_the_weights_and_forward_does_not():
    model = build("sparse", SMALL)
    x = input_pool((2, 32, 16), CPU, seed=1, count=1)[0]
    before = [p.detach().clone() for p in model.parameters()]
    layer_step(model, "forward")(x)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert not model.training
    layer_step(model, "train")(x)
    assert model.training and any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_top_ops_and_trace_files(tmp_path):
    settings = ProfileSettings(CPU, modes=("forward",), batch=2, warmup=1, runs=2, ops=4, trace_dir=tmp_path)
    result = profile_variants(SMALL, ["dense", "sparse"], settings)
    for key in ("dense/forward", "sparse/forward"):
        ops = result.ops[key]
        assert len(ops) == 4
        assert [o["self_ms_per_run"] for o in ops] == sorted((o["self_ms_per_run"] for o in ops), reverse=True)
        names = [o["op"] for o in ops]
        assert all(names) and len(set(names)) == len(names)  # one row per operator, aggregated by name
        # forward runs under no_grad: no autograd node, backward range or optimizer step may be timed
        assert not [n for n in names if "backward" in n.lower() or "optimizer" in n.lower()], names
        assert 0 < sum(o["share"] for o in ops) <= 1 + 1e-9
    traces = sorted(p.name for p in tmp_path.iterdir())
    assert traces == ["dense-forward.json", "sparse-forward.json"]
    assert json.loads((tmp_path / "dense-forward.json").read_text())["traceEvents"]


def test_a_saved_json_report_renders_again_as_the_same_markdown(small_profile):
    from bkprof.profile.report import environment, profile_report, report_from_payload
    from bkprof.report import render

    settings = ProfileSettings(CPU, batch=2, warmup=1, runs=2)
    report = profile_report(small_profile, SMALL, settings, environment(CPU, "vectorized"))
    saved = _strict_json(render(report, "json"))
    assert render(report_from_payload(saved), "markdown") == render(report, "markdown")


def _raise_oom_for(variant: str, monkeypatch):
    """Make the timing of one variant raise PyTorch's out-of-memory error, as an allocation failure would."""
    original = Timer.measure

    def measure(self, step, inputs, **kwargs):
        if getattr(step, "__qualname__", "").startswith("_no_grad") and _building[-1] == variant:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 GiB")
        return original(self, step, inputs, **kwargs)

    _building = []
    import bkprof.profile.runner as runner_module

    real_build = runner_module.build

    def build_and_remember(name, *args, **kwargs):
        _building.append(name)
        return real_build(name, *args, **kwargs)

    monkeypatch.setattr(Timer, "measure", measure)
    monkeypatch.setattr(runner_module, "build", build_and_remember)


def test_out_of_memory_marks_its_row_and_the_others_still_run(monkeypatch):
    _raise_oom_for("sparse", monkeypatch)
    settings = ProfileSettings(CPU, modes=("forward",), batch=2, warmup=1, runs=2)
    result = profile_variants(SMALL, ["dense", "sparse", "multiscale"], settings)
    frame = result.frame.set_index("variant")
    assert result.failed
    assert frame.loc["sparse", "status"] == "out of memory"
    assert frame.loc["sparse", "note"].startswith("out of memory during timing")  # a busy machine adds its mark
    assert frame.loc["sparse", ["median_ms", "time_vs_dense"]].isna().all()
    assert (frame.loc[["dense", "multiscale"], "status"] == "ok").all()
    assert frame.loc["multiscale", "median_ms"] > 0


def test_cli_out_of_memory_prints_the_report_and_exits_1(monkeypatch):
    _raise_oom_for("dense", monkeypatch)
    result = runner.invoke(app, ["profile", "--device", "cpu", "--mode", "forward", "--variant", "dense",
                                 "--variant", "sparse", "--format", "json", *SMALL_ARGS])
    assert result.exit_code == 1
    payload = json.loads(result.stdout)
    assert [r["status"] for r in payload["rows"]] == ["out of memory", "ok"] and payload["failed"]
    assert payload["rows"][1]["time_vs_dense"] is None


def _strict_json(text: str) -> dict:
    def reject(constant):
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=reject)


def test_cli_json_is_strict_json_with_method_and_environment(tmp_path):
    out = tmp_path / "deep" / "profile.json"
    result = runner.invoke(app, ["profile", "--device", "cpu", "--variant", "dense", "--format", "json",
                                 "--output", str(out), *SMALL_ARGS])
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    payload = _strict_json(out.read_text())
    assert payload["environment"]["device"] == "cpu" and payload["environment"]["backend"] == "vectorized"
    assert payload["method"]["timed_runs"] == 2 and payload["method"]["optimizer"].startswith("Adam")
    assert payload["config"]["d_model"] == 16 and set(payload["columns"]) == set(COLUMNS) | set(DERIVED_COLUMNS)
    assert [(r["variant"], r["mode"]) for r in payload["rows"]] == [("dense", "forward"), ("dense", "train")]
    assert payload["rows"][0]["peak_mib"] > 0 and payload["rows"][0]["median_ms"] > 0
    assert payload["method"]["memory"].startswith("allocator records")


def test_cli_csv_has_the_fixed_columns_and_markdown_the_table():
    csv = runner.invoke(app, ["profile", "--device", "cpu", "--variant", "multiscale", "--mode", "train",
                              "--format", "csv", *SMALL_ARGS])
    assert csv.exit_code == 0
    lines = csv.stdout.strip().splitlines()
    assert lines[0].split(",") == [*COLUMNS, *DERIVED_COLUMNS] and lines[1].startswith("multiscale,train,ok,")
    md = runner.invoke(app, ["profile", "--device", "cpu", "--variant", "dense", "--mode", "forward",
                             "--format", "markdown", "--ops", "2", *SMALL_ARGS])
    assert md.exit_code == 0
    assert "| variant | mode | median ms |" in md.stdout and "### top 2 ops: dense/forward" in md.stdout


@pytest.mark.parametrize("args, message", [
    (["--runs", "0"], "--runs must be a positive integer, got 0"),
    (["--batch", "0"], "--batch must be a positive integer, got 0"),
    (["--warmup", "-1"], "--warmup must be a non-negative integer, got -1"),
    (["--ops", "-2"], "--ops must be a non-negative integer, got -2"),
    (["--n-seq", "33"], "n_seq=33 must be divisible by downsample=2"),
    (["--device", "tpu"], "--device 'tpu': not a device"),
])
def test_bad_input_is_one_line_exit_2(args, message):
    result = runner.invoke(app, ["profile", "--device", "cpu", *args])
    assert result.exit_code == 2 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bkprof: error: ") and message in lines[0]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("args, message", [
    (["--device", "cuda"], "--device 'cuda': no CUDA device is available"),
    (["--device", "cpu", "--graphs"], "--graphs needs a CUDA device"),
    (["--device", "cpu", "--backend", "triton"], "backend"),
])
def test_cuda_only_requests_without_cuda_are_one_line_exit_2(args, message):
    result = runner.invoke(app, ["profile", *args])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]


@cuda_only
def test_cuda_rows_measure_peak_memory_and_graph_replay():
    settings = ProfileSettings(torch.device("cuda"), batch=2, warmup=1, runs=3, graphs=True)
    frame = profile_variants(SMALL, ["dense", "sparse"], settings).frame
    assert (frame["status"] == "ok").all() and (frame["peak_mib"] > 0).all()
    # the BK-Core alone has no host synchronisation, so it can always be captured
    assert (frame["bk_core_graph_ms"] > 0).all()
    if grouped.triton is not None:  # the MoE finds each expert's rows on the device: every step is captured
        assert (frame["graph_ms"] > 0).all()
        # a part of the step's device time: above 0, below the whole step
        assert frame["bk_core_graph_share"].between(0, 1, inclusive="neither").all()
    else:  # the MoE's loop fallback syncs: the note says why the step was not captured
        assert all(ms > 0 or "not capturable" in note for ms, note in zip(frame["graph_ms"].fillna(0), frame["note"]))


@cuda_only
def test_cuda_graph_replay_times_a_captured_step():
    x = torch.randn(64, 64, device="cuda")
    m = Timer(torch.device("cuda"), warmup=1, runs=4).measure_graph(lambda t: t @ t, [x, x.clone()])
    assert m.runs == 4 and m.median > 0 and m.clock == "cuda events, graph replay"


def test_threads_must_be_positive():
    result = runner.invoke(app, ["profile", "--device", "cpu", "--threads", "0", *SMALL_ARGS])
    assert result.exit_code == 2 and "--threads must be a positive integer, got 0" in result.output


def test_a_busy_machine_marks_the_rows_and_warns(tmp_path):
    """Two spinning processes keep both of a 2-core machine's cores busy (more cores: more spinners)."""
    import os
    import subprocess
    import sys

    from bkprof import machine

    spin = "import time\nend = time.time() + 60\nwhile time.time() < end: pass"
    spinners = [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(machine.cores())]
    try:
        result = runner.invoke(app, ["profile", "--device", "cpu", "--variant", "dense", "--mode", "forward",
                                     "--no-components", "--threads", "1", "--format", "json", *SMALL_ARGS])
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait(timeout=10)
    if not os.path.exists("/proc/stat"):
        pytest.skip("no /proc/stat here")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    row = doc["rows"][0]
    assert row["others_busy_cores"] > machine.BUSY_CORES and "busy: others used" in row["note"]
    assert "warning: other processes used up to" in result.stderr
    assert doc["environment"]["cpu_threads"] == 1 and doc["environment"]["cores"] == machine.cores()
