import csv
import io
import json

import pytest
from typer.testing import CliRunner

from bkprof.cli import app

runner = CliRunner()
SMALL = ["--d-model", "16", "--n-seq", "16"]


def invoke(*args):
    return runner.invoke(app, ["flops", *args])


def test_json_document_has_the_promised_schema():
    result = invoke(*SMALL, "--batch", "2", "--format", "json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert set(doc["config"]) >= {"d_model", "n_seq", "num_experts", "top_k", "sparsity", "downsample", "batch"}
    assert set(doc["published"]["sparse_g_ii"]) == {"standard", "importance", "sparse_compute", "interpolation",
                                                    "sparse_total", "reduction"}
    assert set(doc["published"]["multi_scale"]) == {"standard", "multi_scale", "reduction"}
    assert set(doc["published"]["combined"]) == {"reduction"}
    assert set(doc["variants"]) == {"dense", "sparse", "multiscale", "combined"}
    for v in doc["variants"].values():
        assert {"analytic_flops", "counted_flops", "fvcore_macs", "fvcore_by_operator", "fvcore_unsupported",
                "components"} <= set(v)
        assert v["analytic_flops"] == v["counted_flops"] == sum(v["components"].values())
    for claim in doc["claims"]:
        assert {"claim", "published", "published_formula", "full_count", "holds", "reasons"} <= set(claim)


def test_variant_filter_and_csv():
    result = invoke(*SMALL, "--variant", "sparse", "--variant", "dense", "--format", "csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert list(rows[0]) == ["variant", "component", "analytic_flops", "counted_flops", "share", "fvcore_macs"]
    assert {r["variant"] for r in rows} == {"sparse", "dense"}
    assert all(r["analytic_flops"] == r["counted_flops"] for r in rows)


def test_markdown_has_every_table():
    result = invoke(*SMALL, "--breakdown", "--format", "markdown")
    assert result.exit_code == 0, result.output
    for title in ("### Published: learned sparsity", "### Totals per variant", "### Breakdown per component",
                  "### Claims"):
        assert title in result.stdout


def test_table_shows_the_published_figures_at_the_defaults():
    result = runner.invoke(app, ["flops", "--variant", "dense"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for figure in ("5,120", "65,536", "2,048", "133,120", "2.50×", "4,199,424", "2,294,784", "45.4%", "4.57×"):
        assert figure in result.stdout


def test_output_is_written_whole_and_creates_folders(tmp_path):
    target = tmp_path / "deep" / "er" / "flops.json"
    result = invoke(*SMALL, "--variant", "dense", "--format", "json", "--output", str(target))
    assert result.exit_code == 0, result.output
    assert json.loads(target.read_text())["config"]["d_model"] == 16
    assert [p.name for p in target.parent.iterdir()] == ["flops.json"]


def test_conventions_table_lists_the_registry():
    result = runner.invoke(app, ["flops", "--conventions", "--format", "markdown"])
    assert result.exit_code == 0
    assert "2 per multiply-accumulate" in result.stdout and "complex: 6 real FLOPs" in result.stdout


@pytest.mark.parametrize(
    "args, named",
    [
        (["--sparsity", "1.5"], "sparsity"),
        (["--n-seq", "10", "--downsample", "4"], "downsample"),
        (["--d-model", "7"], "d_model"),
        (["--d-model", "abc"], "--d-model"),
        (["--variant", "bogus"], "--variant"),
        (["--batch", "0"], "batch"),
        (["--top-k", "9"], "top_k"),
        (["--backend", "triton"], "--backend"),
        (["--interp", "spline"], "--interp"),
    ],
)
def test_bad_values_are_one_line_exit_2(args, named, tmp_path):
    target = tmp_path / "never.json"
    result = runner.invoke(app, ["flops", *args, "--output", str(target)])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bkprof: error:") and named in lines[0]
    assert not target.exists()


def test_an_unwritable_output_is_one_line_exit_2(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = runner.invoke(app, ["flops", *SMALL, "--variant", "dense", "--output", str(blocker / "x.json")])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bkprof: error: cannot write") and str(blocker) in lines[0]
