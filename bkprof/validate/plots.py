"""Quality against cost: test perplexity against training FLOPs per token, and against wall time."""

from __future__ import annotations

from pathlib import Path

from bkprof.sweep.plots import _pyplot, save_png, variant_colour

PLOTS = {
    "ppl_vs_flops.png": ("train_flops_per_token", "training FLOPs per token (forward + backward, op counter)"),
    "ppl_vs_time.png": ("wall_s", "training wall time per run (s)"),
}


def _label(row: dict) -> str:
    parts = [row["variant"]] + [f"{short}={row[k]:g}" for k, short in (("sparsity", "s"), ("downsample", "f"))
                                if row[k] is not None]
    return " ".join(parts)


def _frontier(ax, rows: list[dict], x_key: str, x_label: str, doc: dict) -> None:
    for row in rows:
        colour = variant_colour(row["variant"]) or "black"
        std = row["test_ppl_std"] or 0.0
        ax.errorbar(row[x_key], row["test_ppl_mean"], yerr=std, fmt="o", color=colour, capsize=3)
        ax.annotate(_label(row), (row[x_key], row["test_ppl_mean"]), textcoords="offset points", xytext=(4, 4),
                    fontsize=7)
    for name, style in (("bigram", ":"), ("two_sided", "--")):
        ax.axhline(doc["baselines"][name]["test_ppl"], color="grey", linestyle=style, linewidth=1,
                   label=f"{name} count baseline")
    ax.set_xlabel(x_label)
    ax.set_ylabel("test perplexity (mean ± std over seeds)")
    data = doc["data"]
    ax.set_title(f"trained on {data['train_file']}, evaluated on {data['test_file']}; masked-word objective",
                 fontsize=8)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)


def save_plots(doc: dict, folder: str | Path) -> list[Path]:
    plt = _pyplot()
    rows = [r for r in doc["summary"]["settings"] if r[PLOTS["ppl_vs_time.png"][0]] is not None]
    written = []
    for name, (x_key, x_label) in PLOTS.items():
        figure, ax = plt.subplots(figsize=(7, 4.5))
        _frontier(ax, rows, x_key, x_label, doc)
        written.append(save_png(figure, Path(folder) / name))
    return written
