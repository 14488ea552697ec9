"""The README and docs/ show real output: every command they show runs, and every block is fresh.

Commands come from the generated blocks (`<!-- bkprof-output: ... -->`, see docs/regenerate.py) and
from ```console/```bash blocks whose lines start with `bkprof`. They run once, together, in one
worker process (torch imported once), in a scratch copy of the checkout.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("regenerate", ROOT / "docs" / "regenerate.py")
regenerate = sys.modules.setdefault("regenerate", importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(regenerate)

README_MAX_LINES = 200
# the shown commands run once per worker that needs them: keep this module on one
pytestmark = pytest.mark.xdist_group("docs")


def _shown():
    """(document, blocks, console commands) for README.md and docs/*.md."""
    return [(path, regenerate.find_blocks(path), regenerate.shown_commands(path.read_text(encoding="utf-8")))
            for path in regenerate.documents(ROOT)]


@pytest.fixture(scope="module")
def shown():
    documents = _shown()
    commands = [b.command for _, blocks, _ in documents for b in blocks]
    commands += [c for _, _, console in documents for c in console]
    return documents, regenerate.run_all(commands, ROOT)


def test_readme_is_at_most_200_lines():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move detail into docs/"


def test_every_shown_command_exits_as_marked(shown):
    documents, results = shown
    failures = []
    for path, blocks, console in documents:
        for command in [b.command for b in blocks] + console:
            if (problem := regenerate.failure(command, results[command.argv])) is not None:
                failures.append(f"{path.name}: {problem}")
    assert not failures, "\n".join(failures)


def test_every_generated_block_is_fresh(shown):
    documents, results = shown
    stale = [f"{path.name}: {b.command.text}" for path, blocks, _ in documents for b in blocks
             if regenerate.failure(b.command, results[b.command.argv]) is None
             and not regenerate.is_fresh(b, results[b.command.argv])]
    assert not stale, "stale output (run `python docs/regenerate.py`):\n" + "\n".join(stale)


def test_relative_links_lead_to_files():
    missing = []
    for path in regenerate.documents(ROOT):
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", path.read_text(encoding="utf-8")):
            if "://" not in target and not (path.parent / target).exists():
                missing.append(f"{path.relative_to(ROOT)}: {target}")
    assert not missing, "\n".join(missing)


# ---- the script itself, on documents made up here ----

_DOC = """# a page

<!-- bkprof-output: bkprof --version -->
```text
bkprof 0.0.0-stale
```
<!-- /bkprof-output -->

<!-- bkprof-output: bkprof --bogus  # exits 2 -->
<!-- /bkprof-output -->
"""


def test_regenerate_rewrites_a_stale_block_and_check_then_passes(tmp_path):
    from bkprof import __version__

    page = tmp_path / "page.md"
    page.write_text(_DOC, encoding="utf-8")
    assert regenerate.regenerate([page], check=True) == [
        f"{page}: stale output of `bkprof --version` (run python docs/regenerate.py)",
        f"{page}: stale output of `bkprof --bogus  # exits 2` (run python docs/regenerate.py)",
    ]
    assert regenerate.regenerate([page], check=False) == []
    text = page.read_text(encoding="utf-8")
    # expected bodies written by hand: the version line, and the one-line error (stderr) of a bad option
    assert f"```text\nbkprof {__version__}\n```\n" in text
    assert "```text\nbkprof: error: No such option: --bogus\n```\n" in text
    assert regenerate.regenerate([page], check=True) == []


def test_a_command_that_exits_otherwise_than_marked_is_reported(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("<!-- bkprof-output: bkprof --bogus -->\n<!-- /bkprof-output -->\n", encoding="utf-8")
    problems = regenerate.regenerate([page], check=False)
    assert len(problems) == 1 and "exited 2, expected 0" in problems[0]
    assert page.read_text(encoding="utf-8").count("\n") == 2  # a failing command leaves its block alone


def test_measured_blocks_compare_words_not_numbers():
    block = regenerate.find_blocks(Path("x.md"), "<!-- bkprof-output: bkprof profile  # measured -->\n"
                                                 "```text\n│ dense │ 1.319 ms │\n```\n<!-- /bkprof-output -->")[0]
    same_words = regenerate.Result("│ dense  │ 12.5 ms │\n", "", 0, 0.0)
    other_words = regenerate.Result("│ sparse │ 1.319 ms │\n", "", 0, 0.0)
    assert regenerate.is_fresh(block, same_words)
    assert not regenerate.is_fresh(block, other_words)


def test_console_commands_are_found_with_continuations_and_marks():
    text = ("```console\n$ bkprof flops \\\n    --variant dense\n$ echo hi\n```\n"
            "```bash\nbkprof check --thresholds t.toml  # exits 1\n```\n```text\nbkprof flops\n```\n")
    found = regenerate.shown_commands(text)
    assert [(c.argv, c.exits) for c in found] == [(("flops", "--variant", "dense"), 0),
                                                  (("check", "--thresholds", "t.toml"), 1)]


@pytest.mark.parametrize("text", ["python -m bkprof flops", "bkprof flops | grep x", "bkprof 'unclosed"])
def test_a_command_the_script_cannot_run_is_refused(text):
    with pytest.raises(ValueError):
        regenerate.parse_command(text)


def test_readme_test_command_is_what_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    install = next(line for line in ci if " pip install " in line)
    tests = next(line for line in ci if "pytest" in line and not line.lstrip().startswith("#"))
    packages = install.split(" pip install ", 1)[1].replace("-q ", "")  # the packages CI installs
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    command = next(line for line in readme.splitlines() if "pytest" in line and "pip install" in line)
    assert f"pip install {packages}" in command and command.endswith(tests.strip()), (command, install, tests)


def test_architecture_names_every_package_and_top_level_module():
    """docs/architecture.md describes the house as it is: each package (and each module at the top of
    bkprof/) is named there, so a new one cannot arrive unexplained."""
    root = Path(__file__).resolve().parent.parent
    text = (root / "docs" / "architecture.md").read_text(encoding="utf-8")
    package = root / "bkprof"
    parts = [f"bkprof/{p.name}/" for p in package.iterdir() if p.is_dir() and not p.name.startswith("__")]
    parts += [f"bkprof/{p.name}" for p in package.glob("*.py") if p.name not in ("__main__.py",)]
    assert [p for p in sorted(parts) + ["benchmarks/"] if p not in text] == []


# a measured block's median step time against a fresh run of its command: within this factor either
# way on an idle machine (3 timed runs of a millisecond-long step swing by tens of percent, not 3x;
# the README once showed 1,111.962 ms for a 7.5 ms step, measured while the machine was busy)
MEASURED_TOLERANCE = 3.0


def _median_and_note(markdown: str) -> tuple[float, str]:
    """The first row's `median ms` and `note` of a profile results table in Markdown."""
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")]
            for line in markdown.splitlines() if line.startswith("|")]
    header, first = rows[0], rows[2]
    return float(first[header.index("median ms")].replace(",", "")), first[header.index("note")]


def test_the_readme_profile_time_matches_a_fresh_measurement(shown):
    documents, results = shown
    block = next(b for path, blocks, _ in documents if path.name == "README.md" for b in blocks
                 if b.command.argv[0] == "profile")
    documented, documented_note = _median_and_note(block.body)
    fresh, fresh_note = _median_and_note(results[block.command.argv].stdout)
    assert "busy" not in documented_note, "the README's time was measured on a busy machine: regenerate it on an idle one"
    if "busy" in fresh_note:
        pytest.skip(f"this machine is busy now ({fresh_note}): a fresh timing says nothing about the README's")
    assert 1 / MEASURED_TOLERANCE <= fresh / documented <= MEASURED_TOLERANCE, (documented, fresh)
