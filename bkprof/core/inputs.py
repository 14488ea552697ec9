"""What the BK-Core entry point accepts, and the power-of-two scaling that keeps float32 finite.

(T - zI)^-1 scales as 1/c when T and z are divided by c, so the entry point may divide diag,
upper, lower and z by a power of two c and multiply the result back by 1/c. Powers of two are
exact in binary floating point: the reference recursions give the same bits, the scan (whose 2x2
matrices hold a constant 1 beside scaled entries) rounds differently at the same accuracy. Only
inputs outside 2^-20..2^20 are scaled: entries near 1e19, whose couplings upper*lower overflow
float32, or a shift |z| near 1e20, come back to magnitudes where the recursions stay finite.
"""

from __future__ import annotations

import math

import torch

FLOAT_DTYPES = (torch.float32, torch.float64)
# inputs whose largest magnitude lies within 2^-20 .. 2^20 are used as they are
SAFE_EXPONENT = 20


def checked_inputs(diag, upper, lower, z, check_finite: bool):
    """(diag, upper, lower, z, scale) to run with, the result to be divided by `scale`; ValueError naming
    the argument for anything the backends cannot take. Without `check_finite` (which needs a device
    sync) the inputs are neither checked for NaN/Inf nor scaled (scale 1)."""
    named = {"diag": diag, "upper": upper, "lower": lower}
    for name, value in named.items():
        _check_tensor(name, value, check_finite)
    _check_shapes(diag, named)
    z = _checked_z(z)
    if not check_finite:
        return diag, upper, lower, z, 1.0
    largest = _largest_magnitudes(named)
    for name, magnitude in zip(named, largest):
        if not math.isfinite(magnitude):
            raise ValueError(f"{name} contains non-finite values (NaN or Inf)")
    scale = _power_of_two_scale(max([*largest, abs(z)]))
    if scale == 1.0:
        return diag, upper, lower, z, 1.0
    return diag / scale, upper / scale, lower / scale, z / scale, scale


def _check_tensor(name: str, value, check_finite: bool) -> None:
    if not isinstance(value, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if value.is_meta and check_finite:
        # shapes only (counting FLOPs or memory without allocating) is fine; checking values is not
        raise ValueError(f"{name} is a meta tensor, which has no values to check; give a tensor on the cpu "
                         "or a cuda device, or pass check_finite=False to compute shapes only")
    if value.layout != torch.strided:
        raise ValueError(f"{name} must be a dense (strided) tensor, got layout {value.layout}; call .to_dense() first")
    if value.dtype not in FLOAT_DTYPES:
        kind = "bool" if value.dtype == torch.bool else "complex" if value.is_complex() else str(value.dtype)
        raise ValueError(f"{name} must be float32 or float64 (real), got {kind} ({value.dtype})")


def _check_shapes(diag: torch.Tensor, named: dict) -> None:
    if diag.dim() not in (1, 2):
        raise ValueError(f"diag must have shape (N,) or (B, N), got {tuple(diag.shape)}")
    n = diag.shape[-1]
    if n == 0:
        raise ValueError("diag must hold at least one position (N >= 1), got N = 0")
    expected = (*diag.shape[:-1], n - 1)
    for name in ("upper", "lower"):
        value = named[name]
        if tuple(value.shape) != expected:
            raise ValueError(f"{name} must have shape {expected} to match diag {tuple(diag.shape)}, "
                             f"got {tuple(value.shape)}")
        if value.dtype != diag.dtype:
            raise ValueError(f"{name} has dtype {value.dtype} but diag has {diag.dtype}")
        if value.device != diag.device:
            raise ValueError(f"{name} is on {value.device} but diag is on {diag.device}")


def _checked_z(z) -> complex:
    if isinstance(z, bool) or not isinstance(z, (int, float, complex)):
        raise ValueError(f"z must be a finite number, got {z!r}")
    try:
        value = complex(z)
        finite = math.isfinite(abs(value))
    except OverflowError:  # an int too large for a float, or |z| beyond the largest float
        finite = False
    if not finite:
        raise ValueError(f"z must be a finite number, got {z!r}")
    return value


def _largest_magnitudes(named: dict) -> list[float]:
    """max |x| of each input (NaN or Inf where it holds one), read with one device sync."""
    first = named["diag"]
    maxima = [v.detach().abs().amax() if v.numel() else first.new_zeros(()) for v in named.values()]
    return [float(m) for m in torch.stack(maxima).tolist()]


def _power_of_two_scale(largest: float) -> float:
    if largest == 0.0:
        return 1.0
    exponent = math.frexp(largest)[1]
    if -SAFE_EXPONENT <= exponent <= SAFE_EXPONENT:
        return 1.0
    return math.ldexp(1.0, exponent - 1)  # largest / scale in [1, 2); 2^exponent itself may overflow
