"""The report document: the runs, per setting the test perplexity over seeds against dense, the
count baselines, and a verdict on each published quality claim (perplexity side and FLOPs side)."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

from bkprof.validate.cost import CONVENTION, layer_claims
from bkprof.validate.train import RunSpec

SETTING = ("variant", "sparsity", "downsample")
# a claim is decided when its threshold lies outside the mean change +- this many standard errors
DECIDED_SEMS = 2.0

OBJECTIVE = ("masked words: 1 position in {groups} reads <mask> at the input and is predicted; the test "
             "text is scored word by word, each word hidden once (the layers see the whole sequence, "
             "so next-word prediction would let them read the word they predict)")


def quality_claims() -> list[dict]:
    return json.loads(Path(__file__).with_name("claims.json").read_text(encoding="utf-8"))


def _spread(values: list[float]) -> dict:
    n = len(values)
    std = statistics.stdev(values) if n > 1 else None
    return {"mean": statistics.fmean(values), "std": std, "sem": std / math.sqrt(n) if std is not None else None,
            "min": min(values), "max": max(values), "n": n}


def _mean_of(runs: list[dict], key: str):
    values = [r[key] for r in runs if r.get(key) is not None]
    return statistics.fmean(values) if values else None


def setting_of(run: dict) -> tuple:
    return tuple(run[k] for k in SETTING)


def summarise(runs: list[dict]) -> list[dict]:
    """One row per setting: test ppl over seeds, change against dense (paired by seed), costs."""
    by_setting: dict[tuple, list[dict]] = {}
    for run in runs:
        by_setting.setdefault(setting_of(run), []).append(run)
    dense = {r["seed"]: r["test_ppl"] for r in runs if r["variant"] == "dense"}
    dense_mean = statistics.fmean(dense.values()) if dense else None
    dense_flops = _mean_of([r for r in runs if r["variant"] == "dense"], "train_flops_per_token")
    dense_blocks = _mean_of([r for r in runs if r["variant"] == "dense"], "blocks_train_flops_per_token")
    rows = []
    for setting, group in by_setting.items():
        ppl = _spread([r["test_ppl"] for r in group])
        paired = [r["test_ppl"] / dense[r["seed"]] - 1 for r in group if r["seed"] in dense]
        flops, blocks = _mean_of(group, "train_flops_per_token"), _mean_of(group, "blocks_train_flops_per_token")
        rows.append({
            **dict(zip(SETTING, setting)),
            "seeds": ppl["n"], "test_ppl_mean": ppl["mean"], "test_ppl_std": ppl["std"],
            "test_ppl_min": ppl["min"], "test_ppl_max": ppl["max"],
            "ppl_vs_dense": ppl["mean"] / dense_mean - 1 if dense_mean else None,
            "ppl_vs_dense_paired": _spread(paired) if paired else None,
            "train_flops_per_token": flops, "blocks_train_flops_per_token": blocks,
            "flops_vs_dense": flops / dense_flops if dense_flops else None,
            "blocks_flops_vs_dense": blocks / dense_blocks if dense_blocks else None,
            "achieved_sparsity": _mean_of(group, "achieved_sparsity"),
            "tokens_per_s": _mean_of(group, "tokens_per_s"), "wall_s": _mean_of(group, "wall_s"),
            "peak_mib": _mean_of(group, "peak_mib"),
        })
    return sorted(rows, key=lambda r: (r["variant"], r["sparsity"] or 0, r["downsample"] or 0))


def _matches(row: dict, claim: dict) -> bool:
    return row["variant"] == claim["variant"] and all(row[k] == v for k, v in claim["setting"].items())


def _ppl_verdict(row: dict, claim: dict) -> dict:
    change = row["ppl_vs_dense_paired"]
    limit = claim["max_ppl_increase"]
    sem = change["sem"] if change else None
    # None: one seed, no spread to judge by
    decided = None if sem is None else abs(change["mean"] - limit) > DECIDED_SEMS * sem
    return {"ppl_change": change["mean"] if change else None, "ppl_change_sem": sem, "limit": limit,
            "holds": change["mean"] < limit if change else None, "decided": decided}


def _flops_verdict(row: dict, claim: dict, recipe) -> dict:
    rule = claim["flops"]
    out = {"says": rule["says"], "flops_vs_dense": row["flops_vs_dense"],
           "blocks_flops_vs_dense": row["blocks_flops_vs_dense"]}
    if "claim" in rule:
        spec = RunSpec(row["variant"], row["sparsity"], row["downsample"], 0)
        layer = next(c for c in layer_claims(spec, recipe) if c["id"] == rule["claim"])
        out.update(published_formula=layer["published_formula"], full_count=layer["full_count"],
                   holds=layer["holds"], scope="one layer's BK-Core path, forward (bkprof flops)")
    else:
        reduction = 1 - row["blocks_flops_vs_dense"]
        out.update(full_count=reduction, holds=reduction >= rule["min_reduction"],
                   scope="the blocks' training FLOPs per token against dense's (op counter)")
    return out


def verdicts(rows: list[dict], recipe) -> list[dict]:
    out = []
    for claim in quality_claims():
        row = next((r for r in rows if _matches(r, claim)), None)
        base = {"id": claim["id"], "claim": claim["claim"], "quoted_from": claim["quoted_from"],
                "setting": {"variant": claim["variant"], **claim["setting"]}}
        if row is None or row["ppl_vs_dense_paired"] is None:
            out.append({**base, "measured": False, "ppl": None, "flops": None})
            continue
        out.append({**base, "measured": True, "ppl": _ppl_verdict(row, claim),
                    "flops": _flops_verdict(row, claim, recipe)})
    return out


def document(plan, corpus, runs: list[dict], baseline: dict, failures: list[dict], skipped: int) -> dict:
    rows = summarise(runs)
    public = [{k: v for k, v in r.items() if k not in ("identity", "grid")} for r in runs]
    return {
        "data": corpus.describe(),
        "objective": OBJECTIVE.format(groups=plan.recipe.groups),
        "recipe": {**plan.recipe.as_dict(), "steps": plan.recipe.steps, "optimizer": "AdamW",
                   "lr_schedule": "linear warm-up, cosine decay", "sparsity_loss": "adaptive (Huber)",
                   "sparsity_schedule": "cosine, no back-off"},
        "conventions": {"flops": CONVENTION, "ppl": "exp(mean NLL in nats) over every scored test word",
                        "train_tokens": "input positions seen in training (steps x batch x n_seq)",
                        "tokens_per_s": "train_tokens / wall_s, training loop only (evaluation apart)",
                        "peak_mib": "CUDA max_memory_allocated during training, above what was allocated "
                                    "before; null on the CPU",
                        "achieved_sparsity": "1 - mean of the training (Gumbel) masks over the last tenth of "
                                             "the steps; evaluation keeps exactly int(N(1-s)) positions"},
        "devices": list(plan.devices), "jobs_per_device": plan.jobs_per_device,
        "runs": public, "failed": failures, "resumed_runs": skipped,
        "baselines": baseline,
        "summary": {"settings": rows, "claims": verdicts(rows, plan.recipe)},
    }
