"""Time and memory of each layer variant on the CPU or a CUDA device (`bkprof profile`).

Names load their modules (and torch) on first use: the command line reads `MODES` without torch."""

from bkprof._lazy import lazy_exports

_SOURCES = {
    "COLUMNS": "bkprof.profile.runner", "ProfileResult": "bkprof.profile.runner",
    "ProfileSettings": "bkprof.profile.runner", "profile_variants": "bkprof.profile.runner",
    "MODES": "bkprof.profile.modes", "OPTIMIZER": "bkprof.profile.steps",
    "Measurement": "bkprof.profile.timing", "Timer": "bkprof.profile.timing",
}
__all__ = sorted(_SOURCES)
__getattr__, __dir__ = lazy_exports(__name__, globals(), _SOURCES)
