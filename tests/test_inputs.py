"""What the Python API accepts: the BK-Core entry point's inputs (and their scaling), LayerConfig, build, layers."""

import math
import re

import pytest
import torch

from bkprof.core import tridiag_resolvent_diagonal


def dense_inverse_diagonal(diag, upper, lower, z):
    """An independent answer: the diagonal of the dense (T - zI)^-1 in float64/complex128."""
    n = diag.shape[-1]
    t = torch.diag(diag.double()) + torch.diag(upper.double(), 1) + torch.diag(lower.double(), -1)
    return torch.linalg.inv(t.to(torch.complex128) - z * torch.eye(n, dtype=torch.complex128)).diagonal()


@pytest.mark.parametrize("backend", ["reference", "vectorized"])
@pytest.mark.parametrize("magnitude, z", [(1e19, 1j), (1e19, 1e19j), (1.0, 1e20 + 1e20j), (1e30, 1e30j),
                                          (1e-25, 1e-25j)])
def test_float32_results_that_float32_holds_are_finite(backend, magnitude, z):
    generator = torch.Generator().manual_seed(0)
    diag, upper, lower = (torch.randn(n, generator=generator) * magnitude for n in (32, 31, 31))
    expected = dense_inverse_diagonal(diag, upper, lower, z)
    assert expected.abs().max() < torch.finfo(torch.float32).max  # float32 can hold the answer
    got = tridiag_resolvent_diagonal(diag, upper, lower, z, backend=backend)
    assert got.dtype == torch.complex64 and bool(torch.isfinite(got).all())
    # loose: where z is 1e-19 of T's entries, T - zI is ill-conditioned and float32 loses digits
    relative = ((got.to(torch.complex128) - expected).abs() / expected.abs()).max().item()
    assert relative < 1e-3


@pytest.mark.parametrize("backend", ["reference", "vectorized"])
def test_power_of_two_scaling_keeps_the_answer(backend):
    generator = torch.Generator().manual_seed(1)
    diag, upper, lower = (torch.randn(n, generator=generator) for n in (64, 63, 63))
    plain = tridiag_resolvent_diagonal(diag, upper, lower, 1j, backend=backend, check_finite=False)
    # 2^30 puts the inputs outside the unscaled range (2^-20..2^20), so they are scaled back by 2^31
    big = tridiag_resolvent_diagonal(diag * 2**30, upper * 2**30, lower * 2**30, 1j * 2**30, backend=backend) * 2**30
    if backend == "reference":
        assert torch.equal(big, plain)  # the ratio recursions are homogeneous: powers of two change no bit
    else:
        # the scan's 2x2 matrices hold a constant 1 beside scaled entries: other rounding, same float32 accuracy
        assert ((big - plain).abs() / plain.abs()).max().item() < 1e-5


@pytest.mark.parametrize("make, named", [
    (lambda n: torch.zeros(n, device="meta"), "meta tensor"),
    (lambda n: torch.zeros(n).to_sparse(), "dense \\(strided\\)"),
    (lambda n: torch.zeros(n, dtype=torch.bool), "got bool"),
    (lambda n: torch.zeros(n, dtype=torch.complex64), "got complex"),
    (lambda n: torch.zeros(n, dtype=torch.int64), "got torch.int64"),
    (lambda n: [0.0] * n, "must be a torch.Tensor"),
])
def test_tensors_the_backends_cannot_take_are_named(make, named):
    good = {"diag": torch.zeros(8), "upper": torch.zeros(7), "lower": torch.zeros(7)}
    for argument, value in good.items():
        with pytest.raises(ValueError, match=f"^{argument} .*{named}"):
            tridiag_resolvent_diagonal(**dict(good, **{argument: make(len(value))}))


@pytest.mark.parametrize("z", [math.inf, complex(math.nan, 0), True, "1j", 10**400, complex(0, math.nan)])
def test_a_bad_shift_is_named(z):
    with pytest.raises(ValueError, match="^z must be a finite number"):
        tridiag_resolvent_diagonal(torch.zeros(4), torch.zeros(3), torch.zeros(3), z)


def test_the_largest_finite_shift_is_scaled_not_overflowed():
    got = tridiag_resolvent_diagonal(torch.ones(4, dtype=torch.float64), torch.ones(3, dtype=torch.float64),
                                     torch.ones(3, dtype=torch.float64), complex(1e308, 1e308))
    # |z| dwarfs T: G_ii = 1/(d - z) ~ -1/z = -(1 - 1j) / (2 * 1e308), a float64 subnormal (Python's own
    # complex division underflows to 0 here, so the quotient is written out by hand)
    expected = complex(-5e-309, 5e-309)
    assert torch.allclose(got, torch.full((4,), expected, dtype=torch.complex128), rtol=1e-12, atol=0)


# --- LayerConfig and the layers ----------------------------------------------------------------

@pytest.mark.parametrize("field, value, message", [
    ("top_k", 1.5, "top_k must be a positive integer, got 1.5"),
    ("d_model", True, "d_model must be a positive integer, got True"),
    ("n_seq", 2**40 + 2, "n_seq must be at most 2^40 = 1,099,511,627,776, got 1099511627778"),
    ("sparsity", "0.5", "sparsity must be a finite real number, got '0.5'"),
    ("sparsity", math.nan, "sparsity must be a finite real number, got nan"),
    ("z", "abc", "z must be a finite (complex) number, got 'abc'"),
    ("z", complex(math.inf, 0), "z must be a finite (complex) number, got (inf+0j)"),
    ("tau", math.inf, "tau must be a finite real number, got inf"),
    ("dropout", None, "dropout must be a finite real number, got None"),
    ("interp", 3, "interp must be a string, got 3"),
    ("backend", "bogus", "backend must be one of auto, reference, vectorized, triton, got 'bogus'"),
])
def test_every_layer_config_field_is_checked_at_construction(field, value, message):
    from bkprof.variants import LayerConfig

    with pytest.raises(ValueError) as raised:
        LayerConfig(**{field: value})
    assert str(raised.value) == message


def test_numpy_numbers_are_numbers():
    import numpy as np

    from bkprof.variants import LayerConfig

    assert LayerConfig(d_model=np.int64(64), sparsity=np.float32(0.5)).kept == 128  # int(256 * 0.5)


@pytest.mark.parametrize("variant", ["dense", "sparse", "multiscale", "combined"])
def test_a_layer_names_its_config_and_the_input_it_was_given(variant):
    from bkprof.variants import LayerConfig, build

    layer = build(variant, LayerConfig(n_seq=16, d_model=16, num_experts=2)).eval()
    for bad in (torch.randn(2, 32, 16), torch.randn(2, 16, 8), torch.randn(16, 16)):
        with pytest.raises(ValueError, match=rf"built for n_seq=16, d_model=16: the input must have shape "
                                             rf"\(B, 16, 16\), got {re.escape(str(tuple(bad.shape)))}"):
            layer(bad)
    with pytest.raises(ValueError, match="must be a floating-point tensor, got torch.int64"):
        layer(torch.zeros(2, 16, 16, dtype=torch.int64))
    assert layer(torch.randn(2, 16, 16))[0].shape == (2, 16, 16)


def test_build_takes_a_layer_config_or_a_mapping():
    from bkprof.variants import LayerConfig, build

    fields = {"n_seq": 16, "d_model": 16, "num_experts": 2}
    from_mapping, from_config = build("dense", fields), build("dense", LayerConfig(**fields))
    assert all(torch.equal(a, b) for a, b in zip(from_mapping.state_dict().values(), from_config.state_dict().values()))
    with pytest.raises(ValueError, match="config has no field 'experts'"):
        build("dense", {"experts": 2})
    with pytest.raises(ValueError, match="config must be a LayerConfig or a mapping of its fields, got list"):
        build("dense", [16, 16])
