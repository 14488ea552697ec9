"""The tables of `bkprof flops --model`, built from its JSON document (document -> tables)."""

from __future__ import annotations

import pandas as pd

from bkprof.report import Report, Table

INDENT = "  "


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def totals_table(doc: dict) -> Table:
    m, conv = doc["model"], doc["conventions"]
    backward = "backward_flops" in m
    rows = [
        {"counter": "bkprof op counter", "unit": "FLOPs", "forward": m["flops"],
         "backward": m.get("backward_flops"), "covers": "every op with a formula"},
        {"counter": "PyTorch FlopCounterMode", "unit": "FLOPs", "forward": m["torch_flop_counter"],
         "backward": m.get("torch_flop_counter_backward"), "covers": "matmul, conv, its attention kernels"},
        {"counter": "fvcore", "unit": "MACs", "forward": m["fvcore_macs"], "backward": None,
         "covers": m["fvcore_note"] or (f"matmul, conv (MACs); norms, pooling, upsampling (its own); "
                                        f"{sum(m['fvcore_unsupported'].values())} op calls skipped")},
    ]
    frame = pd.DataFrame(rows)
    if not backward:
        frame = frame.drop(columns=["backward"])
    tensors = {"fake": "fake tensors (no storage)", "meta": "meta tensors", "real": "real tensors"}[m["tensors"]]
    built = m["built_on_real_tensors"]
    fallback = f" Counted on real tensors (it cannot run on fake ones): {m['fallback']}." if m["fallback"] else ""
    built = f" Built on real tensors: {built}." if built and built != m["fallback"] else ""
    return Table(f"FLOPs of {m['factory']} on {m['inputs']}", frame, {"forward": "{:,.0f}", "backward": "{:,.0f}"},
                 caption=f"{conv['pass']}; {conv['per']}; counted on {tensors}; {m['parameters']:,} parameters. "
                         f"FLOPs: 2 per multiply-accumulate; MACs: 1.{built}{fallback}{_outside_aten(m)}")


def _outside_aten(m: dict) -> str:
    spent = m.get("outside_aten_cpu_seconds") or {}
    if not spent:
        return ""
    where = ", ".join(f"{key} {seconds * 1000:,.0f} ms" for key, seconds in spent.items())
    return f" Not counted: CPU time with no aten op running ({where}), work outside aten (numpy, Python arithmetic)."


def families_table(doc: dict) -> Table:
    m = doc["model"]
    backward = m.get("backward_by_family")
    families = [f for f in {**m["by_family"], **(backward or {})} if m["by_family"].get(f) or (backward or {}).get(f)]
    rows = []
    for family in families:
        row = {"family": family, "forward": m["by_family"].get(family, 0),
               "share": _share(m["by_family"].get(family, 0), m["flops"])}
        if backward is not None:
            row["backward"] = backward.get(family, 0)
        rows.append(row)
    return Table("By family (bkprof, FLOPs)", pd.DataFrame(rows), {"share": "{:.1%}"},
                 caption="`bkprof flops --conventions` lists each family's rules.")


def modules_table(doc: dict) -> Table:
    m = doc["model"]
    backward = m.get("backward_by_module")
    rows = []
    for name, flops in m["by_module"].items():
        depth = name.count(".") + 1 if name else 0
        row = {"module": INDENT * depth + (name.rsplit(".", 1)[-1] if name else "(model)"),
               "type": m["module_types"].get(name, ""), "forward": flops, "share": _share(flops, m["flops"])}
        if backward is not None:
            row["backward"] = backward.get(name, 0)
        rows.append(row)
    depth = "every level" if m["depth"] is None else f"{m['depth']} level(s) below the model"
    return Table("By module (bkprof, FLOPs, each including its submodules)", pd.DataFrame(rows), {"share": "{:.1%}"},
                 caption=f"Down to {depth} (`--depth`); modules that ran no counted op are not listed. "
                         "Backward work goes to the module whose forward created it.")


def missing_table(doc: dict) -> Table:
    m = doc["model"]
    rows = [{"op": key, "calls": calls} for key, calls in m["no_formula_calls"].items()]
    frame = pd.DataFrame(rows or [{"op": "(none: every op has a formula)", "calls": 0}])
    return Table("Ops without a formula (not counted, never taken as 0)", frame)


def results_frame(doc: dict) -> pd.DataFrame:
    """One row per (phase, module): the CSV schema."""
    m = doc["model"]
    rows = [("forward", name, flops) for name, flops in m["by_module"].items()]
    rows += [("backward", name, flops) for name, flops in m.get("backward_by_module", {}).items()]
    return pd.DataFrame(rows, columns=["phase", "module", "flops"])


def model_tables(doc: dict) -> Report:
    tables = [totals_table(doc), families_table(doc), modules_table(doc), missing_table(doc)]
    return Report(payload=doc, tables=tables, results=Table("results", results_frame(doc)))
