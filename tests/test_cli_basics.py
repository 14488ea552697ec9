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


def test_help_loads_no_heavy_library():
    code = "import sys, bkprof.cli; print(sorted(m for m in ('torch', 'pandas', 'fvcore') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("command", ["flops", "profile", "sweep", "schedule", "check", "validate"])
def test_command_help_loads_no_heavy_library(command):
    """Each command's --help lists its choices (modes, schedules, loss kinds, variants) without torch."""
    code = ("import sys, runpy\n"
            f"sys.argv = ['bkprof', {command!r}, '--help']\n"
            "try:\n    runpy.run_module('bkprof', run_name='__main__')\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('torch', 'pandas', 'fvcore') if m in sys.modules), file=sys.stderr)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stderr.strip().splitlines()[-1] == "[]", result.stderr


def test_unknown_option_is_one_line_exit_2():
    result = subprocess.run([sys.executable, "-m", "bkprof", "--bogus"], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["bkprof: error: No such option: --bogus"]


def test_flops_never_imports_torch_dynamo():
    """torch._dynamo costs about 2 s of `bkprof flops`'s start-up; nothing it runs is compiled."""
    code = ("import sys, runpy\nsys.argv = ['bkprof', 'flops', '--d-model', '8', '--n-seq', '8', '--backward']\n"
            "try:\n    runpy.run_module('bkprof', run_name='__main__')\nexcept SystemExit:\n    pass\n"
            "print('torch._dynamo' in sys.modules, file=sys.stderr)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stderr.strip().splitlines()[-1] == "False", result.stderr
