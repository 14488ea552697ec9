"""Run `bkprof profile` on the GPU for each config: the report, its roofline plots, and what holds the memory peak.

    PYTHONPATH=$PWD python3 benchmarks/gpu_profile.py OUTDIR [more bkprof profile options, e.g. --runs 50]
    PYTHONPATH=$PWD python3 benchmarks/gpu_profile.py OUTDIR --repeat [options]   (each config twice, and the repeat table)
    PYTHONPATH=$PWD python3 benchmarks/gpu_profile.py OUTDIR --pack DIR [options]   (also DIR/<config>.tar per config)
    python3 benchmarks/gpu_profile.py OUTDIR --repeat-only GPU   (the repeat table again, from OUTDIR's reports)

Configs: the defaults (batch 8, N=256, d=128) and a long context (batch 8, N=4096), forward and
train, all four variants, with --graphs, --ops 5 and the per-component breakdown. Writes, per
config, profile-<GPU>-<config>.json and .md, the roofline plots under plots-<config>/, and
memory-<GPU>-<config>.json (the CUDA allocator's trace at the peak of combined/train); each
config's files are packed into DIR/<config>.tar (--pack DIR) as soon as they exist, so a run cut
short keeps the configs it finished. With --repeat: profile-<GPU>-<config>-run2.json and profile-<GPU>-repeat.md
(median of run 2 against run 1, per row).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

CONFIGS = {"defaults": [], "long": ["--batch", "8", "--n-seq", "4096"]}
COMMON = ["--device", "cuda", "--graphs", "--ops", "5", "--format", "json"]
REPEAT_TOLERANCE = 0.05
OPTIONS: list[str] = []  # further `bkprof profile` options from the command line, for every run


def gpu_short_name() -> str:
    """"NVIDIA H100 80GB HBM3" -> "H100": the model number names the report files."""
    import torch

    name = torch.cuda.get_device_name()
    match = re.search(r"\b([A-Z]+\d{2,4}[A-Za-z]*)\b", name)
    return match.group(1) if match else re.sub(r"\W+", "-", name)


def profile(extra: list[str], output: Path, plots: Path | None = None) -> dict:
    """One `bkprof profile` run's report; should it die (no report written), once more without --graphs."""
    extra = [*extra, *OPTIONS, *(["--plot", str(plots)] if plots else [])]
    for common in (COMMON, [a for a in COMMON if a != "--graphs"]):
        command = [sys.executable, "-m", "bkprof", "profile", *common, *extra, "--output", str(output)]
        print("$", " ".join(["bkprof", *command[3:]]), flush=True)
        done = subprocess.run(command, text=True, capture_output=True)
        print(f"exit {done.returncode}", done.stderr.strip()[-3000:], sep="\n", flush=True)
        if output.exists():
            return json.loads(output.read_text())
    raise SystemExit(f"bkprof profile wrote no report for {extra}")


def change(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else b / a - 1


def repeat_rows(first: dict, second: dict) -> list[dict]:
    """Per row: the eager step median of both runs and its change; the same for the step's CUDA
    graph replay (device time); the change of the BK-Core's own graph replay."""
    rows = []
    for a, b in zip(first["rows"], second["rows"]):
        eager, graph = change(a["median_ms"], b["median_ms"]), change(a.get("graph_ms"), b.get("graph_ms"))
        rows.append({"variant": a["variant"], "mode": a["mode"], "eager run 1 ms": a["median_ms"],
                     "eager run 2 ms": b["median_ms"], "eager change": eager,
                     "graph run 1 ms": a.get("graph_ms"), "graph run 2 ms": b.get("graph_ms"), "graph change": graph,
                     "graph within 5 %": graph is not None and abs(graph) <= REPEAT_TOLERANCE,
                     "BK-Core graph change": change(a["bk_core_graph_ms"], b["bk_core_graph_ms"])})
    return rows


def write_repeat(out: Path, gpu: str) -> str:
    """profile-<GPU>-repeat.md from the two reports of each config in `out`; returns its text."""
    import pandas as pd

    from bkprof.report import Table, write_atomic
    from bkprof.report.render import to_markdown

    sections, largest = [], {"eager change": 0.0, "graph change": 0.0}
    for config in CONFIGS:
        first, second = (json.loads((out / f"profile-{gpu}-{config}{suffix}.json").read_text()) for suffix in ("", "-run2"))
        frame = pd.DataFrame(repeat_rows(first, second))
        for column in largest:
            largest[column] = max(largest[column], float(frame[column].abs().max()))
        ms = {c: "{:,.3f}" for c in ("eager run 1 ms", "eager run 2 ms", "graph run 1 ms", "graph run 2 ms")}
        sections.append(to_markdown(Table(
            f"{config}: median step time, run 2 vs run 1 ({gpu})", frame,
            {**ms, "eager change": "{:+.1%}", "graph change": "{:+.2%}", "BK-Core graph change": "{:+.2%}"},
            f"`{' '.join(['bkprof profile', *COMMON, *CONFIGS[config], *OPTIONS])}` twice, in the same call. Eager: CUDA events around each step as the host "
            "launches it; graph: replays of the whole step captured as one CUDA graph (device time).")))
    verdict = (f"Graph-replay medians (device time) repeat within {REPEAT_TOLERANCE:.0%}: "
               f"{'yes' if largest['graph change'] <= REPEAT_TOLERANCE else 'no'} (largest |change| "
               f"{largest['graph change']:.2%}). Eager medians: largest |change| {largest['eager change']:.1%}; "
               "they time the host's launch loop (hundreds of small kernels per step), not the GPU.")
    text = "\n".join(sections) + "\n" + verdict + "\n"
    write_atomic(out / f"profile-{gpu}-repeat.md", text)
    return text


def memory_at_peak(extra: list[str], output: Path) -> list[dict]:
    """The CUDA allocator's trace over two runs of combined/train and sparse/train: what is live at the
    peak and where from, with cuDNN on (as `bkprof profile` runs) and off (convolutions without cuDNN)."""
    import torch

    from bkprof.report import write_atomic

    found = []
    for variant in ("combined", "sparse"):
        for cudnn in (True, False):
            with torch.backends.cudnn.flags(enabled=cudnn):
                found.append({"variant": variant, "mode": "train", "cudnn": cudnn, **_trace_row(extra, variant)})
    write_atomic(output, json.dumps(found, indent=2) + "\n")
    return found


def _trace_row(extra: list[str], variant: str, mode: str = "train") -> dict:
    import torch

    from bkprof.profile.memory import cuda_peak_blocks
    from bkprof.profile.steps import input_pool, layer_step
    from bkprof.variants import LayerConfig, build

    sizes = dict(zip(extra[::2], extra[1::2]))
    config = LayerConfig(n_seq=int(sizes.get("--n-seq", 256)))
    batch = int(sizes.get("--batch", 8))
    device = torch.device("cuda")
    model = build(variant, config, seed=0).to(device)
    step = layer_step(model, mode)
    pool = input_pool((batch, config.n_seq, config.d_model), device, seed=0)
    for x in pool:  # warm up: Triton compiles, cuBLAS/cuDNN workspaces and Adam state appear
        step(x)
    torch.cuda.synchronize()
    start = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start[0].record()
    for x in pool:
        step(x)
    start[1].record()
    torch.cuda.synchronize()
    return {"batch": batch, "n_seq": config.n_seq, "eager_ms_per_step": start[0].elapsed_time(start[1]) / len(pool),
            **cuda_peak_blocks(step, pool, device)}


def pack(out: Path, config: str, names: list[str], into: Path) -> None:
    """into/<config>.tar of the files a config wrote, so they come back even if a later config runs out of time."""
    import tarfile

    into.mkdir(parents=True, exist_ok=True)
    with tarfile.open(into / f"{config}.tar", "w") as tar:
        for name in names:
            if (out / name).exists():
                tar.add(out / name, arcname=name)


def main(out: Path, repeat: bool, pack_into: Path | None) -> int:
    from bkprof.profile.report import report_from_payload
    from bkprof.report import render, write_atomic
    from bkprof.report.render import to_markdown

    out.mkdir(parents=True, exist_ok=True)
    gpu = gpu_short_name()
    for config, extra in CONFIGS.items():
        first = profile(extra, out / f"profile-{gpu}-{config}.json", out / f"plots-{config}")
        if repeat:
            profile(extra, out / f"profile-{gpu}-{config}-run2.json")
        write_atomic(out / f"profile-{gpu}-{config}.md", render(report_from_payload(first), "markdown"))
        report = report_from_payload(first)
        print(to_markdown(report.tables[0]), flush=True)  # the results table; the rest is in the files
        try:
            for trace in memory_at_peak(extra, out / f"memory-{gpu}-{config}.json"):
                top = trace["at_peak"][0] if trace["at_peak"] else {}
                print(f"{trace['variant']}/{trace['mode']} cudnn={trace['cudnn']}: peak {trace['peak_mib_above_start']:.1f} MiB "
                      f"above the start, {trace['eager_ms_per_step']:.2f} ms/step; largest: {top}", flush=True)
        except Exception as error:  # noqa: BLE001 - the reports above must still come back
            print(f"memory trace failed: {type(error).__name__}: {error}", flush=True)
        if pack_into is not None:
            pack(out, config, [f"profile-{gpu}-{config}.json", f"profile-{gpu}-{config}.md", f"plots-{config}",
                               f"memory-{gpu}-{config}.json"], pack_into)
    if repeat:
        print(write_repeat(out, gpu), flush=True)
    return 0


if __name__ == "__main__":
    if sys.argv[2:3] == ["--repeat-only"]:  # rebuild the repeat table from the reports already in OUTDIR
        print(write_repeat(Path(sys.argv[1]), sys.argv[3]))
        sys.exit(0)
    arguments = sys.argv[2:]
    repeat = "--repeat" in arguments
    pack_into = None
    if "--pack" in arguments:  # --pack DIR: each config's files also as DIR/<config>.tar
        at = arguments.index("--pack")
        pack_into = Path(arguments[at + 1])
        del arguments[at:at + 2]
    OPTIONS = [a for a in arguments if a != "--repeat"]
    sys.exit(main(Path(sys.argv[1]), repeat, pack_into))
