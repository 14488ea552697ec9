"""Regenerate the real command output shown in README.md and docs/*.md.

A generated block is a command between two HTML comments; the script runs the command and
rewrites what lies between them:

    <!-- bkprof-output: bkprof flops --variant dense -->
    ```text
    (the output)
    ```
    <!-- /bkprof-output -->

The command is `bkprof ARGS`, optionally followed by `| head -n N` (only the first N lines are
kept) and by comments: `# exits N` for a command that is meant to exit N (default 0), `# measured`
for output that changes from run to run (timings): `--check` then compares its words, not its
numbers; `# needs cuda` for a command that runs only where torch sees a CUDA device (elsewhere it is
skipped and its block left as it is). A block shows the command's stdout, and its stderr too when it is meant to fail.
`<!-- bkprof-output raw: ... -->` inserts the output as Markdown (for `--format markdown`) instead
of in a fence; otherwise the fence keeps the language it has (`text` for a new block).

Commands run as `python -m bkprof ARGS` with this checkout on PYTHONPATH, `COLUMNS=100 NO_COLOR=1
TERM=dumb`, no stdin, in a scratch copy of the checkout (so `--output` paths never write into the
repository, and `bkprof check` finds this project's pyproject.toml). All of them run in one worker
process, so torch is imported once.

    python docs/regenerate.py            # rewrite every stale block
    python docs/regenerate.py --remeasure  # and the `# measured` ones, with fresh numbers
    python docs/regenerate.py --check    # exit 1 if a block is stale or a command fails
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENV = {"COLUMNS": "100", "NO_COLOR": "1", "TERM": "dumb"}
BLOCK = re.compile(
    r"(?P<open><!-- bkprof-output(?P<flags>[^:\n]*): (?P<command>[^\n]*?) -->\n)"
    r"(?P<body>.*?)"
    r"(?P<close><!-- /bkprof-output -->)",
    re.DOTALL,
)
FENCE = re.compile(r"\A```(?P<lang>[\w-]*)\n")
SHOWN_FENCES = ("console", "bash", "sh", "shell")
# what a scratch copy of the checkout leaves out: history, environments, caches, carried trees
NOT_COPIED = shutil.ignore_patterns(".git", ".venv", ".carry", "__pycache__", ".pytest_cache",
                                    ".hypothesis", "*.egg-info", "build", ".whl")


@dataclass(frozen=True)
class Command:
    """One command shown in the docs: `bkprof` arguments and what running it should give."""

    text: str
    argv: tuple[str, ...]
    exits: int = 0
    measured: bool = False
    head: int | None = None
    needs_cuda: bool = False


@dataclass(frozen=True)
class Block:
    """A generated block of one document: where it sits and how it is written."""

    path: Path
    command: Command
    raw: bool
    lang: str
    body: str
    span: tuple[int, int]  # the body's character range in the document


@dataclass(frozen=True)
class Result:
    stdout: str
    stderr: str
    code: int  # SKIPPED: not run (it needs CUDA and there is none)
    seconds: float


SKIPPED = -1


def parse_command(text: str) -> Command:
    """`bkprof ARGS [| head -n N] [# exits N] [# measured]` as a Command; ValueError otherwise."""
    code, _, comment = text.partition("#")
    exits = re.search(r"\bexits\s+(\d+)", comment)
    measured = re.search(r"\bmeasured\b", comment) is not None
    command, _, pipe = code.partition("|")
    if re.search(r"[;&<>`$]", command):
        raise ValueError(f"a shown command is one bkprof command, without shell syntax: {text!r}")
    head = None
    if pipe.strip():
        match = re.fullmatch(r"\s*head\s+-n\s*(\d+)\s*", pipe)
        if not match:
            raise ValueError(f"only `| head -n N` may follow a shown command: {text!r}")
        head = int(match.group(1))
    words = shlex.split(command)
    if not words or words[0] != "bkprof":
        raise ValueError(f"a shown command starts with `bkprof`: {text!r}")
    return Command(text.strip(), tuple(words[1:]), int(exits.group(1)) if exits else 0, measured, head,
                   re.search(r"\bneeds cuda\b", comment) is not None)


def find_blocks(path: Path, text: str | None = None) -> list[Block]:
    text = path.read_text(encoding="utf-8") if text is None else text
    blocks = []
    for match in BLOCK.finditer(text):
        body = match.group("body")
        fence = FENCE.match(body)
        blocks.append(Block(path, parse_command(match.group("command")), "raw" in match.group("flags").split(),
                            fence.group("lang") if fence else "text", body, match.span("body")))
    return blocks


def shown_commands(text: str) -> list[Command]:
    """Commands in ```console/```bash blocks: lines `$ bkprof ...` or `bkprof ...` (`\\` continues)."""
    commands = []
    for fence in re.finditer(r"^```(\w+)\n(.*?)^```", text, re.DOTALL | re.MULTILINE):
        if fence.group(1) not in SHOWN_FENCES:
            continue
        lines = iter(fence.group(2).splitlines())
        for line in lines:
            line = line.strip().removeprefix("$ ")
            while line.endswith("\\"):
                line = line[:-1] + " " + next(lines, "").strip()
            if line.startswith("bkprof ") or line == "bkprof":
                commands.append(parse_command(line))
    return commands


def documents(root: Path = ROOT) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def render(block: Block, result: Result) -> str:
    """The block's new body: stdout (and, for a command meant to fail, stderr after it)."""
    out = result.stdout + (result.stderr if block.command.exits else "")
    if block.command.head is not None:
        out = "".join(out.splitlines(keepends=True)[: block.command.head])
    out = "\n".join(line.rstrip() for line in out.rstrip("\n").splitlines()) + "\n"
    return f"\n{out}\n" if block.raw else f"```{block.lang}\n{out}```\n"


def _tokens(text: str) -> set[str]:
    tokens = re.split(r"[\s│┃┏┓┗┛┡┩┣┫╇╋━─┳┻┼┬┴└┘┌┐├┤═|`;]+", text)
    return {t for t in tokens if t and not re.search(r"\d", t)}


def words(text: str) -> set[str]:
    """The words of an output without its numbers: what a `# measured` block must keep. The mark a
    row gets when other processes kept the machine busy comes and goes with the load, so its words
    are left out too."""
    from bkprof.machine import BUSY_NOTE

    return _tokens(text) - _tokens(BUSY_NOTE.format(others=0))


def is_fresh(block: Block, result: Result) -> bool:
    if result.code == SKIPPED:
        return True
    new = render(block, result)
    return words(new) == words(block.body) if block.command.measured else new == block.body


def failure(command: Command, result: Result) -> str | None:
    if result.code in (command.exits, SKIPPED):
        return None
    last = (result.stderr.strip().splitlines() or [""])[-1]
    return f"`{command.text}` exited {result.code}, expected {command.exits}: {last}"


# ---- running the commands: one worker process, a scratch copy of the checkout as its folder ----

def run_all(commands: list[Command], root: Path = ROOT) -> dict[tuple[str, ...], Result]:
    """Run each distinct command once; keyed by its arguments."""
    unique = list(dict.fromkeys((c.argv, c.needs_cuda) for c in commands))
    if not unique:
        return {}
    with tempfile.TemporaryDirectory(prefix="bkprof-docs-") as scratch:
        cwd = Path(scratch) / "checkout"
        shutil.copytree(root, cwd, ignore=NOT_COPIED)
        env = {**os.environ, **ENV, "PYTHONPATH": str(root)}
        answers = Path(scratch) / "results.json"
        done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", str(answers)], cwd=cwd,
                              env=env, input=json.dumps(unique), capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"the docs worker failed (exit {done.returncode}): {done.stderr[-2000:]}")
        results = json.loads(answers.read_text(encoding="utf-8"))
    return {argv: Result(**r) for (argv, _), r in zip(unique, results)}


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _worker(answers: Path) -> None:
    """Run `bkprof ARGS` for each argument list read from stdin, as `python -m bkprof` would."""
    jobs = json.loads(sys.stdin.read())
    sys.stdin = io.StringIO("")  # no stdin, as in CI
    from bkprof.cli import app

    results = []
    for argv, needs_cuda in jobs:
        if needs_cuda and not _has_cuda():
            results.append({"stdout": "", "stderr": "skipped: no CUDA device", "code": SKIPPED, "seconds": 0.0})
            continue
        out, err, code = io.StringIO(), io.StringIO(), 0
        start = time.perf_counter()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                app(args=list(argv), prog_name="bkprof")
            except SystemExit as stop:
                code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
            except BaseException as error:  # a traceback is a failure to report, not to hide
                import traceback

                err.write(traceback.format_exc())
                code = 1 if not isinstance(error, KeyboardInterrupt) else 130
        results.append({"stdout": out.getvalue(), "stderr": err.getvalue(), "code": code,
                        "seconds": time.perf_counter() - start})
    answers.write_text(json.dumps(results), encoding="utf-8")


def regenerate(paths: list[Path], check: bool, root: Path = ROOT, remeasure: bool = False) -> list[str]:
    """Rewrite (or, with check, only judge) every stale block; the problems found, one line each.

    A `# measured` block whose words still match is kept as it is (its numbers would change at every
    run), unless `remeasure`."""
    blocks = {path: find_blocks(path) for path in paths}
    results = run_all([b.command for bs in blocks.values() for b in bs], root)
    problems = []
    for path, found in blocks.items():
        name = path.relative_to(root) if path.is_relative_to(root) else path
        text = path.read_text(encoding="utf-8")
        for block in found:
            result = results[block.command.argv]
            print(f"{result.seconds:6.1f} s  {name}: {block.command.text}", file=sys.stderr)
            if (problem := failure(block.command, result)) is not None:
                problems.append(f"{name}: {problem}")
            elif result.code == SKIPPED:
                continue
            elif check and not is_fresh(block, result):
                problems.append(f"{name}: stale output of `{block.command.text}` (run python docs/regenerate.py)")
        if not check:
            for block in reversed(found):  # from the end, so the earlier spans stay valid
                result = results[block.command.argv]
                fresh = is_fresh(block, result) and not (remeasure and block.command.measured)
                if failure(block.command, result) is None and result.code != SKIPPED and not fresh:
                    start, end = block.span
                    text = text[:start] + render(block, result) + text[end:]
            path.write_text(text, encoding="utf-8")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a block is stale")
    parser.add_argument("--remeasure", action="store_true", help="rewrite `# measured` blocks too")
    parser.add_argument("--worker", type=Path, metavar="RESULTS", help=argparse.SUPPRESS)
    parser.add_argument("paths", nargs="*", type=Path, help="documents (default: README.md and docs/*.md)")
    args = parser.parse_args()
    if args.worker:
        _worker(args.worker)
        return 0
    paths = [p.resolve() for p in args.paths] or documents()
    problems = regenerate(paths, args.check, remeasure=args.remeasure)
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
