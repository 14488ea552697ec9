"""The BK-Core: the diagonal of a tridiagonal resolvent, G_ii = [(T - zI)^-1]_ii."""

from bkprof.core.resolvent import BACKENDS, available_backends, resolve_backend, tridiag_resolvent_diagonal
from bkprof.core import triton_backend as _triton_backend  # noqa: F401  registers "triton" (unavailable without triton)

__all__ = ["BACKENDS", "available_backends", "resolve_backend", "tridiag_resolvent_diagonal"]
