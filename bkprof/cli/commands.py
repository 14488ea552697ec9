"""Imports every command module so that each registers itself on the app."""
from bkprof.cli import check_cmd  # noqa: F401
