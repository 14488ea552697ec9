import json
import math
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from bkprof.cli import app
from bkprof.flops import published_accounting
from bkprof.sweep.published import published_layer_flops, reduction_rows
from bkprof.variants import LayerConfig
from bkprof.sweep.axes import MAX_VALUES, parse_axis
from bkprof.sweep.measures import interpolation_error_measure
from bkprof.sweep.run import SweepPlan, run_sweep
from bkprof.sweep.scaling import power_law_exponent, scaling_rows


# ---- axis values ----

def test_lists_and_single_values():
    assert parse_axis("n_seq", "256,1024,4096") == [256, 1024, 4096]
    assert parse_axis("n_seq", " 512 ") == [512]
    assert parse_axis("interp", "linear,cubic,learned") == ["linear", "cubic", "learned"]
    assert parse_axis("n_seq", "256,256,512") == [256, 512]  # repeats dropped, order kept


def test_float_range_is_inclusive_and_exact():
    assert parse_axis("sparsity", "0.4:0.7:0.1") == [0.4, 0.5, 0.6, 0.7]
    assert parse_axis("sparsity", "0.1:0.3:0.1") == [0.1, 0.2, 0.3]  # 0.1 + 2 * 0.1 != 0.3 in binary floats
    assert parse_axis("sparsity", "0:0.9:0.3") == [0.0, 0.3, 0.6, 0.9]
    assert parse_axis("sparsity", "0.4:0.7:0.25") == [0.4, 0.65]  # stop only when the step lands on it
    assert parse_axis("sparsity", "0.5:0.5:0.1") == [0.5]


@given(start=st.integers(0, 500), step=st.integers(1, 200), count=st.integers(1, 30), extra=st.integers(0, 199))
def test_decimal_ranges_hit_every_step_and_the_stop(start, step, count, extra):
    # start, step in hundredths: the values are exactly start + i * step, the last one at or below stop
    s0, ds = Decimal(start) / 100, Decimal(step) / 100
    stop = s0 + (count - 1) * ds + min(Decimal(extra) / 100, ds - Decimal("0.01"))
    values = parse_axis("sparsity", f"{s0}:{stop}:{ds}")
    assert values == [float(s0 + i * ds) for i in range(count)]


def test_int_and_geometric_ranges():
    assert parse_axis("n_seq", "256:1024:256") == [256, 512, 768, 1024]
    assert parse_axis("n_seq", "256:4096:x2") == [256, 512, 1024, 2048, 4096]
    assert parse_axis("n_seq", "256:5000:*4") == [256, 1024, 4096]
    assert parse_axis("n_seq", "128,256:512:x2") == [128, 256, 512]


@pytest.mark.parametrize("axis, text, fragment", [
    ("n_seq", "256,,512", "empty item"),
    ("n_seq", "abc", "not a number"),
    ("n_seq", "256.5", "not an integer"),
    ("n_seq", "256:128:64", "below start"),
    ("n_seq", "256:512:0", "step must be positive"),
    ("sparsity", "0.4:0.7:-0.1", "step must be positive"),
    ("n_seq", "256:512", "start:stop:step"),
    ("n_seq", "1:2:3:4", "start:stop:step"),
    ("n_seq", "256:4096:x1", "ratio above 1"),
    ("n_seq", "0:4096:x2", "positive start"),
    ("n_seq", "250:1024:x1.5", "not an integer"),
    ("sparsity", "nan", "finite"),
    ("interp", "quadratic", "one of"),
    ("sparsity", "0:1:0.00001", str(MAX_VALUES)),
])
def test_bad_values_name_the_item(axis, text, fragment):
    with pytest.raises(ValueError, match=fragment):
        parse_axis(axis, text)


# ---- scaling exponents ----

@pytest.mark.parametrize("k", [1.0, 2.0, 0.5, 1.3])
def test_exponent_of_a_known_power_law(k):
    ns = [256, 512, 1024, 4096]
    assert power_law_exponent(ns, [3.0 * n ** k for n in ns]) == pytest.approx(k)


def test_exponent_of_linear_plus_constant_is_below_one():
    ns = [16, 64, 256]
    assert 0 < power_law_exponent(ns, [n + 100 for n in ns]) < 1


def test_exponent_undefined_cases():
    assert power_law_exponent([256], [1.0]) is None
    assert power_law_exponent([256, 256], [1.0, 2.0]) is None
    assert power_law_exponent([256, 512], [1.0, None]) is None
    assert power_law_exponent([256, 512], [0.0, 2.0]) is None
    assert power_law_exponent([256, 512], [math.nan, 2.0]) is None


def test_scaling_rows_group_by_variant_and_other_axes():
    rows = [{"variant": v, "n_seq": n, "sparsity": s, "flops": (n ** 2 if v == "a" else n) * (1 + s), "error": None}
            for v in ("a", "b") for s in (0.4, 0.6) for n in (64, 128, 256)]
    rows.append({"variant": "a", "n_seq": 512, "sparsity": 0.4, "flops": None, "error": "boom"})
    fitted = scaling_rows(rows, ["flops"], ["sparsity"])
    assert len(fitted) == 4
    for f in fitted:
        assert f["points"] == 3 and f["n_seq_range"] == "64..256"
        assert f["k_flops"] == pytest.approx(2.0 if f["variant"] == "a" else 1.0)


# ---- running a sweep ----

def test_product_of_axes_and_fixed_values():
    plan = SweepPlan({"n_seq": [64, 128], "sparsity": [0.4, 0.5, 0.6]}, ["dense", "sparse"], fixed={"d_model": 16})
    points = plan.points()
    assert len(points) == 6 and plan.size == 12
    assert [(p["n_seq"], p["sparsity"]) for p in points[:3]] == [(64, 0.4), (64, 0.5), (64, 0.6)]
    assert all(p["d_model"] == 16 and p["batch"] == 1 for p in points)


def test_failing_points_do_not_stop_the_sweep():
    def measure(variant, config, batch):
        if variant == "sparse" and config.n_seq == 128:
            raise RuntimeError("out of memory")
        return {"n_times_batch": config.n_seq * batch}

    plan = SweepPlan({"n_seq": [64, 99, 128, 256]}, ["dense", "sparse"], fixed={"batch": 3})
    seen = []
    rows = run_sweep(plan, [measure], on_row=seen.append)
    assert len(rows) == 8 and seen == rows
    by = {(r["variant"], r["n_seq"]): r for r in rows}
    assert by["dense", 99]["error"].startswith("invalid config: n_seq=99 must be divisible by downsample=2")
    assert "n_times_batch" not in by["dense", 99]
    assert by["sparse", 128]["error"] == "RuntimeError: out of memory"
    assert by["dense", 128]["error"] is None and by["dense", 128]["n_times_batch"] == 384
    assert by["sparse", 256]["error"] is None and by["sparse", 256]["n_times_batch"] == 768


# ---- published figures, reductions, and the command ----

runner = CliRunner()
TINY = ["--d-model", "16", "--experts", "2"]


def test_published_layer_figures_at_the_source_defaults():
    published = published_accounting(LayerConfig())
    assert published_layer_flops("dense", published) == 4_199_424
    assert published_layer_flops("multiscale", published) == 2_294_784
    assert published_layer_flops("sparse", published) is None and published_layer_flops("combined", published) is None


def test_reductions_published_against_full():
    rows = {r["variant"]: r for r in reduction_rows(LayerConfig(), [0.6])}
    assert rows["sparse"]["published_reduction"] == pytest.approx(2.5)
    assert rows["combined"]["published_reduction"] == pytest.approx(4.57, abs=0.01)
    # the full count: the importance predictor alone costs more than the BK-Core it is meant to thin out
    assert rows["sparse"]["full_reduction"] < 1 and rows["combined"]["full_reduction"] < 1


def test_sweep_command_writes_files_and_keeps_going(tmp_path):
    result = runner.invoke(app, ["sweep", "--n-seq", "32,64,99,128", *TINY, "--variant", "dense", "--variant", "sparse",
                                 "--count", "--train", "--output-dir", str(tmp_path), "--format", "json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc == json.loads((tmp_path / "sweep.json").read_text())
    rows = {(r["variant"], r["n_seq"]): r for r in doc["rows"]}
    assert len(rows) == 8
    assert rows["sparse", 99]["error"].startswith("invalid config: n_seq=99")
    ok = [r for r in doc["rows"] if not r["error"]]
    assert len(ok) == 6 and all(r["counted_flops"] == r["analytic_flops"] for r in ok)
    assert all(r["analytic_train_flops"] > 2 * r["analytic_flops"] for r in ok)
    for fitted in doc["scaling"]:
        assert fitted["points"] == 3
        assert fitted["k_published_flops"] is None or fitted["k_published_flops"] == pytest.approx(1.0)
        # linear layers, plus the O(N log N) scan of the vectorized BK-Core
        assert 1.0 <= fitted["k_analytic_flops"] < 1.15
    csv_lines = (tmp_path / "sweep.csv").read_text().splitlines()
    assert len(csv_lines) == 9 and csv_lines[0].startswith("variant,n_seq,d_model")
    assert (tmp_path / "scaling.csv").read_text().startswith("variant,points,n_seq_range")


def test_sweep_profile_and_plots(tmp_path):
    result = runner.invoke(app, ["sweep", "--n-seq", "16,32", *TINY, "--sparsity", "0.5,0.6", "--variant", "sparse",
                                 "--profile", "--warmup", "0", "--runs", "1", "--plot", str(tmp_path),
                                 "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["rows"]
    assert len(rows) == 4 and all(r["median_ms"] > 0 and r["error"] is None for r in rows)
    names = sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".png")
    assert names == ["flops_vs_n.png", "importance_masks.png", "reduction_vs_sparsity.png", "time_vs_n.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bkprof-manifest.json", *names]
    assert all((tmp_path / n).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for n in names)


@pytest.mark.parametrize("args, fragment", [
    (["--n-seq", "256:128:2"], "--n-seq '256:128:2': stop 128 is below start 256"),
    (["--sparsity", "0.4:0.7"], "--sparsity '0.4:0.7': a range is start:stop:step"),
    (["--device", "cuda"], "--device and --mode need --profile"),
    (["--profile", "--device", "tpu"], "--device 'tpu'"),
    (["--runs", "0"], "--runs must be a positive integer"),
    (["--backend", "fast"], "--backend: backend must be one of"),
    (["--plot", "FILE"], "is a file, not a folder"),
])
def test_sweep_bad_input_is_one_line_exit_2(args, fragment, tmp_path):
    (tmp_path / "file").write_text("")
    args = [str(tmp_path / "file") if a == "FILE" else a for a in args]
    result = runner.invoke(app, ["sweep", *args])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bkprof: error: ") and fragment in lines[0]


def test_ablations_preset_tables(tmp_path):
    result = runner.invoke(app, ["sweep", "--preset", "ablations", "--n-seq", "32,64", *TINY,
                                 "--format", "markdown", "--output", str(tmp_path / "a.md")])
    assert result.exit_code == 0, result.output
    text = (tmp_path / "a.md").read_text()
    titles = [line for line in text.splitlines() if line.startswith("### ")]
    assert [t.split(" (")[0] for t in titles] == ["### Ablation: n_seq", "### Ablation: sparsity",
                                                  "### Ablation: downsample", "### Ablation: interp",
                                                  "### Scaling with N at the reference point"]
    # the preset's sparsities, downsampling factors and interpolations, each against dense
    assert "| 0.4 | sparse |" in text and "| 0.7 | combined |" in text and "| 4 | multiscale |" in text
    assert "| cubic | sparse |" in text
    sparse_at_06 = next(line for line in text.splitlines() if line.startswith("| 0.6 | sparse |"))
    assert "| 2.500 |" in sparse_at_06  # the published 2.50x, beside the full count


def test_interpolation_error():
    measure = interpolation_error_measure()
    config = LayerConfig(d_model=16, n_seq=64, num_experts=2, sparsity=0.5)
    linear = measure("sparse", config.with_(interp="linear"), 2)["g_ii_error"]
    untrained = measure("sparse", config.with_(interp="learned"), 2)["g_ii_error"]
    assert 0 < linear < untrained
    assert measure("combined", config.with_(interp="cubic"), 2)["g_ii_error"] > 0
    assert measure("dense", config, 2) == {"g_ii_error": None}
    assert measure("sparse", config.with_(sparsity=0.0), 2) == {"g_ii_error": None}
