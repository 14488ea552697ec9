"""The grid of runs, the JSON Lines file that records them, and the workers that run them.

A variant takes the values of the settings it has (sparsity for the layers with an importance
mask, downsampling for the multi-scale ones; the product when it has both) and every seed. Each
finished run is written to the runs file at once (the whole file rewritten atomically, so a crash
never leaves half a line); `resume` keeps the runs already there and runs only the others. A run
belongs to a grid when its recipe and corpus match.
"""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import dataclass
from pathlib import Path

from bkprof.report.io import write_atomic
from bkprof.validate.train import Recipe, RunSpec

PROGRESS_EVERY = 10  # steps between progress messages from a worker process


def variant_settings(variant: str) -> tuple[bool, bool]:
    """(has a sparsity setting, has a downsampling setting), from the variant registry: the first when
    its layers have an importance mask, the second when its BK-Core runs at a length set by --downsample."""
    from bkprof.variants import LayerConfig, registry

    spec = registry.get(variant)
    short, long = (spec.bk_core_length(LayerConfig(d_model=8, n_seq=8, downsample=f)) for f in (1, 2))
    return spec.sparsity_mask, short != long


def plan_runs(variants: list[str], sparsities: list[float], downsamples: list[int], seeds: int) -> list[RunSpec]:
    """Every (variant, setting, seed), seeds innermost-last so that one pass over the settings comes first."""
    settings = []
    for variant in variants:
        sparse, multi = variant_settings(variant)
        for s, f in itertools.product(sparsities if sparse else [None], downsamples if multi else [None]):
            settings.append((variant, s, f))
    return [RunSpec(v, s, f, seed) for seed in range(seeds) for v, s, f in settings]


def identity(spec: RunSpec, recipe: Recipe, corpus_sha: str) -> str:
    return json.dumps({**spec.key(), "recipe": recipe.as_dict(), "corpus": corpus_sha}, sort_keys=True)


def grid_identity(recipe: Recipe, corpus_sha: str) -> str:
    return json.dumps({"recipe": recipe.as_dict(), "corpus": corpus_sha}, sort_keys=True)


@dataclass
class RunsFile:
    """The JSON Lines record of finished runs."""

    path: Path
    lines: list[dict]

    @classmethod
    def open(cls, path: str | Path, resume: bool) -> "RunsFile":
        path = Path(path)
        if not path.exists():
            return cls(path, [])
        if not resume:
            raise ValueError(f"--runs-file {path} already exists: pass --resume to continue it, "
                             "or name another file")
        lines = []
        for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if text.strip():
                try:
                    lines.append(json.loads(text))
                except json.JSONDecodeError:
                    raise ValueError(f"--runs-file {path}: line {number} is not JSON") from None
        return cls(path, lines)

    def finished(self) -> set[str]:
        return {r["identity"] for r in self.lines if "identity" in r}

    def of_grid(self, recipe: Recipe, corpus_sha: str) -> list[dict]:
        grid = grid_identity(recipe, corpus_sha)
        return [r for r in self.lines if r.get("grid") == grid]

    def append(self, record: dict) -> None:
        self.lines.append(record)
        write_atomic(self.path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in self.lines))


def run_one(spec: RunSpec, recipe: Recipe, corpus, device_name: str, on_step=None) -> dict:
    """Train and score one run on `device_name`: the measured part of its record."""
    import torch

    from bkprof.profile.memory import PeakMemory
    from bkprof.validate.train import build_model, test_loss, train_model

    device = torch.device(device_name)
    torch.manual_seed(20_000 + spec.seed)  # dropout and the Gumbel noise
    peak = PeakMemory(device)
    peak.start()
    model = build_model(spec, recipe, corpus, device)
    trained = train_model(model, spec, recipe, corpus, device, on_step)
    peak_mib = peak.peak_mib()
    start = time.perf_counter()
    scored = test_loss(model, corpus, recipe, device)
    return {**trained, **scored, "eval_s": time.perf_counter() - start, "peak_mib": peak_mib,
            "tokens_per_s": trained["train_tokens"] / trained["wall_s"], "device": device_name,
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"}


def _worker(device_name: str, recipe: Recipe, corpus_args: tuple, tasks, results) -> None:
    """A worker process: runs specs from `tasks` on its device until it reads None."""
    import torch

    from bkprof.validate.corpus import load_corpus
    from bkprof.validate.runner import limited_corpus

    torch.set_num_threads(1)
    corpus = limited_corpus(load_corpus(corpus_args[0]), corpus_args[1])
    while (spec := tasks.get()) is not None:
        def step(n, spec=spec):
            if n % PROGRESS_EVERY == 0:
                results.put(("step", spec, PROGRESS_EVERY))
        try:
            results.put(("done", spec, run_one(spec, recipe, corpus, device_name, step)))
        except Exception as error:  # one failing run (out of memory, say) must not stop the grid
            results.put(("failed", spec, f"{type(error).__name__}: {error}"))
