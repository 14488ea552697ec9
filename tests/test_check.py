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

from bkprof.check import (Entry, ThresholdError, compare, failures, junit_xml, load_thresholds, metric_value)
from bkprof.check.compare import FAIL, PASS, SKIP
from bkprof.check.metrics import MetricError

REPO = Path(__file__).resolve().parents[1]
DOCS = {
    "flops": {
        "published": {"combined": {"reduction": 4.57}},
        "variants": {"dense": {"counted_flops": 1000}, "sparse": {"counted_flops": 800}},
        "claims": [{"claim": "sparse", "holds": False}, {"claim": "combined", "holds": True}],
    }
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


# --- metric paths -------------------------------------------------------------------------------


def test_metric_paths_walk_objects_lists_and_booleans():
    assert metric_value(DOCS, "flops.published.combined.reduction") == 4.57
    assert metric_value(DOCS, "flops.variants.sparse.counted_flops") == 800.0
    assert metric_value(DOCS, "flops.claims.0.holds") == 0.0
    assert metric_value(DOCS, "flops.claims.1.holds") == 1.0


@pytest.mark.parametrize(
    "metric, says",
    [
        ("flops.variants.spars.counted_flops", "no key 'spars' in flops.variants (keys: dense, sparse)"),
        ("flops.claims.2.holds", "'2' is not an index of flops.claims (a list of 2)"),
        ("flops.claims.first", "'first' is not an index of flops.claims"),
        ("flops.variants.dense", "is an object, not a number"),
        ("flops.claims.0.claim", "is 'sparse', not a number"),
        ("flops.published.combined.reduction.x", "flops.published.combined.reduction is 4.57, it has no 'x'"),
    ],
)
def test_bad_metric_paths_say_where_they_stop(metric, says):
    with pytest.raises(MetricError) as error:
        metric_value(DOCS, metric)
    assert says in str(error.value)


# --- verdicts -----------------------------------------------------------------------------------


def test_min_max_and_rel_decide_pass_and_fail():
    moved = copy.deepcopy(DOCS)
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
    root = ElementTree.fromstring(junit_xml(compare(entries, DOCS, None)))
    suite = root.find("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("4", "2", "1")
    failed = [case.get("name") for case in suite.iter("testcase") if case.find("failure") is not None]
    assert failed == ["flops.published.combined.reduction", "flops.claims.0.holds"]
