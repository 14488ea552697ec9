import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from bkprof import __version__
from bkprof.cli import app

runner = CliRunner()


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"bkprof {__version__}"


HEAVY = ["torch", "pandas", "fvcore"]


def _modules_after(argv: list[str], modules: list[str]) -> list[str]:
    """Which of `modules` a fresh interpreter has loaded after running `bkprof ARGV`."""
    code = ("import json, runpy, sys\n"
            f"sys.argv = ['bkprof', *{argv!r}]\n"
            "try:\n    runpy.run_module('bkprof', run_name='__main__')\nexcept SystemExit:\n    pass\n"
            f"print(json.dumps([m for m in {modules!r} if m in sys.modules]), file=sys.stderr)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    return json.loads(result.stderr.strip().splitlines()[-1])


def test_help_loads_no_heavy_library():
    assert _modules_after(["--help"], HEAVY) == []


@pytest.mark.parametrize("command", ["flops", "profile", "sweep", "schedule", "check", "validate"])
def test_command_help_loads_no_heavy_library(command):
    """Each command's --help lists its choices (modes, schedules, loss kinds, variants) without torch."""
    assert _modules_after([command, "--help"], HEAVY) == []


def test_unknown_option_is_one_line_exit_2():
    result = subprocess.run([sys.executable, "-m", "bkprof", "--bogus"], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["bkprof: error: No such option: --bogus"]


def test_flops_never_imports_torch_dynamo():
    """torch._dynamo costs about 2 s of `bkprof flops`'s start-up; nothing it runs is compiled."""
    assert _modules_after(["flops", "--d-model", "8", "--n-seq", "8", "--backward"], ["torch._dynamo"]) == []
