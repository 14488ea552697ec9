"""`bkprof validate` as a library call: plan the grid, run what is missing, record, summarise."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

from bkprof.validate.grid import RunsFile, _worker, grid_identity, identity, plan_runs, run_one
from bkprof.validate.train import Recipe, RunSpec

Progress = Callable[[int, str], None]  # (steps advanced, description)


@dataclasses.dataclass(frozen=True)
class Plan:
    variants: list[str]
    sparsities: list[float]
    downsamples: list[int]
    seeds: int
    recipe: Recipe
    corpus: str | None = None          # a WikiText folder; None: the copy that ships with bkprof
    test_tokens: int | None = None     # score only the first test tokens; None: all
    devices: tuple[str, ...] = ("cpu",)
    jobs_per_device: int = 1
    runs_file: str = "validate-runs.jsonl"
    resume: bool = False
    report_only: bool = False          # train nothing: report the runs already in the runs file


def limited_corpus(corpus, test_tokens: int | None):
    if test_tokens is None or test_tokens >= len(corpus.test):
        return corpus
    return dataclasses.replace(corpus, test=corpus.test[:test_tokens], test_whole=len(corpus.test))


class Costs:
    """Training FLOPs per token, counted once per (variant, setting): the seeds share them."""

    def __init__(self, recipe: Recipe, vocab):
        self.recipe, self.vocab, self.cache = recipe, vocab, {}

    def of(self, spec: RunSpec) -> dict:
        from bkprof.validate.cost import train_flops_per_token

        key = (spec.variant, spec.sparsity, spec.downsample)
        if key not in self.cache:
            self.cache[key] = train_flops_per_token(dataclasses.replace(spec, seed=0), self.recipe, self.vocab)
        return self.cache[key]


def _record(spec: RunSpec, plan: Plan, corpus, measured: dict, costs: Costs) -> dict:
    config = spec.layer_config(plan.recipe)
    return {
        **spec.key(), **measured, **costs.of(spec),
        "eval_sparsity": 1 - config.kept / config.n_seq if spec.sparsity is not None else None,
        "identity": identity(spec, plan.recipe, corpus),
        "grid": grid_identity(plan.recipe, corpus),
    }


def _run_here(todo: list[RunSpec], plan: Plan, corpus, finish, progress: Progress) -> None:
    for spec in todo:
        label = _label(spec)
        try:
            measured = run_one(spec, plan.recipe, corpus, plan.devices[0],
                               on_step=lambda n, label=label: progress(1, label))
        except Exception as error:
            finish(spec, None, f"{type(error).__name__}: {error}")
            continue
        finish(spec, measured, None)


def _run_in_workers(todo: list[RunSpec], plan: Plan, finish, progress: Progress) -> None:
    import multiprocessing
    import queue

    context = multiprocessing.get_context("spawn")
    tasks, results = context.Queue(), context.Queue()
    workers = [context.Process(target=_worker, args=(device, plan.recipe, (plan.corpus, plan.test_tokens), tasks, results))
               for device in plan.devices for _ in range(plan.jobs_per_device)]
    for spec in todo:
        tasks.put(spec)
    for _ in workers:
        tasks.put(None)
    for worker in workers:
        worker.start()
    left, ended = len(todo), False
    try:
        while left:
            try:
                kind, spec, value = results.get(timeout=5)
            except queue.Empty:
                if not any(w.is_alive() for w in workers):  # a worker died without a word (killed, say)
                    raise RuntimeError(f"every worker process ended with {left} run(s) unfinished") from None
                continue
            if kind == "step":
                progress(value, _label(spec))
                continue
            left -= 1
            finish(spec, value if kind == "done" else None, value if kind == "failed" else None)
        ended = True
    finally:
        for worker in workers:  # interrupted or failed: end the workers now, not after their runs
            worker.join(timeout=5 if ended else 0)
            if worker.is_alive():
                worker.terminate()
        for worker in workers:
            worker.join(timeout=5)
            if worker.is_alive():
                worker.kill()


def _label(spec: RunSpec) -> str:
    setting = "".join(f" {k}={v}" for k, v in (("s", spec.sparsity), ("f", spec.downsample)) if v is not None)
    return f"{spec.variant}{setting} seed {spec.seed}"


def run_grid(plan: Plan, progress: Progress | None = None, on_total: Callable[[int], None] | None = None) -> dict:
    """Run the missing runs of `plan`, append each to the runs file, and return the report document.

    `on_total` hears the number of training steps to run (after --resume), `progress` each step done.
    """
    from bkprof.validate.baseline import baselines
    from bkprof.validate.corpus import EOS, load_corpus
    from bkprof.validate.summary import document

    corpus = limited_corpus(load_corpus(plan.corpus), plan.test_tokens)
    specs = plan_runs(plan.variants, plan.sparsities, plan.downsamples, plan.seeds)
    for spec in specs[:len(specs) // plan.seeds]:
        spec.layer_config(plan.recipe)  # every setting is a valid layer before anything runs
    store = RunsFile.open(plan.runs_file, plan.resume or plan.report_only)
    if plan.report_only and not store.lines:
        raise ValueError(f"--report-only: {plan.runs_file} holds no runs")
    done = store.finished()
    todo = [] if plan.report_only else [s for s in specs if identity(s, plan.recipe, corpus) not in done]
    costs = Costs(plan.recipe, corpus.vocab)
    failures: list[dict] = []
    progress = progress or (lambda advance, text: None)
    if on_total is not None:
        on_total(len(todo) * plan.recipe.steps)

    def finish(spec: RunSpec, measured: dict | None, error: str | None) -> None:
        if error is not None:
            failures.append({**spec.key(), "error": error})
            return
        store.append(_record(spec, plan, corpus, measured, costs))

    if len(plan.devices) * plan.jobs_per_device == 1:
        _run_here(todo, plan, corpus, finish, progress)
    else:
        _run_in_workers(todo, plan, finish, progress)
    baseline = baselines(corpus.train, corpus.test, corpus.vocab.predictable, corpus.vocab.itos.index(EOS))
    return document(plan, corpus, store.of_grid(plan.recipe, corpus), baseline, failures,
                    skipped=len(store.lines) - len(todo) if plan.report_only else len(specs) - len(todo))


def default_runs_file(output: str | None) -> str:
    """Beside the report when there is one (report.json -> report.runs.jsonl), else in the working folder."""
    if output:
        path = Path(output)
        return str(path.with_name(path.stem + ".runs.jsonl"))
    return Plan.runs_file
