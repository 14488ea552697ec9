"""Grouped linear layers: rows sorted by group, each group's rows through its own weight.

The MoE-FFN's experts as one op per layer: `x` holds the rows of every expert, sorted by expert,
and `ends` (E,) the cumulative end offset of each expert's rows (group e owns rows
ends[e-1]..ends[e]-1). Rows of group e get x @ weight[e].T + bias[e], as nn.Linear would.

Three custom ops (`torch.ops.bkprof.*`), so that dispatch modes (the op counter, FlopCounterMode),
fake tensors and torch.jit see each as one op:
- `grouped_linear(x, ends, weight, bias)`: the forward;
- `grouped_linear_input_grad(grad, ends, weight)`: grad_x = grad_e @ weight[e] per group;
- `grouped_linear_weight_grad(grad, ends, x)`: (grad_weight[e] = grad_e.T @ x_e, grad_bias[e] = grad_e summed).

On CUDA with Triton, in float32 and float64, each op is one kernel that reads `ends` on the
device: no host sync and no shape that depends on the routing, so a layer step can be captured
in a CUDA graph. The matmuls use `input_precision="ieee"` (true float32, no TF32), as nn.Linear
does with PyTorch's defaults. Elsewhere (CPU, no Triton, other dtypes) each op loops over the groups
with `ends.tolist()`, a host sync, and one addmm/mm per non-empty group.

FLOPs (torch's flop registry and bkprof's `formulas`) are the mathematical FLOPs of the real rows,
2·R·in·out per matmul (+ R·out for the bias add or the bias gradient): the kernels also multiply
the padded rows and columns of a tile and, in a tile shared by two groups, each group's weights
with the other group's rows masked to zero; that work is not counted.
"""

from __future__ import annotations

import torch
from torch.utils.flop_counter import register_flop_formula

from bkprof._torch_helpers import skip_dynamo_guard

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only machines (CI): every op runs as its loop over the groups
    triton = None

# (BLOCK_M, BLOCK_N, BLOCK_K) of the kernels' tiles: rows, outputs, and the summed dimension
TILES = {torch.float32: (64, 64, 16), torch.float64: (32, 32, 16)}
NUM_WARPS = 4


def matmul_flops(rows: int, inner: int, cols: int) -> int:
    """2 FLOPs per multiply-accumulate of a (rows, inner) @ (inner, cols) product."""
    return 2 * rows * inner * cols


# ---- the loops over the groups (CPU, and CUDA without Triton) --------------------------------

def _group_rows(ends: torch.Tensor, rows: int) -> list[tuple[int, slice]]:
    """(group, its slice of rows) for each non-empty group, read on the host."""
    bounds = ends.tolist()
    if any(b < a for a, b in zip([0, *bounds], bounds)) or (bounds[-1] if bounds else 0) != rows:
        raise ValueError(f"ends must be non-decreasing and end at the number of rows {rows}, got {bounds}")
    return [(g, slice(start, end)) for g, (start, end) in enumerate(zip([0, *bounds], bounds)) if end > start]


def _loop_matmul(a: torch.Tensor, ends: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Rows of group g: a @ b[g] (+ bias[g]), with b (E, inner, cols)."""
    out = a.new_empty(a.shape[0], b.shape[2])
    for g, rows in _group_rows(ends, a.shape[0]):
        if bias is None:
            torch.mm(a[rows], b[g], out=out[rows])
        else:
            torch.addmm(bias[g], a[rows], b[g], out=out[rows])
    return out


def _loop_weight_grad(grad: torch.Tensor, ends: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    grad_weight = x.new_zeros(ends.shape[0], grad.shape[1], x.shape[1])
    grad_bias = grad.new_zeros(ends.shape[0], grad.shape[1])
    for g, rows in _group_rows(ends, x.shape[0]):
        torch.mm(grad[rows].T, x[rows], out=grad_weight[g])
        torch.sum(grad[rows], 0, out=grad_bias[g])
    return grad_weight, grad_bias


# ---- the Triton kernels --------------------------------------------------------------------

if triton is not None:

    @triton.jit
    def _row_groups(ends_ptr, m, GROUPS: tl.constexpr, BLOCK_G: tl.constexpr):
        """The group of each row m: how many groups end at or before it."""
        g = tl.arange(0, BLOCK_G)
        ends = tl.load(ends_ptr + g, mask=g < GROUPS, other=0)
        ended = (ends[None, :] <= m[:, None]) & (g < GROUPS)[None, :]
        return tl.sum(ended.to(tl.int32), axis=1)

    @triton.jit
    def _grouped_matmul_kernel(a_ptr, ends_ptr, b_ptr, bias_ptr, out_ptr, rows, cols, inner,
                               stride_am, stride_ak, stride_be, stride_bk, stride_bn,
                               stride_ce, stride_cn, stride_om, stride_on,
                               GROUPS: tl.constexpr, BLOCK_G: tl.constexpr, HAS_BIAS: tl.constexpr,
                               BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
        """out[r] = a[r] @ b[g(r)] (+ bias[g(r)]) for BLOCK_M consecutive sorted rows r and BLOCK_N
        outputs. The tile's rows span groups first..last; each of them is multiplied in turn with
        the other groups' rows masked to zero, so each row sums only its own group's products."""
        m = tl.program_id(0).to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)
        n = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
        live = m < rows
        n_ok = n < cols
        group = _row_groups(ends_ptr, m, GROUPS, BLOCK_G)
        first = tl.min(tl.where(live, group, GROUPS), axis=0)
        last = tl.max(tl.where(live, group, -1), axis=0)
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=out_ptr.dtype.element_ty)
        for g in range(first, last + 1):
            mine = live & (group == g)
            b_group = b_ptr + tl.cast(g, tl.int64) * stride_be
            for k0 in range(0, inner, BLOCK_K):
                k = k0 + tl.arange(0, BLOCK_K)
                k_ok = k < inner
                a = tl.load(a_ptr + m[:, None] * stride_am + k[None, :] * stride_ak,
                            mask=mine[:, None] & k_ok[None, :], other=0.0)
                b = tl.load(b_group + k[:, None] * stride_bk + n[None, :] * stride_bn,
                            mask=k_ok[:, None] & n_ok[None, :], other=0.0)
                acc = tl.dot(a, b, acc, input_precision="ieee", out_dtype=acc.dtype)
        if HAS_BIAS:
            # rows past the last group (ends not covering every row: bad input) read no bias
            acc += tl.load(bias_ptr + group[:, None].to(tl.int64) * stride_ce + n[None, :] * stride_cn,
                           mask=(live & (group < GROUPS))[:, None] & n_ok[None, :], other=0.0)
        tl.store(out_ptr + m[:, None] * stride_om + n[None, :] * stride_on, acc,
                 mask=live[:, None] & n_ok[None, :])

    @triton.jit
    def _grouped_weight_grad_kernel(grad_ptr, x_ptr, ends_ptr, gw_ptr, gb_ptr, cols, inner,
                                    stride_gm, stride_gn, stride_xm, stride_xk,
                                    stride_we, stride_wn, stride_wk, stride_be, stride_bn,
                                    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
        """One (group e, BLOCK_N outputs, BLOCK_K inputs) tile of grad_weight[e] = grad_e.T @ x_e,
        walking group e's rows (bounds read from `ends` on the device); the tiles of the first
        input block also write grad_bias[e] = grad_e summed over the rows."""
        e = tl.program_id(0)
        n = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
        k = tl.program_id(2) * BLOCK_K + tl.arange(0, BLOCK_K)
        n_ok = n < cols
        k_ok = k < inner
        start = tl.where(e > 0, tl.load(ends_ptr + tl.maximum(e - 1, 0)), 0)
        end = tl.load(ends_ptr + e)
        acc = tl.zeros((BLOCK_N, BLOCK_K), dtype=gw_ptr.dtype.element_ty)
        bias_acc = tl.zeros((BLOCK_N,), dtype=gb_ptr.dtype.element_ty)
        for m0 in range(start, end, BLOCK_M):
            m = m0 + tl.arange(0, BLOCK_M)
            in_group = m < end
            g_t = tl.load(grad_ptr + m[None, :] * stride_gm + n[:, None] * stride_gn,
                          mask=n_ok[:, None] & in_group[None, :], other=0.0)
            x = tl.load(x_ptr + m[:, None] * stride_xm + k[None, :] * stride_xk,
                        mask=in_group[:, None] & k_ok[None, :], other=0.0)
            acc = tl.dot(g_t, x, acc, input_precision="ieee", out_dtype=acc.dtype)
            bias_acc += tl.sum(g_t, axis=1)
        e64 = e.to(tl.int64)
        tl.store(gw_ptr + e64 * stride_we + n[:, None] * stride_wn + k[None, :] * stride_wk, acc,
                 mask=n_ok[:, None] & k_ok[None, :])
        if tl.program_id(2) == 0:
            tl.store(gb_ptr + e64 * stride_be + n * stride_bn, bias_acc, mask=n_ok)


def _triton_runs(t: torch.Tensor) -> bool:
    return triton is not None and t.is_cuda and t.dtype in TILES


def _triton_matmul(a: torch.Tensor, ends: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    rows, inner, cols = a.shape[0], a.shape[1], b.shape[2]
    out = a.new_empty(rows, cols)
    if out.numel() == 0:
        return out
    block_m, block_n, block_k = TILES[a.dtype]
    groups = ends.shape[0]
    bias_or_unused = out if bias is None else bias  # a valid pointer the kernel never reads without HAS_BIAS
    grid = (triton.cdiv(rows, block_m), triton.cdiv(cols, block_n))
    _grouped_matmul_kernel[grid](
        a, ends.contiguous(), b, bias_or_unused, out, rows, cols, inner, *a.stride(), *b.stride(),
        *bias_or_unused.stride(), *out.stride(), GROUPS=groups, BLOCK_G=triton.next_power_of_2(groups),
        HAS_BIAS=bias is not None, BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=block_k, num_warps=NUM_WARPS)
    return out


def _triton_weight_grad(grad: torch.Tensor, ends: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    groups, cols, inner = ends.shape[0], grad.shape[1], x.shape[1]
    grad_weight = x.new_empty(groups, cols, inner)
    grad_bias = grad.new_empty(groups, cols)
    if grad_bias.numel() == 0:  # no groups or no outputs: both gradients are empty
        return grad_weight, grad_bias
    block_m, block_n, block_k = TILES[x.dtype]
    # one input block at least: its programs also write grad_bias
    grid = (groups, triton.cdiv(cols, block_n), max(1, triton.cdiv(inner, block_k)))
    _grouped_weight_grad_kernel[grid](
        grad, x, ends.contiguous(), grad_weight, grad_bias, cols, inner, *grad.stride(), *x.stride(),
        *grad_weight.stride(), *grad_bias.stride(), BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=block_k,
        num_warps=NUM_WARPS)
    return grad_weight, grad_bias


def _grouped_matmul(a: torch.Tensor, ends: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    run = _triton_matmul if _triton_runs(a) else _loop_matmul
    return run(a, ends, b, bias)


# ---- the custom ops ------------------------------------------------------------------------

@torch.library.custom_op("bkprof::grouped_linear", mutates_args=())
def _grouped_linear_op(x: torch.Tensor, ends: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Rows of group e: x @ weight[e].T + bias[e]; x (R, in), weight (E, out, in), bias (E, out)."""
    return _grouped_matmul(x, ends, weight.transpose(1, 2), bias)


@torch.library.custom_op("bkprof::grouped_linear_input_grad", mutates_args=())
def _input_grad_op(grad: torch.Tensor, ends: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Rows of group e: grad @ weight[e]; grad (R, out), weight (E, out, in)."""
    return _grouped_matmul(grad, ends, weight, None)


@torch.library.custom_op("bkprof::grouped_linear_weight_grad", mutates_args=())
def _weight_grad_op(grad: torch.Tensor, ends: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(grad_weight (E, out, in), grad_bias (E, out)): per group e, grad_e.T @ x_e and grad_e summed over rows."""
    run = _triton_weight_grad if _triton_runs(x) else _loop_weight_grad
    return run(grad, ends, x)


@_grouped_linear_op.register_fake
def _(x, ends, weight, bias):
    return x.new_empty(x.shape[0], weight.shape[1])


@_input_grad_op.register_fake
def _(grad, ends, weight):
    return grad.new_empty(grad.shape[0], weight.shape[2])


@_weight_grad_op.register_fake
def _(grad, ends, x):
    return x.new_empty(ends.shape[0], grad.shape[1], x.shape[1]), grad.new_empty(ends.shape[0], grad.shape[1])


def _setup_context(ctx, inputs, output) -> None:
    x, ends, weight, _ = inputs
    ctx.save_for_backward(x, ends, weight)


def _backward(ctx, grad):
    x, ends, weight = ctx.saved_tensors
    grad_x = _input_grad_op(grad, ends, weight) if ctx.needs_input_grad[0] else None
    grad_weight, grad_bias = _weight_grad_op(grad, ends, x) if any(ctx.needs_input_grad[2:]) else (None, None)
    return grad_x, None, grad_weight, grad_bias


_grouped_linear_op.register_autograd(_backward, setup_context=_setup_context)
for _op in (_grouped_linear_op, _input_grad_op, _weight_grad_op):
    for _kernel in getattr(_op, "_backend_fns", {}).values():
        skip_dynamo_guard(_kernel)


@register_flop_formula(torch.ops.bkprof.grouped_linear)
def _linear_flops(x_shape, ends_shape, weight_shape, bias_shape, *args, out_shape=None, **kwargs) -> int:
    # torch's convention for addmm: the matmul only (bkprof's own registry adds the bias)
    return matmul_flops(x_shape[0], x_shape[1], weight_shape[1])


@register_flop_formula(torch.ops.bkprof.grouped_linear_input_grad)
def _input_grad_flops(grad_shape, ends_shape, weight_shape, *args, out_shape=None, **kwargs) -> int:
    return matmul_flops(grad_shape[0], grad_shape[1], weight_shape[2])


@register_flop_formula(torch.ops.bkprof.grouped_linear_weight_grad)
def _weight_grad_flops(grad_shape, ends_shape, x_shape, *args, out_shape=None, **kwargs) -> int:
    return matmul_flops(grad_shape[0], grad_shape[1], x_shape[1])


def _check(x: torch.Tensor, ends: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> None:
    if x.dim() != 2 or not x.is_floating_point():
        raise ValueError(f"x must be a 2-D floating-point tensor (rows, in), got {x.dim()}-D {x.dtype}")
    if weight.dim() != 3 or weight.shape[2] != x.shape[1]:
        raise ValueError(f"weight must be (groups, out, in={x.shape[1]}), got {tuple(weight.shape)}")
    if ends.shape != weight.shape[:1] or ends.dtype != torch.int64:
        raise ValueError(f"ends must be int64 of shape ({weight.shape[0]},), got {ends.dtype} {tuple(ends.shape)}")
    if bias.shape != weight.shape[:2]:
        raise ValueError(f"bias must be (groups, out) = {tuple(weight.shape[:2])}, got {tuple(bias.shape)}")
    if len({x.dtype, weight.dtype, bias.dtype}) > 1:
        raise ValueError(f"x, weight and bias must share a dtype, got {x.dtype}, {weight.dtype}, {bias.dtype}")
    if len({x.device, ends.device, weight.device, bias.device}) > 1:
        raise ValueError(f"x, ends, weight and bias must be on one device, got {x.device}, {ends.device}, "
                         f"{weight.device}, {bias.device}")


def grouped_linear(x: torch.Tensor, ends: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Rows of group e (rows ends[e-1]..ends[e]-1 of x, sorted by group): x @ weight[e].T + bias[e].

    x (R, in); ends (E,) int64, non-decreasing, ends[-1] = R; weight (E, out, in); bias (E, out).
    Shapes, dtypes and devices are checked here; the values of `ends` only where the loop runs (on
    CUDA with Triton, reading them would be a host sync). Differentiable in x, weight and bias.
    """
    _check(x, ends, weight, bias)
    return _grouped_linear_op(x, ends, weight, bias)
