"""PNG plots of sweep results (matplotlib, Agg backend; imported only when a plot is drawn)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

from bkprof.report.io import write_atomic



def variant_colour(name: str) -> str | None:
    """matplotlib's default cycle in the registry's order (dense blue, sparse orange, multiscale green,
    combined red, then the next colours); None for a name not registered."""
    from bkprof.variants.registry import names

    return f"C{names().index(name) % 10}" if name in names() else None


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(figure, path: str | Path) -> Path:
    """Write `figure` as a PNG whole or not at all, then close it."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(figure)
    return write_atomic(path, buffer.getvalue())


def _series(rows: Sequence[dict], metric: str, group_by: Sequence[str]) -> dict[tuple, list[tuple]]:
    """(variant, *group values) -> sorted [(n_seq, value)] over the rows that ran and have the metric."""
    series: dict[tuple, list[tuple]] = {}
    for row in rows:
        if row.get("error") or row.get(metric) is None:
            continue
        key = (row["variant"], *(row[name] for name in group_by))
        series.setdefault(key, []).append((row["n_seq"], row[metric]))
    return {key: sorted(points) for key, points in series.items()}


def _label(key: tuple, group_by: Sequence[str]) -> str:
    extra = ", ".join(f"{name}={value}" for name, value in zip(group_by, key[1:]))
    return f"{key[0]} ({extra})" if extra else key[0]


def plot_versus_n(rows: Sequence[dict], metric: str, ylabel: str, title: str, path: str | Path,
                  group_by: Sequence[str] = (), published_metric: str | None = None,
                  exponents: dict[tuple, float | None] | None = None,
                  source_points: dict[str, tuple[int, int]] | None = None) -> Path:
    """`metric` against N per variant on log-log axes; the published formula's values as hollow markers,
    and the figures the source printed (`source_points`: variant -> (N, value)) as stars."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(7.5, 5))
    for key, points in _series(rows, metric, group_by).items():
        colour = variant_colour(key[0])
        exponent = (exponents or {}).get(key)
        suffix = f"  (slope {exponent:.2f})" if exponent is not None else ""
        axes.plot(*zip(*points), "o-", color=colour, label=_label(key, group_by) + suffix)
    if published_metric:
        for key, points in _series(rows, published_metric, group_by).items():
            axes.plot(*zip(*points), "s--", mfc="none", color=variant_colour(key[0]), alpha=0.8,
                      label=f"{_label(key, group_by)}: published formula")
    for variant, (n, value) in (source_points or {}).items():
        axes.plot([n], [value], "*", ms=14, mfc="none", color=variant_colour(variant),
                  label=f"{variant}: figure printed in the source ({value:,.0f})")
    axes.set_xscale("log", base=2)
    axes.set_yscale("log")
    _plain_log_ticks(axes)
    axes.set_xlabel("sequence length N")
    axes.set_ylabel(ylabel)
    axes.set_title(title, fontsize=10)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return save_png(figure, path)


def _plain_log_ticks(axes) -> None:
    """Ticks at 1, 2 and 5 of each decade, labelled as plain numbers (2, 50, 1e+08); minor ticks unlabelled."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axes.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axes.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axes.yaxis.set_minor_formatter(NullFormatter())


def plot_reduction_versus_sparsity(rows: Sequence[dict], title: str, path: str | Path) -> Path:
    """rows: {variant, sparsity, published_reduction, full_reduction}; reduction = dense FLOPs / variant FLOPs."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(7.5, 5))
    for variant in dict.fromkeys(r["variant"] for r in rows):
        mine = sorted((r for r in rows if r["variant"] == variant), key=lambda r: r["sparsity"])
        s = [r["sparsity"] for r in mine]
        colour = variant_colour(variant)
        axes.plot(s, [r["published_reduction"] for r in mine], "s--", mfc="none", color=colour,
                  label=f"{variant}: published accounting")
        full = [r["full_reduction"] for r in mine]
        axes.plot(s, full, "o-", color=colour, label=f"{variant}: full count")
        axes.annotate(f"{full[-1]:.3g}×", (s[-1], full[-1]), textcoords="offset points", xytext=(6, 0),
                      fontsize=7, va="center", color=colour)
    axes.axhline(1.0, color="grey", lw=0.8)
    axes.set_xlabel("sparsity s (fraction of G_ii positions interpolated)")
    axes.set_ylabel("reduction (× fewer FLOPs than the dense layer)")
    axes.set_yscale("log")
    _plain_log_ticks(axes)
    axes.set_title(title, fontsize=10)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return save_png(figure, path)


def plot_importance_masks(scores, masks: dict[str, object], title: str, path: str | Path) -> Path:
    """Importance scores (sequences x N) and, below, each named mask (sequences x N, 1 = G_ii computed exactly)."""
    plt = _pyplot()
    figure, axes = plt.subplots(1 + len(masks), 1, figsize=(9, 2.2 * (1 + len(masks))), sharex=True)
    image = axes[0].imshow(scores, aspect="auto", cmap="viridis", interpolation="nearest")
    axes[0].set_title("importance scores", fontsize=9)
    axes[0].set_ylabel("sequence")
    figure.colorbar(image, ax=axes[0], pad=0.01)
    for ax, (name, mask) in zip(axes[1:], masks.items()):
        kept = float(mask.mean())
        image = ax.imshow(mask, aspect="auto", cmap="Greys", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(f"{name}: white = interpolated, black = computed exactly (kept {kept:.1%})", fontsize=9)
        ax.set_ylabel("sequence")
        figure.colorbar(image, ax=ax, pad=0.01)
    axes[-1].set_xlabel("position i")
    figure.suptitle(title, fontsize=10)
    return save_png(figure, path)
