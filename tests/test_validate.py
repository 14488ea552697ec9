"""`bkprof validate`: corpus layouts, vocabulary, count baselines, scoring plan, FLOPs per token, runs file, CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from bkprof.cli import app
from bkprof.validate.baseline import BigramCounts, baselines
from bkprof.validate.corpus import EOS, MASK, UNK, Vocabulary, bundled_folder, corpus_files, load_corpus, words
from bkprof.validate.cost import train_flops_per_token
from bkprof.validate.model import LanguageModel
from bkprof.validate.objective import eval_plan
from bkprof.validate.summary import summarise
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


def test_summary_pairs_seeds_by_hand():
    runs = [{"variant": "dense", "sparsity": None, "downsample": None, "seed": s, "test_ppl": p,
             "train_flops_per_token": 100.0, "blocks_train_flops_per_token": 40.0} for s, p in ((0, 100.0), (1, 200.0))]
    runs += [{"variant": "sparse", "sparsity": 0.6, "downsample": None, "seed": s, "test_ppl": p,
              "train_flops_per_token": 150.0, "blocks_train_flops_per_token": 90.0} for s, p in ((0, 102.0), (1, 208.0))]
    sparse = next(r for r in summarise(runs) if r["variant"] == "sparse")
    # per seed: 102/100 - 1 = 0.02, 208/200 - 1 = 0.04; mean 0.03; means 155 against 150
    assert sparse["ppl_vs_dense_paired"]["mean"] == pytest.approx(0.03)
    assert sparse["ppl_vs_dense"] == pytest.approx(155 / 150 - 1)
    assert sparse["flops_vs_dense"] == pytest.approx(1.5) and sparse["blocks_flops_vs_dense"] == pytest.approx(2.25)


def _validate(tiny, tmp_path, *extra, variants=("dense", "sparse")):
    args = ["validate", "--corpus", str(tiny), "--d-model", "8", "--n-seq", "16", "--layers", "1", "--batch", "4",
            "--tokens", "256", "--seeds", "2", "--test-tokens", "all", "--runs-file", str(tmp_path / "runs.jsonl"),
            "--format", "json", *[a for v in variants for a in ("--variant", v)], *extra]
    return CliRunner().invoke(app, args)


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


@pytest.mark.parametrize("option, value, message", [
    ("--sparsity", "1.2", "sparsity must be in [0, 1), got 1.2"),
    ("--tokens", "0", "--tokens must be a positive integer, got 0"),
    ("--test-tokens", "many", "--test-tokens 'many'"),
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
