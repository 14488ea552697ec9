"""The grid of runs, the JSON Lines file that records them, and the workers that run them.

A variant takes the values of the settings it has (sparsity for the layers with an importance
mask, downsampling for the multi-scale ones; the product when it has both) and every seed. Each
finished run is appended to the runs file at once, as one whole line under a lock of the file
(`bkprof.report.records`), so several processes may share one runs file and a crash never leaves
half a line that the next record is glued to; `resume` reads the runs already there (it never
rewrites the file) and runs only the others. A run belongs to a grid when its recipe, its corpus
and the test tokens it was scored on match.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

from bkprof.report.records import (INTEGER, NUMBER, TEXT, RecordError, append_line, check_fields,
                                   read_lines)
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


def _scored_on(corpus) -> dict:
    """What a run was scored on: the corpus files' hash, and the number of test tokens when --test-tokens
    kept fewer than the whole test text. (The whole text adds nothing, so the identities of runs
    recorded before --test-tokens was part of them, such as the committed H200 runs, still match.)"""
    scored = {"corpus": corpus.fingerprint}
    if corpus.test_whole is not None:
        scored["test_tokens"] = len(corpus.test)
    return scored


def identity(spec: RunSpec, recipe: Recipe, corpus) -> str:
    """Everything that changes a run's numbers: its setting and seed, the recipe, the corpus and test tokens."""
    return json.dumps({**spec.key(), "recipe": recipe.as_dict(), **_scored_on(corpus)}, sort_keys=True)


def grid_identity(recipe: Recipe, corpus) -> str:
    return json.dumps({"recipe": recipe.as_dict(), **_scored_on(corpus)}, sort_keys=True)


# The fields of a runs-file record that --resume and the report read; a record without them is not a run.
RUN_SCHEMA = {
    "identity": (TEXT, False), "grid": (TEXT, False), "variant": (TEXT, False), "seed": (INTEGER, False),
    "sparsity": (NUMBER, True), "downsample": (INTEGER, True), "test_ppl": (NUMBER, False),
    "train_flops_per_token": (NUMBER, False), "blocks_train_flops_per_token": (NUMBER, True),
    "achieved_sparsity": (NUMBER, True), "tokens_per_s": (NUMBER, True), "wall_s": (NUMBER, True),
    "peak_mib": (NUMBER, True),
}


def _run_record(value, where: str) -> dict:
    record = check_fields(value, RUN_SCHEMA, where)
    if record["test_ppl"] <= 0:
        raise RecordError(f"{where}: field 'test_ppl' must be positive, got {record['test_ppl']}")
    return record


_appended: dict[str, int] = {}  # runs this process appended, by runs file: what an interruption keeps


def appended_runs(path: str | Path) -> int:
    """How many runs this process has appended to the runs file at `path`."""
    return _appended.get(str(path), 0)


@dataclass
class RunsFile:
    """The JSON Lines record of finished runs; `lines` holds each run once (a repeated record counts once)."""

    path: Path
    lines: list[dict]

    @classmethod
    def open(cls, path: str | Path, resume: bool) -> "RunsFile":
        """The runs already in `path` (none when it is missing); a bad record is a ValueError naming its line."""
        path = Path(path)
        if not path.exists():
            return cls(path, [])
        if not resume:
            raise ValueError(f"--runs-file {path} already exists: pass --resume to continue it, "
                             "or name another file")
        if path.stat().st_size == 0:
            return cls(path, [])
        unique: dict[str, dict] = {}
        for record in read_lines(path, f"--runs-file {path}", _run_record):
            unique.setdefault(record["identity"], record)
        return cls(path, list(unique.values()))

    def finished(self) -> set[str]:
        return {r["identity"] for r in self.lines if "identity" in r}

    def of_grid(self, recipe: Recipe, corpus) -> list[dict]:
        grid = grid_identity(recipe, corpus)
        return [r for r in self.lines if r.get("grid") == grid]

    def append(self, record: dict) -> None:
        """Append one run to the file, whole, under a lock: other processes' runs are never overwritten."""
        if record.get("identity") in self.finished():
            return  # already there (another process sharing the file cannot be seen here; readers dedupe)
        try:
            append_line(self.path, record, f"--runs-file {self.path}")
        except OSError as error:
            raise ValueError(f"cannot append to --runs-file {self.path}: {error.strerror or error}") from None
        self.lines.append(record)
        _appended[str(self.path)] = _appended.get(str(self.path), 0) + 1


def run_one(spec: RunSpec, recipe: Recipe, corpus, device_name: str, on_step=None, step: str = "auto") -> dict:
    """Train and score one run on `device_name`, each training step run as `step` says: the measured part
    of its record."""
    import torch

    from bkprof.profile.memory import PeakMemory
    from bkprof.validate.train import build_model, test_loss, train_model

    if len(corpus.train) < recipe.n_seq + 2:  # a training sequence is n_seq inputs and their next words
        raise ValueError(f"the training text has {len(corpus.train)} words, fewer than --n-seq {recipe.n_seq} + 2")
    device = torch.device(device_name)
    torch.manual_seed(20_000 + spec.seed)  # dropout and the Gumbel noise
    peak = PeakMemory(device)
    peak.start()
    model = build_model(spec, recipe, corpus, device)
    trained = train_model(model, spec, recipe, corpus, device, on_step, step)
    peak_mib = peak.peak_mib()
    start = time.perf_counter()
    scored = test_loss(model, corpus, recipe, device)
    if not all(math.isfinite(v) for v in (scored["test_nll"], scored["test_ppl"], trained["final_train_loss"])):
        # a diverged run (--lr 1e308, say) is a failed run, never a NaN in the runs file or the report
        raise ValueError(f"training diverged (test perplexity {scored['test_ppl']}, "
                         f"final training loss {trained['final_train_loss']})")
    return {**trained, **scored, "eval_s": time.perf_counter() - start, "peak_mib": peak_mib,
            "tokens_per_s": trained["train_tokens"] / trained["wall_s"], "device": device_name,
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"}


def _worker(device_name: str, recipe: Recipe, corpus_args: tuple, tasks, results, step: str = "auto") -> None:
    """A worker process: runs specs from `tasks` on its device until it reads None.

    It never outlives the parent: Ctrl-C (sent to the whole terminal's process group) is left to the
    parent, which ends its workers, and the kernel sends SIGTERM when the parent dies any other way.
    """
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()
    import torch

    torch.set_num_threads(1)
    corpus = _loaded_corpus(corpus_args)
    while (spec := tasks.get()) is not None:
        def progress(n, spec=spec):
            if n % PROGRESS_EVERY == 0:
                results.put(("step", spec, PROGRESS_EVERY))
        try:
            results.put(("done", spec, run_one(spec, recipe, corpus, device_name, progress, step)))
        except Exception as error:  # one failing run (out of memory, say) must not stop the grid
            results.put(("failed", spec, f"{type(error).__name__}: {error}"))


@functools.lru_cache(maxsize=2)
def _loaded_corpus(corpus_args: tuple):
    """The corpus of (folder, test tokens), loaded once per process (a Ray worker process runs many runs)."""
    from bkprof.validate.corpus import load_corpus
    from bkprof.validate.runner import limited_corpus

    return limited_corpus(load_corpus(corpus_args[0]), corpus_args[1])


def train_on_a_node(spec: RunSpec, recipe: Recipe, corpus_args: tuple, device_name: str, step: str = "auto") -> dict:
    """One run as a cluster task (bkprof.cluster): one torch thread, as in a worker process, so that the
    numbers match the local runs' and runs sharing a node do not fight over its cores."""
    import torch

    torch.set_num_threads(1)
    return run_one(spec, recipe, _loaded_corpus(corpus_args), device_name, step=step)


def _die_with_parent() -> None:
    """SIGTERM this process when its parent dies, even by SIGKILL (Linux prctl PR_SET_PDEATHSIG)."""
    import ctypes
    import multiprocessing
    import os
    import signal

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the parent's terminate() on its way out is all there is
        return
    parent = multiprocessing.parent_process()
    if parent is not None and os.getppid() != parent.pid:  # the parent died before the prctl took hold
        os._exit(1)
