"""The importance masks of the sparse variant for a few sequences (the source demo's mask picture)."""

from __future__ import annotations

import torch

from bkprof.variants import LayerConfig, build


def importance_masks(config: LayerConfig, sequences: int = 4, seed: int = 0) -> tuple[torch.Tensor, dict]:
    """Scores (sequences, N) and the inference (top-k) and training (Gumbel-sigmoid) masks on the same inputs.

    The layer has the untrained weights drawn from `seed`; the inputs are standard normal.
    """
    model = build("sparse", config, seed=seed)
    x = torch.randn(sequences, config.n_seq, config.d_model, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        _, inference = model.eval()(x)
        torch.manual_seed(seed)  # the Gumbel noise
        _, training = model.train()(x)
    return inference["importance"], {
        f"inference mask (top {config.kept} of {config.n_seq})": inference["mask"],
        f"training mask (Gumbel-sigmoid, tau={config.tau})": training["mask"],
    }
