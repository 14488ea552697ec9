"""A whole sweep as `bkprof sweep` runs it: its settings, the plan, the measures, the report, files and plots.

Every problem with the settings is a ValueError naming the option (the command line turns it into
one line and exit code 2); a point that fails while it runs is a row with its error.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

from bkprof.report import Report, render, write_atomic
from bkprof.sizes import MAX_RUNS
from bkprof.sweep.axes import AXES, parse_axis
from bkprof.sweep.run import SweepPlan, point_config, run_sweep

PRESETS = {
    # The first source document's pending ablations: 40/50/60/70 % sparsity, 2x/4x downsampling,
    # linear/cubic/learned interpolation, long context (N > 1024), plus N = 256 where its tables were made.
    "ablations": {"n_seq": "256:4096:x2", "sparsity": "0.4:0.7:0.1", "downsample": "2,4",
                  "interp": "linear,cubic,learned"},
}
DEFAULT_AXES = {"n_seq": "256:4096:x2"}
# What each output folder holds (bkprof.report.io.OutputSet replaces a folder only when it holds nothing else).
DATA_SUFFIXES = (".csv", ".json")
PLOT_SUFFIXES = (".png", ".json")
# The sparsities the reduction plot always shows, besides those swept.
REDUCTION_GRID = "0:0.9:0.1"


@dataclass(frozen=True)
class SweepSettings:
    """What is measured at every point (besides the published and analytic FLOPs, always there).

    `profile`: time and memory on `device` in `mode` (`warmup` untimed runs, then `runs` timed);
    `train`: forward + backward FLOPs too; `count`: the op counter as well; `interp_error`: how far
    interpolated G_ii fall from the exact ones; `preset`: the preset the axes came from (ablations:
    one table per ablated axis).
    """

    profile: bool = False
    device: str = "cpu"
    mode: str = "forward"
    warmup: int = 3
    runs: int = 10
    train: bool = False
    count: bool = False
    interp_error: bool = False
    backend: str = "auto"
    preset: str | None = None

    def __post_init__(self) -> None:
        if not self.profile and (self.device != "cpu" or self.mode != "forward"):
            raise ValueError("--device and --mode need --profile")
        if isinstance(self.runs, bool) or self.runs < 1:
            raise ValueError(f"--runs must be a positive integer, got {self.runs}")
        if isinstance(self.warmup, bool) or self.warmup < 0:
            raise ValueError(f"--warmup must be a non-negative integer, got {self.warmup}")
        for name in ("runs", "warmup"):
            if getattr(self, name) > MAX_RUNS:
                raise ValueError(f"--{name} must be at most {MAX_RUNS:,}, got {getattr(self, name):,}")
        if self.preset is not None and self.preset not in PRESETS:
            raise ValueError(f"--preset {self.preset!r}: must be one of {', '.join(PRESETS)}")

    def as_dict(self) -> dict:
        return asdict(self)


def build_plan(given: dict[str, str | None], variants: list[str], preset: str | None, backend: str) -> SweepPlan:
    """Axes from the preset (or N = 256..4096), replaced by those given; ValueError naming a bad value."""
    texts = dict(PRESETS[preset] if preset else DEFAULT_AXES)
    texts.update({name: text for name, text in given.items() if text is not None})
    axes = {name: parse_axis(name, texts[name]) for name in AXES if name in texts}
    return SweepPlan(axes, variants, config_extra={"backend": backend})


def _measures(settings: SweepSettings) -> list:
    import torch

    from bkprof.sweep.measures import flops_measure, interpolation_error_measure, profile_measure

    device = torch.device(settings.device)
    measures = [flops_measure(settings.train, settings.count, device.type)]
    if settings.interp_error:
        measures.append(interpolation_error_measure())
    if settings.profile:
        measures.append(profile_measure(str(device), settings.mode, settings.warmup, settings.runs))
    return measures


def run_plan(plan: SweepPlan, settings: SweepSettings, on_row: Callable[[dict], None] | None = None,
             cluster: str | None = None) -> Report:
    """Run every point (`on_row(row)` after each), here or, with `cluster` (a Ray address or auto), as
    tasks on that cluster; then build the report."""
    from bkprof.sweep.report import sweep_report

    if cluster is None:
        rows, described = run_sweep(plan, _measures(settings), on_row=on_row), None
    else:
        rows, described = _run_on_cluster(plan, settings, on_row or (lambda row: None), cluster)
    report = sweep_report(plan, rows, settings.as_dict())
    if described is not None:
        report.payload["cluster"] = described
    if settings.preset == "ablations":
        from bkprof.sweep.ablations import ablation_tables

        # one table per ablated axis; the whole grid stays in the CSV and JSON
        report.tables = ablation_tables(rows, report.payload["scaling"], plan, plan.reference())
    return report


def _run_on_cluster(plan: SweepPlan, settings: SweepSettings, on_row: Callable[[dict], None],
                    address: str) -> tuple[list[dict], dict]:
    """Each row a task on the cluster (bkprof.cluster); the rows in the plan's order, whatever order they
    come back in, and what the report says of the cluster."""
    from bkprof.cluster import Task, session
    from bkprof.sweep.run import measured, planned_rows

    planned = planned_rows(plan)
    with session(address) as cluster:
        device, _ = cluster.placement(settings.device if settings.profile else "cpu")
        measures = _measures(replace(settings, device=device))

        def task(row: dict, config) -> Task:
            def done(columns: dict) -> None:
                row.update(columns)
                on_row(row)

            return Task(measured, (row["variant"], config, row["batch"], measures), done,
                        lambda error: done({"error": error}))

        for row, config in planned:
            if config is None:  # an invalid point: its row is already whole
                on_row(row)
        cluster.run([task(row, config) for row, config in planned if config is not None])
        return [row for row, _ in planned], cluster.describe()


def save_outputs(report: Report, plan: SweepPlan, output_dir: Path | None, plot_dir: Path | None) -> list[Path]:
    """The CSV/JSON files and the plots, into folders that exist (the staging folders of their output sets)."""
    written = []
    if output_dir:
        folder = Path(output_dir)
        written.append(write_atomic(folder / "sweep.csv", render(report, "csv")))
        written.append(write_atomic(folder / "sweep.json", render(report, "json")))
        written.append(write_atomic(folder / "scaling.csv", _scaling_csv(report)))
    if plot_dir:
        written += draw_plots(report, plan, Path(plot_dir))
    return written


def _scaling_csv(report: Report) -> str:
    import pandas as pd

    return pd.DataFrame(report.payload["scaling"]).to_csv(index=False)


def _at_reference(rows: list[dict], reference: dict) -> list[dict]:
    return [r for r in rows if all(r[name] == value for name, value in reference.items() if name != "n_seq")]


def _described(reference: dict) -> str:
    return ", ".join(f"{name}={value}" for name, value in reference.items() if name != "n_seq")


def _plot_metric(rows: list[dict], metric: str, label: str, title: str, held: str, path: Path,
                 published: str | None = None, source_points: dict | None = None) -> list[Path]:
    """The metric-versus-N plot with each variant's fitted slope, or nothing when no row has the metric."""
    from bkprof.sweep.plots import plot_versus_n
    from bkprof.sweep.scaling import scaling_rows

    if not any(r.get(metric) is not None for r in rows):
        return []
    exponents = {(f["variant"],): f[f"k_{metric}"] for f in scaling_rows(rows, [metric], [])}
    return [plot_versus_n(rows, metric, label, f"{title}\n{held}", path, published_metric=published,
                          exponents=exponents, source_points=source_points)]


def draw_plots(report: Report, plan: SweepPlan, folder: Path) -> list[Path]:
    from bkprof.sweep.masks import importance_masks
    from bkprof.sweep.plots import plot_importance_masks, plot_reduction_versus_sparsity
    from bkprof.sweep.published import reduction_rows, source_figures_at

    rows = report.payload["rows"]
    reference = plan.reference()
    shown = _at_reference(rows, reference)
    held = _described(reference)
    written = []
    flops_title = "forward FLOPs vs N: bkprof's full count (solid), the source's formula (dashed)"
    written += _plot_metric(shown, "analytic_flops", "forward FLOPs, whole batch (2 per MAC)", flops_title,
                            held, folder / "flops_vs_n.png", "published_flops", source_figures_at(reference))
    settings = report.payload["settings"]
    time_title = f"measured median time per step vs N ({settings['mode']} on {settings['device']})"
    written += _plot_metric(shown, "median_ms", "median time per step (ms)", time_title, held, folder / "time_vs_n.png")
    try:
        config = point_config(reference, plan.config_extra)
    except ValueError:
        return written  # the reference point itself is invalid: its rows already say why
    sparsities = sorted(set(parse_axis("sparsity", REDUCTION_GRID)) | set(plan.axes.get("sparsity", [])))
    sparsities = [s for s in sparsities if _valid(config, s)]
    written.append(plot_reduction_versus_sparsity(
        reduction_rows(config, sparsities),
        f"reduction vs sparsity, d={config.d_model}, N={config.n_seq}, f={config.downsample}, interp={config.interp}\n"
        "sparse: BK-Core scope (published ratio leaves importance + interpolation out); others: whole layer",
        folder / "reduction_vs_sparsity.png"))
    scores, masks = importance_masks(config, sequences=6)
    written.append(plot_importance_masks(
        scores.numpy(), {k: v.numpy() for k, v in masks.items()},
        f"sparse G_ii importance masks, d={config.d_model}, N={config.n_seq}, s={config.sparsity} "
        "(untrained weights, seed 0, standard-normal inputs)", folder / "importance_masks.png"))
    return written


def _valid(config, sparsity: float) -> bool:
    try:
        config.with_(sparsity=sparsity)
    except ValueError:
        return False
    return True
