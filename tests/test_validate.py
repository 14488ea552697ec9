"""`bkprof validate`: corpus layouts, vocabulary, count baselines, scoring plan, FLOPs per token, runs file, CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from typer.testing import CliRunner

from bkprof.cli import app
from bkprof.validate.baseline import BigramCounts, baselines
from bkprof.validate.corpus import EOS, MASK, UNK, Vocabulary, bundled_folder, corpus_files, load_corpus, words
from bkprof.validate.cost import train_flops_per_token
from bkprof.validate.model import LanguageModel
from bkprof.validate.objective import eval_plan
from bkprof.validate import stats
from bkprof.validate.grid import identity
from bkprof.validate.runner import Plan, planned_runs, planned_settings
from bkprof.validate.summary import comparisons, summarise, verdicts
from bkprof.validate.train import Recipe, RunSpec
from bkprof.variants import LayerConfig

ROOT = Path(__file__).resolve().parent.parent
TRAIN = "\n".join(["the cat sat on the mat .", "the dog sat on the log .", " = Title = ", ""] * 12)
TEST = "\n".join(["the cat sat on the log .", "a bird sat on the mat ."] * 10)


@pytest.fixture()
def tiny(tmp_path):
    (tmp_path / "valid.txt").write_text(TRAIN, encoding="utf-8")
    (tmp_path / "test.txt").write_text(TEST, encoding="utf-8")
    return tmp_path


def test_bundled_split_is_the_published_text():
    # the sizes the data README states: 213,886 and 241,211 words (without line ends)
    files = corpus_files()
    assert files.train.name == "valid.txt" and files.test.name == "test.txt"
    assert len(files.train.read_text(encoding="utf-8").split()) == 213_886
    assert len(files.test.read_text(encoding="utf-8").split()) == 241_211
    assert "CC BY-SA 3.0" in (bundled_folder() / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("names", [("wiki.train.tokens", "wiki.valid.tokens", "wiki.test.tokens"),
                                   ("train.txt", "valid.txt", "test.txt")])
def test_a_full_copy_trains_on_its_training_split(tmp_path, names):
    for name in names:
        (tmp_path / name).write_text(name, encoding="utf-8")
    files = corpus_files(tmp_path)
    assert (files.train.name, files.test.name) == (names[0], names[2])


def test_a_folder_without_the_layout_is_one_error(tmp_path):
    with pytest.raises(ValueError, match="no WikiText layout"):
        corpus_files(tmp_path)


def test_vocabulary_by_hand():
    train = words("b a b\nc")            # b a b <eos> c <eos>
    assert train == ["b", "a", "b", EOS, "c", EOS]
    vocab = Vocabulary.from_words(train)
    # b (2) and <eos> (2) first, alphabetical among ties; then a, c (1); <unk> (0); <mask> last
    assert vocab.itos == (EOS, "b", "a", "c", UNK, MASK)
    assert vocab.encode(["c", "zebra"]).tolist() == [3, 4]
    assert vocab.predictable == 5 and vocab.mask_id == 5


def test_bigram_by_hand():
    # stream 0 1 0 2 over V = 3: c(0,1) = c(0,2) = 1, c(1,0) = 1; unigram add-one: (2+1, 1+1, 1+1) / (4+3)
    counts = BigramCounts(torch.tensor([0, 1, 0, 2]), 3)
    u = torch.tensor([3, 2, 2], dtype=torch.float64) / 7
    assert torch.allclose(counts.unigram, u)
    p = counts.bigram(torch.tensor([0, 1, 2]), torch.tensor([1, 0, 0]), lam=0.5)
    # 0 -> 1: 0.5 * 1/2 + 0.5 * 2/7; 1 -> 0: 0.5 * 1 + 0.5 * 3/7; 2 has no successor: the unigram alone
    assert torch.allclose(p, torch.tensor([0.25 + 1 / 7, 0.5 + 1.5 / 7, 3 / 7], dtype=torch.float64))


def test_two_sided_model_is_normalised(tiny):
    corpus = load_corpus(tiny)
    counts = BigramCounts(corpus.train, corpus.vocab.predictable)
    left, right = corpus.test[:5], corpus.test[2:7]
    total = sum(counts.two_sided(left, torch.full_like(left, w), right, 0.7) for w in range(corpus.vocab.predictable))
    assert torch.allclose(total, torch.ones(5, dtype=torch.float64))


def test_baselines_rank_as_their_context(tiny):
    corpus = load_corpus(tiny)
    b = baselines(corpus.train, corpus.test, corpus.vocab.predictable, corpus.vocab.itos.index(EOS))
    assert b["two_sided"]["test_ppl"] < b["bigram"]["test_ppl"] < b["unigram"]["test_ppl"]
    assert b["test_words"] == len(corpus.test)


def test_every_test_word_is_scored_once():
    stream = torch.arange(100)
    plan = eval_plan(stream, 16, 7)   # 6 windows of 16 cover 96; a 7th ends at 100 and scores the last 4
    assert plan.windows.shape == (7, 16) and plan.words == 100
    assert sorted(plan.windows[plan.scored].tolist()) == list(range(100))
    assert set(plan.group.flatten().tolist()) == set(range(7))


def test_the_layers_see_later_positions():
    # why the objective is masked words: the word at position 1 (what next-word prediction asks of
    # position 0) changes position 0's logits in every variant (the BK-Core's G_00 depends on v_1)
    config = LayerConfig(d_model=8, n_seq=16, dropout=0.0)
    for variant in ("dense", "sparse", "multiscale", "combined"):
        model = LanguageModel(variant, config, 1, 20, 19, seed=0).eval()
        tokens = torch.randint(0, 20, (1, 16), generator=torch.Generator().manual_seed(1))
        other = tokens.clone()
        other[0, 1] = (tokens[0, 1] + 1) % 20
        with torch.no_grad():
            change = (model(tokens)[0][0] - model(other)[0][0]).abs().max()
        assert change > 1e-4, variant


def test_head_flops_by_hand():
    # whole model - blocks = the head at the K hidden positions, by the counter's conventions:
    # forward addmm 2dVK + VK (bias); backward grad-input and grad-weight mm 2KVd each, grad-bias sum KV,
    # and the gradient of the hidden-position selection (an accumulating index_put) Kd
    recipe = Recipe(d_model=8, n_seq=14, layers=1, groups=7)
    vocab = Vocabulary(tuple(f"w{i}" for i in range(30)) + (MASK,))
    cost = train_flops_per_token(RunSpec("dense", None, None, 0), recipe, vocab)
    d, v, k, n = 8, 30, 2, 14
    expected = (6 * d * v * k + 2 * v * k + k * d) / n
    assert cost["train_flops_per_token"] - cost["blocks_train_flops_per_token"] == pytest.approx(expected)
    assert cost["ops_without_formula"] == {}


def _run(variant, seed, ppl, d=32, flops=100.0, sparsity=None, downsample=None, lr=0.003):
    return {"variant": variant, "sparsity": sparsity, "downsample": downsample, "seed": seed, "test_ppl": ppl,
            "d_model": d, "lr": lr, "train_flops_per_token": flops, "blocks_train_flops_per_token": flops / 2}


def test_summary_against_dense_of_the_same_width_by_hand():
    # (changed on purpose: the paired-by-seed change and its 2-SEM rule gave way to the Welch interval)
    runs = [_run("dense", s, p) for s, p in ((0, 100.0), (1, 200.0))]
    runs += [_run("sparse", s, p, flops=150.0, sparsity=0.6) for s, p in ((0, 102.0), (1, 208.0))]
    runs += [_run("dense", 0, 50.0, d=64, flops=400.0)]
    rows = summarise(runs)
    sparse = next(r for r in rows if r["variant"] == "sparse")
    # means 155 against 150 at d = 32 (dense at d = 64 is another width); FLOPs 150 / 100, blocks 75 / 50
    assert sparse["ppl_vs_dense"] == pytest.approx(155 / 150 - 1)
    assert sparse["flops_vs_dense"] == pytest.approx(1.5) and sparse["blocks_flops_vs_dense"] == pytest.approx(1.5)
    assert sparse["role"] == "variant" and sparse["test_ppl_cv"] == pytest.approx(math.sqrt(2 * 53 ** 2) / 155)
    assert [r["d_model"] for r in rows if r["variant"] == "dense"] == [32, 64]


def test_t_quantiles_match_the_tables():
    # Student t, 0.975 quantile, from printed tables: df 1 12.706, 2 4.303, 4 2.776, 10 2.228, 30 2.042, inf 1.960
    for df, value in ((1, 12.7062), (2, 4.3027), (4, 2.7764), (10, 2.2281), (30, 2.0423), (1e9, 1.9600)):
        assert stats.t_quantile(0.975, df) == pytest.approx(value, abs=1e-4)


def test_equal_compute_interval_by_hand():
    # The variant's curve: FLOPs 100 (log PPL over 3 seeds 1, 2, 3: mean 2, variance 1) and 400 (3, 4, 5: mean 4,
    # variance 1); the reference at FLOPs 200 (1.5, 2.5, 3.5: mean 2.5, variance 1).
    # t = (ln 200 - ln 100) / (ln 400 - ln 100) = ln 2 / ln 4 = 0.5 -> estimate 0.5 * 2 + 0.5 * 4 = 3, D = 0.5.
    # Var D = 0.25 * 1/3 + 0.25 * 1/3 + 1 * 1/3 = 0.5; each term's c^2 s^2 / n: 1/12, 1/12, 1/3;
    # df = 0.5^2 / ((1/12)^2 / 2 + (1/12)^2 / 2 + (1/3)^2 / 2) = 0.25 / (1/288 + 1/288 + 16/288) = 4.
    # t_{0.975, 4} = 2.776445 (tables); half-width 2.776445 * sqrt(0.5) = 1.963243.
    curve = [(100.0, stats.Mean.of([1.0, 2.0, 3.0])), (400.0, stats.Mean.of([3.0, 4.0, 5.0]))]
    got = stats.change(curve, 200.0, stats.Mean.of([1.5, 2.5, 3.5]))
    assert got["weights"] == pytest.approx([0.5, 0.5])
    assert got["df"] == pytest.approx(4.0)
    assert got["change"] == pytest.approx(math.exp(0.5) - 1)
    assert got["low"] == pytest.approx(math.exp(0.5 - 1.963243) - 1, rel=1e-5)
    assert got["high"] == pytest.approx(math.exp(0.5 + 1.963243) - 1, rel=1e-5)
    # outside the curve: no extrapolation; at a curve point: that point alone
    assert stats.change(curve, 800.0, stats.Mean.of([1.0, 2.0])) is None
    assert stats.change(curve, 400.0, stats.Mean.of([3.0, 5.0]))["weights"] == [1.0]


def test_verdicts_are_holds_fails_or_undecided():
    # limit +3 %: an interval wholly below holds, wholly above fails, across it (or missing) is undecided
    assert stats.verdict(-0.10, 0.02, 0.03) == "holds"
    assert stats.verdict(0.04, 0.20, 0.03) == "fails"
    assert stats.verdict(-0.10, 0.05, 0.03) == "undecided"
    assert stats.verdict(None, None, 0.03) == "undecided"


def test_claims_are_judged_against_dense_and_the_control_at_equal_compute():
    # dense and the control at d = 32 and 64, sparse 0.6 at d = 32 and 64, three seeds each
    runs = []
    for seed, jitter in enumerate((-0.01, 0.0, 0.01)):
        for d, flops, dense, sparse, control in ((32, 100.0, 5.0, 4.5, 5.2), (64, 400.0, 4.0, 3.8, 4.1)):
            runs += [_run("dense", seed, math.exp(dense + jitter), d=d, flops=flops),
                     _run("sparse", seed, math.exp(sparse + jitter), d=d, flops=2 * flops, sparsity=0.6),
                     _run("sparse", seed, math.exp(control + jitter), d=d, flops=2 * flops, sparsity=0.0)]
    rows = summarise(runs)
    assert {r["role"] for r in rows if r["variant"] == "sparse"} == {"variant", "control"}
    compared = comparisons(rows)
    # sparse 0.6 at dense d = 64's FLOPs (400): its own curve runs 200 (d = 32) .. 800 (d = 64);
    # t = ln(400/200) / ln(800/200) = 0.5 -> log PPL 0.5 * 4.5 + 0.5 * 3.8 = 4.15 against 4.0: +16.2 %
    at = next(c for c in compared if c["reference"] == "dense" and c["at"] == "equal compute"
              and c["reference_d_model"] == 64 and c["sparsity"] == 0.6)
    assert at["change"] == pytest.approx(math.exp(0.15) - 1) and at["low"] > 0.03
    # dense d = 32's FLOPs (100) lie below the curve: undecided, never extrapolated
    below = next(c for c in compared if c["reference"] == "dense" and c["at"] == "equal compute"
                 and c["reference_d_model"] == 32 and c["sparsity"] == 0.6)
    assert below["change"] is None
    claim = next(c for c in verdicts(rows, compared, lambda d, lr: Recipe(d_model=d), lambda *a: [
        {"id": "sparse_g_ii", "published_formula": 2.5, "full_count": 0.01, "holds": False}]) if c["id"] == "sparsity_60")
    by = {(p["reference"], p["at"], p["reference_d_model"]): p["verdict"] for p in claim["ppl"]}
    # equal width d = 32: 4.5 - 5.0 = -0.5 in log PPL, the seeds' spread identical on both sides (variance 0)
    assert by[("dense", "equal width", 32)] == "holds" and by[("control", "equal width", 32)] == "holds"
    assert by[("dense", "equal compute", 64)] == "fails" and by[("dense", "equal compute", 32)] == "undecided"
    assert {f["verdict"] for f in claim["flops"]} == {"fails"}


def test_sparsity_zero_computes_every_g_ii_in_training_and_inference():
    """The no-skip control: at sparsity 0 the mask is exactly 1 everywhere, so the interpolation leaves
    the exact G_ii features untouched in both modes."""
    from bkprof.variants import build
    from bkprof.variants.dense import DenseLayer

    config = LayerConfig(d_model=16, n_seq=32, sparsity=0.0, dropout=0.0)
    layer = build("sparse", config, seed=0)
    x = torch.randn(4, 32, 16, generator=torch.Generator().manual_seed(3)) * 5
    ffn = torch.randn(4, 32, 16, generator=torch.Generator().manual_seed(4))
    for training in (True, False):
        layer.train(training)
        features, stats_ = layer.spectral_features(x, ffn)
        exact, _ = DenseLayer.spectral_features(layer, x, ffn)
        assert torch.equal(stats_["mask"], torch.ones(4, 32)) and float(stats_["sparsity"].detach()) == 0.0
        assert torch.equal(features, exact)
    # at sparsity > 0 training still thresholds: some positions are interpolated
    layer = build("sparse", config.with_(sparsity=0.5), seed=0).train()
    assert layer.spectral_features(x, ffn)[1]["mask"].min() == 0


def test_multiscale_control_at_f_1_runs():
    from bkprof.variants import build

    layer = build("multiscale", LayerConfig(d_model=16, n_seq=32, downsample=1), seed=0)
    out, _ = layer(torch.randn(2, 32, 16))
    assert out.shape == (2, 32, 16)


def test_the_grid_plans_references_controls_and_one_recipe_per_width():
    plan = Plan(["sparse", "multiscale", "combined"], [0.6], [2], 2, Recipe(), widths=(32, 64), lrs=(1e-3,))
    settings = planned_settings(plan)
    # dense first, the chosen settings, the controls of the claims' variants (combined has no claim), the reference
    assert settings == [("dense", None, None), ("sparse", 0.6, None), ("multiscale", None, 2),
                        ("combined", 0.6, 2), ("sparse", 0.0, None), ("multiscale", None, 1),
                        ("transformer", None, None)]
    runs = planned_runs(plan)
    assert len(runs) == 7 * 2 * 2 and {(r.d_model, r.lr) for r, _ in runs} == {(32, 1e-3), (64, 1e-3)}
    corpus = SimpleNamespace(fingerprint="sha", test_whole=None)
    identities = {identity(s, r, corpus) for r, s in runs}
    assert len(identities) == len(runs)   # each width is its own run identity
    bare = Plan(["dense"], [0.6], [2], 1, Recipe(), controls=False, reference=False)
    assert planned_settings(bare) == [("dense", None, None)]


def test_the_transformer_reference_is_counted_with_attention_and_is_no_bk_variant():
    from bkprof.variants import registry

    assert "transformer" not in registry.names()
    recipe = Recipe(d_model=64, n_seq=32, layers=1)
    vocab = Vocabulary(tuple(f"w{i}" for i in range(30)) + (MASK,))
    model = LanguageModel("transformer", RunSpec("transformer", None, None, 0).layer_config(recipe), 1, 31, 30, 0)
    layer = model.stack.blocks[0].layer
    assert isinstance(layer, torch.nn.TransformerEncoderLayer) and layer.norm_first and layer.self_attn.batch_first
    assert layer.self_attn.num_heads == 2 and layer.linear1.out_features == 128   # d // 32 heads, feed-forward 2d
    from bkprof.flops.model_count import count_flops
    from bkprof.validate.model import StackOnly

    counted = count_flops(StackOnly(model.stack).train(), torch.randn(1, 32, 64), backward=False)
    # attention scores and their weighted sum: 2 batched matmuls of N x N x d MACs, 2 FLOPs each
    attention = sum(v for (p, m, f, op), v in counted.flops.items() if "bmm" in op or "attention" in op)
    assert attention == 2 * 2 * 32 * 32 * 64
    cost = train_flops_per_token(RunSpec("transformer", None, None, 0), recipe, vocab)
    assert cost["blocks_train_flops_per_token"] > 0 and cost["ops_without_formula"] == {}


def test_the_recipe_adds_the_load_balancing_loss_summed_over_blocks():
    from bkprof.validate.step import balance_loss

    # E = 2, 4 tokens routed 0, 0, 0, 1: f = (0.75, 0.25); mean probabilities P = (2.6/4, 1.4/4) = (0.65, 0.35);
    # per block 2 * (0.75 * 0.65 + 0.25 * 0.35) = 1.15; two blocks at weight 0.01: 0.023
    probs = torch.tensor([[[0.9, 0.1], [0.8, 0.2], [0.6, 0.4], [0.3, 0.7]]])
    index = torch.tensor([[[0], [0], [0], [1]]])
    stats_ = [{"router_probs": probs, "expert_index": index}] * 2
    assert float(balance_loss(stats_, Recipe(balance_weight=0.01), 2)) == pytest.approx(0.023)
    # no router in the stats (the Transformer, or a layer without router_probs), or weight 0: nothing added
    assert balance_loss([{"expert_index": index}], Recipe(), 2) == 0.0
    assert balance_loss(stats_, Recipe(balance_weight=0.0), 2) == 0.0


def test_the_router_trains_in_the_recipe(tiny):
    """With the Switch router the task loss alone reaches the gate (through the chosen expert's probability):
    its gradient after the last training step is not 0, even without the load-balancing loss. (Weight decay
    moves the weights whatever the gradient, so the gradient is what is checked.)"""
    from bkprof.validate.loop import build_model, train_model

    corpus = load_corpus(tiny)
    for weight in (0.0, 0.01):
        recipe = Recipe(d_model=8, n_seq=16, layers=1, batch=4, tokens=128, balance_weight=weight)
        spec = RunSpec("dense", None, None, 0)
        model = build_model(spec, recipe, corpus)
        record = train_model(model, spec, recipe, corpus, torch.device("cpu"))
        assert model.stack.blocks[0].layer.moe.gate.weight.grad.abs().sum() > 0
        assert len(record["expert_load"]) == 1 and sum(record["expert_load"][0]) == pytest.approx(1.0)


def test_layer_claims_count_on_the_cpu_whatever_backend_the_runs_use():
    # the runs may train with triton on CUDA; bkprof flops' claims are counted on the CPU with vectorized
    from bkprof.validate.cost import layer_claims

    claims = layer_claims(RunSpec("sparse", 0.6, None, 0), Recipe(d_model=32, n_seq=64, backend="triton"))
    assert {c["id"] for c in claims} >= {"sparse_g_ii"}


def _validate(tiny, tmp_path, *extra, variants=("dense", "sparse"), bare=True):
    args = ["validate", "--corpus", str(tiny), "--d-model", "8", "--n-seq", "16", "--layers", "1", "--batch", "4",
            "--tokens", "256", "--seeds", "2", "--test-tokens", "all", "--runs-file", str(tmp_path / "runs.jsonl"),
            "--format", "json", *[a for v in variants for a in ("--variant", v)], *extra]
    # bare: without the controls and the Transformer reference (their own test below), to keep this quick
    return CliRunner().invoke(app, args + (["--no-controls", "--no-reference"] if bare else []))


def test_cli_runs_records_and_resumes(tiny, tmp_path):
    result = _validate(tiny, tmp_path, "--plot", str(tmp_path / "plots"))
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert len(doc["runs"]) == 4 and doc["failed"] == []
    run = doc["runs"][0]
    for key in ("variant", "seed", "sparsity", "downsample", "test_ppl", "achieved_sparsity", "train_tokens",
                "train_flops_per_token", "tokens_per_s", "wall_s", "peak_mib"):
        assert key in run
    assert run["train_tokens"] == 256 and math.isfinite(run["test_ppl"])
    assert "valid.txt" in doc["data"]["note"] and "test.txt" in doc["data"]["note"]
    assert {c["id"] for c in doc["summary"]["claims"]} == {"sparsity_60", "multi_scale"}
    assert (tmp_path / "plots" / "ppl_vs_flops.png").exists() and (tmp_path / "plots" / "ppl_vs_time.png").exists()
    lines = (tmp_path / "runs.jsonl").read_text().splitlines()
    assert len(lines) == 4

    again = _validate(tiny, tmp_path, "--resume")
    assert again.exit_code == 0, again.output
    resumed = json.loads(again.stdout)
    assert resumed["resumed_runs"] == 4 and [r["test_ppl"] for r in resumed["runs"]] == [r["test_ppl"] for r in doc["runs"]]
    assert (tmp_path / "runs.jsonl").read_text().splitlines() == lines

    reported = _validate(tiny, tmp_path, "--report-only", variants=("dense",))
    assert reported.exit_code == 0, reported.output
    assert len(json.loads(reported.stdout)["runs"]) == 4  # every run of the grid in the file, not only dense's

    refused = _validate(tiny, tmp_path)
    assert refused.exit_code == 2 and "--resume" in refused.output

    # the same dense runs in two worker processes (the path a grid over GPUs takes) give the same perplexities
    workers = _validate(tiny, tmp_path, "--jobs-per-device", "2", "--runs-file", str(tmp_path / "workers.jsonl"),
                        variants=("dense",))
    assert workers.exit_code == 0, workers.output
    there = {r["seed"]: r["test_ppl"] for r in json.loads(workers.stdout)["runs"] if r["variant"] == "dense"}
    here = {r["seed"]: r["test_ppl"] for r in doc["runs"] if r["variant"] == "dense"}
    assert there.keys() == here.keys() == {0, 1}
    for seed, ppl in here.items():
        assert there[seed] == pytest.approx(ppl, rel=1e-4)


def _modules_after_report(args: list[str]) -> tuple[int, list[str]]:
    """Exit code of `bkprof validate ARGS` in a fresh interpreter, and which heavy modules it loaded."""
    import subprocess
    import sys

    code = ("import json, runpy, sys\n"
            f"sys.argv = ['bkprof', 'validate', *{args!r}]\n"
            "code = 0\n"
            "try:\n    runpy.run_module('bkprof', run_name='__main__')\nexcept SystemExit as e:\n    code = e.code or 0\n"
            "print(json.dumps([code, [m for m in ('torch', 'fvcore') if m in sys.modules]]), file=sys.stderr)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    return tuple(json.loads(result.stderr.strip().splitlines()[-1]))


def test_widths_controls_reference_curves_and_a_report_without_torch(tiny, tmp_path):
    result = _validate(tiny, tmp_path, "--d-model", "8,16", "--seeds", "1", "--plot", str(tmp_path / "plots"),
                       "--backend", "vectorized", variants=("sparse",), bare=False)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    planned = {(r["variant"], r["sparsity"], r["d_model"]) for r in doc["runs"]}
    assert planned == {(v, s, d) for v, s in (("dense", None), ("sparse", 0.6), ("sparse", 0.0), ("transformer", None))
                       for d in (8, 16)}
    run = next(r for r in doc["runs"] if r["variant"] == "sparse")
    # 256 tokens / (4 x 16) = 4 steps: a training-loss point per step, test checkpoints at steps 1..4
    assert run["curve"]["train_step"] == [1, 2, 3, 4] and run["curve"]["test_step"] == [1, 2, 3, 4]
    assert len(run["curve"]["test_loss"]) == 4 and all(math.isfinite(v) for v in run["curve"]["train_loss"])
    # the expert load of the one block over the last tenth (1 step): fractions of the tokens, summing to 1
    assert len(run["expert_load"]) == 1 and sum(run["expert_load"][0]) == pytest.approx(1.0)
    assert (tmp_path / "plots" / "curves.png").exists()
    claim = next(c for c in doc["summary"]["claims"] if c["id"] == "sparsity_60")
    assert {p["reference"] for p in claim["ppl"]} == {"dense", "control"}
    assert {p["verdict"] for p in claim["ppl"]} == {"undecided"}  # one seed: no interval
    assert (tmp_path / "runs.jsonl.cache.json").exists()

    # the report from the runs file and its cache loads no torch, and reports the same
    args = ["--corpus", str(tiny), "--d-model", "8,16", "--n-seq", "16", "--layers", "1", "--batch", "4", "--tokens",
            "256", "--test-tokens", "all", "--backend", "vectorized", "--report-only", "--runs-file",
            str(tmp_path / "runs.jsonl"), "--format", "json", "--output", str(tmp_path / "again.json")]
    assert _modules_after_report(args) == (0, [])
    again = json.loads((tmp_path / "again.json").read_text())
    assert again["summary"] == json.loads(json.dumps(doc["summary"])) and again["baselines"] == doc["baselines"]


H200 = ["--runs-file", "reports/validate/H200-2026-12-02/runs.jsonl", "--backend", "vectorized", "--d-model", "128",
        "--n-seq", "256", "--layers", "4", "--batch", "64", "--tokens", "6553600", "--seeds", "3", "--sparsity",
        "0.4,0.5,0.6,0.7", "--downsample", "2,4", "--test-tokens", "all"]


def test_the_committed_runs_report_without_torch(tmp_path):
    """The 2026-12-02 runs (recorded before the recipe had a load-balancing loss or fixed hiding) belong to
    the grid with --balance-weight 0 --hiding bernoulli. Their report reads the cache of baselines and layer claims beside the runs file
    (a copy here: the committed one goes stale whenever the counting code changes, and is then
    recomputed once); once it holds them, a report loads no torch."""
    import shutil

    committed = ROOT / "reports/validate/H200-2026-12-02"
    for name in ("runs.jsonl", "runs.jsonl.cache.json"):
        shutil.copy(committed / name, tmp_path / name)
    grid = [*H200, "--runs-file", str(tmp_path / "runs.jsonl"), "--report-only", "--format", "json", "--output"]
    old_recipe = ["--balance-weight", "0", "--hiding", "bernoulli", *grid]
    assert _modules_after_report([*old_recipe, str(tmp_path / "first.json")])[0] == 0
    assert _modules_after_report([*old_recipe, str(tmp_path / "h200.json")]) == (0, [])
    doc = json.loads((tmp_path / "h200.json").read_text())
    assert doc == json.loads((tmp_path / "first.json").read_text())
    assert len(doc["runs"]) == 24 and doc["baselines"]["two_sided"]["test_ppl"] == pytest.approx(163.47, abs=0.01)
    # with the load-balancing loss in the recipe they are another grid: nothing of it in the file
    assert _modules_after_report([*grid, str(tmp_path / "other.json")]) == (0, [])
    assert json.loads((tmp_path / "other.json").read_text())["runs"] == []


def test_the_report_cache_keys_on_the_sources_and_drops_stale_entries(tmp_path):
    from bkprof.validate.cache import ReportCache, code_fingerprint

    current = code_fingerprint("baselines")
    (tmp_path / "r.jsonl.cache.json").write_text(json.dumps({"baselines": {"0000:x": 1, f"{current}:y": 2}}))
    cache = ReportCache.beside(tmp_path / "r.jsonl")
    calls = []
    assert cache.get("baselines", "y", lambda: calls.append(1)) == 2 and calls == []   # a hit computes nothing
    assert cache.get("baselines", "x", lambda: 5) == 5          # computed by other sources: a miss
    cache.save()
    kept = json.loads((tmp_path / "r.jsonl.cache.json").read_text())["baselines"]
    assert kept == {f"{current}:y": 2, f"{current}:x": 5}


@pytest.mark.parametrize("option, value, message", [
    ("--sparsity", "1.2", "sparsity must be in [0, 1), got 1.2"),
    ("--tokens", "0", "--tokens must be a positive integer, got 0"),
    ("--test-tokens", "many", "--test-tokens 'many'"),
    ("--d-model", "8,x", "--d-model 'x': 'x' is not a number"),
    ("--d-model", "8,9", "d_model must be even"),
    ("--lr", "0.1,-1", "--lr '0.1,-1'"),
])
def test_bad_input_is_one_line(tiny, tmp_path, option, value, message):
    result = _validate(tiny, tmp_path, option, value)
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output


def test_bad_corpus_is_one_line(tmp_path):
    result = CliRunner().invoke(app, ["validate", "--corpus", str(tmp_path / "none"), "--runs-file",
                                      str(tmp_path / "r.jsonl")])
    assert result.exit_code == 2 and "not a folder" in result.output


def test_the_bundled_corpus_is_described_without_this_machines_path():
    """Reports are committed and compared between machines: the bundled data is named by its place in
    bkprof, not by where this install happens to live."""
    text = corpus_files().describe()
    assert str(bundled_folder()) not in text and "bkprof/data/wikitext-2" in text


def test_training_flops_equal_the_committed_h200_report():
    """The committed H200 grid counted its training FLOPs with the op counter as it stood then (its own
    forward and backward passes, seeded by hand); bkprof.count_flops must give the same numbers."""
    import inspect

    runs = [json.loads(line) for line in (ROOT / "reports/validate/H200-2026-12-02/runs.jsonl").read_text().splitlines()]
    run = next(r for r in runs if r["variant"] == "dense" and r["seed"] == 0)
    recipe = json.loads(run["grid"])["recipe"]
    recipe = Recipe(**{k: v for k, v in recipe.items() if k in inspect.signature(Recipe).parameters})
    cost = train_flops_per_token(RunSpec("dense", None, None, 0), recipe, load_corpus().vocab)
    # since that grid the router's softmax runs over all E = 4 gate logits instead of the top-1 logit
    # (issue 19): per token and layer 5 x (4 - 1) forward + 4 x (4 - 1) for its backward = 27 FLOPs,
    # x 4 layers = 108 more per token
    router = 4 * (5 + 4) * (4 - 1)
    assert cost["train_flops_per_token"] == run["train_flops_per_token"] + router
    assert cost["blocks_train_flops_per_token"] == run["blocks_train_flops_per_token"] + router
