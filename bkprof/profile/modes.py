"""The profiler's modes; torch-free, so the command line lists them without importing torch."""

MODES = ("forward", "train")
