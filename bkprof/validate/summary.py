"""The report document: the runs, per setting and width the test perplexity over seeds, every setting
against its references at equal width and at equal training compute (with a 95 % interval, see
`bkprof.validate.stats`), the count baselines, and a verdict on each published quality claim
(perplexity side against dense and against the variant's own no-skip control, and FLOPs side).

No torch here: `--report-only` must be quick. What needs torch (the count baselines, bkprof flops'
layer claims) comes through a cache (`bkprof.validate.cache`)."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

from bkprof.validate import stats
from bkprof.validate.cost import CONVENTION
from bkprof.validate.train import REFERENCE, Recipe, RunSpec

SETTING = ("variant", "sparsity", "downsample")
ROW = SETTING + ("d_model", "lr")
DENSE = "dense"

OBJECTIVE = ("masked words: 1 position in {groups} reads <mask> at the input and is predicted; the test "
             "text is scored word by word, each word hidden once (the layers see the whole sequence, "
             "so next-word prediction would let them read the word they predict)")


def quality_claims() -> list[dict]:
    return json.loads(Path(__file__).with_name("claims.json").read_text(encoding="utf-8"))


def control_of(setting: tuple) -> tuple | None:
    """The variant's own no-skip setting: sparsity 0 (every G_ii computed) and downsampling f = 1; None
    for a variant without either setting, or a setting that is its own control."""
    variant, sparsity, downsample = setting
    if sparsity is None and downsample is None:
        return None
    control = (variant, None if sparsity is None else 0.0, None if downsample is None else 1)
    return None if control == tuple(setting) else control


def role_of(setting: tuple) -> str:
    if setting[0] in (DENSE, REFERENCE):
        return "reference"
    return "variant" if control_of(setting) else "control"


def with_recipe(run: dict) -> dict:
    """The run with its width and learning rate (records written before they were stored: from its grid)."""
    if "d_model" in run and "lr" in run:
        return run
    recipe = json.loads(run["grid"])["recipe"]
    return {**run, "d_model": recipe["d_model"], "lr": recipe["lr"]}


def _mean_of(runs: list[dict], key: str):
    values = [r[key] for r in runs if r.get(key) is not None]
    return statistics.fmean(values) if values else None


def _row(key: tuple, group: list[dict]) -> dict:
    ppl = [r["test_ppl"] for r in group]
    log = stats.Mean.of([math.log(p) for p in ppl])
    mean = statistics.fmean(ppl)
    std = statistics.stdev(ppl) if len(ppl) > 1 else None
    return {
        **dict(zip(ROW, key)), "role": role_of(key[:3]),
        "seeds": len(ppl), "test_ppl_mean": mean, "test_ppl_std": std,
        "test_ppl_cv": std / mean if std is not None else None,
        "test_ppl_min": min(ppl), "test_ppl_max": max(ppl),
        "log_ppl": {"mean": log.mean, "var": log.var, "n": log.n},
        "train_flops_per_token": _mean_of(group, "train_flops_per_token"),
        "blocks_train_flops_per_token": _mean_of(group, "blocks_train_flops_per_token"),
        "achieved_sparsity": _mean_of(group, "achieved_sparsity"),
        "tokens_per_s": _mean_of(group, "tokens_per_s"), "wall_s": _mean_of(group, "wall_s"),
        "peak_mib": _mean_of(group, "peak_mib"),
        "step_modes": sorted({r.get("step") or "eager" for r in group}),
    }


def _ratio(row: dict, ref: dict | None, key: str) -> float | None:
    """row[key] / ref[key]; None without a reference (no dense run at that width) or a value."""
    if ref is None or not ref[key] or row[key] is None:
        return None
    return row[key] / ref[key]


def summarise(runs: list[dict]) -> list[dict]:
    """One row per (setting, width, learning rate): test ppl over seeds, costs, and against dense of the
    same width and learning rate (ratio of the seeds' mean perplexities and of the FLOPs per token)."""
    groups: dict[tuple, list[dict]] = {}
    for run in map(with_recipe, runs):
        groups.setdefault(tuple(run[k] for k in ROW), []).append(run)
    rows = [_row(key, group) for key, group in groups.items()]
    dense = {(r["d_model"], r["lr"]): r for r in rows if r["variant"] == DENSE}
    for row in rows:
        ref = dense.get((row["d_model"], row["lr"]))
        ppl = _ratio(row, ref, "test_ppl_mean")
        row.update(ppl_vs_dense=None if ppl is None else ppl - 1,
                   flops_vs_dense=_ratio(row, ref, "train_flops_per_token"),
                   blocks_flops_vs_dense=_ratio(row, ref, "blocks_train_flops_per_token"))
    order = {"reference": 0, "variant": 1, "control": 1}
    return sorted(rows, key=lambda r: (order[r["role"]], r["variant"] != DENSE, r["variant"], r["sparsity"] or 0,
                                       r["downsample"] or 0, r["lr"], r["d_model"]))


def _mean(row: dict) -> stats.Mean:
    return stats.Mean(**row["log_ppl"])


def _setting(row: dict) -> tuple:
    return tuple(row[k] for k in SETTING)


def _references(setting: tuple) -> list[tuple[str, tuple]]:
    """(label, setting) of what `setting` is compared with: dense (but dense itself), its own control, the
    Transformer (where ResNet-BK stands against the model users would pick instead)."""
    refs = [] if setting[0] == DENSE else [("dense", (DENSE, None, None))]
    control = control_of(setting)
    if control is not None:
        refs.append(("control", control))
    return refs + [("transformer", (REFERENCE, None, None))]


def comparisons(rows: list[dict]) -> list[dict]:
    """Every BK setting against each reference width (dense against the Transformer only): at equal width
    (the same d) and at equal compute (its PPL interpolated on its own curve at the reference's training
    FLOPs per token)."""
    out = []
    by_key = {(_setting(r), r["lr"]): [] for r in rows}
    for r in rows:
        by_key[(_setting(r), r["lr"])].append(r)
    for (setting, lr), own in by_key.items():
        if setting[0] == REFERENCE:
            continue
        curve = [(r["train_flops_per_token"], _mean(r)) for r in own]
        widths = {r["d_model"]: r for r in own}
        for label, ref_setting in _references(setting):
            for ref in by_key.get((ref_setting, lr), []):
                base = {**dict(zip(SETTING, setting)), "lr": lr, "reference": label,
                        "reference_setting": dict(zip(SETTING, ref_setting)), "reference_d_model": ref["d_model"],
                        "reference_flops_per_token": ref["train_flops_per_token"]}
                mine = widths.get(ref["d_model"])
                if mine is not None:
                    same = stats.change([(mine["train_flops_per_token"], _mean(mine))], mine["train_flops_per_token"],
                                        _mean(ref))
                    out.append({**base, "at": "equal width", **same})
                at_compute = stats.change(curve, ref["train_flops_per_token"], _mean(ref))
                out.append({**base, "at": "equal compute", **(at_compute or {
                    "change": None, "low": None, "high": None, "df": None, "weights": None,
                    "note": "the reference's FLOPs per token lie outside this setting's widths (no extrapolation)"})})
    return out


def _matches(setting: dict, claim: dict) -> bool:
    return setting["variant"] == claim["variant"] and all(setting.get(k) == v for k, v in claim["setting"].items())


def _flops_verdict(row: dict, claim: dict, recipe: Recipe, layer_claims) -> dict:
    rule = claim["flops"]
    out = {"d_model": row["d_model"], "says": rule["says"], "flops_vs_dense": row["flops_vs_dense"],
           "blocks_flops_vs_dense": row["blocks_flops_vs_dense"]}
    if "claim" in rule:
        spec = RunSpec(row["variant"], row["sparsity"], row["downsample"], 0)
        layer = next(c for c in layer_claims(spec, recipe) if c["id"] == rule["claim"])
        out.update(published_formula=layer["published_formula"], full_count=layer["full_count"],
                   verdict="holds" if layer["holds"] else "fails",
                   scope="one layer's BK-Core path, forward (bkprof flops)")
    elif row["blocks_flops_vs_dense"] is not None:
        reduction = 1 - row["blocks_flops_vs_dense"]
        out.update(full_count=reduction, verdict="holds" if reduction >= rule["min_reduction"] else "fails",
                   scope="the blocks' training FLOPs per token against dense's (op counter)")
    else:
        out.update(full_count=None, verdict="undecided", scope="no dense run at this width")
    return out


def verdicts(rows: list[dict], compared: list[dict], recipe_at, layer_claims) -> list[dict]:
    """Per claim: the PPL side against dense and against the control, at each reference width, at equal
    width and at equal compute (holds / fails / undecided from the 95 % interval), and the FLOPs side."""
    out = []
    for claim in quality_claims():
        base = {"id": claim["id"], "claim": claim["claim"], "quoted_from": claim["quoted_from"],
                "limit": claim["max_ppl_increase"], "setting": {"variant": claim["variant"], **claim["setting"]}}
        ppl = [{k: c[k] for k in ("reference", "reference_setting", "reference_d_model", "at", "lr", "change",
                                  "low", "high", "df")} | {"verdict": stats.verdict(c["low"], c["high"],
                                                                                    claim["max_ppl_increase"])}
               for c in compared if c["reference"] in ("dense", "control") and _matches(c, claim)]
        own = [r for r in rows if _matches(r, claim)]
        flops = [_flops_verdict(r, claim, recipe_at(r["d_model"], r["lr"]), layer_claims) for r in own]
        out.append({**base, "measured": bool(own), "ppl": ppl, "flops": flops})
    return out


def document(plan, data: dict, runs: list[dict], baseline: dict, failures: list[dict], skipped: int,
             layer_claims) -> dict:
    """The report. `data`: the corpus's description; `layer_claims(spec, recipe)`: bkprof flops' claims
    (cached by the caller)."""
    runs = [with_recipe(r) for r in runs]
    rows = summarise(runs)
    compared = comparisons(rows)
    public = [{k: v for k, v in r.items() if k not in ("identity", "grid")} for r in runs]
    recipe = plan.recipe
    recipe_at = lambda d, lr: Recipe(**{**recipe.as_dict(), "d_model": d, "lr": lr})  # noqa: E731
    return {
        "data": data,
        "objective": OBJECTIVE.format(groups=recipe.groups),
        "recipe": {**recipe.as_dict(), "d_model": list(plan.widths), "lr": list(plan.lrs), "steps": recipe.steps,
                   "optimizer": "AdamW", "lr_schedule": "linear warm-up, cosine decay",
                   "sparsity_loss": "adaptive (Huber)", "sparsity_schedule": "cosine, no back-off",
                   "balance_loss": f"{recipe.balance_weight} x Switch Transformer load-balancing loss "
                                   "E * sum_e f_e P_e, summed over the blocks (variants with a router)",
                   "reference": f"{REFERENCE}: pre-norm nn.TransformerEncoderLayer (SDPA attention, "
                                "feed-forward 2d with ReLU, the recipe's dropout), heads = d // 32 (at least 1), "
                                "same depth, width, objective, recipe and budget; not a BK variant",
                   "controls": "each claim's variant at its no-skip setting: sparsity 0 (every G_ii computed, "
                               "predictor and interpolator present), downsampling f = 1"},
        "conventions": {"flops": CONVENTION, "ppl": "exp(mean NLL in nats) over every scored test word",
                        "interval": stats.METHOD,
                        "verdict": "holds: the whole 95 % interval of the PPL change is below the claim's limit; "
                                   "fails: the whole interval is above it; undecided: otherwise (or fewer than "
                                   "2 seeds on a side)",
                        "train_tokens": "input positions seen in training (steps x batch x n_seq)",
                        "tokens_per_s": "train_tokens / wall_s, training loop only (evaluation and the learning "
                                        "curve's checkpoints apart)",
                        "step_modes": "how the seeds' training steps ran: eager, graph (a CUDA-graph replay) or "
                                      "compiled; runs recorded before --step existed ran eager. A --step auto run "
                                      "whose step could not be captured ran eager; its record's step_fallback says why",
                        "peak_mib": "CUDA max_memory_allocated during training, above what was allocated "
                                    "before; null on the CPU",
                        "achieved_sparsity": "1 - mean of the training (Gumbel) masks over the last tenth of "
                                             "the steps; evaluation keeps exactly int(N(1-s)) positions",
                        "expert_load": "per block, the fraction of tokens routed to each expert over the last "
                                       "tenth of the training steps",
                        "curve": "training loss: mean of the task loss over each train_every steps; test loss: "
                                 "mean NLL (nats) on the first min(16, batch) windows of N test tokens at 8 checkpoints"},
        "devices": list(plan.devices), "jobs_per_device": plan.jobs_per_device,
        "runs": public, "failed": failures, "resumed_runs": skipped,
        "baselines": baseline,
        "summary": {"settings": rows, "comparisons": compared,
                    "claims": verdicts(rows, compared, recipe_at, layer_claims)},
    }
