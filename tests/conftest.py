import os

from hypothesis import settings

# CI machines have 2 cores and no patience for flaky deadlines; hypothesis' example database
# stays local so a fresh clone runs the same search.
settings.register_profile("ci", deadline=None, derandomize=True, print_blob=True)
settings.register_profile("dev", deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")
