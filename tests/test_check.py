"""bkprof check: threshold files, metric paths, verdicts, JUnit, and the command's exit codes."""

from __future__ import annotations

import copy
import json
import os
import textwrap
from pathlib import Path
from xml.etree import ElementTree

import pytest
from typer.testing import CliRunner

from bkprof.check import (Entry, ThresholdError, compare, current_documents, failures, find_thresholds, junit_xml,
                          load_baseline, load_thresholds, metric_value)
from bkprof.check.compare import FAIL, PASS, SKIP
from bkprof.check.metrics import MetricError

REPO = Path(__file__).resolve().parents[1]
DOCS = {
    "flops": {
        "published": {"combined": {"reduction": 4.57}},
        "variants": {"dense": {"counted_flops": 1000}, "sparse": {"counted_flops": 800}},
        "claims": [{"claim": "sparse", "holds": False}, {"claim": "combined", "holds": True}],
    },
    "profile": {"rows": [{"variant": "dense", "mode": "forward", "median_ms": 2.0, "graphs": True},
                         {"variant": "combined", "mode": "forward", "median_ms": 0.5, "graphs": False},
                         {"variant": "combined", "mode": "train", "median_ms": 1.5, "graphs": False}]},
}


def write_toml(folder: Path, text: str, name: str = "thresholds.toml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


# --- thresholds files ---------------------------------------------------------------------------


def test_pyproject_table_and_standalone_file_read_the_same(tmp_path):
    body = """
        baseline = "base.json"
        [{prefix}flops]
        n_seq = 32
        d_model = 16
        batch = 2
        variants = ["dense", "sparse"]
        [{prefix}metrics]
        "flops.variants.dense.counted_flops" = {{ min = 1, max = 2e9, rel = 0.01 }}
        flops.claims.1.holds = {{ min = 1 }}
    """
    in_pyproject = load_thresholds(write_toml(tmp_path, body.format(prefix="tool.bkprof.thresholds.").replace(
        'baseline', '[tool.bkprof.thresholds]\nbaseline', 1), "pyproject.toml"))
    standalone = load_thresholds(write_toml(tmp_path, body.format(prefix="")))
    for thresholds in (in_pyproject, standalone):
        assert thresholds.entries == (
            Entry("flops.variants.dense.counted_flops", min=1, max=2e9, rel=0.01),
            Entry("flops.claims.1.holds", min=1),
        )
        assert thresholds.baseline == tmp_path / "base.json"
        assert (thresholds.flops.config.n_seq, thresholds.flops.config.d_model) == (32, 16)
        assert (thresholds.flops.batch, thresholds.flops.variants) == (2, ("dense", "sparse"))


@pytest.mark.parametrize(
    "metrics, named",
    [
        ('"flops.x" = { min = 2, max = 1 }', "threshold flops.x: min 2 > max 1"),
        ('"flops.x" = { max = "ten" }', "threshold flops.x: max must be a finite number, got 'ten'"),
        ('"flops.x" = { min = true }', "threshold flops.x: min must be a finite number"),
        ('"flops.x" = { rel = -0.1 }', "threshold flops.x: rel must be >= 0"),
        ('"flops.x" = { mni = 1 }', "threshold flops.x: unknown key 'mni'"),
        ('"flops.x" = {}', "threshold flops.x: give min, max or rel"),
        ('"flops.x" = 3', "threshold flops.x: must be a table"),
        ('"gpu.x" = { min = 1 }', "threshold gpu.x: the path must start with flops. or profile."),
        ('"flops" = { min = 1 }', "threshold flops: the path must start with flops. or profile."),
        ('"flops.rows[a=1" = { min = 1 }', "threshold flops.rows[a=1: is not a path of keys"),
    ],
)
def test_each_malformed_entry_is_named(tmp_path, metrics, named):
    path = write_toml(tmp_path, f"[metrics]\n{metrics}\n")
    with pytest.raises(ThresholdError) as error:
        load_thresholds(path)
    assert named in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize(
    "text, named",
    [
        ("[metrics\n", "is not valid TOML"),
        ("[metrics]\n", "no metrics"),
        ("basline = 'b.json'\n[metrics]\n'flops.x' = { min = 1 }\n", "unknown key 'basline'"),
        ("[flops]\nn_seq = 7\n[metrics]\n'flops.x' = { min = 1 }\n", "flops: n_seq=7 must be divisible"),
        ("[flops]\nbatch = 0\n[metrics]\n'flops.x' = { min = 1 }\n", "flops: batch must be a positive integer"),
        ("[flops]\nvariants = ['dens']\n[metrics]\n'flops.x' = { min = 1 }\n", "flops: variants must be a list"),
    ],
)
def test_malformed_files_name_the_file_or_key(tmp_path, text, named):
    with pytest.raises(ThresholdError, match=named):
        load_thresholds(write_toml(tmp_path, text))


def test_a_pyproject_without_the_table_says_so(tmp_path):
    with pytest.raises(ThresholdError, match=r"has no \[tool.bkprof.thresholds\] table"):
        load_thresholds(write_toml(tmp_path, "[project]\nname = 'x'\n", "pyproject.toml"))


def test_the_nearest_pyproject_upward_is_found(tmp_path):
    write_toml(tmp_path, "[tool.bkprof.thresholds.metrics]\n'flops.x' = { min = 1 }\n", "pyproject.toml")
    (tmp_path / "a" / "b").mkdir(parents=True)
    assert find_thresholds(tmp_path / "a" / "b") == tmp_path / "pyproject.toml"


def test_a_baseline_for_another_flops_config_is_refused(tmp_path):
    baseline = tmp_path / "baseline.json"
    baseline.write_text(json.dumps({"flops": {"config": {"n_seq": 128, "d_model": 128}, "x": 1}}))
    thresholds = load_thresholds(write_toml(tmp_path, "[metrics]\n'flops.x' = { rel = 0 }\n"))
    current = {"flops": {"config": {"n_seq": 256, "d_model": 128}, "x": 1}}
    with pytest.raises(ThresholdError, match=r"another flops config \(n_seq: 128 -> 256\); rerun with --update-baseline"):
        load_baseline(thresholds, current, baseline)
    assert load_baseline(thresholds, {"flops": {"config": {"n_seq": 128, "d_model": 128}}}, baseline)["flops"]["x"] == 1


# --- metric paths -------------------------------------------------------------------------------


def test_metric_paths_walk_objects_lists_and_booleans():
    assert metric_value(DOCS, "flops.published.combined.reduction") == 4.57
    assert metric_value(DOCS, "flops.variants.sparse.counted_flops") == 800.0
    assert metric_value(DOCS, "flops.claims.0.holds") == 0.0
    assert metric_value(DOCS, "flops.claims.1.holds") == 1.0


def test_selectors_pick_the_one_matching_row():
    assert metric_value(DOCS, "profile.rows[variant=combined,mode=train].median_ms") == 1.5
    assert metric_value(DOCS, "profile.rows[variant=combined, mode=forward].median_ms") == 0.5
    assert metric_value(DOCS, "profile.rows[graphs=true].median_ms") == 2.0  # non-strings match as JSON


@pytest.mark.parametrize(
    "metric, says",
    [
        ("flops.variants.spars.counted_flops", "no key 'spars' in flops.variants (did you mean 'sparse'?)"),
        ("flops.variants.moe.counted_flops", "no key 'moe' in flops.variants (keys: dense, sparse)"),
        ("flops.claims.2.holds", "'2' is not an index of flops.claims (a list of 2)"),
        ("flops.claims.first", "'first' is not an index of flops.claims"),
        ("flops.variants.dense", "is an object, not a number"),
        ("flops.claims.0.claim", "is 'sparse', not a number"),
        ("flops.published.combined.reduction.x", "flops.published.combined.reduction is 4.57, it has no 'x'"),
        ("profile.rows[variant=combined].median_ms", "2 items of profile.rows match [variant=combined], not 1"),
        ("profile.rows[variant=sparse].median_ms", "0 items of profile.rows match [variant=sparse], not 1"),
        ("profile.rows[variant].median_ms", "selector [variant] needs field=value conditions"),
        ("flops[claim=x].holds", "flops is an object, not a list to select [claim=x] from"),
        ("flops..claims", "is not a path of keys, indices and [field=value] selectors joined by dots"),
    ],
)
def test_bad_metric_paths_say_where_they_stop(metric, says):
    with pytest.raises(MetricError) as error:
        metric_value(DOCS, metric)
    assert says in str(error.value)


# --- verdicts -----------------------------------------------------------------------------------


def test_min_max_and_rel_decide_pass_and_fail():
    moved = {"flops": copy.deepcopy(DOCS["flops"])}
    moved["flops"]["variants"]["sparse"]["counted_flops"] = 820  # +2.5 % against the baseline
    entries = (
        Entry("flops.published.combined.reduction", min=4.5, max=4.6),
        Entry("flops.published.combined.reduction", min=4.58),
        Entry("flops.variants.sparse.counted_flops", rel=0.03),
        Entry("flops.variants.sparse.counted_flops", rel=0.02),
        Entry("profile.cuda.median_ms", max=1.0),
    )
    outcomes = compare(entries, moved, DOCS)
    assert [o.status for o in outcomes] == [PASS, FAIL, PASS, FAIL, SKIP]
    assert outcomes[1].reason == "4.57 < min 4.58"
    assert (outcomes[3].baseline, outcomes[3].current, outcomes[3].delta) == (800, 820, 20)
    assert outcomes[3].rel_delta == pytest.approx(0.025)
    assert failures(outcomes) == [outcomes[1], outcomes[3]]


def test_a_zero_baseline_allows_no_change_under_rel():
    zero = {"flops": {"x": 0}}
    assert compare((Entry("flops.x", rel=0.5),), zero, zero)[0].status == PASS
    moved = compare((Entry("flops.x", rel=0.5),), {"flops": {"x": 1}}, zero)[0]
    assert moved.status == FAIL and moved.rel_delta is None


def test_unknown_paths_in_current_or_baseline_are_configuration_errors():
    with pytest.raises(ThresholdError, match="threshold flops.nope: no key 'nope'"):
        compare((Entry("flops.nope", max=1),), DOCS, None)
    with pytest.raises(ThresholdError, match="threshold flops.new: the baseline: no key 'new'"):
        compare((Entry("flops.new", rel=0.1),), {"flops": {"new": 1}}, DOCS)


def test_junit_is_valid_xml_with_one_case_per_metric_and_the_failure_count():
    entries = (Entry("flops.published.combined.reduction", max=4), Entry("flops.claims.1.holds", min=1),
               Entry("flops.claims.0.holds", min=1), Entry("profile.x", min=1))
    root = ElementTree.fromstring(junit_xml(compare(entries, {"flops": DOCS["flops"]}, None)))
    suite = root.find("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("4", "2", "1")
    failed = [case.get("name") for case in suite.iter("testcase") if case.find("failure") is not None]
    assert failed == ["flops.published.combined.reduction", "flops.claims.0.holds"]


# --- the command ----------------------------------------------------------------------------------

PROJECT = REPO / "pyproject.toml"
_FLOPS_DOCUMENTS: dict = {}


@pytest.fixture
def check(monkeypatch):
    """Runs `bkprof check ARGS`; each flops document is computed once per test session."""
    import bkprof.flops
    from bkprof.cli import app

    real = bkprof.flops.flops_report

    def cached(config, variants, *, batch=1, backward=False):
        key = (config, tuple(variants), batch, backward)
        if key not in _FLOPS_DOCUMENTS:
            _FLOPS_DOCUMENTS[key] = real(config, variants, batch=batch, backward=backward)
        return copy.deepcopy(_FLOPS_DOCUMENTS[key])

    monkeypatch.setattr(bkprof.flops, "flops_report", cached)
    return lambda *args: CliRunner().invoke(app, ["check", *map(str, args)])


def project_thresholds() -> dict:
    from bkprof.check.config import tomllib  # tomli on Python 3.10

    return tomllib.loads(PROJECT.read_text(encoding="utf-8"))["tool"]["bkprof"]["thresholds"]


def thresholds_file(folder: Path, metrics: dict[str, str], baseline: Path | None = None) -> Path:
    """A standalone thresholds file for the project's flops document with these metric entries."""
    flops = "".join(f"{key} = {json.dumps(value)}\n" for key, value in project_thresholds().get("flops", {}).items())
    lines = [f"baseline = {json.dumps(str(baseline or REPO / project_thresholds()['baseline']))}", "[flops]", flops, "[metrics]"]
    lines += [f"{json.dumps(metric)} = {bounds}" for metric, bounds in metrics.items()]
    return write_toml(folder, "\n".join(lines) + "\n")


def test_the_project_thresholds_pass_at_head(check):
    result = check("--thresholds", PROJECT, "--format", "json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["passed"] and payload["counts"]["fail"] == 0
    assert len(payload["results"]) == len(load_thresholds(PROJECT).entries)


def test_a_tightened_threshold_exits_1_naming_the_metric(check, tmp_path):
    current = json.loads(check("--thresholds", PROJECT, "--format", "json").stdout)["results"]
    reduction = next(r for r in current if r["metric"] == "flops.published.combined.reduction")["current"]
    path = thresholds_file(tmp_path, {
        "flops.published.combined.reduction": f"{{ min = {reduction + 0.01} }}",
        "flops.published.sparse_g_ii.reduction": "{ min = 2 }",
    })
    result = check("--thresholds", path, "--format", "markdown")
    assert result.exit_code == 1
    assert f"FAIL flops.published.combined.reduction: {reduction:.12g} < min {reduction + 0.01:.12g}" in result.stdout
    assert "FAIL flops.published.sparse_g_ii" not in result.stdout


def test_a_drift_from_the_baseline_beyond_rel_exits_1(check, tmp_path):
    baseline = json.loads((REPO / project_thresholds()["baseline"]).read_text())
    baseline["flops"]["variants"]["sparse"]["counted_flops"] *= 1.05
    moved = tmp_path / "moved.json"
    moved.write_text(json.dumps(baseline))
    path = thresholds_file(tmp_path, {"flops.variants.sparse.counted_flops": "{ rel = 0.01 }",
                                      "flops.variants.dense.counted_flops": "{ rel = 0 }"}, baseline=moved)
    result = check("--thresholds", path, "--format", "json")
    assert result.exit_code == 1
    statuses = {r["metric"]: r["status"] for r in json.loads(result.stdout)["results"]}
    assert statuses == {"flops.variants.sparse.counted_flops": FAIL, "flops.variants.dense.counted_flops": PASS}


@pytest.mark.parametrize(
    "metrics, named",
    [
        ({"flops.variants.sparse.countd_flops": "{ max = 1 }"},
         "threshold flops.variants.sparse.countd_flops: no key 'countd_flops' in flops.variants.sparse (did you mean 'counted_flops'?)"),
        ({"flops.published.combined.reduction": "{ min = 5, max = 4 }"}, "threshold flops.published.combined.reduction: min 5 > max 4"),
        ({"flops.published.combined.reduction": "{ max = '4.6' }"}, "threshold flops.published.combined.reduction: max must be a finite number"),
        ({"flops.published.combined.reduction": "{ max = 4.6 "}, "is not valid TOML"),
    ],
)
def test_a_malformed_threshold_exits_2_with_one_line_naming_it(check, tmp_path, metrics, named):
    result = check("--thresholds", thresholds_file(tmp_path, metrics))
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [result.stderr.strip()] and named in result.stderr
    assert result.stderr.startswith("bkprof: error: ") and result.stdout == ""


def test_a_missing_baseline_file_exits_2_naming_the_entry(check, tmp_path):
    path = thresholds_file(tmp_path, {"flops.variants.dense.counted_flops": "{ rel = 0.01 }"}, baseline=tmp_path / "gone.json")
    result = check("--thresholds", path)
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"bkprof: error: threshold flops.variants.dense.counted_flops: baseline file {tmp_path / 'gone.json'} "
        "does not exist; create it with bkprof check --update-baseline"
    )


def test_update_baseline_writes_the_current_documents(check, tmp_path):
    baseline = tmp_path / "reports" / "baseline.json"
    path = thresholds_file(tmp_path, {"flops.variants.dense.counted_flops": "{ rel = 0 }"}, baseline=baseline)
    assert check("--thresholds", path, "--update-baseline").exit_code == 0
    written = json.loads(baseline.read_text())
    assert written == current_documents(load_thresholds(PROJECT).flops)
    assert os.listdir(baseline.parent) == ["baseline.json"]
    assert check("--thresholds", path).exit_code == 0


def test_update_baseline_is_whole_or_nothing(check, tmp_path, monkeypatch):
    baseline = tmp_path / "baseline.json"
    baseline.write_text('{"flops": {"old": 1}}')
    bad = thresholds_file(tmp_path, {"flops.nope": "{ max = 1 }"}, baseline=baseline)
    assert check("--thresholds", bad, "--update-baseline").exit_code == 2  # a bad entry writes nothing
    good = thresholds_file(tmp_path, {"flops.published.combined.reduction": "{ min = 1 }"}, baseline=baseline)

    def interrupted(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", interrupted)
    result = check("--thresholds", good, "--update-baseline")
    assert result.exit_code == 2 and "cannot write" in result.stderr  # one line, never a traceback
    assert baseline.read_text() == '{"flops": {"old": 1}}' and sorted(os.listdir(tmp_path)) == ["baseline.json", "thresholds.toml"]


def test_junit_from_the_command_counts_the_failures(check, tmp_path):
    path = thresholds_file(tmp_path, {
        "flops.published.combined.reduction": "{ max = 1 }",
        "flops.published.sparse_g_ii.reduction": "{ max = 1 }",
        "flops.published.multi_scale.reduction": "{ min = 0, max = 1 }",
        "profile.anything": "{ max = 1 }",
    })
    junit = tmp_path / "out" / "check.xml"
    assert check("--thresholds", path, "--junit", junit).exit_code == 1
    suite = ElementTree.parse(junit).getroot().find("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("4", "2", "1")


def test_profile_metrics_come_from_the_profile_report(check, tmp_path):
    report = tmp_path / "profile.json"
    report.write_text(json.dumps({"command": "profile", **DOCS["profile"]}))
    metric = "profile.rows[variant=combined,mode=forward].median_ms"
    within = thresholds_file(tmp_path, {metric: "{ max = 1 }"})
    assert check("--thresholds", within).exit_code == 0  # skipped without a report
    assert check("--thresholds", within, "--profile", report).exit_code == 0
    beyond = thresholds_file(tmp_path, {metric: "{ max = 0.25 }"})
    result = check("--thresholds", beyond, "--profile", report, "--format", "markdown")
    assert result.exit_code == 1 and f"FAIL {metric}: 0.5 > max 0.25" in result.stdout
    missing = check("--thresholds", beyond, "--profile", tmp_path / "none.json")
    assert missing.exit_code == 2 and f"profile report {tmp_path / 'none.json'} does not exist" in missing.stderr


def test_a_profile_measured_now_resolves_profile_paths():
    from bkprof.check import FlopsSource, profiled_now
    from bkprof.variants import LayerConfig

    tiny = FlopsSource(config=LayerConfig(d_model=8, n_seq=8, num_experts=2), variants=("dense",))
    document = profiled_now(tiny, device="cpu")  # CUDA in CI; the CPU here, to prove the document and the paths
    for mode in ("forward", "train"):
        assert metric_value({"profile": document}, f"profile.rows[variant=dense,mode={mode}].median_ms") > 0


def test_run_profile_without_a_cuda_device_skips_profile_metrics(check, tmp_path):
    import torch

    path = thresholds_file(tmp_path, {"profile.rows[variant=dense,mode=forward].median_ms": "{ max = 1e9 }"})
    result = check("--thresholds", path, "--run-profile", "--format", "json")
    expected = "pass" if torch.cuda.is_available() else SKIP
    assert result.exit_code == 0 and json.loads(result.stdout)["results"][0]["status"] == expected
    both = check("--thresholds", path, "--run-profile", "--profile", path)
    assert both.exit_code == 2 and both.stderr.strip() == "bkprof: error: give --profile PATH or --run-profile, not both"


# --- what the gate refuses to read ----------------------------------------------------------------

def project_baseline() -> dict:
    return json.loads((REPO / project_thresholds()["baseline"]).read_text(encoding="utf-8"))


@pytest.mark.parametrize("bad", ["Infinity", "-Infinity", "NaN", "1e400"])
def test_a_non_finite_number_anywhere_in_the_baseline_exits_2(check, tmp_path, bad):
    baseline = tmp_path / "baseline.json"
    text = json.dumps(project_baseline(), indent=2)
    # a number nobody's threshold reads: the gate refuses the whole document, not just the metrics it uses
    baseline.write_text(text.replace('"flops": {', f'"flops": {{"unused": {bad},', 1))
    path = thresholds_file(tmp_path, {"flops.variants.dense.counted_flops": "{ rel = 0.01 }"}, baseline=baseline)
    result = check("--thresholds", path)
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        f"bkprof: error: baseline file {baseline} holds the non-finite number {'Infinity' if bad == '1e400' else bad} "
        "at flops.unused; a gate compares finite numbers only"]


def test_a_non_finite_number_in_a_profile_report_exits_2(check, tmp_path):
    report = tmp_path / "profile.json"
    report.write_text('{"rows": [{"variant": "dense", "mode": "forward", "median_ms": Infinity}]}')
    path = thresholds_file(tmp_path, {"profile.rows[variant=dense,mode=forward].median_ms": "{ max = 1 }"})
    result = check("--thresholds", path, "--profile", report)
    assert result.exit_code == 2 and "non-finite number Infinity at rows.0.median_ms" in result.stderr


def test_a_baseline_without_its_config_exits_2_unless_told(check, tmp_path):
    document = project_baseline()
    del document["flops"]["config"]
    baseline = tmp_path / "baseline.json"
    baseline.write_text(json.dumps(document))
    path = thresholds_file(tmp_path, {"flops.variants.dense.counted_flops": "{ rel = 0.005 }"}, baseline=baseline)
    result = check("--thresholds", path)
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1
    assert f"baseline file {baseline}: the flops document has no config" in result.stderr
    assert check("--thresholds", path, "--no-config-check").exit_code == 0


@pytest.mark.parametrize("name", ["thresholds.toml", "pyproject.toml", "baseline.json", "profile.json"])
def test_a_binary_or_unreadable_file_is_one_line(check, tmp_path, name):
    baseline = tmp_path / "baseline.json"
    baseline.write_text(json.dumps(project_baseline()))
    path = thresholds_file(tmp_path, {"flops.variants.dense.counted_flops": "{ rel = 0.005 }"}, baseline=baseline)
    (tmp_path / name).write_bytes(b"\xff\xfe\x00binary\x89PNG")
    args = ["--thresholds", tmp_path / name] if name.endswith(".toml") else ["--thresholds", path]
    if name == "profile.json":
        args += ["--profile", tmp_path / name]
    result = check(*args)
    assert result.exit_code == 2
    what = {"profile.json": "profile report", "baseline.json": "baseline file"}.get(name, "thresholds file")
    assert result.stderr.strip().splitlines() == [
        f"bkprof: error: {what} {tmp_path / name} is not UTF-8 text (byte 0: invalid start byte)"]
    unreadable = check("--thresholds", tmp_path)
    lines = unreadable.stderr.strip().splitlines()
    assert unreadable.exit_code == 2 and len(lines) == 1 and str(tmp_path) in lines[0] and "is a folder" in lines[0]
