"""torch.compile(fullgraph=True) of a variant's whole train step with a BK-Core backend, checked
against the eager step, and the op counter's count of the BK-Core inside the compiled layer.

    python benchmarks/compile_train_step.py [--device cuda] [--backend triton] [--compiler inductor]
        [--variant dense ...] [--out FILE.json]

Per variant: one train step (forward, loss = mean of the output's squares, backward) eager and with
the forward and loss compiled with fullgraph=True (a graph break is an error; AOTAutograd compiles
the backward graph with it), same seed; the compiled step's gradients
must equal the eager ones to rtol 1e-4; then `count_layer_flops(compiled layer, backward=True)` must
report BK-Core FLOPs (component bk_core) equal to the eager layer's count, forward and backward.
On a CPU (DEVICE=cpu in benchmarks/gpu_kernel.sh) run it with --backend vectorized --compiler aot_eager:
the same plumbing, without the Triton kernels. Exit 1 when any check fails.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bkprof.flops.counter import count_layer_flops  # noqa: E402
from bkprof.variants import VARIANTS, LayerConfig, build  # noqa: E402


def train_loss(module):
    """Forward and loss of `module` on x. Compiled, this is the whole train step's graph: AOTAutograd
    compiles its backward with it (Dynamo does not trace a .backward() call itself)."""
    def loss_of(x):
        out, _ = module(x)
        return out.square().mean()
    return loss_of


def gradients(module, loss_of, x) -> dict[str, torch.Tensor]:
    module.zero_grad(set_to_none=True)
    torch.manual_seed(1)  # same dropout and Gumbel noise for both steps
    loss_of(x).backward()
    return {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}


def check(name: str, device: str, backend: str, compiler: str) -> dict:
    config = LayerConfig(d_model=32, n_seq=128, backend=backend)
    module = build(name, config, seed=0).to(device).train()
    x = torch.randn(2, 128, 32, device=device, generator=torch.Generator(device).manual_seed(0))
    eager = gradients(module, train_loss(module), x)
    started = time.perf_counter()
    compiled = gradients(module, torch.compile(train_loss(module), fullgraph=True, backend=compiler), x)
    compile_s = time.perf_counter() - started
    same = eager.keys() == compiled.keys() and all(
        torch.allclose(compiled[n], eager[n], rtol=1e-4, atol=1e-6) for n in eager)
    counted = {}
    for label, layer in (("eager", module), ("compiled", torch.compile(module, fullgraph=True, backend=compiler))):
        result = count_layer_flops(layer, x, backward=True)
        counted[label] = {phase: result.by_component(phase).get("bk_core", 0) for phase in ("forward", "backward")}
    counts_ok = counted["compiled"] == counted["eager"] and counted["eager"]["forward"] > 0
    return {"variant": name, "gradients_match": same, "bk_core_flops": counted, "counts_match": counts_ok,
            "first_compiled_step_s": round(compile_s, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--backend", default="triton")
    parser.add_argument("--compiler", default="inductor", help="torch.compile backend (aot_eager on a CPU)")
    parser.add_argument("--variant", action="append", choices=list(VARIANTS), help="default: dense")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    results = [check(name, args.device, args.backend, args.compiler) for name in args.variant or ["dense"]]
    text = json.dumps({"device": args.device, "backend": args.backend, "compiler": args.compiler,
                       "torch": torch.__version__, "results": results}, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    sys.exit(0 if all(r["gradients_match"] and r["counts_match"] for r in results) else 1)


if __name__ == "__main__":
    main()
