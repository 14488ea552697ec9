"""`bkprof.count_flops` on any nn.Module: against PyTorch's FlopCounterMode (exact on the families
it covers: matmul, conv, its attention kernels), against hand-derived totals (arithmetic in the
comments), per module forward and backward, on fake tensors where it can."""

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import bkprof
from bkprof.flops.formulas import attention_flops, layer_norm_flops
from bkprof.flops.model_count import count_flops, torch_flop_counter


def torch_counts(model, *inputs, backward=False, **kwargs):
    """FlopCounterMode on real tensors, forward (and backward from the sum of the output)."""
    with FlopCounterMode(display=False) as forward:
        out = model(*inputs, **kwargs)
    totals = {"forward": forward.get_total_flops()}
    if backward:
        out = out[0] if isinstance(out, tuple) else out
        with FlopCounterMode(display=False) as back:
            out.sum().backward()
        totals["backward"] = back.get_total_flops()
    return totals


def matmul(counted, phase="forward"):
    return counted.total(phase, family="matmul")


def _seeded(make):
    torch.manual_seed(0)
    return make()


# ---- the API ----

def test_linear_counts_from_the_package_root():
    # 4 rows · 128 in · 256 out: 2·4·128·256 = 262,144 matmul + 4·256 = 1,024 bias adds
    counted = bkprof.count_flops(nn.Linear(128, 256), torch.randn(4, 128))
    assert counted.total() == 262_144 + 1_024
    assert counted.by_family() == {"matmul": 262_144, "bias": 1_024, "data": 0}
    assert counted.by_module() == {"": 263_168}
    assert counted.ops_without_formula() == []
    assert counted.tensors == "fake" and counted.fallback is None


class _Outputs(nn.Module):
    """Returns a dict holding a tuple and a list, with an integer tensor among them."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(4, 3), nn.Linear(4, 2)

    def forward(self, x, scale=1.0):
        return {"pair": (self.a(x) * scale, x.argmax(-1)), "list": [self.b(x)]}


def test_outputs_of_any_nesting_and_keyword_inputs():
    # a: 2·5·4·3 = 120 + 15 bias, ×scale 15; b: 2·5·4·2 = 80 + 10 bias; argmax: 1 comparison per
    # input element, 20 (the model's own op)
    counted = count_flops(_Outputs(), torch.randn(5, 4), scale=2.0)
    assert counted.total() == 120 + 15 + 15 + 80 + 10 + 20
    assert counted.by_module() == {"": 260, "a": 135, "b": 90}


def test_backward_from_the_sum_of_the_floating_outputs_and_from_a_loss_fn():
    model, x = _Outputs(), torch.randn(5, 4)
    # default loss a·scale + b summed (the integer argmax is left out). Backward per linear, x not
    # requiring grad: grad_weight 2·rows·in·out and grad_bias rows·out; a: 120 + 15 (+ 15 for ×scale),
    # b: 80 + 10
    both = count_flops(model, x, backward=True)
    assert both.by_module("backward") == {"": 240, "a": 135, "b": 90}
    only_b = count_flops(model, x, backward=True, loss_fn=lambda out: out["list"][0].pow(2).mean())
    # b's weight and bias gradients (90), plus pow's and mean's own backward ops at the root
    assert only_b.by_module("backward")["b"] == 90 and "a" not in only_b.by_module("backward")
    with pytest.raises(ValueError, match="one element"):
        count_flops(model, x, backward=True, loss_fn=lambda out: out["list"][0])


def test_per_module_tree_with_depth_and_own_flops():
    # Sequential(Sequential(Linear(8, 8), ReLU), Linear(8, 2)) on 3 rows:
    # 0.0: 2·3·8·8 + 24 = 408; 0.1: 24; 1: 2·3·8·2 + 6 = 102
    model = nn.Sequential(nn.Sequential(nn.Linear(8, 8), nn.ReLU()), nn.Linear(8, 2))
    counted = count_flops(model, torch.randn(3, 8))
    assert counted.by_module() == {"": 534, "0": 432, "0.0": 408, "0.1": 24, "1": 102}
    assert counted.by_module(depth=1) == {"": 534, "0": 432, "1": 102}
    assert counted.own_flops() == {"0.0": 408, "0.1": 24, "1": 102}


def test_backward_is_attributed_to_the_module_whose_forward_made_it():
    # x requires grad. Linear(8, 4) on 3 rows: grad_input 2·3·4·8 = 192, grad_weight 192, grad_bias 12;
    # ReLU: threshold_backward 12; Linear(4, 2): grad_input 2·3·2·4 = 48, grad_weight 48, grad_bias 6
    model = nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 2))
    counted = count_flops(model, torch.randn(3, 8, requires_grad=True), backward=True)
    assert counted.by_module("backward") == {"": 510, "0": 396, "1": 12, "2": 102}
    assert torch_flop_counter(model, torch.randn(3, 8, requires_grad=True), backward=True) == {
        "forward": 2 * 3 * 8 * 4 + 2 * 3 * 4 * 2, "backward": 192 * 2 + 48 * 2}


def test_fake_tensors_leave_the_model_untouched():
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3)).train()
    before = model[1].running_mean.clone()
    counted = count_flops(model, torch.randn(2, 2, 6, 6), backward=True)
    assert counted.tensors == "fake"
    assert torch.equal(model[1].running_mean, before) and model[0].weight.grad is None


def test_a_model_that_reads_values_runs_on_real_tensors_and_says_why():
    class ReadsAValue(nn.Module):
        def forward(self, x):
            return x * x.sum().item()

    counted = count_flops(ReadsAValue(), torch.randn(4, 5))
    assert counted.tensors == "real" and "DataDependent" in counted.fallback
    assert counted.total() == 20 + 20  # sum: 1 per input element; mul: 1 per element
    with pytest.raises(Exception):
        count_flops(ReadsAValue(), torch.randn(4, 5), tensors="fake")


def test_meta_tensors_are_counted_as_they_are():
    with torch.device("meta"):
        model, x = nn.Linear(1024, 1024), torch.empty(1 << 20, 1024)
    counted = count_flops(model, x)
    # 2·2^20·1024·1024 + 2^20·1024 (no storage: 4 GiB of activations are never allocated)
    assert counted.tensors == "meta" and counted.total() == 2 * 2**20 * 1024**2 + 2**20 * 1024
    assert counted.created_bytes == 4 * 2**30


def test_the_four_variants_keep_their_counts():
    """The published configuration, one sequence, forward: the README's figures (the analytic model,
    tested against the counter in test_flops, gives the same)."""
    from bkprof.flops.analytic import analytic_flops
    from bkprof.variants import VARIANTS, LayerConfig, build

    # before the Switch-style router (issue 19) the routing softmax ran over the top-1 logit alone:
    # 34,704,304 / 58,791,602 / 68,759,344 / 80,802,994. It now runs over all E = 4 logits, 5 FLOPs
    # per element: + 5 x 256 x (4 - 1) = 3,840 at N = 256, + 5 x 128 x 3 = 1,920 in the multi-scale
    # variants' inner layer at N/f = 128
    expected = {"dense": 34_704_304 + 3_840, "sparse": 58_791_602 + 3_840, "multiscale": 68_759_344 + 1_920,
                "combined": 80_802_994 + 1_920}
    for name in VARIANTS:
        with torch.device("meta"):
            layer, x = build(name, LayerConfig()).eval(), torch.empty(1, 256, 128)
        counted = count_flops(layer, x)
        assert counted.total() == expected[name] == analytic_flops(name, LayerConfig())
        assert counted.ops_without_formula() == []
        assert any(module.endswith("moe.experts") for module in counted.by_module())


# ---- against FlopCounterMode, exact on the families it covers ----

@pytest.mark.parametrize("make, shape", [
    (lambda: nn.Linear(12, 7), (3, 5, 12)),
    (lambda: nn.Conv1d(4, 6, 3, padding=1), (2, 4, 10)),
    (lambda: nn.Conv2d(3, 5, 3, stride=2, groups=1), (2, 3, 9, 9)),
    (lambda: nn.Conv2d(4, 4, 3, groups=2, bias=False), (1, 4, 7, 7)),
])
def test_linear_and_conv_match_flop_counter_mode(make, shape):
    model, x = _seeded(make), torch.randn(*shape, requires_grad=True)
    counted = count_flops(model, x, backward=True)
    theirs = torch_counts(model, x, backward=True)
    assert matmul(counted) == theirs["forward"] > 0
    assert matmul(counted, "backward") == theirs["backward"]
    assert counted.ops_without_formula() == []


def _attention_matmul(batch, heads, seq, width):
    """QKᵀ and PV of one attention: the CPU flash kernel PyTorch's registry has no formula for."""
    head = (batch, heads, seq, width // heads)
    return attention_flops(head, head, head, masked=False, dropout=False)["matmul"]


def test_transformer_layer_in_training_matches_flop_counter_mode():
    # dropout > 0 in training runs the math attention kernel (bmm), which PyTorch counts
    model = _seeded(lambda: nn.TransformerEncoderLayer(16, 2, 32, batch_first=True)).train()
    x = torch.randn(2, 8, 16, requires_grad=True)
    counted, theirs = count_flops(model, x, backward=True), torch_counts(model, x, backward=True)
    assert matmul(counted) == theirs["forward"]
    assert matmul(counted, "backward") == theirs["backward"]
    assert counted.ops_without_formula() == []


def test_transformer_layer_in_eval_adds_the_attention_pytorch_counts_zero():
    model = _seeded(lambda: nn.TransformerEncoderLayer(16, 2, 32, batch_first=True)).eval()
    x = torch.randn(2, 8, 16)
    counted = count_flops(model, x, tensors="real")
    assert "aten._scaled_dot_product_flash_attention_for_cpu" in counted.by_op()
    assert matmul(counted) == torch_counts(model, x)["forward"] + _attention_matmul(2, 2, 8, 16)


@pytest.mark.parametrize("need_weights", [True, False])
def test_multihead_attention_with_and_without_weights(need_weights):
    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            self.mha = nn.MultiheadAttention(16, 2, batch_first=True)

        def forward(self, x):
            return self.mha(x, x, x, need_weights=need_weights)[0]

    model, x = _seeded(Attention), torch.randn(2, 8, 16)
    counted = count_flops(model, x, tensors="real")
    # with weights, MHA runs bmm + softmax (counted by PyTorch too); without, the CPU flash kernel
    missing = 0 if need_weights else _attention_matmul(2, 2, 8, 16)
    assert matmul(counted) == torch_counts(model, x)["forward"] + missing
    assert counted.ops_without_formula() == []


class _UnrolledLSTM(nn.Module):
    """nn.LSTM's weights, one LSTMCell step at a time: ops PyTorch and bkprof both know one by one."""

    def __init__(self, lstm: nn.LSTM):
        super().__init__()
        self.cell = nn.LSTMCell(lstm.input_size, lstm.hidden_size)
        self.cell.load_state_dict({k.replace("_l0", ""): v for k, v in lstm.state_dict().items()})

    def forward(self, x):
        h = c = x.new_zeros(x.shape[0], self.cell.hidden_size)
        outs = []
        for t in range(x.shape[1]):
            h, c = self.cell(x[:, t], (h, c))
            outs.append(h)
        return torch.stack(outs, 1)


def test_lstm_kernel_equals_its_unrolled_cells():
    """PyTorch counts 0 for the CPU LSTM kernel (mkldnn_rnn_layer); its cells one by one it counts."""
    lstm, x = _seeded(lambda: nn.LSTM(16, 8, batch_first=True)), torch.randn(2, 5, 16)
    counted, unrolled = count_flops(lstm, x), count_flops(_UnrolledLSTM(lstm), x)
    assert "aten.mkldnn_rnn_layer" in counted.by_op() and counted.ops_without_formula() == []
    assert torch_counts(lstm, x)["forward"] == 0
    assert matmul(counted) == torch_counts(_UnrolledLSTM(lstm), x)["forward"] == matmul(unrolled)
    # the whole count, bias adds and gate arithmetic included, equals the cells' op-by-op count:
    # per step and row 2·32·24 = 1536 matmul + 64 bias + 13·8 = 104 gate FLOPs; ×10 rows
    assert counted.total() == unrolled.total() == 10 * (1536 + 64 + 104)


def test_lstm_backward_matmul_equals_its_unrolled_cells():
    lstm = _seeded(lambda: nn.LSTM(16, 8, batch_first=True))
    x = torch.randn(2, 5, 16, requires_grad=True)
    counted = count_flops(lstm, x, backward=True, loss_fn=lambda out: out[0].sum())
    unrolled = _UnrolledLSTM(lstm)
    # the fused kernel also gives the initial state's gradient, which the unrolled cells (h0 = zeros,
    # no grad) skip: h0 · W_hhᵀ's grad_input, 2·2·32·8 = 1,024
    assert matmul(counted, "backward") == torch_counts(unrolled, x, backward=True)["backward"] + 1_024


def test_gru_matches_flop_counter_mode():
    gru, x = _seeded(lambda: nn.GRU(16, 8, batch_first=True)), torch.randn(2, 5, 16, requires_grad=True)
    counted = count_flops(gru, x, backward=True, loss_fn=lambda out: out[0].sum())
    theirs = torch_counts(gru, x, backward=True)
    assert matmul(counted) == theirs["forward"] == 10 * 2 * 3 * 8 * (16 + 8)
    assert matmul(counted, "backward") == theirs["backward"]
    assert counted.ops_without_formula() == []


# ---- hand-derived totals, elementwise work included ----

def test_small_cnn_total_by_hand():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(64, 10)).eval()
    counted = count_flops(model, torch.randn(2, 3, 8, 8))
    conv = 2 * (2 * 4 * 8 * 8) * 3 * 9 + 2 * 4 * 8 * 8     # 2·out·C_in·k² = 27,648, + 512 bias adds
    norm = 2 * 512 + 2 * 4 + 2 * 512                        # eval: subtract, scale; rsqrt per channel; affine
    relu = 512
    pool = (2 * 4 * 4 * 4) * 4                              # 128 outputs, 4 comparisons each
    linear = 2 * 2 * 64 * 10 + 2 * 10                       # 2,560 + 20 bias adds
    assert counted.total() == conv + norm + relu + pool + linear == 33_820
    assert counted.by_module() == {"": 33_820, "0": 28_160, "1": 2_056, "2": 512, "3": 512, "4": 0, "5": 2_580}


def test_transformer_layer_total_by_hand():
    """TransformerEncoderLayer(16, 2, 32), B=2, S=8, eval, no dropout: 16 rows."""
    model = _seeded(lambda: nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True)).eval()
    x = torch.randn(2, 8, 16)
    rows, d, ff = 16, 16, 32
    head = (2, 2, 8, 8)
    attention = attention_flops(head, head, head, masked=False, dropout=False)
    # attention: 2·256·(8 + 8) = 8,192 matmul; q, k scaled 256 + 256; softmax 5·256 = 1,280
    assert attention == {"matmul": 8_192, "elementwise": 512, "normalization": 1_280}
    expected = (
        2 * rows * d * 3 * d + rows * 3 * d          # in-projection: 24,576 + 768 bias
        + sum(attention.values())                    # 9,984
        + 2 * rows * d * d + rows * d                # out-projection: 8,192 + 256
        + rows * d                                   # residual add
        + layer_norm_flops(rows * d, rows, True)     # 5·256 + 2·16 + 2·256 = 1,824
        + 2 * rows * d * ff + rows * ff + rows * ff  # linear1 16,384 + 512 bias, ReLU 512
        + 2 * rows * ff * d + rows * d               # linear2 16,384 + 256
        + rows * d                                   # residual add
        + layer_norm_flops(rows * d, rows, True)
    )
    assert expected == 81_984
    assert count_flops(model, x).total() == expected
    # the inference fast path (one fused attention op) counts the same total
    with torch.no_grad():
        fast = count_flops(model, x)
    assert "aten._native_multi_head_attention" in fast.by_op() and fast.total() == expected


# ---- the document of `bkprof flops --model` ----

from bkprof.flops.model_report import ModelInputError, ModelSpec, model_report, parse_shape  # noqa: E402

EXAMPLE = "bkprof.examples.models:transformer_layer"


def test_model_document_for_a_transformer_layer():
    doc = model_report(ModelSpec(EXAMPLE, ((2, 16, 128),)))["model"]
    model = nn.TransformerEncoderLayer(128, 4, 512, batch_first=True).eval()
    x = torch.randn(2, 16, 128)
    assert doc["flops"] == count_flops(model, x).total() and isinstance(doc["flops"], int)
    assert doc["torch_flop_counter"] == torch_counts(model, x)["forward"]
    # fvcore: the linears' MACs, q, k, v, out 4·32·128·128 + 32·128·512·2, and its layer-norm handle,
    # 5 per element with an affine, 2·5·32·128; attention is an op it skips
    assert doc["fvcore_macs"] == 4 * 32 * 128 * 128 + 2 * 32 * 128 * 512 + 2 * 5 * 32 * 128
    assert doc["fvcore_unsupported"]["aten::scaled_dot_product_attention"] == 1
    assert doc["by_module"][""] == doc["flops"] and "self_attn" in doc["by_module"]
    assert sum(doc["by_family"].values()) == doc["flops"]
    assert doc["no_formula"] == [] and doc["tensors"] == "fake" and "backward_flops" not in doc


def test_model_document_with_backward_and_custom_inputs():
    doc = model_report(ModelSpec("bkprof.examples.models:tiny_language_model",
                                 inputs="bkprof.examples.models:token_ids", backward=True))["model"]
    assert doc["backward_flops"] > doc["flops"] > 0 and doc["inputs"] == "2x32 int64"
    assert doc["torch_flop_counter_backward"] <= doc["backward_flops"]


def test_a_huge_input_is_counted_without_its_memory():
    # batch 4096 × 4096 positions × 128: 8 GiB per activation in float32; fvcore (real tensors) is skipped
    doc = model_report(ModelSpec(EXAMPLE, ((4096, 4096, 128),)))["model"]
    small = model_report(ModelSpec(EXAMPLE, ((1, 4096, 128),)))["model"]
    assert doc["flops"] == 4096 * small["flops"]
    assert doc["fvcore_macs"] is None and "GiB" in doc["fvcore_note"]


@pytest.mark.parametrize("spec, named", [
    (ModelSpec("no_such_package.models:f", ((2, 4),)), "cannot import no_such_package.models"),
    (ModelSpec("bkprof.examples.models:missing", ((2, 4),)), "has no attribute 'missing'"),
    (ModelSpec("bkprof.examples.models", ((2, 4),)), "expected PKG.MODULE:NAME"),
    (ModelSpec("bkprof.examples.models:VOCABULARY", ((2, 4),)), "neither a module nor callable"),
    (ModelSpec("bkprof.examples.models:token_ids", ((2, 4),)), "not an nn.Module"),
    (ModelSpec(EXAMPLE, ((2, 4, 3),)), "raised AssertionError"),
    (ModelSpec(EXAMPLE, ((2, 4, 128),), dtype="int8"), "--dtype 'int8'"),
    (ModelSpec(EXAMPLE, ((2, 4, 128),), device="bogus"), "--device 'bogus'"),
    (ModelSpec(EXAMPLE, ()), "needs an input"),
    (ModelSpec(EXAMPLE, ((2, 4, 128),), inputs="bkprof.examples.models:token_ids"), "one or the other"),
])
def test_bad_model_input_is_one_line_naming_it(spec, named):
    with pytest.raises(ModelInputError, match=named) as error:
        model_report(spec)
    assert "\n" not in str(error.value)


def test_a_factory_that_raises_is_named():
    with pytest.raises(ModelInputError, match="raised ZeroDivisionError"):
        model_report(ModelSpec("tests.test_count_model:_broken_factory", ((2, 4),)))


def _broken_factory():
    return 1 / 0


@pytest.mark.parametrize("text", ["", "2x", "x3", "2x-1", "2x0", "2*3", "a"])
def test_malformed_shapes(text):
    with pytest.raises(ModelInputError, match="--input-shape"):
        parse_shape(text)
    assert parse_shape("2x256x128") == (2, 256, 128)


# ---- the command line ----

def _cli(*args):
    from typer.testing import CliRunner

    from bkprof.cli import app

    return CliRunner().invoke(app, ["flops", *args])


def test_cli_json_has_the_promised_schema():
    import json

    result = _cli("--model", EXAMPLE, "--input-shape", "2x16x128", "--format", "json", "--backward")
    assert result.exit_code == 0, result.output
    m = json.loads(result.stdout)["model"]
    assert isinstance(m["flops"], int) and isinstance(m["torch_flop_counter"], int)
    assert isinstance(m["fvcore_macs"], int) and isinstance(m["no_formula"], list)
    assert m["by_module"][""] == m["flops"] and set(m["by_family"]) >= {"matmul", "normalization"}
    assert m["backward_flops"] > m["flops"] and m["mode"] == "train"
    # the same count as the library's, on a model built the same way (train mode, input requiring grad)
    model = _seeded(lambda: nn.TransformerEncoderLayer(128, 4, 512, batch_first=True)).train()
    counted = count_flops(model, torch.randn(2, 16, 128, requires_grad=True), backward=True)
    assert (m["flops"], m["backward_flops"]) == (counted.total(), counted.total("backward"))


def test_cli_table_shows_every_counter_and_the_module_tree():
    result = _cli("--model", "bkprof.examples.models:small_cnn", "--input-shape", "2x3x16x16", "--depth", "1")
    assert result.exit_code == 0, result.output
    for text in ("bkprof op counter", "PyTorch FlopCounterMode", "fvcore", "By family", "By module",
                 "BatchNorm2d", "Ops without a formula"):
        assert text in result.stdout


@pytest.mark.parametrize("args, named", [
    (["--model", "no_such_package:f", "--input-shape", "2x4"], "cannot import no_such_package"),
    (["--model", "bkprof.examples.models:missing", "--input-shape", "2x4"], "has no attribute 'missing'"),
    (["--model", "tests.test_count_model:_broken_factory", "--input-shape", "2x4"], "raised ZeroDivisionError"),
    (["--model", EXAMPLE, "--input-shape", "2x-4"], "--input-shape '2x-4'"),
    (["--model", EXAMPLE, "--input-shape", "2x4x128", "--dtype", "int3"], "--dtype 'int3'"),
    (["--input-shape", "2x4"], "--input-shape"),
])
def test_cli_bad_input_is_one_line_and_exit_2(args, named):
    result = _cli(*args)
    assert result.exit_code == 2
    assert named in result.output and len(result.output.strip().splitlines()) == 1
    assert "Traceback" not in result.output
