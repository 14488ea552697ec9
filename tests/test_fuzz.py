"""Fuzzing: random bad and edge values for the CLI's options and the API's arguments.

Whatever is given, a command ends with exit 0, 1 or 2, prints no traceback, and a command that
fails leaves no file or folder behind; the API raises ValueError or answers.
"""

import math
import os
import tempfile
from pathlib import Path

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from bkprof.cli import app

runner = CliRunner()

INTS = ["0", "-1", "1", "2", "3", "abc", "", "1.5", "1e3", "99999999999999999999", "1099511627777"]
FLOATS = ["nan", "inf", "-inf", "-0.5", "0", "0.5", "0.99", "1.2", "abc", "1e308", "1e-320"]
AXES = ["8", "0", "-8", "8:4:2", "8:32:x2", "8,,16", "abc", "nan", "1e99999999", "8:16:1e-99999999", "0.5:0.7:0.1"]
TEXT = ["bogus", "reference", "vectorized", "", "json", "xml", "cuda", "cpu", "auto"]
PATHS = ["{dir}", "{file}/sub", "{dir}/new.json", "{dir}/deep/er/new", "/dev/null", ""]

# a tiny valid layer first, so that the options drawn below override it and a valid draw stays fast
TINY = ["--d-model", "8", "--n-seq", "8", "--experts", "2", "--batch", "1"]
COMMANDS = {
    "flops": (TINY + ["--variant", "dense"],
              {"--d-model": INTS, "--n-seq": INTS, "--experts": INTS, "--top-k": INTS, "--downsample": INTS,
               "--batch": INTS, "--sparsity": FLOATS, "--backend": TEXT, "--format": TEXT, "--output": PATHS}),
    "schedule": (TINY + ["--steps", "4", "--runs", "0"],
                 {"--initial-sparsity": FLOATS, "--final-sparsity": FLOATS, "--initial-weight": FLOATS,
                  "--final-weight": FLOATS, "--delta": FLOATS, "--steps": INTS, "--warmup": INTS, "--every": INTS,
                  "--stages": INTS, "--runs": ["0", "-1", "99999999999999999999", "100001"], "--output": PATHS}),
    "sweep": (["--n-seq", "8", "--d-model", "8", "--experts", "2", "--variant", "dense"],
              {"--n-seq": AXES, "--d-model": AXES, "--sparsity": AXES, "--batch": AXES, "--downsample": AXES,
               "--runs": INTS, "--warmup": INTS, "--output-dir": PATHS, "--plot": PATHS, "--output": PATHS}),
    "profile": (TINY + ["--device", "cpu", "--variant", "dense", "--mode", "forward", "--runs", "1", "--warmup", "0"],
                {"--runs": ["0", "-1", "99999999999999999999", "100001"], "--warmup": ["-1", "100001", "abc"],
                 "--ops": ["-1", "abc"], "--batch": ["0", "10000000", "abc"], "--d-model": ["7", "1000000"],
                 "--experts": ["0", "1000000"], "--trace": PATHS, "--output": PATHS}),
}


@st.composite
def command_lines(draw):
    command = draw(st.sampled_from(sorted(COMMANDS)))
    base, options = COMMANDS[command]
    chosen = draw(st.lists(st.sampled_from(sorted(options)), min_size=1, max_size=3, unique=True))
    return [command, *base, *[part for option in chosen for part in (option, draw(st.sampled_from(options[option])))]]


def everything_under(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


@settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow])
@given(command_lines())
def test_the_cli_ends_in_0_1_or_2_without_a_traceback_or_leftovers(line):
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        (folder / "dir").mkdir()
        (folder / "file").write_text("a file in the way")
        args = [part.format(dir=folder / "dir", file=folder / "file") for part in line]
        before = everything_under(folder)
        result = runner.invoke(app, args)
        assert result.exit_code in (0, 1, 2), (args, result.output)
        assert result.exception is None or isinstance(result.exception, SystemExit), (args, result.exception)
        assert "Traceback" not in result.output, (args, result.output)
        after = everything_under(folder)
        assert not [p for p in after if ".bkprof-tmp-" in p], (args, after)
        if result.exit_code == 2:
            assert after == before, (args, result.stderr, after - before)
            assert len(result.stderr.strip().splitlines()) == 1, (args, result.stderr)


FIELD_VALUES = st.one_of(st.integers(-3, 2**41), st.floats(allow_nan=True, allow_infinity=True), st.booleans(),
                         st.none(), st.text(max_size=4), st.complex_numbers(allow_nan=True, allow_infinity=True),
                         st.sampled_from(["auto", "reference", "learned", "cubic"]))
FIELDS = ["d_model", "n_seq", "num_experts", "top_k", "sparsity", "downsample", "interp", "z", "tau", "dropout",
          "backend"]


@settings(max_examples=60)
@given(st.dictionaries(st.sampled_from(FIELDS), FIELD_VALUES, max_size=3))
def test_a_layer_config_is_built_or_refused_with_a_value_error(fields):
    from bkprof.variants import LayerConfig

    try:
        config = LayerConfig(**fields)
    except ValueError as error:
        assert "\n" not in str(error)
        return
    assert config.kept >= 1 and config.coarse_n >= 2


def tensors(n: int):
    return st.one_of(
        st.builds(lambda values, dtype: torch.tensor(values, dtype=dtype),
                  st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), min_size=n, max_size=n),
                  st.sampled_from([torch.float32, torch.float64])),
        st.sampled_from([torch.zeros(n, dtype=torch.bool), torch.zeros(n, dtype=torch.complex64),
                         torch.zeros(n, dtype=torch.int32), torch.zeros(n, device="meta"), torch.zeros(max(n, 1)).to_sparse()]),
        st.just([0.0] * n))


@settings(max_examples=60)
@given(st.integers(1, 6).flatmap(lambda n: st.tuples(tensors(n), tensors(n - 1), tensors(n - 1))),
       st.one_of(st.complex_numbers(max_magnitude=1e300), st.floats(), st.text(max_size=2), st.booleans()),
       st.sampled_from(["auto", "reference", "vectorized", "bogus"]))
def test_the_bk_core_answers_or_raises_a_value_error(tensors_, z, backend):
    from bkprof.core import tridiag_resolvent_diagonal

    diag, upper, lower = tensors_
    try:
        g = tridiag_resolvent_diagonal(diag, upper, lower, z, backend=backend)
    except ValueError as error:
        assert "\n" not in str(error)
        return
    assert g.shape == diag.shape and g.is_complex()
    assert all(math.isfinite(v) for v in (diag.abs().max().item(), abs(complex(z))))
