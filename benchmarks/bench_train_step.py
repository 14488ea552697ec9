"""Training tokens/s of validate's train step (bkprof.validate.step) per variant and step mode, and with
several processes training at once.

    PYTHONPATH=$PWD python3 benchmarks/bench_train_step.py OUT.json [--device cuda] [--modes eager,graph,compiled]
        [--variants dense,sparse,...] [--processes 1] [--d-model 128 --n-seq 256 --layers 4 --batch 64]
        [--steps 30 --blocks 5] [--backend auto]

One process per (variant, mode): each builds the model from seed 0, prepares its step (graph: warm-up and
capture; compiled: torch.compile, reduce-overhead on CUDA) while the others prepare too; once all are
ready (a barrier), they time in turn (a lock: one process on the GPU at a time, and none compiling). A timed block
is `--steps` real training steps (the host draws each batch, copies it in, the step runs), bracketed by
CUDA events (perf_counter on the CPU); tokens/s = steps x batch x n_seq / block time, `--blocks` blocks:
median, p10, p90. Each process also records the task loss of its first steps (warm-up included: every
mode trains from the same seed on the same batches), so eager, graph and compiled can be compared step
by step. With `--processes P` (> 1) P processes of the first variant and mode train at once for the
same blocks (the barrier starts them together): the sum of their tokens/s is what one GPU gives P
concurrent runs. A process that fails records its error instead of a measurement.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
import traceback
from pathlib import Path

SPECS = {"dense": (None, None), "sparse": (0.6, None), "multiscale": (None, 2), "combined": (0.6, 2),
         "transformer": (None, None)}
LOSS_STEPS = 20   # per-step task losses kept for the eager / graph / compiled comparison
READY_TIMEOUT_S = 150  # the longest a process waits for the others to prepare (compile) before timing


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("output")
    p.add_argument("--device", default="cuda")
    p.add_argument("--modes", default="eager,graph,compiled")
    p.add_argument("--variants", default=",".join(SPECS))
    p.add_argument("--processes", type=int, default=1)
    p.add_argument("--d-model", type=int, default=128)
    p.add_argument("--n-seq", type=int, default=256)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=30, help="steps per timed block")
    p.add_argument("--blocks", type=int, default=5)
    p.add_argument("--warmup", type=int, default=LOSS_STEPS, help="untimed steps after setup")
    p.add_argument("--backend", default="auto")
    p.add_argument("--deadline", type=float, default=600,
                   help="seconds after which the results so far are written and the rest reported as unfinished")
    args = p.parse_args(argv)
    unknown = set(args.variants.split(",")) - set(SPECS)
    if unknown:
        p.error(f"--variants: unknown {sorted(unknown)}; known: {', '.join(SPECS)}")
    return args


def _all_prepared(ready) -> None:
    """Wait until every process has prepared; a process that failed breaks the barrier: go on without it."""
    import threading

    try:
        ready.wait(timeout=READY_TIMEOUT_S)
    except threading.BrokenBarrierError:
        pass


def _measure(args, variant: str, mode: str, turn, ready) -> dict:
    """Build, prepare, warm up, wait for every process to be ready, then (holding `turn` when processes time
    in turn, all at once otherwise) time `blocks` blocks."""
    import torch

    from bkprof.validate.corpus import load_corpus
    from bkprof.validate.loop import build_model
    from bkprof.profile.timing import Measurement
    from bkprof.validate.step import Stepper, TrainStep, host_batch, read_records, synchronize
    from bkprof.validate.train import Recipe, RunSpec

    device = torch.device(args.device)
    torch.set_num_threads(1)
    corpus = load_corpus(None)
    total = args.warmup + args.steps * args.blocks
    recipe = Recipe(d_model=args.d_model, n_seq=args.n_seq, layers=args.layers, batch=args.batch,
                    tokens=total * args.batch * args.n_seq, backend=args.backend)
    spec = RunSpec(variant, *SPECS[variant], 0)
    torch.manual_seed(20_000)
    model = build_model(spec, recipe, corpus, device)
    model.train()
    stepper = Stepper(TrainStep(model, recipe, spec.sparsity, device), mode)
    generator = torch.Generator().manual_seed(10_000)

    def steps(n: int) -> None:
        for _ in range(n):
            stepper(host_batch(corpus.train, recipe, corpus.vocab.mask_id, generator))

    steps(args.warmup)   # the first step prepares (capture / compile): setup_s
    synchronize(device)
    _all_prepared(ready)   # nobody times while another process still compiles (host-bound steps would feel it)
    with turn if turn is not None else _NoLock():
        seconds = []
        for _ in range(args.blocks):
            if device.type == "cuda":
                begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                begin.record()
                steps(args.steps)
                end.record()
                end.synchronize()
                seconds.append(begin.elapsed_time(end) / 1e3)
            else:
                began = time.perf_counter()
                steps(args.steps)
                seconds.append(time.perf_counter() - began)
    losses = read_records(stepper.step)["losses"][:LOSS_STEPS]
    block = Measurement.of(seconds, args.warmup, "cuda events" if device.type == "cuda" else "perf_counter")
    tokens = args.steps * args.batch * args.n_seq   # per block
    return {"variant": variant, "mode": mode, "setup_s": stepper.setup_s, "block_s": seconds,
            # the block times' median and spread (bkprof.profile.timing's quantiles) as rates: slow blocks are p10
            "tokens_per_s": {"median": tokens / block.median, "p10": tokens / block.p90, "p90": tokens / block.p10},
            "first_losses": losses,
            "peak_mib": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None}


class _NoLock:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _child(args, variant, mode, turn, ready, results) -> None:
    try:
        results.put(_measure(args, variant, mode, turn, ready))
    except Exception as error:  # one failing (variant, mode) must not lose the others
        ready.abort()
        results.put({"variant": variant, "mode": mode, "error": f"{type(error).__name__}: {error}",
                     "traceback": traceback.format_exc()[-2000:]})


def run(args, on_progress=None) -> dict:
    """The document; `on_progress(doc)` hears it after each process reports (so a run cut short by a time
    limit keeps what finished). A process that ends without a word (killed, out of memory) is a row with
    its exit code as the error; none is waited for longer than `--deadline` seconds in all."""
    import queue

    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    variants, modes = args.variants.split(","), args.modes.split(",")
    if args.processes > 1:
        jobs, turn = [(variants[0], modes[0])] * args.processes, None   # all at once, after the barrier
    else:
        jobs, turn = [(v, m) for v in variants for m in modes], context.Lock()  # one at a time
    ready = context.Barrier(len(jobs))
    children = [context.Process(target=_child, args=(args, v, m, turn, ready, results)) for v, m in jobs]
    for child in children:
        child.start()
    config = {k: getattr(args, k) for k in ("device", "d_model", "n_seq", "layers", "batch", "steps", "blocks",
                                            "warmup", "backend", "processes")}
    rows: list[dict] = []
    doc = {"config": config, "rows": rows, "clock": "cuda events" if args.device.startswith("cuda") else "perf_counter"}
    deadline = time.monotonic() + args.deadline
    while len(rows) < len(children) and time.monotonic() < deadline:
        try:
            rows.append(results.get(timeout=2))
        except queue.Empty:
            if not any(child.is_alive() for child in children):
                break   # every process ended; some without a result
            continue
        _summarise(doc, args)
        if on_progress is not None:
            on_progress(doc)
    _account_for_the_silent(rows, jobs, children)
    for child in children:
        child.join(timeout=5)
        if child.is_alive():
            child.kill()
    _summarise(doc, args)
    return doc


def _account_for_the_silent(rows: list[dict], jobs: list[tuple], children: list) -> None:
    """A row for each process with no result: its exit code, or that it was still running at the deadline."""
    reported: dict[tuple, int] = {}
    for row in rows:
        reported[(row["variant"], row["mode"])] = reported.get((row["variant"], row["mode"]), 0) + 1
    for (variant, mode), child in zip(jobs, children):
        if reported.get((variant, mode), 0) > 0:
            reported[(variant, mode)] -= 1
            continue
        state = "still running at --deadline" if child.is_alive() else f"ended with exit code {child.exitcode}"
        rows.append({"variant": variant, "mode": mode, "error": f"no result: the process {state}"})


def _summarise(doc: dict, args) -> None:
    rows = doc["rows"]
    if args.processes > 1:
        doc["sum_tokens_per_s"] = sum(r["tokens_per_s"]["median"] for r in rows if "error" not in r)
    doc["loss_agreement"] = loss_agreement(rows)


def loss_agreement(rows: list[dict]) -> dict:
    """Per variant: the largest |loss - eager loss| over the first steps, per other mode (same seed, same batches)."""
    by = {(r["variant"], r["mode"]): r["first_losses"] for r in rows if "first_losses" in r}
    out = {}
    for (variant, mode), losses in by.items():
        eager = by.get((variant, "eager"))
        if mode != "eager" and eager:
            out.setdefault(variant, {})[mode] = max(abs(a - b) for a, b in zip(losses, eager))
    return out


def main(argv: list[str]) -> int:
    args = parse(argv)
    output = Path(args.output)

    def write(doc: dict) -> None:   # whole or not at all: a kill mid-write leaves the last whole one
        partial = output.with_name(output.name + ".partial")
        partial.write_text(json.dumps(doc, indent=2) + "\n")
        partial.replace(output)

    doc = run(args, on_progress=write)
    write(doc)
    for row in doc["rows"]:
        rate = row.get("tokens_per_s", {}).get("median")
        print(f"{row['variant']:12s} {row['mode']:9s} " + (f"{rate:14,.0f} tokens/s  setup {row['setup_s']:.1f} s"
                                                           if rate else row["error"]))
    if "sum_tokens_per_s" in doc:
        print(f"{args.processes} processes at once: {doc['sum_tokens_per_s']:,.0f} tokens/s in all")
    print("largest |loss - eager loss| over the first steps:", json.dumps(doc["loss_agreement"]))
    return 0 if all("error" not in r for r in doc["rows"]) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
