"""The tables of `bkprof validate` from its document."""

from __future__ import annotations

from bkprof.report import Report, Table

RUN_COLUMNS = ("variant", "sparsity", "downsample", "d_model", "lr", "seed", "test_ppl", "achieved_sparsity",
               "train_tokens", "train_flops_per_token", "blocks_train_flops_per_token", "tokens_per_s", "wall_s",
               "eval_s", "peak_mib", "final_train_loss", "device")


def _percent(value) -> str | None:
    return None if value is None else f"{value:+.1%}"


def _interval(entry: dict) -> str | None:
    if entry.get("low") is None:
        return None
    return f"[{entry['low']:+.1%}, {entry['high']:+.1%}]"


def _setting_label(r: dict) -> str:
    parts = [f"{short} = {r[k]:g}" for k, short in (("sparsity", "s"), ("downsample", "f")) if r.get(k) is not None]
    return ", ".join(parts)


def _settings_table(doc: dict):
    import pandas as pd

    rows = [{
        "variant": r["variant"], "setting": _setting_label(r), "role": r["role"], "d": r["d_model"], "lr": r["lr"],
        "seeds": r["seeds"], "test ppl": r["test_ppl_mean"], "± std": r["test_ppl_std"],
        "std % of mean": None if r["test_ppl_cv"] is None else f"{r['test_ppl_cv']:.1%}",
        "vs dense (same d)": _percent(r["ppl_vs_dense"]),
        "train FLOPs/token": r["train_flops_per_token"], "÷ dense": r["flops_vs_dense"],
        "blocks ÷ dense": r["blocks_flops_vs_dense"], "sparsity reached": r["achieved_sparsity"],
        "tokens/s": r["tokens_per_s"], "wall s": r["wall_s"], "peak MiB": r["peak_mib"],
    } for r in doc["summary"]["settings"]]
    data = doc["data"]
    caption = (f"{data['note']}; {data['train_tokens']:,} training and {data['test_tokens']:,} test tokens, "
               f"vocabulary {data['vocabulary']:,}. Objective: {doc['objective']}. FLOPs: {doc['conventions']['flops']}. "
               "role: reference = dense and the Transformer reference (not a BK variant, "
               f"{doc['recipe']['reference']}); control = a claim variant's no-skip setting. vs dense: mean test "
               "ppl over seeds against dense's of the same width and learning rate; ÷ dense: FLOPs per token "
               "against dense's (whole model; blocks: the residual blocks alone)." + _where_it_ran(doc))
    return Table("Test perplexity and training cost per setting and width", pd.DataFrame(rows),
                 {"test ppl": "{:,.2f}", "± std": "{:.2f}", "train FLOPs/token": "{:,.0f}", "÷ dense": "{:.2f}×",
                  "blocks ÷ dense": "{:.2f}×", "sparsity reached": "{:.3f}", "tokens/s": "{:,.0f}",
                  "wall s": "{:.1f}", "peak MiB": "{:,.1f}", "lr": "{:g}"}, caption,
                 essential=("variant", "setting", "d", "seeds", "test ppl", "± std", "vs dense (same d)"))


def _where_it_ran(doc: dict) -> str:
    """With --cluster: the cluster's nodes, those lost, and the retry bound (bkprof.cluster)."""
    cluster = doc.get("cluster")
    if not cluster:
        return ""
    return (f" This session's {sum(cluster['runs_by_node'].values())} run(s) ran as Ray tasks on a cluster of "
            f"{cluster['nodes']} node(s), {cluster['nodes_lost']} lost meanwhile; a run whose node was lost ran "
            f"again elsewhere, at most {cluster['max_retries']} times.")


def _comparisons_table(doc: dict):
    import pandas as pd

    rows = [{
        "variant": c["variant"], "setting": _setting_label(c), "lr": c["lr"], "against": c["reference"],
        "reference d": c["reference_d_model"], "at": c["at"],
        "reference FLOPs/token": c["reference_flops_per_token"], "ppl change": _percent(c["change"]),
        "95 % interval": _interval(c), "df": c["df"],
    } for c in doc["summary"]["comparisons"]]
    return Table("Every setting against dense, its own control and the Transformer, at equal width and at "
                 "equal compute", pd.DataFrame(rows), {"reference FLOPs/token": "{:,.0f}", "df": "{:.1f}",
                                                       "lr": "{:g}"},
                 "equal compute: the setting's PPL interpolated on its own curve across widths (linear in log "
                 "FLOPs, log PPL) at the reference's training FLOPs per token; empty when those FLOPs lie "
                 f"outside its widths. {doc['conventions']['interval']}.",
                 essential=("variant", "setting", "against", "at", "ppl change", "95 % interval"))


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
        setting = ", ".join(f"{k}={v}" for k, v in c["setting"].items())
        for p in c["ppl"]:
            rows.append({"claim": c["claim"], "setting": setting, "side": "PPL", "against": p["reference"],
                         "d": p["reference_d_model"], "at": p["at"], "measured": _percent(p["change"]),
                         "95 % interval": _interval(p), "limit": _percent(c["limit"]), "verdict": p["verdict"]})
        for f in c["flops"]:
            rows.append({"claim": c["claim"], "setting": setting, "side": "FLOPs", "against": f["says"],
                         "d": f["d_model"], "at": f["scope"], "measured": None if f["full_count"] is None
                         else f"{f['full_count']:.4g}", "95 % interval": None, "limit": None,
                         "verdict": f["verdict"]})
        if not c["measured"]:
            rows.append({"claim": c["claim"], "setting": setting, "side": "", "verdict": "not measured"})
    return Table("Published quality claims", pd.DataFrame(rows), {},
                 f"PPL side: {doc['conventions']['verdict']}; against dense and against the variant's own no-skip "
                 "control, at each reference width, at equal width and at equal compute. FLOPs side: sparse: one "
                 "layer's BK-Core path factor (published formula against the full count, bkprof flops); "
                 "multi-scale: 1 - blocks' training FLOPs per token / dense's.",
                 essential=("setting", "side", "against", "at", "measured", "95 % interval", "verdict"))


def validate_report(doc: dict) -> Report:
    import pandas as pd

    runs = pd.DataFrame([{k: r.get(k) for k in RUN_COLUMNS} for r in doc["runs"]], columns=list(RUN_COLUMNS))
    return Report(doc, [_settings_table(doc), _comparisons_table(doc), _baseline_table(doc), _claims_table(doc)],
                  Table("runs", runs))
