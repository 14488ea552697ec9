"""What the sparsity loss costs against a forward pass, measured (the source claims under 1 %).

Both are timed by the `bkprof.profile` Timer (perf_counter on the CPU, CUDA events on a GPU;
warm-up, then the median of repeated runs) in train mode with autograd recording, as in a
training step: the layer's forward on a rotating pool of inputs, and the balanced loss
(sparsity loss + weighted sum) on the stats those forwards returned.
"""

from __future__ import annotations

from bkprof.training.losses import DEFAULT_DELTA, balanced_loss
from bkprof.variants.config import LayerConfig


def loss_overhead(variant: str, config: LayerConfig, *, batch: int, kind: str, device: str = "cpu",
                  warmup: int = 3, runs: int = 30, seed: int = 0, delta: float = DEFAULT_DELTA) -> dict:
    import torch

    from bkprof.profile.steps import input_pool
    from bkprof.profile.timing import Timer
    from bkprof.variants import build

    device = torch.device(device)
    model = build(variant, config, seed=seed).to(device).train()
    pool = input_pool((batch, config.n_seq, config.d_model), device, seed)
    timer = Timer(device, warmup, runs)
    forward = timer.measure(lambda x: model(x), pool)
    outputs = [model(x) for x in pool]
    task_losses = [out.square().mean() for out, _ in outputs]

    def loss(i: int):
        return balanced_loss(task_losses[i], outputs[i][1], config.sparsity, kind=kind, delta=delta)

    timed_loss = timer.measure(loss, list(range(len(pool))))
    return {"variant": variant, "loss": kind, "forward_ms": forward.median * 1e3, "loss_ms": timed_loss.median * 1e3,
            "overhead": timed_loss.median / forward.median, "runs": runs, "clock": forward.clock}
