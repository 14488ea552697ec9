"""`bkprof validate` as a library call: plan the grid, run what is missing, record, summarise."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Callable

from bkprof.validate.grid import RunsFile, _worker, grid_identity, identity, plan_runs, run_one
from bkprof.validate.train import REFERENCE, Recipe, RunSpec

Progress = Callable[[int, str], None]  # (steps advanced, description)
Finish = Callable[[RunSpec, "dict | None", "str | None"], None]  # (run, measured, error): record it or its failure


@dataclasses.dataclass(frozen=True)
class Plan:
    variants: list[str]
    sparsities: list[float]
    downsamples: list[int]
    seeds: int
    recipe: Recipe                     # the base recipe; each width and learning rate is its own
    corpus: str | None = None          # a WikiText folder; None: the copy that ships with bkprof
    test_tokens: int | None = None     # score only the first test tokens; None: all
    devices: tuple[str, ...] = ("cpu",)
    jobs_per_device: int = 1
    runs_file: str = "validate-runs.jsonl"
    resume: bool = False
    report_only: bool = False          # train nothing: report the runs already in the runs file
    widths: tuple[int, ...] = ()       # d_model values; () = the recipe's
    lrs: tuple[float, ...] = ()        # peak learning rates; () = the recipe's
    controls: bool = True              # plan each claim variant's no-skip control
    reference: bool = True             # plan the Transformer reference (dense is planned whatever --variant says)
    step: str = "auto"                 # how training steps run (bkprof.validate.step); not in a run's identity
    cluster: str | None = None         # a Ray cluster's address (or auto): each run a task there (bkprof.cluster)

    def __post_init__(self):
        object.__setattr__(self, "widths", tuple(self.widths) or (self.recipe.d_model,))
        object.__setattr__(self, "lrs", tuple(self.lrs) or (self.recipe.lr,))

    def recipes(self) -> list[Recipe]:
        """One recipe (one run identity) per width and learning rate."""
        return [dataclasses.replace(self.recipe, d_model=d, lr=lr) for d in self.widths for lr in self.lrs]


def limited_corpus(corpus, test_tokens: int | None):
    if test_tokens is None or test_tokens >= len(corpus.test):
        return corpus
    return dataclasses.replace(corpus, test=corpus.test[:test_tokens], test_whole=len(corpus.test))


def planned_settings(plan: Plan) -> list[tuple]:
    """(variant, sparsity, downsample) of every setting: the chosen variants' values, then dense and the
    Transformer reference, and the no-skip control of each published claim's variant."""
    from bkprof.validate.summary import DENSE, control_of, quality_claims

    settings = [(s.variant, s.sparsity, s.downsample)
                for s in plan_runs(plan.variants, plan.sparsities, plan.downsamples, 1)]
    if plan.controls:
        claimed = {c["variant"] for c in quality_claims()}
        settings += [control_of(s) for s in settings if s[0] in claimed and control_of(s)]
    settings = [(DENSE, None, None)] + settings + ([(REFERENCE, None, None)] if plan.reference else [])
    return list(dict.fromkeys(settings))


def planned_runs(plan: Plan) -> list[tuple[Recipe, RunSpec]]:
    """Every (recipe, run), seeds outermost, then widths: a first pass over every setting and width comes first."""
    settings = planned_settings(plan)
    return [(recipe, RunSpec(*setting, seed)) for seed in range(plan.seeds) for recipe in plan.recipes()
            for setting in settings]


class Costs:
    """Training FLOPs per token, counted once per (recipe, variant, setting): the seeds share them."""

    def __init__(self, vocab):
        self.vocab, self.cache = vocab, {}

    def of(self, spec: RunSpec, recipe: Recipe) -> dict:
        from bkprof.validate.cost import train_flops_per_token

        key = (recipe, spec.variant, spec.sparsity, spec.downsample)
        if key not in self.cache:
            self.cache[key] = train_flops_per_token(dataclasses.replace(spec, seed=0), recipe, self.vocab)
        return self.cache[key]


def _record(spec: RunSpec, plan: Plan, corpus, measured: dict, costs: Costs) -> dict:
    config = spec.layer_config(plan.recipe)
    return {
        **spec.key(), "d_model": plan.recipe.d_model, "lr": plan.recipe.lr, **measured,
        **costs.of(spec, plan.recipe),
        "eval_sparsity": 1 - config.kept / config.n_seq if spec.sparsity is not None else None,
        "identity": identity(spec, plan.recipe, corpus),
        "grid": grid_identity(plan.recipe, corpus),
    }


def _run_here(todo: list[RunSpec], plan: Plan, corpus, finish, progress: Progress) -> None:
    for spec in todo:
        label = _label(spec)
        try:
            measured = run_one(spec, plan.recipe, corpus, plan.devices[0],
                               on_step=lambda n, label=label: progress(1, label), step=plan.step)
        except Exception as error:
            finish(spec, None, f"{type(error).__name__}: {error}")
            continue
        finish(spec, measured, None)


def _run_in_workers(todo: list[RunSpec], plan: Plan, finish, progress: Progress) -> None:
    import multiprocessing
    import queue

    context = multiprocessing.get_context("spawn")
    tasks, results = context.Queue(), context.Queue()
    workers = [context.Process(target=_worker, args=(device, plan.recipe, (plan.corpus, plan.test_tokens), tasks, results, plan.step))
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


def _run_on_cluster(todo: list[tuple[Recipe, RunSpec]], plan: Plan, finisher: Callable[[Recipe], Finish],
                    progress: Progress) -> dict:
    """Every run of every recipe at once as a task on the cluster; the driver records each as it returns.
    Progress moves by a run's steps when it returns (tasks send no messages while they train).
    Returns what the report says of the cluster."""
    from bkprof.cluster import Task, session
    from bkprof.validate.grid import train_on_a_node

    corpus_args = (plan.corpus, plan.test_tokens)
    with session(plan.cluster) as cluster:
        kind, _ = cluster.placement(plan.devices[0], plan.jobs_per_device)

        def task(recipe: Recipe, spec: RunSpec) -> Task:
            finish, label = finisher(recipe), _label(spec)

            def done(measured: dict | None, error: str | None = None) -> None:
                finish(spec, measured, error)
                progress(recipe.steps, label)

            return Task(train_on_a_node, (spec, recipe, corpus_args, kind, plan.step), done,
                        lambda error: done(None, error))

        cluster.run([task(recipe, spec) for recipe, spec in todo])
        return cluster.describe()


def _label(spec: RunSpec) -> str:
    setting = "".join(f" {k}={v}" for k, v in (("s", spec.sparsity), ("f", spec.downsample)) if v is not None)
    return f"{spec.variant}{setting} seed {spec.seed}"


# Recipe fields added after runs files were first written, at the value those runs had in effect:
# a record without the field belongs to the grid whose recipe has that value (balance_weight: the
# runs of 2026-12-02 trained without a load-balancing loss, and hid each position independently). Reports
# only: --resume never mixes them, as their identity strings differ.
LEGACY_FIELDS = {"balance_weight": 0.0, "hiding": "bernoulli"}


def _legacy_grid(run: dict, corpus) -> str | None:
    """The grid identity of a record written before some recipe fields existed, with those fields filled in."""
    try:
        grid = json.loads(run["grid"])
        recipe = grid["recipe"]
    except (KeyError, TypeError, ValueError):
        return None
    missing = {k: v for k, v in LEGACY_FIELDS.items() if k not in recipe}
    if not missing or grid.get("corpus") != corpus.fingerprint:
        return None
    try:
        return grid_identity(Recipe(**{**recipe, **missing}), corpus)
    except TypeError:   # a field this version does not know
        return None


def _grid_runs(store: RunsFile, plan: Plan, corpus) -> list[dict]:
    runs = [r for recipe in plan.recipes() for r in store.of_grid(recipe, corpus)]
    wanted = {grid_identity(recipe, corpus) for recipe in plan.recipes()}
    return runs + [r for r in store.lines if _legacy_grid(r, corpus) in wanted]


def run_grid(plan: Plan, progress: Progress | None = None, on_total: Callable[[int], None] | None = None) -> dict:
    """Run the missing runs of `plan`, append each to the runs file, and return the report document.

    `on_total` hears the number of training steps to run (after --resume), `progress` each step done.
    """
    if plan.report_only:
        return report_grid(plan)
    from bkprof.validate.corpus import load_corpus

    corpus = limited_corpus(load_corpus(plan.corpus), plan.test_tokens)
    planned = planned_runs(plan)
    for recipe, spec in dict.fromkeys((r, dataclasses.replace(s, seed=0)) for r, s in planned):
        spec.layer_config(recipe)  # every setting is a valid layer before anything runs
    store = RunsFile.open(plan.runs_file, plan.resume)
    done = store.finished()
    todo = [(r, s) for r, s in planned if identity(s, r, corpus) not in done]
    costs = Costs(corpus.vocab)
    failures: list[dict] = []
    progress = progress or (lambda advance, text: None)
    if on_total is not None:
        on_total(sum(r.steps for r, _ in todo))

    def finisher(recipe: Recipe) -> Finish:
        here = dataclasses.replace(plan, recipe=recipe)

        def finish(spec: RunSpec, measured: dict | None, error: str | None) -> None:
            if error is not None:
                failures.append({**spec.key(), "d_model": recipe.d_model, "lr": recipe.lr, "error": error})
                return
            store.append(_record(spec, here, corpus, measured, costs))

        return finish

    if plan.cluster is None:
        _run_locally(todo, plan, corpus, finisher, progress)
    else:
        cluster = _run_on_cluster(todo, plan, finisher, progress) if todo else None
    doc = _document(plan, corpus, store, failures, len(planned) - len(todo), tensors=lambda: corpus)
    return doc if plan.cluster is None else {**doc, "cluster": cluster}


def _run_locally(todo: list[tuple[Recipe, RunSpec]], plan: Plan, corpus, finisher: Callable[[Recipe], Finish],
                 progress: Progress) -> None:
    for recipe in plan.recipes():   # one recipe at a time: the workers take one recipe each
        here = dataclasses.replace(plan, recipe=recipe)
        specs = [s for r, s in todo if r == recipe]
        if not specs:
            continue
        if len(plan.devices) * plan.jobs_per_device == 1:
            _run_here(specs, here, corpus, finisher(recipe), progress)
        else:
            _run_in_workers(specs, here, finisher(recipe), progress)


def report_grid(plan: Plan) -> dict:
    """--report-only: the runs file's runs of this grid, reported without torch when the cache beside the
    runs file holds the count baselines and layer claims (computed and kept there when it does not)."""
    from bkprof.validate.corpus import load_corpus

    corpus = limited_corpus(load_corpus(plan.corpus, tensors=False), plan.test_tokens)
    store = RunsFile.open(plan.runs_file, True)
    if not store.lines:
        raise ValueError(f"--report-only: {plan.runs_file} holds no runs")
    return _document(plan, corpus, store, [], skipped=len(store.lines),
                     tensors=lambda: limited_corpus(load_corpus(plan.corpus), plan.test_tokens))


def _document(plan: Plan, corpus, store: RunsFile, failures: list[dict], skipped: int, tensors) -> dict:
    from bkprof.validate.cache import ReportCache
    from bkprof.validate.summary import document

    cache = ReportCache.beside(plan.runs_file)
    baseline = cache.baselines(corpus, tensors)
    doc = document(plan, corpus.describe(), _grid_runs(store, plan, corpus), baseline, failures, skipped,
                   cache.layer_claims)
    cache.save()
    return doc


def default_runs_file(output: str | None) -> str:
    """Beside the report when there is one (report.json -> report.runs.jsonl), else in the working folder."""
    if output:
        path = Path(output)
        return str(path.with_name(path.stem + ".runs.jsonl"))
    return Plan.runs_file
