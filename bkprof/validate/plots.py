"""Quality against cost, and the learning curves.

ppl_vs_flops.png / ppl_vs_time.png: test perplexity (mean ± std over seeds) against training FLOPs per
token and against training wall time, one line per setting across its widths (log x). curves.png:
each run's training loss and its test loss at the checkpoints, one panel per setting, a line per seed.
"""

from __future__ import annotations

from pathlib import Path

from bkprof.sweep.plots import _pyplot, save_png, variant_colour

PLOTS = {
    "ppl_vs_flops.png": ("train_flops_per_token", "training FLOPs per token (forward + backward, op counter)"),
    "ppl_vs_time.png": ("wall_s", "training wall time per run (s)"),
}
CURVES = "curves.png"
MARKERS = "os^Dv<>"


def _label(row: dict) -> str:
    parts = [row["variant"]] + [f"{short}={row[k]:g}" for k, short in (("sparsity", "s"), ("downsample", "f"))
                                if row[k] is not None]
    if row.get("role") == "control":
        parts.append("(control)")
    return " ".join(parts)


def _lines(rows: list[dict]) -> dict[tuple, list[dict]]:
    lines: dict[tuple, list[dict]] = {}
    for row in rows:
        lines.setdefault((_label(row), row["lr"]), []).append(row)
    return lines


def _frontier(ax, rows: list[dict], x_key: str, x_label: str, doc: dict) -> None:
    lines = _lines(rows)
    several_lrs = len({lr for _, lr in lines}) > 1
    shown: dict[str, int] = {}   # settings drawn so far per variant: each gets its own marker
    for (label, lr), points in lines.items():
        points = sorted(points, key=lambda r: r[x_key])
        variant = points[0]["variant"]
        colour = variant_colour(variant) or "black"
        marker = MARKERS[shown.get(variant, 0) % len(MARKERS)]
        shown[variant] = shown.get(variant, 0) + 1
        style = "--" if points[0]["role"] == "control" else "-"
        ax.errorbar([r[x_key] for r in points], [r["test_ppl_mean"] for r in points],
                    yerr=[r["test_ppl_std"] or 0.0 for r in points], fmt=marker + style, color=colour, capsize=3,
                    label=f"{label} lr={lr:g}" if several_lrs else label)
        for r in points:
            ax.annotate(f"d={r['d_model']}", (r[x_key], r["test_ppl_mean"]), textcoords="offset points",
                        xytext=(4, 4), fontsize=6)
    for name, style in (("bigram", ":"), ("two_sided", "-.")):
        ax.axhline(doc["baselines"][name]["test_ppl"], color="grey", linestyle=style, linewidth=1,
                   label=f"{name} count baseline")
    ax.set_xscale("log")
    ax.set_xlabel(x_label)
    ax.set_ylabel("test perplexity (mean ± std over seeds)")
    data = doc["data"]
    ax.set_title(f"trained on {data['train_file']}, evaluated on {data['test_file']}; masked-word objective; "
                 "a line per setting across widths", fontsize=8)
    ax.legend(fontsize=6)
    ax.grid(alpha=0.3)


def _curves(plt, doc: dict, path: Path) -> Path | None:
    runs = [r for r in doc["runs"] if r.get("curve")]
    if not runs:
        return None
    panels: dict[str, list[dict]] = {}
    for r in runs:
        key = f"{_label({**r, 'role': None})} d={r['d_model']} lr={r['lr']:g}"
        panels.setdefault(key, []).append(r)
    columns = min(3, len(panels))
    rows = -(-len(panels) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.3 * rows), squeeze=False)
    for ax, (title, group) in zip(axes.flat, panels.items()):
        for r in sorted(group, key=lambda r: r["seed"]):
            c = r["curve"]
            line, = ax.plot(c["train_step"], c["train_loss"], linewidth=1, label=f"seed {r['seed']} train")
            ax.plot(c["test_step"], c["test_loss"], "o--", color=line.get_color(), markersize=3,
                    label=f"seed {r['seed']} test")
        ax.set_title(title, fontsize=8)
        ax.set_xlabel("step", fontsize=7)
        ax.set_ylabel("loss (nats)", fontsize=7)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=5)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    figure.suptitle("training loss (mean per step window) and test loss (fixed test slice) per seed", fontsize=9)
    figure.tight_layout(rect=(0, 0, 1, 0.97))
    return save_png(figure, path)


def save_plots(doc: dict, folder: str | Path) -> list[Path]:
    plt = _pyplot()
    rows = [r for r in doc["summary"]["settings"] if r[PLOTS["ppl_vs_time.png"][0]] is not None]
    written = []
    for name, (x_key, x_label) in PLOTS.items():
        figure, ax = plt.subplots(figsize=(8, 5))
        _frontier(ax, rows, x_key, x_label, doc)
        written.append(save_png(figure, Path(folder) / name))
    curves = _curves(plt, doc, Path(folder) / CURVES)
    return written + ([curves] if curves else [])
