"""`bkprof validate`'s runs file on the command line: checked before any training, kept when interrupted,
and the runs that failed named one line each."""

from __future__ import annotations

import contextlib
import os
import sys

import typer

from bkprof.cli.errors import BadInput, Interrupted, interruptible


def checked_runs_file(given: str | None, output: str | None, resume: bool) -> str:
    """The runs file's path (--runs-file, else the name derived from --output), checked now: a run
    trains for minutes before its first record is appended, too late to learn the path is bad."""
    from bkprof.report.io import check_output
    from bkprof.validate.runner import default_runs_file

    if given == "":
        raise BadInput("--runs-file '': an empty path; name a file")
    if not given and output and os.path.exists(output) and not os.path.isfile(output):
        raise BadInput(f"--output {output} is not a regular file, so no runs file is named after it; pass --runs-file")
    path = given or default_runs_file(output)
    option = "--runs-file" if given else f"--runs-file (derived from --output {output})" if output else "--runs-file"
    check_output(path, option)
    if os.path.isfile(path) and os.path.getsize(path) and not resume:
        raise BadInput(f"{option} {path} already exists: pass --resume to continue it, or name another file")
    return path


def checked_grid_fits(plan) -> None:
    """Every setting of the grid is a valid layer whose training fits each device, before any run
    (bkprof.sizes.TooLarge, naming the estimate and the limit)."""
    from bkprof.sizes import check_training_fits
    from bkprof.validate.grid import plan_runs

    for recipe in plan.recipes():
        settings = [(spec.variant, spec.layer_config(recipe))
                    for spec in plan_runs(plan.variants, plan.sparsities, plan.downsamples, 1)]
        for device in dict.fromkeys(plan.devices):
            check_training_fits(settings, recipe.batch, recipe.layers, plan.jobs_per_device, device)


@contextlib.contextmanager
def interrupted_keeps(runs_file: str):
    """SIGINT, SIGTERM or SIGHUP end the grid (and its workers) with one line saying what was kept."""
    from bkprof.validate.grid import appended_runs

    try:
        with interruptible():
            yield
    except Interrupted:
        kept = appended_runs(runs_file)
        raise Interrupted(f"interrupted: {kept} run{'s' * (kept != 1)} finished and kept in {runs_file}") from None


def failed_runs(failures: list[dict]) -> None:
    """Exit 1 with one line per failed run (after the report of the others was written)."""
    for failure in failures:
        setting = "".join(f" {k}={failure[k]}" for k in ("sparsity", "downsample") if failure.get(k) is not None)
        print(f"bkprof: error: run {failure['variant']}{setting} seed {failure['seed']} failed: "
              f"{str(failure['error']).splitlines()[0] if failure['error'] else 'no reason given'}", file=sys.stderr)
    if failures:
        raise typer.Exit(1)
