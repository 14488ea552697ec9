"""Worst relative max error of the CPU BK-Core backends against a float64 dense inverse.

    python benchmarks/accuracy_core.py --out reports [--trials 300]

Random chains as in the tests (tests/helpers.py): N from 1 to 512, B = 3, |diag| up to 100,
non-symmetric couplings with upper*lower > 0, z in {1j, 0.3+1j, -1+0.25j}; error = max|G - G_ref| / max|G_ref|.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bkprof.core import tridiag_resolvent_diagonal  # noqa: E402
from bkprof.report import Report, Table, render, write_atomic  # noqa: E402
from tests.helpers import dense_resolvent_diagonal, random_chain, relative_max_error  # noqa: E402

BACKENDS = ("reference", "vectorized")
DTYPES = (torch.float32, torch.float64)


def worst_errors(trials: int, seed: int = 0) -> list[dict]:
    generator, rng = torch.Generator().manual_seed(seed), random.Random(seed)
    worst = {(b, d): 0.0 for b in BACKENDS for d in DTYPES}
    for _ in range(trials):
        n, scale, z = rng.randint(1, 512), rng.choice([0.5, 3.0, 20.0, 100.0]), rng.choice([1j, 0.3 + 1j, -1 + 0.25j])
        for dtype in DTYPES:
            chain = random_chain(generator, 3, n, scale, dtype)
            truth = dense_resolvent_diagonal(*chain, z)
            for backend in BACKENDS:
                error = relative_max_error(tridiag_resolvent_diagonal(*chain, z, backend=backend), truth)
                worst[backend, dtype] = max(worst[backend, dtype], error)
    return [{"backend": b, "input": str(d).replace("torch.", ""), "worst_relative_max_error": e, "trials": trials}
            for (b, d), e in worst.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--trials", type=int, default=300)
    args = parser.parse_args()
    rows = worst_errors(args.trials)
    frame = pd.DataFrame(rows)
    report = Report({"rows": rows}, [Table("BK-Core accuracy against a float64 dense inverse (CPU)", frame,
                                           {"worst_relative_max_error": "{:.2e}"})], Table("rows", frame))
    write_atomic(args.out / "accuracy-core-cpu.json", json.dumps(rows, indent=2) + "\n")
    write_atomic(args.out / "accuracy-core-cpu.md", render(report, "markdown"))
    print(render(report, "markdown"))


if __name__ == "__main__":
    main()
