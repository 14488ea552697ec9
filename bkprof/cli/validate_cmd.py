"""`bkprof validate`: what each variant costs in test perplexity, beside its training FLOPs and time."""

from __future__ import annotations

from typing import Annotated, Optional

from bkprof.cli import app
from bkprof.cli.errors import BadInput, Command
from bkprof.cli.options import (Cluster, FormatOpt, Output, Variants, checked_backend, checked_cluster_device,
                                checked_device, choice_option, device_option, emit_report, flag, integer_option,
                                number_option, output_folder_option, positive, progress_bar, text_option, variant_names)
from bkprof.cli.report_cmd import HtmlOpt, write_page
from bkprof.cli.runs import checked_grid_fits, checked_runs_file, failed_runs, interrupted_keeps
from bkprof.variants.fields import FIELDS

PLOT_SUFFIXES = (".png",)
DEFAULT_TEST_TOKENS = "5000"


def _values(name: str, text: str) -> list:
    from bkprof.sweep.axes import parse_axis

    try:
        return parse_axis(name, text)
    except ValueError as error:
        raise BadInput(str(error)) from None


def _learning_rates(text: str) -> list[float]:
    values = []
    for item in text.split(","):
        try:
            value = float(item)
        except ValueError:
            raise BadInput(f"--lr {text!r}: {item.strip()!r} is not a number") from None
        if not (value > 0 and value < float("inf")):
            raise BadInput(f"--lr {text!r}: {item.strip()!r} is not a positive finite number")
        values.append(value)
    return list(dict.fromkeys(values))


def _test_tokens(text: str) -> int | None:
    if text == "all":
        return None
    try:
        value = int(text)
    except ValueError:
        raise BadInput(f"--test-tokens {text!r}: not an integer or 'all'") from None
    return positive("--test-tokens", value)


def _step_modes() -> tuple[str, ...]:
    from bkprof.validate.train import STEP_MODES

    return STEP_MODES


def _hidings() -> tuple[str, ...]:
    from bkprof.validate.train import HIDINGS

    return HIDINGS


def _checked_step(step: str, hiding: str, device: str, on_cluster: bool = False) -> None:
    """--step graph needs CUDA; graph and compiled need the same number of hidden positions every step.
    On a cluster the device is the tasks' (`device_kind`): cuda is judged by its type, not by this
    machine's GPUs, and with auto the step may become graph there, so auto counts as graph."""
    import torch

    from bkprof.cluster import device_kind
    from bkprof.validate.step import resolve_step

    try:
        where = torch.device(device_kind(device).replace("auto", "cuda")) if on_cluster else checked_device(device)
        mode = resolve_step(step, where)
    except ValueError as error:
        raise BadInput(f"{error} (--device {device})") from None
    if mode != "eager" and hiding != "fixed":
        raise BadInput(f"--step {step} ({mode}) needs --hiding fixed (static shapes), got --hiding {hiding}; "
                       "--step eager takes either")


def _devices(name: str) -> tuple[str, ...]:
    """cpu; cuda (or auto with CUDA): every visible GPU, one worker each; cuda:i: that GPU."""
    import torch

    device = checked_device(name)
    if device.type == "cuda" and device.index is None:
        return tuple(f"cuda:{i}" for i in range(torch.cuda.device_count()))
    return (str(device),)


@app.command("validate", cls=Command,
             help="Train small ResNet-BK language models of each variant on WikiText-2 (the bundled validation "
                  "split; evaluated on the test split), and put test perplexity beside training FLOPs per token "
                  "and time, with count baselines and a verdict on each published quality claim.")
def validate(
    variant: Variants = None,
    sparsity: Annotated[str, text_option(FIELDS["sparsity"].option, f"{FIELDS['sparsity'].help} Values for the "
                        "variants with an importance mask: a list or start:stop:step, e.g. 0.4:0.7:0.1.", "VALUES")] = "0.6",
    downsample: Annotated[str, text_option(FIELDS["downsample"].option, f"{FIELDS['downsample'].help} Values for "
                          "the multi-scale variants, e.g. 2,4.", "VALUES")] = "2",
    seeds: Annotated[int, integer_option("--seeds", "Runs per setting, seeds 0..K-1.")] = 1,
    d_model: Annotated[str, text_option(FIELDS["d_model"].option, f"{FIELDS['d_model'].help} Values: each width "
                       "is its own grid (recipe), e.g. 64,128,256.", "VALUES")] = "32",
    n_seq: Annotated[int, integer_option(FIELDS["n_seq"].option, FIELDS["n_seq"].help)] = 64,
    layers: Annotated[int, integer_option("--layers", "Residual blocks of the variant in the model.")] = 2,
    batch: Annotated[int, integer_option(FIELDS["batch"].option, "Sequences per training step.")] = 8,
    tokens: Annotated[int, integer_option("--tokens", "Training budget per run: input positions seen "
                                          "(steps x batch x n_seq), the same for every variant.")] = 32_768,
    lr: Annotated[str, text_option("--lr", "Peak learning rate (AdamW, warm-up then cosine); a list is a "
                                   "learning-rate sweep, each value its own grid, e.g. 1e-3,3e-3.", "VALUES")] = "0.003",
    balance_weight: Annotated[float, number_option("--balance-weight", "Weight of the router's load-balancing "
                              "loss (Switch Transformer), summed over the blocks; 0: none (the recipe of the runs "
                              "before it existed).")] = 0.01,
    test_tokens: Annotated[str, text_option("--test-tokens", "Score the first INT tokens of the test text, or "
                                            "all of it.", "INT|all")] = DEFAULT_TEST_TOKENS,
    corpus: Annotated[Optional[str], text_option("--corpus", "A WikiText folder ({train,valid,test}.txt, "
                      "wiki.{train,valid,test}.tokens, or valid.txt + test.txt); default: the copy bkprof ships "
                      "(validation and test splits).", "FOLDER")] = None,
    device: Annotated[str, device_option("Where to train: cpu, cuda (every visible GPU, one worker each), "
                                         "cuda:1, auto; with --cluster: what each run asks for, one CPU or "
                                         "(cuda) one GPU.")] = "cpu",
    jobs_per_device: Annotated[int, integer_option("--jobs-per-device", "Runs at once on each device "
                               "(separate processes; small models are bound by the host; with --cluster: "
                               "runs sharing one GPU).")] = 1,
    cluster: Cluster = None,
    runs_file: Annotated[Optional[str], text_option("--runs-file", "JSON Lines file each finished run is "
                         "appended to (default: beside --output as NAME.runs.jsonl, else validate-runs.jsonl).",
                         "FILE")] = None,
    resume: Annotated[bool, flag("--resume", "Keep the runs already in --runs-file and run only the others.")] = False,
    report_only: Annotated[bool, flag("--report-only", "Train nothing: report the runs already in --runs-file "
                                      "that match these settings (an interrupted grid, say).")] = False,
    no_controls: Annotated[bool, flag("--no-controls", "Leave out the claim variants' no-skip controls "
                                      "(sparsity 0, downsampling f = 1), planned by default.")] = False,
    no_reference: Annotated[bool, flag("--no-reference", "Leave out the Transformer reference (dense is always "
                                       "planned: every comparison is against it).")] = False,
    backend: Annotated[str, text_option(FIELDS["backend"].option, FIELDS["backend"].help, "NAME")] = "auto",
    step: Annotated[str, choice_option("--step", "How each training step runs: eager (op by op), graph (one "
                    "CUDA-graph replay; CUDA only), compiled (torch.compile, reduce-overhead on CUDA), auto (graph "
                    "on CUDA, eager on the CPU). Not part of a run's identity: it changes the speed, not the "
                    "arithmetic (random draws aside).", _step_modes)] = "auto",
    hiding: Annotated[str, choice_option("--hiding", "How training picks the hidden positions: fixed (B x N / "
                      "groups of each batch, the same number every step), bernoulli (each with probability "
                      "1/groups: the runs before 2026-12-05; eager steps only).", _hidings)] = "fixed",
    plot: Annotated[Optional[str], output_folder_option(
        "--plot", "Save ppl_vs_flops.png and ppl_vs_time.png here", PLOT_SUFFIXES)] = None,
    format: FormatOpt = "table",
    output: Output = None,
    html: HtmlOpt = None,
) -> None:
    from bkprof.report.io import output_folders
    from bkprof.sizes import MAX_JOBS, MAX_LAYERS, MAX_SEEDS
    from bkprof.validate.runner import Plan, run_grid
    from bkprof.validate.train import Recipe

    trains_here = not report_only and (cluster is None or device == "cpu")
    if cluster is not None:
        checked_cluster_device(device)
    if trains_here:  # a report trains nothing, a cluster's GPUs are not this machine's: nothing to check here
        # the backend is checked on the training device; FLOPs are counted on the CPU with vectorized
        checked_backend(backend, checked_device(device))
        _checked_step(step, hiding, device)
    elif not report_only:   # the tasks' device, on the cluster
        _checked_step(step, hiding, device, on_cluster=True)
    for option, value, limit in (("--seeds", seeds, MAX_SEEDS), ("--layers", layers, MAX_LAYERS), ("--tokens", tokens, None),
                                 ("--jobs-per-device", jobs_per_device, MAX_JOBS), (FIELDS["batch"].option, batch, None)):
        positive(option, value, limit)
    if not 0 <= balance_weight < float("inf"):
        raise BadInput(f"--balance-weight must be a finite number >= 0, got {balance_weight}")
    runs_file = checked_runs_file(runs_file, output, resume or report_only)
    widths, rates = _values("d_model", d_model), _learning_rates(lr)
    try:
        plan = Plan(variant_names(variant), _values("sparsity", sparsity), _values("downsample", downsample), seeds,
                    Recipe(d_model=widths[0], n_seq=n_seq, layers=layers, tokens=tokens, batch=batch, lr=rates[0],
                           backend=backend, balance_weight=balance_weight, hiding=hiding),
                    corpus=corpus, test_tokens=_test_tokens(test_tokens),
                    devices=(device,) if report_only or cluster else _devices(device),
                    jobs_per_device=jobs_per_device, runs_file=runs_file, resume=resume,
                    report_only=report_only, widths=tuple(widths), lrs=tuple(rates),
                    controls=not no_controls, reference=not no_reference, step=step, cluster=cluster)
        if trains_here:
            checked_grid_fits(plan)
        with output_folders([(plot, "--plot", PLOT_SUFFIXES)], {"command": "validate"},
                            files=[(output, "--output"), (runs_file, "--runs-file"), (html, "--html")]) as (plot_folder,):
            with progress_bar(None, "validate") as update, interrupted_keeps(runs_file):
                doc = run_grid(plan, progress=lambda advance, text: update(text, advance=advance),
                               on_total=lambda total: update("training", total=total))
            if plot_folder is not None:
                from bkprof.validate.plots import save_plots

                save_plots(doc, plot_folder)
    except ValueError as error:
        raise BadInput(str(error)) from None
    from bkprof.validate.report import validate_report

    report = validate_report(doc)
    emit_report(report, format, output)  # a full disk: one line naming --output
    write_page(report, html)
    failed_runs(doc["failed"])
