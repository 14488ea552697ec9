"""How the memory estimate (bkprof.sizes, a step run on the meta device) compares with the resident
memory a real CPU step adds, at d=128, N=16384, E=4, batch 8, one thread.

    PYTHONPATH=. python benchmarks/memory_estimate.py

Each variant and mode runs in a fresh process: the rise of its resident-set high-water mark
(ru_maxrss) over the step is the measured figure; the estimate is the step's activation peak
(parameters, optimizer state and the input left out of both).
"""

import resource
import subprocess
import sys


def one(variant: str, mode: str) -> str:
    import torch

    from bkprof.sizes import _meta_step_bytes, run_step
    from bkprof.variants import LayerConfig, build

    torch.set_num_threads(1)
    config, batch, train = LayerConfig(d_model=128, n_seq=16384, num_experts=4), 8, mode == "train"
    model, x = build(variant, config), torch.randn(batch, config.n_seq, config.d_model)
    parameters = sum(p.numel() * p.element_size() for p in model.parameters())
    estimate = _meta_step_bytes(variant, config, batch, train) - parameters * (4 if train else 1) - x.numel() * 4
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    run_step(model, x, train)
    rise = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    return f"| {variant} | {mode} | {rise / 2**20:,.0f} | {estimate / 2**20:,.0f} | {estimate / rise:.2f} |"


if __name__ == "__main__":
    if len(sys.argv) == 3:
        print(one(*sys.argv[1:]))
    else:
        print("| variant | mode | measured RSS rise (MiB) | estimate (MiB) | estimate / measured |")
        print("| --- | --- | ---: | ---: | ---: |")
        for variant in ("dense", "sparse", "multiscale", "combined"):
            for mode in ("forward", "train"):
                line = subprocess.run([sys.executable, __file__, variant, mode], capture_output=True, text=True,
                                      check=True).stdout.strip().splitlines()[-1]
                print(line)
