"""torch.compile'd and data-dependent models: counted as the eager model, the model left as it was.

Compiled models run in a child process with a time limit: a crash there (the SIGSEGV these runs
once ended in) fails the test instead of killing the test session.
"""

import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

from bkprof import count_flops

# LayerNorm(128) + Linear(128, 128) on 2×64 rows of 128, forward:
#   layer norm 5·16384 + 2·128 rows + 2·16384 (affine) = 81920 + 256 + 32768 = 114944
#   linear 2·128·128·128 + 128·128 bias = 4194304 + 16384 = 4210688       total 4325632
EAGER_TOTAL = 4_325_632

CHILD = textwrap.dedent("""
    import json, sys, torch
    from torch import nn
    import bkprof
    from bkprof.flops.model_report import ModelSpec, model_report

    torch.manual_seed(0)
    model = nn.Sequential(nn.LayerNorm(128), nn.Linear(128, 128))
    x = torch.randn(2, 64, 128)
    results = {}
    for fullgraph in (False, True):
        compiled = torch.compile(model, fullgraph=fullgraph)
        results[f"fullgraph={fullgraph}"] = bkprof.count_flops(compiled, x).total()
    # a compiled submodule inside an eager model (not run compiled first: Inductor's compile would
    # take most of this test's time; the crash needed no earlier run)
    outer = nn.Sequential(torch.compile(model, fullgraph=True), nn.ReLU())
    counted = bkprof.count_flops(outer, x)
    results["submodule"] = counted.total()
    results["modules"] = sorted(counted.by_module())
    results["backward"] = bkprof.count_flops(torch.compile(model), x.requires_grad_(), backward=True).total("backward")
    results["cli"] = model_report(ModelSpec("tests.test_count_compiled:compiled_factory", ((2, 64, 128),)))["model"]["flops"]
    print(json.dumps(results))
""")


def compiled_factory():
    return torch.compile(nn.Sequential(nn.LayerNorm(128), nn.Linear(128, 128)))


def test_compiled_modules_count_as_the_eager_model_in_a_child_process():
    done = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"exit {done.returncode} (-11: SIGSEGV)\n{done.stderr[-3000:]}"
    import json

    results = json.loads(done.stdout.strip().splitlines()[-1])
    assert results["fullgraph=False"] == results["fullgraph=True"] == results["cli"] == EAGER_TOTAL
    # the ReLU after it: 1 per element, 2·64·128 = 16384
    assert results["submodule"] == EAGER_TOTAL + 16384
    assert results["modules"] == ["", "0", "0.0", "0.1", "1"]  # no `_orig_mod` in the names
    eager = nn.Sequential(nn.LayerNorm(128), nn.Linear(128, 128))
    assert results["backward"] == count_flops(eager, torch.randn(2, 64, 128, requires_grad=True),
                                              backward=True).total("backward")


class ReadsValues(nn.Module):
    """A forward that reads values three ways: `.item()`, a branch on a sum, a boolean mask."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(32, 32)
        self.bn = nn.BatchNorm1d(32)

    def forward(self, x):
        h = self.bn(self.fc(x))
        if x.sum() > 0:
            h = h * 2
        return h[h > 0].sum() * h.mean().item()


def reads_values():
    torch.manual_seed(0)
    return ReadsValues()


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("backward", [False, True])
def test_counting_on_real_tensors_leaves_the_model_as_it_was(backward):
    model = reads_values().train()
    x = torch.randn(8, 32, requires_grad=True)
    model(x).backward()  # a gradient already accumulated, which the count must not add to
    before, grads = _state(model), {n: p.grad.clone() for n, p in model.named_parameters()}
    input_grad = x.grad.clone()
    counted = count_flops(model, x, backward=backward)
    assert counted.tensors == "real" and "DataDependent" in counted.fallback
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert all(torch.equal(grads[n], p.grad) for n, p in model.named_parameters())
    assert torch.equal(x.grad, input_grad) and model.training
    fresh = reads_values().train()
    counted_fresh = count_flops(fresh, torch.randn(8, 32), tensors="real")
    assert all(p.grad is None for p in fresh.parameters()) and fresh.bn.num_batches_tracked.item() == 0
    assert counted_fresh.total() > 0


def test_the_cli_counts_a_data_dependent_model_on_real_tensors_and_says_so():
    from typer.testing import CliRunner

    from bkprof.cli import app

    result = CliRunner().invoke(app, ["flops", "--model", "tests.test_count_compiled:reads_values",
                                      "--input-shape", "8x32", "--format", "json"])
    assert result.exit_code == 0, result.output
    import json

    m = json.loads(result.stdout)["model"]
    assert m["tensors"] == "real" and "DataDependent" in m["fallback"]
    assert m["flops"] == count_flops(reads_values().eval(), torch.randn(8, 32)).total()
    table = CliRunner().invoke(app, ["flops", "--model", "tests.test_count_compiled:reads_values",
                                     "--input-shape", "8x32"], env={"COLUMNS": "300"})
    assert "Counted on real tensors (it cannot run on fake ones): DataDependent" in " ".join(table.stdout.split())


def test_a_model_failing_on_its_input_is_one_line_without_torchs_log(capfd):
    from typer.testing import CliRunner

    from bkprof.cli import app

    result = CliRunner().invoke(app, ["flops", "--model", "bkprof.examples.models:transformer_layer",
                                      "--input-shape", "2x4x3"])
    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1 and "raised" in result.output
    assert "fake_tensor.py" not in capfd.readouterr().err  # torch's logger writes to the real stderr


class NumpyInside(nn.Module):
    """Half its arithmetic in numpy: invisible to a dispatch mode."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(256, 256)

    def forward(self, x):
        import numpy as np

        a = x.detach().numpy()
        w = np.full((256, 256), 1 / 256, dtype=a.dtype)
        for _ in range(40):  # 40 matmuls of 512×256 by 256×256: about 50 ms of CPU
            a = a @ w
        return self.fc(torch.from_numpy(a))


def test_work_outside_aten_is_named_not_silently_zero():
    with pytest.warns(UserWarning, match="work outside aten"):
        counted = count_flops(NumpyInside(), torch.randn(512, 256))
    # numpy cannot read a fake tensor: the count runs on the real one, and the numpy time is the model's own
    assert counted.tensors == "real" and list(counted.outside_aten) == [("forward", "")]
    assert counted.total() == 2 * 512 * 256 * 256 + 512 * 256  # the linear alone: what aten saw
    assert counted.as_dict()["outside_aten_cpu_seconds"]["forward (model)"] > 0
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an ordinary model of the same size warns nothing
        plain = count_flops(nn.Sequential(*[nn.Linear(256, 256) for _ in range(8)]), torch.randn(512, 256),
                            tensors="real")
    assert not plain.outside_aten
