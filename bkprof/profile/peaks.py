"""What the device could do: datasheet peaks, the copy bandwidth measured in the same run, and the roof.

Datasheet values are NVIDIA's, for dense math (the "with sparsity" figures halved), boost clocks.
A CPU has no datasheet entry here: its FP32 peak is estimated as cores x clock x FLOPs per cycle
(from /proc/cpuinfo's vector flags), and its bandwidth is the copy bandwidth measured in the run.
`--peak-tflops` / `--peak-gbps` override either number; every report says which one it used.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass

_TERA, _GIGA = 1e12, 1e9


@dataclass(frozen=True)
class DevicePeak:
    """Peak FLOP/s (dense) per precision and peak memory bandwidth of one device, with the source."""

    device: str
    fp32_tflops: float
    tf32_tflops: float | None
    bf16_tflops: float | None
    memory_gbps: float
    source: str


# NVIDIA datasheets; tensor-core figures are the dense ones (the datasheets print 2x "with sparsity").
DATASHEET = {
    "H100 SXM": DevicePeak("H100 SXM", 67.0, 494.5, 989.5, 3350.0,
                           "NVIDIA H100 Tensor Core GPU datasheet (nvidia.com/en-us/data-center/h100)"),
    "H100 PCIe": DevicePeak("H100 PCIe", 51.0, 378.0, 756.5, 2000.0,
                            "NVIDIA H100 Tensor Core GPU datasheet (nvidia.com/en-us/data-center/h100)"),
    "H200 SXM": DevicePeak("H200 SXM", 67.0, 494.5, 989.5, 4800.0,
                           "NVIDIA H200 Tensor Core GPU datasheet (nvidia.com/en-us/data-center/h200)"),
    "H200 NVL": DevicePeak("H200 NVL", 60.0, 417.5, 835.5, 4800.0,
                           "NVIDIA H200 Tensor Core GPU datasheet (nvidia.com/en-us/data-center/h200)"),
    "A100 SXM 80GB": DevicePeak("A100 SXM 80GB", 19.5, 156.0, 312.0, 2039.0,
                                "NVIDIA A100 Tensor Core GPU datasheet (nvidia.com/en-us/data-center/a100)"),
    "A100 PCIe 80GB": DevicePeak("A100 PCIe 80GB", 19.5, 156.0, 312.0, 1935.0,
                                 "NVIDIA A100 Tensor Core GPU datasheet (nvidia.com/en-us/data-center/a100)"),
    "A100 40GB": DevicePeak("A100 40GB", 19.5, 156.0, 312.0, 1555.0,
                            "NVIDIA A100 Tensor Core GPU datasheet (nvidia.com/en-us/data-center/a100)"),
    "L4": DevicePeak("L4", 30.3, 60.0, 121.0, 300.0,
                     "NVIDIA L4 Tensor Core GPU datasheet (nvidia.com/en-us/data-center/l4)"),
}


def datasheet_entry(device_name: str) -> DevicePeak | None:
    """The DATASHEET entry for a CUDA device name such as "NVIDIA H200" or "NVIDIA H100 80GB HBM3"."""
    name = device_name.upper()
    if "H200" in name:
        return DATASHEET["H200 NVL" if "NVL" in name else "H200 SXM"]
    if "H100" in name:
        return DATASHEET["H100 PCIe" if "PCIE" in name else "H100 SXM"]
    if "A100" in name:
        if "40GB" in name:
            return DATASHEET["A100 40GB"]
        return DATASHEET["A100 PCIe 80GB" if "PCIE" in name else "A100 SXM 80GB"]
    if re.search(r"\bL4\b", name):
        return DATASHEET["L4"]
    return None


# FP32 FLOPs per cycle per core: two FMA units x vector lanes x 2 (multiply and add)
_CPU_FLOPS_PER_CYCLE = (("avx512f", 64), ("avx2", 32), ("avx", 16), ("sse2", 8))


def cpu_fp32_estimate(threads: int, cpuinfo: str | None = None) -> tuple[float | None, str]:
    """FP32 FLOP/s of `threads` cores as cores x clock x FLOPs per cycle, and how it was estimated."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8") as handle:
                cpuinfo = handle.read()
        except OSError:
            return None, "no /proc/cpuinfo: pass --peak-tflops"
    flags = set(re.search(r"^flags\s*:\s*(.*)$", cpuinfo, re.M).group(1).split()) if "flags" in cpuinfo else set()
    per_cycle = next((n for flag, n in _CPU_FLOPS_PER_CYCLE if flag in flags), None)
    mhz = [float(m) for m in re.findall(r"^cpu MHz\s*:\s*([\d.]+)", cpuinfo, re.M)]
    if per_cycle is None or not mhz:
        return None, "clock or vector width not found in /proc/cpuinfo: pass --peak-tflops"
    isa = next(flag for flag, n in _CPU_FLOPS_PER_CYCLE if n == per_cycle)
    clock = max(mhz) * 1e6
    return (threads * clock * per_cycle,
            f"estimated: {threads} threads x {clock / 1e9:.2f} GHz (/proc/cpuinfo) x {per_cycle} FP32 FLOPs/cycle ({isa}, 2 FMA units)")


@dataclass(frozen=True)
class Roof:
    """The peak a report compares with: compute (FLOP/s) and memory (bytes/s), and where each came from."""

    flops_per_s: float | None
    bytes_per_s: float | None
    precision: str
    flops_source: str
    bytes_source: str
    copy_bytes_per_s: float | None = None

    def attainable(self, intensity: float) -> float | None:
        """Roofline: min(compute peak, intensity x bandwidth) in FLOP/s, at `intensity` FLOPs per byte."""
        if self.flops_per_s is None or self.bytes_per_s is None:
            return None
        return min(self.flops_per_s, intensity * self.bytes_per_s)

    def as_dict(self) -> dict:
        return asdict(self)


def precision_of(env: dict) -> str:
    """The math the profiled float32 steps use: TF32 on tensor cores when the run allowed it, else FP32."""
    return "tf32" if env.get("tf32_matmul") else "fp32"


def roof_for(env: dict, copy_bytes_per_s: float | None, peak_tflops: float | None = None,
             peak_gbps: float | None = None) -> Roof:
    """The roof for a run on `env` (as `environment()` describes it); overrides win over the datasheet."""
    precision = precision_of(env)
    flops, flops_source, bandwidth, bytes_source = None, "unknown device: pass --peak-tflops", None, ""
    if env["device"] == "cuda":
        entry = datasheet_entry(env["device_name"])
        if entry is not None:
            value = {"fp32": entry.fp32_tflops, "tf32": entry.tf32_tflops}[precision]
            flops, flops_source = value * _TERA, f"{entry.device} {precision.upper()} {value:g} TFLOP/s, {entry.source}"
            bandwidth = entry.memory_gbps * _GIGA
            bytes_source = f"{entry.device} {entry.memory_gbps:,.0f} GB/s, {entry.source}"
    else:
        flops, flops_source = cpu_fp32_estimate(env.get("cpu_threads") or os.cpu_count() or 1)
    if bandwidth is None and copy_bytes_per_s is not None:
        bandwidth, bytes_source = copy_bytes_per_s, "copy bandwidth measured in this run (no datasheet entry)"
    if peak_tflops is not None:
        flops, flops_source = peak_tflops * _TERA, f"--peak-tflops {peak_tflops:g}"
    if peak_gbps is not None:
        bandwidth, bytes_source = peak_gbps * _GIGA, f"--peak-gbps {peak_gbps:g}"
    return Roof(flops, bandwidth, precision, flops_source, bytes_source or "unknown: pass --peak-gbps", copy_bytes_per_s)


# the copy the bandwidth is measured with: far larger than any cache, small enough for any device
COPY_BYTES = {"cuda": 512 * 2**20, "cpu": 128 * 2**20}
COPY_RUNS = 10


def copy_bandwidth(device) -> float:
    """Bytes/s of a device-to-device copy (2 bytes moved per byte copied: read and write), median of runs."""
    import torch

    device = torch.device(device)
    n = COPY_BYTES["cuda" if device.type == "cuda" else "cpu"]
    src = torch.empty(n, dtype=torch.uint8, device=device).fill_(1)
    dst = torch.empty_like(src)
    from bkprof.profile.timing import Timer

    timer = Timer(device, warmup=2, runs=COPY_RUNS)
    seconds = timer.measure(lambda _: dst.copy_(src), [None]).median
    return 2 * n / seconds


def peaks_table_rows() -> list[dict]:
    """DATASHEET as rows, for the docs and `bkprof profile`'s JSON."""
    return [asdict(p) for p in DATASHEET.values()]


def peaks_report():
    """`bkprof profile --peaks`: DATASHEET as a report (table, JSON, CSV or Markdown)."""
    import pandas as pd

    from bkprof.report import Report, Table

    rows = peaks_table_rows()
    frame = pd.DataFrame(rows).rename(columns={"fp32_tflops": "FP32 TFLOP/s", "tf32_tflops": "TF32 TFLOP/s",
                                               "bf16_tflops": "BF16 TFLOP/s", "memory_gbps": "memory GB/s"})
    table = Table("Device peaks (dense math; the datasheets' tensor-core figures 'with sparsity' are twice these)",
                  frame, {"memory GB/s": "{:,.0f}"},
                  "A run compares with its device's FP32 peak (float32 steps, TF32 off) or TF32 when the run allowed "
                  "it; --peak-tflops / --peak-gbps override. CPU: FP32 estimated as threads x clock x FLOPs per "
                  "cycle from /proc/cpuinfo; bandwidth: the copy bandwidth measured in the run.")
    return Report(payload={"command": "profile --peaks", "peaks": rows}, tables=[table], results=table)
