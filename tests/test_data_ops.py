"""Every op the registry counts as a data op (0 FLOPs) does no arithmetic: each is run on distinct
values and every value it returns is one of its inputs' (or a constant it writes: a fill value, the
zeros of padding or of a gradient's untouched part). A view is checked by its schema instead: its
result aliases its input. A name added to DATA_OPS without a view schema or a sample here fails."""

import pytest
import torch
from torch.utils._pytree import tree_leaves

from bkprof.flops.formulas import COMPARISON_OPS, CREATION_OPS, DATA_OPS, FORMULAS

A = torch.ops.aten
FILL = 7.5
X = torch.randn(2, 3, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))  # distinct values
M = X[0, 0]  # a 4×4 matrix of them
MASK = M > 0
ROWS = torch.tensor([2, 0, 3])

SAMPLES = {
    "_unsafe_view": lambda: A._unsafe_view(X, (6, 16)),
    "t_": lambda: A.t_(M.clone()),
    "transpose_": lambda: A.transpose_(X.clone(), 0, 1),
    "slice": lambda: A.slice(X, 2, 1, 3),
    "squeeze_": lambda: A.squeeze_(X[:1].clone()),
    "unsqueeze_": lambda: A.unsqueeze_(X.clone(), 0),
    "as_strided_": lambda: A.as_strided_(X.clone(), (4, 4), (1, 4)),
    "split": lambda: A.split(X, 1, 1),
    "unsafe_split": lambda: A.unsafe_split(X, 1, 1),
    "unsafe_split_with_sizes": lambda: A.unsafe_split_with_sizes(X, [1, 2], 1),
    "clone": lambda: A.clone(X),
    "copy_": lambda: A.copy_(torch.empty_like(X), X),
    "_to_copy": lambda: A._to_copy(X, memory_format=torch.channels_last),
    "lift_fresh_copy": lambda: A.lift_fresh_copy(X),
    "cat": lambda: A.cat([X, X.flip(0)]),
    "stack": lambda: A.stack([X, X]),
    "flip": lambda: A.flip(X, [1, 3]),
    "roll": lambda: A.roll(X, [1], [2]),
    "repeat": lambda: A.repeat(M, [2, 3]),
    "repeat_interleave": lambda: A.repeat_interleave(M, torch.tensor([1, 2, 0, 3]), 0),
    "tril": lambda: A.tril(M),
    "triu": lambda: A.triu(M, 1),
    "constant_pad_nd": lambda: A.constant_pad_nd(X, [1, 2], FILL),
    "reflection_pad1d": lambda: A.reflection_pad1d(X[0], [2, 1]),
    "reflection_pad2d": lambda: A.reflection_pad2d(X, [1, 2, 2, 1]),
    "reflection_pad3d": lambda: A.reflection_pad3d(X[None], [1, 1, 1, 1, 1, 1]),
    "replication_pad1d": lambda: A.replication_pad1d(X[0], [2, 1]),
    "replication_pad2d": lambda: A.replication_pad2d(X, [1, 2, 2, 1]),
    "replication_pad3d": lambda: A.replication_pad3d(X[None], [1, 1, 1, 1, 1, 1]),
    "im2col": lambda: A.im2col(X, [2, 2], [1, 1], [1, 1], [1, 1]),
    "pixel_shuffle": lambda: A.pixel_shuffle(X.reshape(2, 12, 2, 2), 2),
    "pixel_unshuffle": lambda: A.pixel_unshuffle(X, 2),
    "complex": lambda: torch.view_as_real(A.complex(X, X.flip(0))),
    "upsample_nearest1d": lambda: A.upsample_nearest1d(X[0], [9]),
    "upsample_nearest2d": lambda: A.upsample_nearest2d(X, [7, 9]),
    "upsample_nearest3d": lambda: A.upsample_nearest3d(X[None], [3, 7, 9]),
    "_upsample_nearest_exact1d": lambda: A._upsample_nearest_exact1d(X[0], [9]),
    "_upsample_nearest_exact2d": lambda: A._upsample_nearest_exact2d(X, [7, 9]),
    "_upsample_nearest_exact3d": lambda: A._upsample_nearest_exact3d(X[None], [3, 7, 9]),
    "_pack_padded_sequence": lambda: A._pack_padded_sequence(X[0, 0], torch.tensor([4, 4, 2, 1]), False)[0],
    "select_backward": lambda: A.select_backward(M, [2, 4, 4], 0, 1),
    "slice_backward": lambda: A.slice_backward(M, [6, 4], 0, 1, 5, 1),
    "gather": lambda: A.gather(M, 1, torch.tensor([[0, 0], [3, 1], [2, 2], [1, 0]])),
    "index": lambda: A.index(M, [ROWS]),
    "_unsafe_index": lambda: A._unsafe_index(M, [ROWS]),
    "index_select": lambda: A.index_select(M, 0, ROWS),
    "embedding": lambda: A.embedding(M, torch.tensor([[1, 3], [0, 0]])),
    "masked_select": lambda: A.masked_select(M, MASK),
    "masked_scatter": lambda: A.masked_scatter(M, MASK, M.flip(0)),
    "where": lambda: A.where(MASK, M, M.t()),
    "masked_fill": lambda: A.masked_fill(M, MASK, FILL),
    "masked_fill_": lambda: A.masked_fill_(M.clone(), MASK, FILL),
    "index_copy": lambda: A.index_copy(M, 0, ROWS, M[:3].flip(1)),
    "index_fill": lambda: A.index_fill(M, 0, ROWS, FILL),
    "fill": lambda: A.fill(M, FILL),
    "fill_": lambda: A.fill_(M.clone(), FILL),
    "zero": lambda: A.zero(M),
    "zero_": lambda: A.zero_(M.clone()),
    "_local_scalar_dense": lambda: A._local_scalar_dense(M[1, 2]),
    "_assert_async": lambda: A._assert_async(torch.tensor(True)),
    "_assert_tensor_metadata": lambda: A._assert_tensor_metadata(M, dtype=torch.float64),
    "_linalg_check_errors": lambda: A._linalg_check_errors(torch.zeros((), dtype=torch.int32), "inv", is_matrix=True),
}


def _is_view(name: str) -> bool:
    """Every functional overload returns aliases of its inputs that it does not write."""
    packet = getattr(A, name)
    for overload in packet.overloads():
        schema = getattr(packet, overload)._schema
        if any(argument.is_out for argument in schema.arguments):
            continue
        if not schema.returns or any(r.alias_info is None or r.alias_info.is_write for r in schema.returns):
            return False
    return True


def test_the_zero_lists_are_disjoint_and_registered():
    lists = (DATA_OPS, CREATION_OPS, COMPARISON_OPS)
    names = [name for names in lists for name in names]
    assert len(names) == len(set(names))
    assert all(FORMULAS[name].family == "data" for name in names)


@pytest.mark.parametrize("name", DATA_OPS)
def test_a_data_op_moves_values_and_computes_none(name):
    if name not in SAMPLES:
        assert _is_view(name), f"{name}: neither a view nor given a sample here"
        return
    allowed = torch.cat([X.flatten(), torch.tensor([0.0, FILL], dtype=torch.float64)])
    seen = 0
    for value in tree_leaves(SAMPLES[name]()):
        if isinstance(value, float):
            value = torch.tensor([value], dtype=torch.float64)
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            assert bool(torch.isin(value, allowed).all()), f"{name} returned a value none of its inputs holds"
            seen += value.numel()
    checks = {"_assert_async", "_assert_tensor_metadata", "_linalg_check_errors"}
    assert seen > 0 or name in checks
