"""Time and memory of each layer variant on the CPU or a CUDA device (`bkprof profile`)."""

from bkprof.profile.runner import COLUMNS, ProfileResult, ProfileSettings, profile_variants
from bkprof.profile.steps import MODES, OPTIMIZER
from bkprof.profile.timing import Measurement, Timer

__all__ = ["COLUMNS", "MODES", "OPTIMIZER", "Measurement", "ProfileResult", "ProfileSettings", "Timer",
           "profile_variants"]
