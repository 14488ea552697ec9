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
