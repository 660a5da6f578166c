"""Every compiled kernel, at every SIMD level this CPU runs, against its NumPy twin and an
independent formula, on shapes around the vector widths (1, 7, 8, 9, 15, 16, 17, 23, 24,
25), in float32 and float64, C and Fortran order, strided views, large offsets and
misaligned data (hypothesis); and from eight Python threads at once on shared read-only
inputs, which must give the one-thread results. This file is also the focused subset that
CI runs under AddressSanitizer and UndefinedBehaviorSanitizer."""

import concurrent.futures
import contextlib

import numpy as np
import pytest
from conftest import assert_same_bits
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal
from oracles import exact_sqeuclidean, masked_loss_grad_exact, sqeuclidean_error_bound

import fastgd
from fastgd import _backend

pytestmark = pytest.mark.skipif(_backend.ext is None, reason="needs the compiled extension")

WIDTHS = [1, 7, 8, 9, 15, 16, 17, 23, 24, 25]
LAYOUTS = ["C", "F", "strided", "misaligned"]
ZOO_SETTINGS = settings(max_examples=25, deadline=None,
                        suppress_health_check=[HealthCheck.too_slow])


def cpu_levels():
    highest = _backend.cpu_info()["level"]
    return list(_backend.SIMD_LEVELS[: _backend.SIMD_LEVELS.index(highest) + 1])


@contextlib.contextmanager
def at_level(level):
    try:
        _backend.select_simd(level)
        yield
    finally:
        _backend.select_simd(_backend._simd_from_environment())


def laid_out(array, layout):
    """``array``'s values in the given memory layout (the values unchanged)."""
    if layout == "F":
        return np.asfortranarray(array)
    if layout == "strided":
        wide = np.zeros((array.shape[0], 2 * array.shape[1]), dtype=array.dtype)
        wide[:, ::2] = array
        return wide[:, ::2]
    if layout == "misaligned":
        buffer = np.zeros(array.nbytes + 1, dtype=np.uint8)
        view = buffer[1:].view(array.dtype).reshape(array.shape)
        view[...] = array
        return view
    return np.ascontiguousarray(array)


def both_backends(call):
    with fastgd.use_backend("compiled"):
        compiled = call()
    with fastgd.use_backend("numpy"):
        twin = call()
    return compiled, twin


@ZOO_SETTINGS
@given(n=st.sampled_from(WIDTHS), m=st.sampled_from(WIDTHS), d=st.sampled_from(WIDTHS),
       dtype=st.sampled_from([np.float32, np.float64]), layout=st.sampled_from(LAYOUTS),
       offset=st.sampled_from([0.0, 1e6]), method=st.sampled_from(["direct", "expansion"]),
       symmetric=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_sqeuclidean_zoo(n, m, d, dtype, layout, offset, method, symmetric, seed):
    rng = np.random.default_rng(seed)
    X = (rng.standard_normal((n, d)) + offset).astype(dtype)
    Y = X if symmetric else (rng.standard_normal((m, d)) + offset).astype(dtype)
    if not symmetric and m > 1:
        Y[0] = X[0]  # an exact duplicate: 0 exactly
    Xl = laid_out(X, layout)
    Yl = Xl if symmetric else laid_out(Y, layout)
    exact = exact_sqeuclidean(X, Y)
    bound = sqeuclidean_error_bound(exact, d, dtype)
    for level in cpu_levels():
        with at_level(level):
            D, D_twin = both_backends(lambda: fastgd.sqeuclidean(Xl, None if symmetric else Yl,
                                                                 method=method))
        for got in (D, D_twin):
            assert got.dtype == dtype
            error = np.abs(got.astype(np.longdouble) - exact).astype(np.float64)
            assert np.all(error <= bound), (level, float(np.max(error - bound)))
            assert_array_equal(got == 0, exact == 0)


def masked_case(rng, m, n, k, dtype, density=0.6):
    A = np.where(rng.random((m, n)) < density, rng.standard_normal((m, n)), np.nan)
    A.flat[0] = 1.5  # at least one observed entry
    W = rng.standard_normal((m, k))
    H = rng.standard_normal((k, n))
    return A.astype(dtype), W.astype(dtype), H.astype(dtype)


@ZOO_SETTINGS
@given(m=st.sampled_from(WIDTHS), n=st.sampled_from(WIDTHS), k=st.sampled_from(WIDTHS),
       dtype=st.sampled_from([np.float32, np.float64]), layout=st.sampled_from(LAYOUTS),
       loss=st.sampled_from(["sse", "mse", "rmse"]), l2=st.sampled_from([0.0, 0.1]),
       how=st.sampled_from(["dense", "sparse", "plan"]), seed=st.integers(0, 2**32 - 1))
def test_masked_loss_grad_zoo(m, n, k, dtype, layout, loss, l2, how, seed):
    rng = np.random.default_rng(seed)
    A, W, H = masked_case(rng, m, n, k, dtype)
    exact_value, exact_dW, exact_dH = masked_loss_grad_exact(A, ~np.isnan(A), W, H, loss, l2)
    data = fastgd.observed(A) if how == "plan" else laid_out(A, layout)
    method = "auto" if how == "plan" else how
    Wl, Hl = laid_out(W, layout), laid_out(H, layout)
    rtol = 1e-4 if dtype == np.float32 else 1e-10
    for level in cpu_levels():
        with at_level(level):
            results = both_backends(lambda: fastgd.masked_loss_grad(
                data, Wl, Hl, loss=loss, l2=l2, method=method))
        for value, dW, dH in results:
            assert dW.dtype == dtype and dH.dtype == dtype
            assert value == pytest.approx(exact_value, rel=rtol, abs=rtol)
            scale = max(1.0, float(np.max(np.abs(exact_dW), initial=0)),
                        float(np.max(np.abs(exact_dH), initial=0)))
            assert_allclose(dW, exact_dW.astype(np.float64), rtol=rtol, atol=rtol * scale)
            assert_allclose(dH, exact_dH.astype(np.float64), rtol=rtol, atol=rtol * scale)
        residual = both_backends(lambda: fastgd.masked_residual(data, Wl, Hl))
        observed = ~np.isnan(A)
        expected = (W.astype(np.float64) @ H.astype(np.float64)) - np.where(observed, A, 0)
        for got in residual:
            got = got if how != "plan" else data.to_dense(got, fill_value=0)
            assert_allclose(np.where(observed, got, 0), np.where(observed, expected, 0),
                            rtol=rtol, atol=rtol * max(1.0, float(np.abs(expected).max())))


@ZOO_SETTINGS
@given(size=st.sampled_from([*WIDTHS, 0, 1000, 70_000]),
       dtype=st.sampled_from([np.float32, np.float64]),
       optimizer=st.sampled_from(["adagrad", "sgd", "momentum"]),
       misaligned_grad=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_updates_zoo(size, dtype, optimizer, misaligned_grad, seed):
    """Every level gives the twin's bits; against the formula written out here."""
    rng = np.random.default_rng(seed)
    p0 = rng.standard_normal(size).astype(dtype)
    g = rng.standard_normal(size).astype(dtype)
    s0 = rng.random(size).astype(dtype)
    grad = laid_out(g[None, :], "misaligned")[0] if misaligned_grad and size else g
    lr = 0.1

    def run():
        p, s = p0.copy(), s0.copy()
        if optimizer == "adagrad":
            fastgd.adagrad_update(p, grad, s, lr=lr)
        elif optimizer == "sgd":
            fastgd.sgd_update(p, grad, lr=lr)
        else:
            fastgd.sgd_update(p, grad, s, lr=lr, momentum=0.9)
        return p, s

    t = dtype.type if hasattr(dtype, "type") else np.dtype(dtype).type
    if optimizer == "adagrad":
        s_expected = s0 + g * g
        p_expected = p0 + (-t(lr) * g) / (np.sqrt(s_expected) + t(1e-10))
    elif optimizer == "sgd":
        s_expected, p_expected = s0, p0 + (-t(lr)) * g
    else:
        s_expected = s0 * t(0.9) + t(1.0) * g
        p_expected = p0 + (-t(lr)) * s_expected
    for level in cpu_levels():
        with at_level(level):
            (p, s), (p_twin, s_twin) = both_backends(run)
        assert_same_bits(p, p_twin)
        assert_same_bits(s, s_twin)
        assert_same_bits(p, p_expected.astype(dtype))
        assert_same_bits(s, s_expected.astype(dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_factorize_compiled_loop_zoo(dtype):
    rng = np.random.default_rng(5)
    for m, n, k in [(1, 1, 1), (7, 9, 8), (17, 15, 16), (25, 23, 24)]:
        A, _, _ = masked_case(rng, m, n, k, dtype, density=0.7)
        for level in cpu_levels():
            with at_level(level):
                fast, twin = both_backends(lambda: fastgd.factorize(
                    A, k, n_iter=20, random_state=0, lr=0.05))  # noqa: B023
            rtol = 1e-4 if dtype == np.float32 else 1e-10
            assert_allclose(fast.loss_history, twin.loss_history, rtol=rtol)
            assert_allclose(fast.W @ fast.H, twin.W @ twin.H, rtol=rtol, atol=rtol)


def test_eight_threads_on_shared_inputs_give_the_one_thread_results():
    """Eight Python threads call every kernel on the same read-only inputs at once; each
    result is bitwise the sequential one (n_threads=1, or deterministic=True)."""
    rng = np.random.default_rng(8)
    X = rng.standard_normal((300, 24))
    Y = rng.standard_normal((200, 24))
    A, W, H = masked_case(rng, 300, 200, 16, np.float64, density=0.2)
    plan = fastgd.observed(A)
    for array in (X, Y, A, W, H):
        array.flags.writeable = False
    g = rng.standard_normal(100_000)
    g.flags.writeable = False

    def calls():
        with fastgd.use_backend("compiled"):  # in this thread's own context
            return compiled_calls()

    def compiled_calls():
        p, G = np.ones(100_000), np.zeros(100_000)
        fastgd.adagrad_update(p, g, G, lr=0.1, n_threads=1)
        return [
            fastgd.sqeuclidean(X, Y, n_threads=1),
            fastgd.sqeuclidean(X, n_threads=1, method="direct"),
            *fastgd.masked_loss_grad(A, W, H, n_threads=1, method="dense")[1:],
            *fastgd.masked_loss_grad(plan, W, H, deterministic=True)[1:],
            fastgd.masked_residual(plan, W, H, n_threads=1),
            p, G,
            fastgd.factorize(plan, 4, n_iter=5, random_state=0, n_threads=1).W,
        ]

    expected = calls()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: calls(), range(32)))
    for result in results:
        for got, want in zip(result, expected, strict=True):
            assert_same_bits(got, want)
