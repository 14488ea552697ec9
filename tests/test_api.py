"""The public API: every name in `bkprof.__all__` resolves, has a docstring with an example that runs,
`import bkprof` stays light, and no library module loads the command line."""

from __future__ import annotations

import doctest
import inspect
import json
import pkgutil
import subprocess
import sys

import pytest

import bkprof

PUBLIC = [name for name in bkprof.__all__ if name != "__version__"]


EXAMPLES = """
import doctest, inspect, json, sys
import bkprof
failed = {}
for name in sys.argv[1:]:
    obj = getattr(bkprof, name)
    target = type(obj) if not (inspect.isclass(obj) or callable(obj)) else obj  # VARIANTS: its class's docstring
    tests = [t for t in doctest.DocTestFinder(recurse=False).find(target, name) if t.examples]
    if not tests:
        failed[name] = "no example in its docstring"
        continue
    out = []
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for test in tests:
        runner.run(test, out=out.append)
    if runner.failures:
        failed[name] = "".join(out)
print(json.dumps(failed))
"""


def test_every_public_name_has_a_runnable_example():
    # one fresh interpreter for all of them (19 interpreters took 20 s): an example's global torch
    # state must not reach the tests that follow (run in the test process, one of them once made
    # test_core's hypothesis search fail and shrink for minutes)
    result = subprocess.run([sys.executable, "-c", EXAMPLES, *PUBLIC], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    failed = json.loads(result.stdout.strip().splitlines()[-1])
    assert failed == {}, "\n".join(f"bkprof.{name}: {why}" for name, why in failed.items())


# variadic by design, not hiding parameters: count_flops passes the model's own inputs on as model(*inputs, **kwargs)
MODEL_INPUTS = {"count_flops"}


def test_signatures_are_real():
    """No public function hides its parameters behind *args/**kwargs."""
    for name in PUBLIC:
        obj = getattr(bkprof, name)
        if inspect.isfunction(obj) and name not in MODEL_INPUTS:
            kinds = {p.kind for p in inspect.signature(obj).parameters.values()}
            assert inspect.Parameter.VAR_POSITIONAL not in kinds, name
    assert list(inspect.signature(bkprof.count_flops).parameters)[:2] == ["model", "inputs"]
    assert "variants" in inspect.signature(bkprof.flops_report).parameters


def test_package_docstring_example_runs():
    assert doctest.testmod(bkprof).failed == 0


def _run(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def test_import_bkprof_is_light():
    code = ("import sys, bkprof; bkprof.LayerConfig; bkprof.VARIANTS; "
            "print(sorted(m for m in ('torch', 'pandas', 'fvcore', 'bkprof.cli') if m in sys.modules))")
    assert _run(code) == "[]"


def test_no_library_module_imports_the_command_line():
    """Import every module of bkprof except bkprof.cli (torch and all): bkprof.cli must not be loaded."""
    import bkprof as package

    names = [m.name for m in pkgutil.walk_packages(package.__path__, "bkprof.")
             if not (m.name == "bkprof.cli" or m.name.startswith("bkprof.cli.") or m.name == "bkprof.__main__")]
    # the walk found the library (a folder without __init__.py would be skipped silently)
    assert {"bkprof.sweep.job", "bkprof.flops.report", "bkprof.validate.runner"} <= set(names)
    code = ("import importlib, sys\n"
            f"for name in {names!r}:\n"
            "    importlib.import_module(name)\n"
            "print([m for m in sys.modules if m == 'bkprof.cli' or m.startswith('bkprof.cli.')])")
    assert _run(code) == "[]"


def test_every_folder_of_the_library_is_a_package():
    from pathlib import Path

    root = Path(bkprof.__file__).parent
    folders = {p.parent for p in root.rglob("*.py")}
    assert [str(f.relative_to(root)) for f in sorted(folders) if not (f / "__init__.py").exists()] == []


def test_the_variants_floor_names_and_loads_nothing_above_it():
    """The registry's lazy targets lie on its own floor, and the built-in variants' closed-form counts
    run without loading a module of bkprof.flops (the floor above)."""
    import re
    from pathlib import Path

    from bkprof.variants import registry

    targets = re.findall(r'lazy\("(bkprof[^"]+)"\)', Path(registry.__file__).read_text(encoding="utf-8"))
    assert targets and all(t.startswith("bkprof.variants.") for t in targets), targets
    code = ("import sys\nfrom bkprof.variants import LayerConfig, registry\n"
            "for name in registry.names():\n    registry.get(name).analytic(LayerConfig(), 1, True, 'cpu')\n"
            "print(sorted(m for m in sys.modules if m.startswith(('bkprof.flops', 'bkprof.cli'))))")
    assert _run(code) == "[]"
