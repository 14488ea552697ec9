"""One set of options: the same names, metavars, defaults and error wording in every command."""

from __future__ import annotations

import pytest
import typer.main
from typer.testing import CliRunner

from bkprof.cli import app
from bkprof.report.model import FORMATS
from bkprof.variants import LayerConfig

runner = CliRunner()
COMMANDS = ("flops", "profile", "sweep", "schedule", "check")
LAYER_COMMANDS = ("flops", "profile", "schedule")


def _params(command: str) -> dict:
    group = typer.main.get_command(app)
    return {p.opts[0]: p for p in group.commands[command].params}


@pytest.mark.parametrize("command", COMMANDS)
def test_help_shows_no_value_on_flags(command):
    result = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "<bool>" not in result.stdout and "--help" in result.stdout
    assert "One of: table, json, csv, markdown." in result.stdout  # --format's choices, from the library's FORMATS


@pytest.mark.parametrize("command", LAYER_COMMANDS)
def test_layer_option_defaults_are_layer_config_defaults(command):
    params, defaults = _params(command), LayerConfig()
    for option, field in (("--d-model", "d_model"), ("--n-seq", "n_seq"), ("--experts", "num_experts"),
                          ("--top-k", "top_k"), ("--downsample", "downsample"), ("--interp", "interp"),
                          ("--backend", "backend")):
        assert params[option].default == getattr(defaults, field), (command, option)
    if command != "schedule":  # schedule moves the sparsity along its schedule instead
        assert params["--sparsity"].default == defaults.sparsity


def _error(args: list[str]) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize("command", COMMANDS)
def test_a_bad_format_is_worded_alike(command):
    assert _error([command, "--format", "xml"]) == \
        f"bkprof: error: --format 'xml': must be one of {', '.join(FORMATS)}"


@pytest.mark.parametrize("args, message", [
    (["--warmup", "-1"], "--warmup must be a non-negative integer, got -1"),
    (["--runs", "0"], "--runs must be a positive integer, got 0"),
    (["--batch", "0"], "--batch must be a positive integer, got 0"),
    (["--d-model", "abc"], "--d-model 'abc': not an integer"),
])
@pytest.mark.parametrize("command", ["profile", "sweep", "schedule"])
def test_one_check_one_wording(command, args, message):
    if command == "schedule" and args[0] == "--runs":
        args, message = ["--runs", "-1"], "--runs must be a non-negative integer, got -1"  # 0 skips the timing there
    if command == "sweep" and args[0] in ("--batch", "--d-model"):
        pytest.skip("sweep axes take value lists, checked by bkprof.sweep.axes")
    assert _error([command, *args]) == f"bkprof: error: {message}"


@pytest.mark.parametrize("option", ["--thresholds", "--profile"])
def test_a_folder_where_a_file_is_read_says_so(option, tmp_path):
    assert _error(["check", option, str(tmp_path)]) == \
        f"bkprof: error: cannot read {option} {tmp_path}: is a folder, not a file"
