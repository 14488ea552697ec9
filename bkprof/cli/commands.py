"""Imports every command module so that each registers itself on the app."""
from bkprof.cli import check_cmd  # noqa: F401
from bkprof.cli import profile_cmd  # noqa: F401
from bkprof.cli import flops_cmd  # noqa: F401
from bkprof.cli import sweep_cmd  # noqa: F401
from bkprof.cli import schedule_cmd  # noqa: F401
from bkprof.cli import validate_cmd  # noqa: F401
from bkprof.cli import report_cmd  # noqa: F401
