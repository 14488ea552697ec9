"""The tables of `bkprof validate` from its document."""

from __future__ import annotations

from bkprof.report import Report, Table

RUN_COLUMNS = ("variant", "sparsity", "downsample", "seed", "test_ppl", "achieved_sparsity", "train_tokens",
               "train_flops_per_token", "blocks_train_flops_per_token", "tokens_per_s", "wall_s", "eval_s",
               "peak_mib", "final_train_loss", "device")


def _percent(value) -> str | None:
    return None if value is None else f"{value:+.1%}"


def _verdict(holds, decided=True) -> str:
    if holds is None:
        return "not measured"
    word = "holds" if holds else "fails"
    if decided is None:
        return f"{word} (one seed)"
    return word if decided else f"{word} (within 2 SEM)"


def _settings_table(doc: dict):
    import pandas as pd

    rows = [{
        "variant": r["variant"], "sparsity": r["sparsity"], "downsample": r["downsample"], "seeds": r["seeds"],
        "test ppl": r["test_ppl_mean"], "± std": r["test_ppl_std"], "vs dense": _percent(r["ppl_vs_dense"]),
        "train FLOPs/token": r["train_flops_per_token"], "÷ dense": r["flops_vs_dense"],
        "blocks ÷ dense": r["blocks_flops_vs_dense"], "sparsity reached": r["achieved_sparsity"],
        "tokens/s": r["tokens_per_s"], "wall s": r["wall_s"], "peak MiB": r["peak_mib"],
    } for r in doc["summary"]["settings"]]
    data = doc["data"]
    caption = (f"{data['note']}; {data['train_tokens']:,} training and {data['test_tokens']:,} test tokens, "
               f"vocabulary {data['vocabulary']:,}. Objective: {doc['objective']}. FLOPs: {doc['conventions']['flops']}. "
               "vs dense: mean test ppl over seeds against dense's; ÷ dense: FLOPs per token against dense's "
               "(whole model; blocks: the residual blocks alone).")
    return Table("Test perplexity and training cost per setting", pd.DataFrame(rows),
                 {"test ppl": "{:,.2f}", "± std": "{:.2f}", "train FLOPs/token": "{:,.0f}", "÷ dense": "{:.2f}×",
                  "blocks ÷ dense": "{:.2f}×", "sparsity reached": "{:.3f}", "tokens/s": "{:,.0f}",
                  "wall s": "{:.1f}", "peak MiB": "{:,.1f}", "sparsity": "{:g}"}, caption)


def _baseline_table(doc: dict):
    import pandas as pd

    b = doc["baselines"]
    rows = [{"model": name, "smoothing": b[name]["smoothing"], "lambda": b[name].get("lambda"),
             "test ppl": b[name]["test_ppl"]} for name in ("unigram", "bigram", "two_sided")]
    return Table("Count baselines on the same test words", pd.DataFrame(rows), {"test ppl": "{:,.2f}"},
                 f"{b['note']}; two_sided sees the word on each side, as the masked objective does.")


def _claims_table(doc: dict):
    import pandas as pd

    rows = []
    for c in doc["summary"]["claims"]:
        ppl, flops = c["ppl"] or {}, c["flops"] or {}
        rows.append({
            "claim": c["claim"], "setting": ", ".join(f"{k}={v}" for k, v in c["setting"].items()),
            "ppl change": _percent(ppl.get("ppl_change")), "± SEM": _percent(ppl.get("ppl_change_sem")),
            "ppl side": _verdict(ppl.get("holds"), ppl.get("decided", True)),
            "FLOPs claimed": flops.get("says"), "full count": flops.get("full_count"),
            "FLOPs side": _verdict(flops.get("holds")),
        })
    return Table("Published quality claims", pd.DataFrame(rows), {"full count": "{:.4g}"},
                 "ppl change: mean over seeds of (variant / dense of the same seed - 1); a verdict within 2 "
                 "standard errors of its limit is marked so. FLOPs side: sparse: one layer's BK-Core path "
                 "factor (published formula against the full count, bkprof flops); multi-scale: 1 - blocks' "
                 "training FLOPs per token / dense's.")


def validate_report(doc: dict) -> Report:
    import pandas as pd

    runs = pd.DataFrame([{k: r.get(k) for k in RUN_COLUMNS} for r in doc["runs"]], columns=list(RUN_COLUMNS))
    return Report(doc, [_settings_table(doc), _baseline_table(doc), _claims_table(doc)], Table("runs", runs))
