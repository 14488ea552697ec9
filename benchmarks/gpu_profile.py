"""Run `bkprof profile` on the GPU twice per config and show that the medians repeat.

    PYTHONPATH=$PWD python3 benchmarks/gpu_profile.py OUTDIR [more bkprof profile options, e.g. --runs 50]

Configs: the defaults (batch 8, N=256, d=128) and a long context (batch 8, N=4096), forward and
train, all four variants, with --graphs and --ops 5. Each config runs twice in this one call;
writes profile-<GPU>-<config>.json and .md (first run), profile-<GPU>-<config>-run2.json, and
profile-<GPU>-repeat.md (median of run 2 against run 1, per row).
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


def profile(extra: list[str], output: Path) -> tuple[dict, str]:
    extra = [*extra, *OPTIONS]
    """One `bkprof profile` run and its command; should it die (no report written), once more without --graphs."""
    for common in (COMMON, [a for a in COMMON if a != "--graphs"]):
        command = [sys.executable, "-m", "bkprof", "profile", *common, *extra, "--output", str(output)]
        print("$", " ".join(["bkprof", *command[3:]]), flush=True)
        done = subprocess.run(command, text=True, capture_output=True)
        print(f"exit {done.returncode}", done.stderr.strip()[-3000:], sep="\n", flush=True)
        if output.exists():
            return json.loads(output.read_text()), " ".join(["bkprof", "profile", *common, *extra])
    raise SystemExit(f"bkprof profile wrote no report for {extra}")


def change(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else b / a - 1


def repeat_rows(first: dict, second: dict) -> list[dict]:
    """Per row: the step median of both runs and its change, and the change of the BK-Core graph replay (device time)."""
    rows = []
    for a, b in zip(first["rows"], second["rows"]):
        step = change(a["median_ms"], b["median_ms"])
        rows.append({"variant": a["variant"], "mode": a["mode"], "run 1 ms": a["median_ms"], "run 2 ms": b["median_ms"],
                     "change": step, "within 5 %": step is not None and abs(step) <= REPEAT_TOLERANCE,
                     "BK-Core graph change": change(a["bk_core_graph_ms"], b["bk_core_graph_ms"])})
    return rows


def main(out: Path) -> int:
    import pandas as pd

    from bkprof.profile.report import report_from_payload
    from bkprof.report import Table, render, write_atomic
    from bkprof.report.render import to_markdown

    out.mkdir(parents=True, exist_ok=True)
    gpu = gpu_short_name()
    sections, all_within = [], True
    for config, extra in CONFIGS.items():
        first, command = profile(extra, out / f"profile-{gpu}-{config}.json")
        second, command2 = profile(extra, out / f"profile-{gpu}-{config}-run2.json")
        write_atomic(out / f"profile-{gpu}-{config}.md", render(report_from_payload(first), "markdown"))
        print(render(report_from_payload(first), "table"), flush=True)
        frame = pd.DataFrame(repeat_rows(first, second))
        all_within &= bool(frame["within 5 %"].all())
        sections.append(to_markdown(Table(f"{config}: median step time, run 2 vs run 1 ({gpu})", frame,
                                          {"run 1 ms": "{:,.3f}", "run 2 ms": "{:,.3f}", "change": "{:+.1%}",
                                           "BK-Core graph change": "{:+.2%}"},
                                          f"`{command}` then `{command2}`, in the same call; largest |change| "
                                          f"{frame['change'].abs().max():.1%}")))
    verdict = f"All medians repeat within {REPEAT_TOLERANCE:.0%}: {'yes' if all_within else 'no'}."
    text = "\n".join(sections) + "\n" + verdict + "\n"
    write_atomic(out / f"profile-{gpu}-repeat.md", text)
    print(text, flush=True)
    return 0


if __name__ == "__main__":
    OPTIONS = sys.argv[2:]
    sys.exit(main(Path(sys.argv[1])))
