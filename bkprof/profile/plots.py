"""Roofline plots of a `bkprof profile` report: every component of every variant as a point
(arithmetic intensity, achieved FLOP/s) under the device's compute and bandwidth roofs.

matplotlib is imported only here, when a plot is asked for.
"""

from __future__ import annotations

import io
from pathlib import Path

PHASE_MARKERS = {"forward": "o", "backward": "^", "optimizer": "s"}


def roofline_points(payload: dict, mode: str) -> list[dict]:
    """The plotted points of one mode: parts with FLOPs, bytes and time, tagged with their variant."""
    points = []
    for key, breakdown in payload.get("components", {}).items():
        variant, row_mode = key.split("/")
        if row_mode != mode:
            continue
        for part in breakdown["parts"]:
            if part.get("intensity") and part.get("gflop_per_s"):
                points.append({"variant": variant, **part})
    return points


def roofline_png(payload: dict, mode: str) -> bytes | None:
    """The PNG of one mode's roofline, or None when no component has all of FLOPs, bytes and time."""
    figure = roofline_figure(payload, mode)
    if figure is None:
        return None
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120)
    plt.close(figure)
    return buffer.getvalue()


def roofline_figure(payload: dict, mode: str):
    """One mode's roofline as a matplotlib figure (the PNG above, the SVG of `bkprof report`), or None."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = roofline_points(payload, mode)
    if not points:
        return None
    roof = payload.get("roof") or {}
    figure, axes = plt.subplots(figsize=(9, 6))
    variants = list(dict.fromkeys(p["variant"] for p in points))
    colors = dict(zip(variants, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    for p in points:
        axes.scatter(p["intensity"], p["gflop_per_s"] * 1e9, color=colors[p["variant"]],
                     marker=PHASE_MARKERS.get(p["phase"], "x"), s=30, alpha=0.8)
        if p.get("time_share") and p["time_share"] >= 0.05:  # name the points that hold the time
            axes.annotate(f"{p['component']}", (p["intensity"], p["gflop_per_s"] * 1e9), fontsize=6,
                          xytext=(3, 3), textcoords="offset points")
    low = min(p["intensity"] for p in points) / 3
    high = max(p["intensity"] for p in points) * 3
    _draw_roofs(axes, roof, low, high)
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("arithmetic intensity (FLOPs per byte; bytes: each op's tensor inputs and outputs once)")
    axes.set_ylabel("achieved FLOP/s (op-counter FLOPs / profiled time)")
    env = payload.get("environment", {})
    axes.set_title(f"roofline, {mode}: {env.get('device_name', '?')}, batch {payload['method']['batch']}, "
                   f"N={payload['config']['n_seq']}, d={payload['config']['d_model']}", fontsize=9)
    handles = [plt.Line2D([], [], color=colors[v], marker="o", linestyle="", label=v) for v in variants]
    handles += [plt.Line2D([], [], color="grey", marker=m, linestyle="", label=phase)
                for phase, m in PHASE_MARKERS.items() if any(p["phase"] == phase for p in points)]
    axes.legend(handles=handles + axes.get_legend_handles_labels()[0], fontsize=7, loc="lower right")
    axes.grid(alpha=0.3, which="both")
    figure.tight_layout()
    return figure


def _draw_roofs(axes, roof: dict, low: float, high: float) -> None:
    import numpy as np

    x = np.geomspace(low, high, 200)
    flops, bandwidth, copy = roof.get("flops_per_s"), roof.get("bytes_per_s"), roof.get("copy_bytes_per_s")
    if flops and bandwidth:
        axes.plot(x, np.minimum(flops, x * bandwidth), color="black", linewidth=1.2,
                  label=f"roof: {flops / 1e12:,.1f} TFLOP/s {roof.get('precision', '').upper()}, {bandwidth / 1e9:,.0f} GB/s")
    elif flops:
        axes.axhline(flops, color="black", linewidth=1.2, label=f"compute peak {flops / 1e12:,.2f} TFLOP/s")
    if copy:
        top = flops if flops else float(np.max(x * copy))
        axes.plot(x, np.minimum(top, x * copy), color="black", linestyle="--", linewidth=0.8,
                  label=f"measured copy bandwidth {copy / 1e9:,.0f} GB/s")


def write_rooflines(payload: dict, folder: str | Path) -> list[Path]:
    """roofline-<mode>.png for each mode of the report into `folder` (a staging folder of the output writer)."""
    from bkprof.report import write_atomic

    written = []
    for mode in dict.fromkeys(row["mode"] for row in payload["rows"]):
        png = roofline_png(payload, mode)
        if png is not None:
            written.append(write_atomic(Path(folder) / f"roofline-{mode}.png", png))
    return written
