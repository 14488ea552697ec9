"""The configuration of one layer, shared by all four variants (defaults and constraints: docs/model.md)."""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace

INTERPOLATIONS = ("learned", "linear", "cubic")
# A sanity bound on every size and count (2^40, about 1.1e12): far beyond any layer a machine can
# hold, so it only catches typos and overflowing arithmetic, never a real configuration.
MAX_SIZE = 2**40


@dataclass(frozen=True)
class LayerConfig:
    """One layer's configuration, shared by every variant; it checks itself (a ValueError names the field).

    >>> from bkprof import LayerConfig
    >>> config = LayerConfig(n_seq=1024, sparsity=0.5)
    >>> config.d_model, config.kept, config.coarse_n     # default width; positions kept; N/f
    (128, 512, 512)
    >>> LayerConfig(sparsity=1.2)
    Traceback (most recent call last):
    ...
    ValueError: sparsity must be in [0, 1), got 1.2
    """

    d_model: int = 128
    n_seq: int = 256
    num_experts: int = 4
    top_k: int = 1
    sparsity: float = 0.6
    downsample: int = 2
    interp: str = "learned"
    z: complex = 1j
    tau: float = 1.0
    dropout: float = 0.1
    backend: str = "auto"

    def __post_init__(self) -> None:
        problem = first_problem(self)
        if problem:
            raise ValueError(problem)

    @property
    def kept(self) -> int:
        """Positions the inference mask keeps at length n_seq: int(N * (1 - sparsity))."""
        return kept_positions(self.n_seq, self.sparsity)

    @property
    def coarse_n(self) -> int:
        return self.n_seq // self.downsample

    def inner_config(self) -> "LayerConfig":
        """The config of the layer that runs at length N/f inside the multi-scale variants."""
        return replace(self, n_seq=self.coarse_n, downsample=1)

    def with_(self, **changes) -> "LayerConfig":
        return replace(self, **changes)

    def as_dict(self) -> dict:
        return {k: (str(v) if isinstance(v, complex) else v) for k, v in asdict(self).items()}


def config_header(config: LayerConfig, **run) -> dict:
    """The config block of every report's JSON document: each LayerConfig field (z as text), then the
    run's own settings (batch, backward, ...), so every report names its configuration the same way.

    >>> from bkprof import LayerConfig, config_header
    >>> config_header(LayerConfig(), batch=1)["n_seq"], config_header(LayerConfig(), batch=1)["batch"]
    (256, 1)
    """
    return {**config.as_dict(), **run}


def kept_positions(n: int, sparsity: float) -> int:
    return int(n * (1 - sparsity))


def first_problem(c: LayerConfig) -> str | None:
    """The first invalid field of `c`, as a one-line message naming it, or None."""
    return _wrong_type(c) or _out_of_range(c)


def _is_integer(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and _finite(value)


def _finite(value) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


def _shown(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:20]}...({len(text)} characters)"


def _wrong_type(c: LayerConfig) -> str | None:
    for name in ("d_model", "n_seq", "num_experts", "top_k", "downsample"):
        value = getattr(c, name)
        if not _is_integer(value) or value < 1:
            return f"{name} must be a positive integer, got {_shown(value)}"
        if value > MAX_SIZE:
            return f"{name} must be at most 2^{MAX_SIZE.bit_length() - 1} = {MAX_SIZE:,}, got {_shown(value)}"
    for name in ("sparsity", "tau", "dropout"):
        value = getattr(c, name)
        if not _is_real(value):
            return f"{name} must be a finite real number, got {_shown(value)}"
    if isinstance(c.z, bool) or not isinstance(c.z, numbers.Complex) or not _finite_complex(c.z):
        return f"z must be a finite (complex) number, got {_shown(c.z)}"
    for name in ("interp", "backend"):
        value = getattr(c, name)
        if not isinstance(value, str):
            return f"{name} must be a string, got {_shown(value)}"
    return None


def _finite_complex(value) -> bool:
    try:
        return math.isfinite(abs(complex(value)))
    except OverflowError:
        return False


def _out_of_range(c: LayerConfig) -> str | None:
    if c.d_model % 2:
        return f"d_model must be even (the importance networks use d_model/2), got {c.d_model}"
    if not 1 <= c.top_k <= c.num_experts:
        return f"top_k must be between 1 and num_experts={c.num_experts}, got {c.top_k}"
    if not 0 <= c.sparsity < 1:
        return f"sparsity must be in [0, 1), got {c.sparsity}"
    if c.n_seq % c.downsample:
        return f"n_seq={c.n_seq} must be divisible by downsample={c.downsample}"
    if c.n_seq // c.downsample < 2:
        return f"n_seq/downsample must be at least 2, got {c.n_seq}/{c.downsample}"
    for n in (c.n_seq, c.n_seq // c.downsample):
        if kept_positions(n, c.sparsity) < 1:
            return f"sparsity={c.sparsity} keeps no position at length {n} (int({n}*(1-{c.sparsity})) = 0)"
    if c.interp not in INTERPOLATIONS:
        return f"interp must be one of {', '.join(INTERPOLATIONS)}, got {c.interp!r}"
    if not c.tau > 0:
        return f"tau must be positive, got {c.tau}"
    if not 0 <= c.dropout < 1:
        return f"dropout must be in [0, 1), got {c.dropout}"
    return _unknown_backend(c.backend)


def _unknown_backend(name: str) -> str | None:
    if name == "auto":
        return None  # the default: checked without importing the backends (and torch)
    from bkprof.core import BACKENDS

    if name not in BACKENDS:
        return f"backend must be one of auto, {', '.join(BACKENDS)}, got {name!r}"
    return None


def as_config(config) -> LayerConfig:
    """`config` as a LayerConfig: one already, a mapping of its fields, or None for the defaults."""
    if config is None:
        return LayerConfig()
    if isinstance(config, LayerConfig):
        return config
    if isinstance(config, Mapping):
        unknown = sorted(str(k) for k in config if k not in field_names())
        if unknown:
            raise ValueError(f"config has no field {unknown[0]!r} (fields: {', '.join(field_names())})")
        return LayerConfig(**config)
    raise ValueError(f"config must be a LayerConfig or a mapping of its fields, got {type(config).__name__}")


def check_input(x, c: LayerConfig, layer: str) -> None:
    """ValueError naming the layer's config and the input's shape when `x` is not a (B, n_seq, d_model) float tensor."""
    expected = f"(B, {c.n_seq}, {c.d_model})"
    where = f"{layer} built for n_seq={c.n_seq}, d_model={c.d_model}"
    shape = getattr(x, "shape", None)
    if shape is None or not hasattr(x, "is_floating_point"):
        raise ValueError(f"{where}: the input must be a tensor of shape {expected}, got {type(x).__name__}")
    if len(shape) != 3 or tuple(shape[1:]) != (c.n_seq, c.d_model):
        raise ValueError(f"{where}: the input must have shape {expected}, got {tuple(shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{where}: the input must be a floating-point tensor, got {x.dtype}")


def field_names() -> list[str]:
    return [f.name for f in fields(LayerConfig)]


# the registered variant names (a live view of bkprof.variants.registry), kept importable from here
from bkprof.variants.registry import VARIANTS  # noqa: E402
