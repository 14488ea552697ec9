"""bkprof: FLOPs and profiling for BK-Core sequence layers (ResNet-BK)."""

__version__ = "0.1.0"
