import math

import pytest

from bkprof.sweep.axes import MAX_VALUES, parse_axis
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
        assert f["flops_exponent"] == pytest.approx(2.0 if f["variant"] == "a" else 1.0)


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
