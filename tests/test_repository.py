"""The repository holds sources, docs and reports, never build artefacts."""

import fnmatch
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# what a build or a pip download leaves behind (wheels, eggs, sdists, compiled extensions)
ARTEFACTS = ("*.whl", "*.egg", "*.tar.gz", "dist/*", "*.so", "*.pyc")


def tracked_files() -> list[str]:
    return subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()


def test_no_build_artefact_is_tracked():
    found = [f for f in tracked_files() if any(fnmatch.fnmatch(f, p) for p in ARTEFACTS)]
    assert found == [], f"build artefacts are committed: {found}"


def test_the_artefact_patterns_are_ignored():
    # git check-ignore exits 0 for an ignored path; a wheel dropped anywhere must never be picked up
    for path in ("pytest-9.2.0-py3-none-any.whl", "sub/dir/torch-2.13.0-cp311-linux_x86_64.whl", "dist/x.tar.gz"):
        assert subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT).returncode == 0, path
