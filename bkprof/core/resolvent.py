"""Public entry point of the BK-Core: validation, backend choice, dtype handling."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from bkprof.core import adjoint, sweeps
from bkprof.core.inputs import checked_inputs


@dataclass(frozen=True)
class Backend:
    """A way to compute G_ii; `available(device)` says whether it can run there.

    `run(diag, k, z)` takes the real diagonal (B, N), the real couplings k = upper * lower (B, N-1)
    and the complex shift z, and returns the complex G_ii (B, N) of diag's precision.
    `kernel_flops(rows, n)`, for a backend that runs as one opaque custom op, is the real FLOPs
    that op executes (the op counter and the analytic model both use it); None for backends
    made of aten ops, which the op counter sees one by one. `backward_flops(rows, n)` likewise for
    a backend whose backward (gradient for diag) runs as one opaque custom op.
    """

    name: str
    run: Callable[[torch.Tensor, torch.Tensor, complex], torch.Tensor]
    available: Callable[[torch.device], bool]
    description: str
    kernel_flops: Callable[[int, int], int] | None = None
    backward_flops: Callable[[int, int], int] | None = None


BACKENDS: dict[str, Backend] = {}


def register_backend(backend: Backend) -> None:
    BACKENDS[backend.name] = backend


register_backend(Backend("reference", sweeps.reference_sweeps, lambda device: True,
                         "sequential sweeps, one position per step (O(N) launches)"))
register_backend(Backend("vectorized", adjoint.closed_form_sweeps, lambda device: True,
                         "log-depth scan of normalised 2x2 Moebius matrices, closed-form backward (pure PyTorch)"))

# Preferred first: `auto` takes the first of these that is available on the input's device.
AUTO_ORDER = ["triton", "vectorized"]


def available_backends(device: torch.device | str = "cpu") -> list[str]:
    device = torch.device(device)
    return [name for name, backend in BACKENDS.items() if backend.available(device)]


def resolve_backend(name: str, device: torch.device | str = "cpu") -> Backend:
    """The backend `name` stands for on `device`; ValueError when it is unknown or cannot run there."""
    device = torch.device(device)
    if name == "auto":
        for candidate in AUTO_ORDER:
            if candidate in BACKENDS and BACKENDS[candidate].available(device):
                return BACKENDS[candidate]
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {['auto', *BACKENDS]}, got {name!r}")
    if not BACKENDS[name].available(device):
        raise ValueError(f"backend {name!r} is not available on device {device.type!r}")
    return BACKENDS[name]


def tridiag_resolvent_diagonal(
    diag: torch.Tensor,
    upper: torch.Tensor,
    lower: torch.Tensor,
    z: complex = 1j,
    *,
    backend: str = "auto",
    check_finite: bool = True,
) -> torch.Tensor:
    """The diagonal of (T - zI)^-1 for the tridiagonal T = tridiag(lower, diag, upper).

    diag has shape (N,) or (B, N); upper (super-diagonal) and lower (sub-diagonal) have shape
    (N-1,) or (B, N-1). Returns complex64 for float32 input and complex128 for float64, with the
    shape of diag. Inputs of very large or very small magnitude are scaled by a power of two first
    (see bkprof.core.inputs). `check_finite=False` skips the finiteness check and the scaling (both
    need a device sync on GPU).

    >>> import torch
    >>> from bkprof import tridiag_resolvent_diagonal
    >>> n = 5
    >>> diag, off = torch.full((n,), -2.0, dtype=torch.float64), torch.ones(n - 1, dtype=torch.float64)
    >>> g = tridiag_resolvent_diagonal(diag, off, off, 1j)
    >>> t = torch.diag(diag) + torch.diag(off, 1) + torch.diag(off, -1)
    >>> exact = torch.linalg.inv(t.to(torch.complex128) - 1j * torch.eye(n)).diagonal()
    >>> g.dtype, torch.allclose(g, exact)
    (torch.complex128, True)
    """
    diag, upper, lower, z, scale = checked_inputs(diag, upper, lower, z, check_finite)
    unbatched = diag.dim() == 1
    if unbatched:
        diag, upper, lower = diag[None], upper[None], lower[None]
    g = resolve_backend(backend, diag.device).run(diag, upper * lower, z)
    if scale != 1.0:
        g = g / scale
    return g[0] if unbatched else g
