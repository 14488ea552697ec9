"""The configuration of one layer, shared by all four variants (defaults and constraints: docs/model.md)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

INTERPOLATIONS = ("learned", "linear", "cubic")


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
    for name in ("d_model", "n_seq", "num_experts", "downsample"):
        value = getattr(c, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            return f"{name} must be a positive integer, got {value!r}"
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
    return None


def field_names() -> list[str]:
    return [f.name for f in fields(LayerConfig)]


# the registered variant names (a live view of bkprof.variants.registry), kept importable from here
from bkprof.variants.registry import VARIANTS  # noqa: E402
