"""bkprof check: ratios measured within one run (`per`), and the JSON Lines history with its trend plot."""

from __future__ import annotations

import textwrap
from datetime import datetime, timezone
from pathlib import Path

import pytest

from bkprof.check import ThresholdError, compare, load_thresholds
from bkprof.check.compare import FAIL, PASS
from bkprof.check.history import append_history, history_record, plot_trend, read_history, trend

REPO = Path(__file__).resolve().parents[1]
PROFILE = {"rows": [{"variant": "dense", "mode": "train", "graph_ms": 2.0},
                    {"variant": "combined", "mode": "train", "graph_ms": 3.0},
                    {"variant": "sparse", "mode": "train", "graph_ms": 0.0}],
           "components": {"combined/train": {"parts": [{"phase": "backward", "component": "bk_core", "time_share": 0.4}]}}}
COMBINED = "profile.rows[variant=combined,mode=train].graph_ms"
DENSE = "profile.rows[variant=dense,mode=train].graph_ms"


def _thresholds(tmp_path: Path, metrics: str):
    path = tmp_path / "t.toml"
    path.write_text(textwrap.dedent(f"[metrics]\n{metrics}\n"), encoding="utf-8")
    return load_thresholds(path)


def test_a_ratio_within_one_run_is_held_and_compared_with_the_baseline(tmp_path):
    thresholds = _thresholds(tmp_path, f'''
        "{COMBINED}" = {{ per = "{DENSE}", max = 1.4 }}
        "profile.rows[variant=combined, mode=train].graph_ms" = {{ per = "{DENSE}", rel = 0.01 }}
        "profile.components.combined/train.parts[phase=backward,component=bk_core].time_share" = {{ max = 0.5 }}
    ''')
    documents = {"profile": PROFILE}
    # a baseline run where everything was twice as slow: the ratio is the same, 3.0 / 2.0 = 1.5
    slower = {"profile": {"rows": [{**r, "graph_ms": 2 * r["graph_ms"]} for r in PROFILE["rows"]]}}
    outcomes = compare(thresholds.entries, documents, slower)
    assert [o.current for o in outcomes] == [1.5, 1.5, 0.4]
    assert [o.status for o in outcomes] == [FAIL, PASS, PASS]
    assert outcomes[0].metric == f"{COMBINED} ÷ {DENSE}" and outcomes[1].baseline == 1.5


@pytest.mark.parametrize("per, says", [
    ('"flops.variants.dense.counted_flops"', "same document"),
    ("3", "path string"),
    ('"profile.rows[variant=sparse,mode=train].graph_ms"', "is 0"),
])
def test_a_bad_ratio_is_one_configuration_error(tmp_path, per, says):
    with pytest.raises(ThresholdError, match=says):
        thresholds = _thresholds(tmp_path, f'"{COMBINED}" = {{ per = {per}, max = 2 }}')
        compare(thresholds.entries, {"profile": PROFILE}, None)


def test_history_appends_one_line_per_run_with_the_commit_and_reads_back_the_trend(tmp_path):
    thresholds = _thresholds(tmp_path, f'"{COMBINED}" = {{ per = "{DENSE}", max = 2 }}')
    path = tmp_path / "deep" / "history.jsonl"
    for run, scale in enumerate((1.0, 1.2)):
        documents = {"profile": {**PROFILE, "rows": [{**r, "graph_ms": r["graph_ms"] * (scale if r["variant"] == "combined" else 1)}
                                                     for r in PROFILE["rows"]]}}
        outcomes = compare(thresholds.entries, documents, None)
        record = history_record(outcomes, documents, REPO, now=datetime(2026, 12, 2, 7, run, tzinfo=timezone.utc))
        append_history(path, record)
    with path.open("a", encoding="utf-8") as handle:
        handle.write('{"cut off mid-wr\n')  # a run killed while writing
    records = read_history(path)
    assert len(records) == 2 and len(path.read_text().splitlines()) == 3
    first = records[0]
    assert first["time"] == "2026-12-02T07:00:00Z" and len(first["commit"]) == 40 and first["passed"]
    assert first["environment"]["torch"] and first["environment"]["python"]
    values = [v for _, _, v in trend(records, f"{COMBINED} ÷ {DENSE}")]
    assert values == pytest.approx([1.5, 1.8])  # 3.0 / 2.0, then 3.6 / 2.0
    with pytest.raises(ThresholdError, match="no run in the history"):
        trend(records, "profile.nothing")


def test_the_trend_plot_is_a_png(tmp_path):
    records = [{"time": f"2026-12-02T07:0{i}:00Z", "commit": f"{i}" * 40, "metrics": {"m": float(i)}} for i in range(3)]
    path = plot_trend(records, "m", tmp_path / "plots" / "m.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_an_unappendable_history_is_a_configuration_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ThresholdError, match="cannot append"):
        append_history(blocker / "history.jsonl", {"metrics": {}})


def test_the_command_appends_history_and_plots_a_trend(tmp_path):
    from typer.testing import CliRunner

    from bkprof.cli import app

    thresholds = tmp_path / "t.toml"
    thresholds.write_text('[flops]\nd_model = 8\nn_seq = 8\nnum_experts = 2\nvariants = ["dense"]\n'
                          '[metrics]\n"flops.variants.dense.counted_flops" = { min = 1 }\n', encoding="utf-8")
    history, plots = tmp_path / "h.jsonl", tmp_path / "plots"
    args = ["check", "--thresholds", str(thresholds), "--history", str(history)]
    runner = CliRunner()
    assert runner.invoke(app, args).exit_code == 0
    done = runner.invoke(app, [*args, "--trend", "flops.variants.dense.counted_flops", "--plot", str(plots)])
    assert done.exit_code == 0, done.output
    assert len(read_history(history)) == 2
    assert (plots / "trend-flops.variants.dense.counted_flops.png").read_bytes()[:4] == b"\x89PNG"
    lonely = runner.invoke(app, [*args, "--trend", "x"])
    assert lonely.exit_code == 2 and "--trend needs" in lonely.output
