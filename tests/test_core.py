import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from bkprof.core import tridiag_resolvent_diagonal
from tests.helpers import dense_resolvent_diagonal, random_chain, relative_max_error

CPU_BACKENDS = ["reference", "vectorized"]
TOLERANCE = {torch.float32: 1e-5, torch.float64: 1e-10}


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@given(
    n=st.integers(1, 512),
    batch=st.sampled_from([None, 1, 3]),
    scale=st.sampled_from([0.5, 3.0, 20.0, 100.0]),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    z=st.sampled_from([1j, 0.3 + 1j, -1 + 0.25j]),
    seed=st.integers(0, 2**31 - 1),
)
def test_matches_dense_inverse(backend, n, batch, scale, dtype, z, seed):
    diag, upper, lower = random_chain(torch.Generator().manual_seed(seed), batch, n, scale, dtype)
    g = tridiag_resolvent_diagonal(diag, upper, lower, z, backend=backend)
    assert g.dtype == {torch.float32: torch.complex64, torch.float64: torch.complex128}[dtype]
    assert g.shape == diag.shape
    assert relative_max_error(g, dense_resolvent_diagonal(diag, upper, lower, z)) <= TOLERANCE[dtype]


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_backends_agree_on_layer_inputs(backend):
    v = torch.empty(4, 300).uniform_(-3, 3, generator=torch.Generator().manual_seed(1))
    ones = torch.ones(4, 299)
    g = tridiag_resolvent_diagonal(v - 2, ones, ones, backend=backend)
    assert relative_max_error(g, dense_resolvent_diagonal(v - 2, ones, ones)) <= 1e-5


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_finite_for_long_chains(backend):
    """The determinant form overflows at N = 1024 with |v| <= 3; the ratio form never does."""
    n = 65_536
    v = torch.empty(1, n).uniform_(-3, 3, generator=torch.Generator().manual_seed(2))
    ones = torch.ones(1, n - 1)
    g = tridiag_resolvent_diagonal(v - 2, ones, ones, backend=backend)
    assert torch.isfinite(torch.view_as_real(g)).all()
    # the end of a long chain only sees its neighbourhood: compare with a dense inverse of the tail
    tail = 256
    truth = dense_resolvent_diagonal(v[0, -tail:] - 2, ones[0, -tail + 1:], ones[0, -tail + 1:])
    assert relative_max_error(g[0, -8:], truth[-8:]) < 1e-4


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_gradcheck_float64(backend):
    gen = torch.Generator().manual_seed(3)
    diag, upper, lower = (t.requires_grad_() for t in random_chain(gen, 2, 6, 3.0))

    def real_parts(d, u, l):
        return torch.view_as_real(tridiag_resolvent_diagonal(d, u, l, backend=backend))

    assert torch.autograd.gradcheck(real_parts, (diag, upper, lower))


def test_gradient_matches_dense_derivative():
    gen = torch.Generator().manual_seed(4)
    inputs = random_chain(gen, 2, 9, 5.0)
    weights = torch.randn(2, 9, 2, dtype=torch.float64, generator=gen)
    grads = {}
    for name, fn in {"dense": dense_resolvent_diagonal,
                     **{b: (lambda d, u, l, b=b: tridiag_resolvent_diagonal(d, u, l, backend=b)) for b in CPU_BACKENDS}}.items():
        leaves = [t.clone().requires_grad_() for t in inputs]
        (torch.view_as_real(fn(*leaves)) * weights).sum().backward()
        grads[name] = [t.grad for t in leaves]
    for backend in CPU_BACKENDS:
        for ours, truth in zip(grads[backend], grads["dense"]):
            torch.testing.assert_close(ours, truth, rtol=1e-9, atol=1e-12)


def _ok(n=4, batch=None, dtype=torch.float32):
    shape = (n,) if batch is None else (batch, n)
    off = (n - 1,) if batch is None else (batch, n - 1)
    return {"diag": torch.zeros(shape, dtype=dtype), "upper": torch.ones(off, dtype=dtype),
            "lower": torch.ones(off, dtype=dtype)}


@pytest.mark.parametrize(
    "change, named",
    [
        ({"upper": torch.ones(2)}, "upper"),
        ({"lower": torch.ones(2, 3)}, "lower"),
        ({"diag": torch.zeros(0), "upper": torch.ones(0), "lower": torch.ones(0)}, "N = 0"),
        ({"diag": torch.tensor([0.0, float("nan"), 0.0, 0.0])}, "diag"),
        ({"upper": torch.tensor([1.0, float("inf"), 1.0])}, "upper"),
        ({"diag": torch.zeros(4, dtype=torch.int64)}, "diag"),
        ({"lower": torch.ones(3, dtype=torch.float64)}, "lower"),
        ({"diag": torch.zeros(1, 2, 4)}, "diag"),
        ({"diag": [0.0, 0.0, 0.0, 0.0]}, "diag"),
    ],
)
def test_bad_inputs_name_the_argument(change, named):
    with pytest.raises(ValueError, match=named):
        tridiag_resolvent_diagonal(**{**_ok(), **change})


def test_bad_backend_and_z():
    with pytest.raises(ValueError, match="backend"):
        tridiag_resolvent_diagonal(**_ok(), backend="magic")
    with pytest.raises(ValueError, match="z must be"):
        tridiag_resolvent_diagonal(**_ok(), z=complex("nan"))
