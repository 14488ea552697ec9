"""How each layer setting is named and described where a person sets it (command-line options, sweep axes).

The defaults and the checks are `LayerConfig`'s; this table only says which option sets which field
and what it means, once for every command. `batch` is not a layer field but every command takes it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Field:
    option: str
    help: str


FIELDS: dict[str, Field] = {
    "d_model": Field("--d-model", "Model width d (even)."),
    "n_seq": Field("--n-seq", "Sequence length N (divisible by --downsample)."),
    "num_experts": Field("--experts", "Number of MoE experts E."),
    "top_k": Field("--top-k", "Experts per token (1..E)."),
    "sparsity": Field("--sparsity", "Fraction of G_ii positions interpolated, in [0, 1)."),
    "downsample": Field("--downsample", "Multi-scale factor f: N -> N/f -> N."),
    "interp": Field("--interp", "How skipped G_ii are filled."),
    "backend": Field("--backend", "BK-Core backend: auto (the fastest available), reference, vectorized, or triton (CUDA)."),
    "batch": Field("--batch", "Sequences per batch (counts are per sequence x batch)."),
}
