"""Time the triton backend at one size with other lane counts per program (for NOTES-triton.md).

    python benchmarks/tune_core.py [B N]

Each setting patches triton_backend.TILE and SEGMENT_LANES (the layout of a segment), checks the result
against the default setting, and prints the median µs of triton.testing.do_bench (L2 flushed
between calls).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bkprof.core import triton_backend as tb  # noqa: E402

# (positions per lane at most, lanes of a full segment)
SETTINGS = [(16, 128), (16, 64), (8, 128), (8, 256)]


def main() -> None:
    from triton.testing import do_bench

    batch, n = (int(v) for v in sys.argv[1:3]) if len(sys.argv) > 2 else (1024, 16384)
    gen = torch.Generator("cuda").manual_seed(0)
    diag = torch.rand(batch, n, device="cuda", generator=gen) * 6 - 5
    k = torch.rand(batch, n - 1, device="cuda", generator=gen) + 0.5
    baseline = tb.run(diag, k, 1j)
    defaults = tb.TILE, tb.SEGMENT_LANES
    for tb.TILE, tb.SEGMENT_LANES in SETTINGS:
        started = time.perf_counter()
        g = tb.run(diag, k, 1j)
        torch.cuda.synchronize()
        first_s = time.perf_counter() - started  # compilation, unless cached
        err = ((g - baseline).abs().max() / baseline.abs().max()).item()
        us = do_bench(lambda: tb.run(diag, k, 1j), warmup=50, rep=300, return_mode="median") * 1e3
        print(f"B={batch} N={n} lanes, positions per lane, segments {tb.row_layout(n)}: {us:9.1f} us  "
              f"(diff vs default {err:.1e}; first call {first_s:.1f} s)", flush=True)
    tb.TILE, tb.SEGMENT_LANES = defaults


if __name__ == "__main__":
    main()
