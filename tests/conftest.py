import os

from hypothesis import Phase, settings

# CI machines have 2 cores and no patience for flaky deadlines; hypothesis' example database
# stays local so a fresh clone runs the same search. CI does not shrink: a failing example is
# printed with its reproduce blob, and shrinking cases that each build a dense inverse can outlast
# the CI time limit; shrink it locally.
settings.register_profile("ci", deadline=None, derandomize=True, print_blob=True,
                          phases=[Phase.explicit, Phase.reuse, Phase.generate])
settings.register_profile("dev", deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")
