"""A zoo of small real models, written here (nothing downloaded): each a factory returning
(model, inputs). tests/test_zoo.py counts every one forward and backward."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _conv_bn(cin, cout, k=3, stride=1, groups=1, dilation=1):
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, dilation * (k // 2), dilation, groups, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.a = _conv_bn(cin, cout, stride=stride)
        self.b = nn.Sequential(nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
        self.skip = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                     if stride != 1 or cin != cout else nn.Identity())

    def forward(self, x):
        return F.relu(self.b(self.a(x)) + self.skip(x))


class ResNet(nn.Module):
    """ResNet-18-style: stem, max pool, basic blocks, global average pool, classifier."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(_conv_bn(3, 8, 3, 2), nn.MaxPool2d(3, 2, 1))
        self.layers = nn.Sequential(BasicBlock(8, 8), BasicBlock(8, 16, 2))
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        return self.head(torch.flatten(F.adaptive_avg_pool2d(self.layers(self.stem(x)), 1), 1))


class MobileNetBlock(nn.Module):
    """Inverted residual: expand 1×1, depthwise 3×3, squeeze-excite (hardsigmoid), project; hardswish."""

    def __init__(self, c=8, expand=4):
        super().__init__()
        h = c * expand
        self.expand = nn.Sequential(nn.Conv2d(c, h, 1, bias=False), nn.BatchNorm2d(h), nn.Hardswish())
        self.depthwise = nn.Sequential(nn.Conv2d(h, h, 3, 1, 1, groups=h, bias=False), nn.BatchNorm2d(h),
                                       nn.Hardswish())
        self.se = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(h, 8, 1), nn.ReLU(), nn.Conv2d(8, h, 1),
                                nn.Hardsigmoid())
        self.project = nn.Sequential(nn.Conv2d(h, c, 1, bias=False), nn.BatchNorm2d(c))

    def forward(self, x):
        h = self.depthwise(self.expand(x))
        return x + self.project(h * self.se(h))


class ResNeXt(nn.Module):
    """Grouped 3×3 convolutions (cardinality 4) with mish activations."""

    def __init__(self):
        super().__init__()
        self.block = nn.Sequential(nn.Conv2d(8, 16, 1), nn.Mish(), nn.Conv2d(16, 16, 3, padding=1, groups=4),
                                   nn.Mish(), nn.Conv2d(16, 8, 1))

    def forward(self, x):
        return F.mish(x + self.block(x))


class Dilated(nn.Module):
    """Atrous convolutions (dilation 1, 2, 4) and an ASPP-style concatenation."""

    def __init__(self):
        super().__init__()
        self.branches = nn.ModuleList(nn.Conv2d(3, 4, 3, padding=d, dilation=d) for d in (1, 2, 4))
        self.fuse = nn.Conv2d(12, 4, 1)

    def forward(self, x):
        return self.fuse(torch.cat([F.elu(b(x)) for b in self.branches], 1))


class TransposedDecoder(nn.Module):
    """A DCGAN-style generator: transposed convolutions (one grouped), batch norm, tanh."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.ConvTranspose2d(16, 8, 4, 1, 0), nn.BatchNorm2d(8), nn.ReLU(),
            nn.ConvTranspose2d(8, 8, 4, 2, 1, groups=2), nn.BatchNorm2d(8), nn.LeakyReLU(0.2),
            nn.ConvTranspose2d(8, 3, 4, 2, 1), nn.Tanh())

    def forward(self, z):
        return self.net(z)


class UNet(nn.Module):
    """Two levels down (max pool), up by bilinear and nearest upsampling, skip concatenations, group norm."""

    def __init__(self):
        super().__init__()

        def block(cin, cout):
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(2, cout), nn.SiLU())

        self.d1, self.d2, self.mid = block(3, 8), block(8, 16), block(16, 16)
        self.u2, self.u1 = block(32, 8), block(16, 8)
        self.out = nn.Conv2d(8, 2, 1)

    def forward(self, x):
        a = self.d1(x)
        b = self.d2(F.max_pool2d(a, 2))
        m = self.mid(F.max_pool2d(b, 2))
        b = self.u2(torch.cat([F.interpolate(m, scale_factor=2, mode="bilinear"), b], 1))
        return self.out(self.u1(torch.cat([F.interpolate(b, scale_factor=2, mode="nearest"), a], 1)))


class ViT(nn.Module):
    """Patch embedding (a strided conv), class token, learned positions, pre-norm encoder layers, head."""

    def __init__(self, d=32, patches=16):
        super().__init__()
        self.embed = nn.Conv2d(3, d, 4, 4)
        self.cls = nn.Parameter(torch.zeros(1, 1, d))
        self.pos = nn.Parameter(torch.zeros(1, patches + 1, d))
        layer = nn.TransformerEncoderLayer(d, 4, 2 * d, dropout=0.1, activation="gelu", batch_first=True,
                                           norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.norm, self.head = nn.LayerNorm(d), nn.Linear(d, 10)

    def forward(self, x):
        p = self.embed(x).flatten(2).transpose(1, 2)
        h = torch.cat([self.cls.expand(x.shape[0], -1, -1), p], 1) + self.pos
        return self.head(self.norm(self.encoder(h))[:, 0])


class GPT2Block(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.fc, self.out = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, 2)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=0.1 if self.training else 0.0)
        x = x + self.proj(a.transpose(1, 2).reshape(b, t, d))
        return x + self.out(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))


class GPT2(nn.Module):
    """Token and position embeddings, causal blocks, tied output projection, the next-token loss."""

    def __init__(self, vocab=64, d=32, layers=2, context=16):
        super().__init__()
        self.tok, self.pos = nn.Embedding(vocab, d), nn.Embedding(context, d)
        self.blocks = nn.ModuleList(GPT2Block(d, 4) for _ in range(layers))
        self.ln = nn.LayerNorm(d)

    def forward(self, ids):
        h = self.tok(ids) + self.pos(torch.arange(ids.shape[1], device=ids.device))
        for block in self.blocks:
            h = block(h)
        logits = self.ln(h) @ self.tok.weight.T
        return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))


class EncoderDecoder(nn.Module):
    """nn.Transformer with a causal target mask and a generator."""

    def __init__(self, d=32):
        super().__init__()
        self.t = nn.Transformer(d, 4, 1, 1, 64, dropout=0.1, batch_first=True)
        self.gen = nn.Linear(d, 20)

    def forward(self, src, tgt):
        mask = self.t.generate_square_subsequent_mask(tgt.shape[1])
        return self.gen(self.t(src, tgt, tgt_mask=mask))


class LSTMSeq2Seq(nn.Module):
    """A two-layer LSTM encoder and an LSTM decoder fed the target (teacher forcing)."""

    def __init__(self, d=16, h=24):
        super().__init__()
        self.enc = nn.LSTM(d, h, 2, batch_first=True, dropout=0.1)
        self.dec = nn.LSTM(d, h, 2, batch_first=True)
        self.out = nn.Linear(h, d)

    def forward(self, src, tgt):
        _, state = self.enc(src)
        y, _ = self.dec(tgt, state)
        return self.out(y)


class GRUSeq2Seq(nn.Module):
    """A bidirectional GRU encoder, a GRU decoder with dot-product attention over the encoder states."""

    def __init__(self, d=16, h=16):
        super().__init__()
        self.enc = nn.GRU(d, h, batch_first=True, bidirectional=True)
        self.bridge = nn.Linear(2 * h, h)
        self.dec = nn.GRU(d, h, batch_first=True)
        self.out = nn.Linear(2 * h, d)

    def forward(self, src, tgt):
        mem, last = self.enc(src)
        mem = self.bridge(mem)
        y, _ = self.dec(tgt, torch.tanh(self.bridge(torch.cat([last[0], last[1]], -1)))[None])
        weights = torch.softmax(y @ mem.transpose(1, 2), -1)
        return self.out(torch.cat([y, weights @ mem], -1))


class RNNAttention(nn.Module):
    """An Elman RNN (tanh) and additive (Bahdanau) attention pooling."""

    def __init__(self, d=12, h=16):
        super().__init__()
        self.rnn = nn.RNN(d, h, batch_first=True)
        self.w, self.v = nn.Linear(h, h), nn.Linear(h, 1, bias=False)

    def forward(self, x):
        y, _ = self.rnn(x)
        scores = self.v(torch.tanh(self.w(y))).squeeze(-1)
        return (torch.softmax(scores, -1).unsqueeze(-1) * y).sum(1)


class GNN(nn.Module):
    """Message passing on a fixed graph: messages gathered by edge, summed (scatter_add), averaged
    (scatter_reduce mean) and max-pooled into nodes; a GIN-style update."""

    def __init__(self, d=16, nodes=10):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.register_buffer("src", torch.randint(0, nodes, (40,), generator=g))
        self.register_buffer("dst", torch.randint(0, nodes, (40,), generator=g))
        self.msg = nn.Linear(2 * d, d)
        self.upd = nn.Sequential(nn.Linear(3 * d, d), nn.ReLU(), nn.Linear(d, d))

    def forward(self, x):
        m = F.relu(self.msg(torch.cat([x[self.src], x[self.dst]], -1)))
        index = self.dst[:, None].expand_as(m)
        summed = torch.zeros_like(x).scatter_add(0, index, m)
        mean = torch.zeros_like(x).scatter_reduce(0, index, m, "mean", include_self=False)
        h = self.upd(torch.cat([x, summed, mean], -1))
        return torch.zeros(1, x.shape[1]).index_add(0, torch.zeros(x.shape[0], dtype=torch.long), h)


class MLPMixer(nn.Module):
    """Token mixing (a linear across patches, through a transpose) and channel mixing."""

    def __init__(self, tokens=16, d=24):
        super().__init__()
        self.n1, self.n2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.tok = nn.Sequential(nn.Linear(tokens, 32), nn.GELU(), nn.Linear(32, tokens))
        self.ch = nn.Sequential(nn.Linear(d, 48), nn.GELU(), nn.Linear(48, d))

    def forward(self, x):
        x = x + self.tok(self.n1(x).transpose(1, 2)).transpose(1, 2)
        return x + self.ch(self.n2(x))


class ConvNeXtBlock(nn.Module):
    """Depthwise 7×7, layer norm in channels-last (permute), inverted MLP, layer scale."""

    def __init__(self, c=16):
        super().__init__()
        self.dw = nn.Conv2d(c, c, 7, padding=3, groups=c)
        self.norm = nn.LayerNorm(c)
        self.mlp = nn.Sequential(nn.Linear(c, 4 * c), nn.GELU(), nn.Linear(4 * c, c))
        self.gamma = nn.Parameter(torch.full((c,), 1e-6))

    def forward(self, x):
        h = self.mlp(self.norm(self.dw(x).permute(0, 2, 3, 1)))
        return x + (self.gamma * h).permute(0, 3, 1, 2)


class WaveNet(nn.Module):
    """Causal dilated 1-D convolutions with weight norm and gated (tanh · sigmoid) activations, GLU out."""

    def __init__(self, c=8):
        super().__init__()
        from torch.nn.utils.parametrizations import weight_norm

        self.convs = nn.ModuleList(weight_norm(nn.Conv1d(c, 2 * c, 2, dilation=d)) for d in (1, 2, 4))
        self.out = nn.Conv1d(c, 2 * c, 1)

    def forward(self, x):
        for conv, d in zip(self.convs, (1, 2, 4)):
            a, b = conv(F.pad(x, (d, 0))).chunk(2, 1)
            x = x + torch.tanh(a) * torch.sigmoid(b)
        return F.glu(self.out(x), 1)


class SubPixelSR(nn.Module):
    """Super-resolution: convolutions with PReLU, sub-pixel (PixelShuffle) upsampling, reflection padding."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(3, 16, 3), nn.PReLU(16),
                                  nn.Conv2d(16, 3 * 4, 3, padding=1), nn.PixelShuffle(2))

    def forward(self, x):
        return self.body(x) + F.interpolate(x, scale_factor=2, mode="bicubic", align_corners=False)


class Siamese(nn.Module):
    """An embedding net, pairwise distances (cdist both ways) and a bilinear similarity head."""

    def __init__(self, d=16):
        super().__init__()
        self.embed = nn.Sequential(nn.Linear(12, d), nn.Softplus(), nn.Linear(d, d))
        self.score = nn.Bilinear(d, d, 1)

    def forward(self, a, b):
        ea, eb = self.embed(a), self.embed(b)
        near = torch.cdist(ea, eb).min(-1).values.mean() + torch.cdist(ea[None], eb[None], p=1).mean()
        return self.score(ea, eb).squeeze(-1) + near


class DLRM(nn.Module):
    """Embedding bags for sparse features, a bottom MLP, pairwise dot interactions (bmm), a top MLP,
    the click loss with logits."""

    def __init__(self, d=8):
        super().__init__()
        self.bags = nn.ModuleList(nn.EmbeddingBag(50, d, mode="sum") for _ in range(3))
        self.bottom = nn.Sequential(nn.Linear(4, d), nn.ReLU())
        self.top = nn.Sequential(nn.Linear(d + 6, 16), nn.ReLU(), nn.Linear(16, 1))

    def forward(self, dense, ids, offsets, clicks):
        feats = torch.stack([self.bottom(dense)] + [bag(ids, offsets) for bag in self.bags], 1)
        inter = feats @ feats.transpose(1, 2)
        i, j = torch.triu_indices(4, 4, 1)
        logit = self.top(torch.cat([feats[:, 0], inter[:, i, j]], 1)).squeeze(-1)
        return F.binary_cross_entropy_with_logits(logit, clicks)


class STN(nn.Module):
    """A spatial transformer: a localisation net predicts an affine map, grid_sample applies it."""

    def __init__(self):
        super().__init__()
        self.loc = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                                 nn.Linear(16, 6))
        self.cls = nn.Linear(64, 4)

    def forward(self, x):
        theta = self.loc(x).view(-1, 2, 3)
        warped = F.grid_sample(x, F.affine_grid(theta, list(x.shape), align_corners=False), align_corners=False)
        return F.log_softmax(self.cls(warped.flatten(1)), -1)


class StyleNet(nn.Module):
    """A style-transfer net: reflection padding, instance norm, strided conv down, nearest upsampling."""

    def __init__(self):
        super().__init__()
        self.down = nn.Sequential(nn.ReflectionPad2d(2), nn.Conv2d(3, 8, 5), nn.InstanceNorm2d(8, affine=True),
                                  nn.ReLU(), nn.Conv2d(8, 16, 3, 2, 1), nn.InstanceNorm2d(16, affine=True), nn.ReLU())
        self.up = nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv2d(16, 3, 3, padding=1), nn.Sigmoid())

    def forward(self, x):
        return self.up(self.down(x))


class MoE(nn.Module):
    """A dense-dispatch mixture of experts: top-2 gate weights (topk, softmax, scatter into a dense
    gate), every expert on every token (a batched matmul over experts), combined by the gate."""

    def __init__(self, d=16, experts=4):
        super().__init__()
        self.gate = nn.Linear(d, experts)
        self.w1 = nn.Parameter(torch.randn(experts, d, 2 * d) / math.sqrt(d))
        self.w2 = nn.Parameter(torch.randn(experts, 2 * d, d) / math.sqrt(2 * d))

    def forward(self, x):
        logits = self.gate(x)
        top, index = logits.topk(2, -1)
        gates = torch.zeros_like(logits).scatter(-1, index, torch.softmax(top, -1))
        h = torch.einsum("td,edh->eth", x, self.w1)
        y = torch.einsum("eth,ehd->etd", F.silu(h), self.w2)
        return torch.einsum("te,etd->td", gates, y)


class CrossAttention(nn.Module):
    """Perceiver-style: latents attend to inputs of another width (kdim, vdim), weights returned."""

    def __init__(self, d=16):
        super().__init__()
        self.latents = nn.Parameter(torch.randn(1, 4, d))
        self.attn = nn.MultiheadAttention(d, 2, kdim=12, vdim=12, batch_first=True)
        self.ff = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, d), nn.Hardtanh())

    def forward(self, x):
        out, weights = self.attn(self.latents.expand(x.shape[0], -1, -1), x, x, need_weights=True)
        return self.ff(out).sum() + weights.logsumexp(-1).sum()


def _ids(*shape, high):
    return torch.randint(0, high, shape, generator=torch.Generator().manual_seed(1))


ZOO = {
    "resnet": lambda: (ResNet(), (torch.randn(2, 3, 16, 16),)),
    "mobilenet_depthwise_se": lambda: (MobileNetBlock(), (torch.randn(2, 8, 8, 8),)),
    "resnext_grouped": lambda: (ResNeXt(), (torch.randn(2, 8, 8, 8),)),
    "dilated_aspp": lambda: (Dilated(), (torch.randn(2, 3, 12, 12),)),
    "transposed_generator": lambda: (TransposedDecoder(), (torch.randn(2, 16, 1, 1),)),
    "unet": lambda: (UNet(), (torch.randn(1, 3, 16, 16),)),
    "vit": lambda: (ViT(), (torch.randn(2, 3, 16, 16),)),
    "gpt2": lambda: (GPT2(), (_ids(2, 16, high=64),)),
    "transformer_encoder_decoder": lambda: (EncoderDecoder(), (torch.randn(2, 6, 32), torch.randn(2, 5, 32))),
    "lstm_seq2seq": lambda: (LSTMSeq2Seq(), (torch.randn(2, 6, 16), torch.randn(2, 5, 16))),
    "gru_seq2seq_attention": lambda: (GRUSeq2Seq(), (torch.randn(2, 6, 16), torch.randn(2, 5, 16))),
    "rnn_additive_attention": lambda: (RNNAttention(), (torch.randn(2, 7, 12),)),
    "gnn_scatter": lambda: (GNN(), (torch.randn(10, 16),)),
    "mlp_mixer": lambda: (MLPMixer(), (torch.randn(2, 16, 24),)),
    "convnext": lambda: (ConvNeXtBlock(), (torch.randn(2, 16, 8, 8),)),
    "wavenet_weight_norm": lambda: (WaveNet(), (torch.randn(2, 8, 20),)),
    "subpixel_superres": lambda: (SubPixelSR(), (torch.randn(1, 3, 8, 8),)),
    "siamese_cdist_bilinear": lambda: (Siamese(), (torch.randn(5, 12), torch.randn(5, 12))),
    "dlrm_embedding_bag": lambda: (DLRM(), (torch.randn(3, 4), _ids(9, high=50), torch.tensor([0, 3, 6]),
                                            torch.rand(3))),
    "spatial_transformer": lambda: (STN(), (torch.randn(2, 1, 8, 8),)),
    "style_instance_norm": lambda: (StyleNet(), (torch.randn(1, 3, 12, 12),)),
    "moe_dense_dispatch": lambda: (MoE(), (torch.randn(6, 16),)),
    "perceiver_cross_attention": lambda: (CrossAttention(), (torch.randn(2, 9, 12),)),
}
