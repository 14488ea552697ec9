import os

if os.environ.get("PYTEST_XDIST_WORKER"):
    # one torch thread per xdist worker (set before any test imports torch): the workers already use
    # every core, and more threads than cores make each small op wait
    os.environ.setdefault("OMP_NUM_THREADS", "1")

from hypothesis import Phase, settings

# CI machines have 2 cores and no patience for flaky deadlines; hypothesis' example database
# stays local so a fresh clone runs the same search. CI does not shrink: a failing example is
# printed with its reproduce blob, and shrinking cases that each build a dense inverse can outlast
# the CI time limit; shrink it locally.
settings.register_profile("ci", deadline=None, derandomize=True, print_blob=True,
                          phases=[Phase.explicit, Phase.reuse, Phase.generate])
settings.register_profile("dev", deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


def _separate_stderr_on_old_click() -> None:
    """The tests read stdout and stderr apart and `output` as both, as click >= 8.2's CliRunner gives
    them; click 8.1 (what the oldest typer pyproject allows runs on, tested by .ci/run) mixes stderr
    into stdout unless told, and its `output` is stdout alone."""
    import inspect

    import typer.testing

    try:
        import click.testing  # newer typer vendors its own click and installs none
    except ImportError:
        return
    if "mix_stderr" not in inspect.signature(click.testing.CliRunner.__init__).parameters:
        return

    class SeparateStderr(typer.testing.CliRunner):
        def __init__(self, *args, **kwargs):
            kwargs.setdefault("mix_stderr", False)
            super().__init__(*args, **kwargs)

    typer.testing.CliRunner = SeparateStderr
    click.testing.Result.output = property(lambda result: result.stdout + result.stderr)


_separate_stderr_on_old_click()
