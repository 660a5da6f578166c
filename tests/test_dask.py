"""fastgd.dask against the in-memory functions, on Dask's threaded scheduler and on a real
distributed.LocalCluster (two worker processes, loopback only)."""

import subprocess
import sys

import numpy as np
import pytest
from conftest import require_peer

import fastgd

da = require_peer("dask.array")
import fastgd.dask as fgd  # noqa: E402 (after the optional peer's check)


@pytest.fixture(scope="module")
def cluster_client():
    distributed = require_peer("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        yield client


@pytest.fixture(params=["threads", "cluster"])
def scheduler(request):
    """Each test runs on the threaded scheduler and on the LocalCluster."""
    if request.param == "threads":
        import dask

        with dask.config.set(scheduler="threads"):
            yield "threads"
    else:
        client = request.getfixturevalue("cluster_client")
        with client.as_current():
            yield "cluster"


def ratings(rng, shape=(37, 23), density=0.4, empty_rows=range(8, 16)):
    A = rng.random(shape) * 4 + 1
    A[rng.random(shape) > density] = np.nan
    A[list(empty_rows)] = np.nan  # a row block with no observed entry
    return A


CHUNKS = {"uneven": ((8, 8, 15, 6), (10, 13)), "single": -1, "rows only": ((20, 17), -1)}


@pytest.mark.parametrize("chunks", list(CHUNKS))
def test_sqeuclidean_matches_the_in_memory_kernel(scheduler, rng, float_dtype, chunks):
    from scipy.spatial.distance import cdist

    X = rng.standard_normal((37, 9)).astype(float_dtype)
    Y = rng.standard_normal((23, 9)).astype(float_dtype)
    X[5] = Y[3]  # an exact duplicate across the two sets
    X_d = da.from_array(X, chunks=((8, 8, 15, 6), (4, 5)) if chunks == "uneven" else -1)
    Y_d = da.from_array(Y, chunks=((10, 13), 9) if chunks != "single" else -1)
    D = fgd.sqeuclidean(X_d, Y_d)
    assert D.chunks[0] == X_d.chunks[0] and D.chunks[1] == Y_d.chunks[0]
    result = D.compute()
    assert result.dtype == float_dtype
    expected = fastgd.sqeuclidean(X, Y)
    rtol = 1e-5 if float_dtype == np.float32 else 1e-12
    np.testing.assert_allclose(result, expected, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(result, cdist(X.astype(float), Y.astype(float), "sqeuclidean"),
                               rtol=10 * rtol, atol=10 * rtol)
    assert result[5, 3] == 0 and (result >= 0).all()


def test_sqeuclidean_of_one_set_is_exactly_symmetric(scheduler, rng):
    X = rng.standard_normal((41, 6)) + 1e6  # a large common offset
    X[7] = X[30] + 1e-9  # a near-duplicate, in another block
    D = fgd.sqeuclidean(da.from_array(X, chunks=((10, 10, 10, 11), (3, 3)))).compute()
    np.testing.assert_array_equal(D, D.T)
    np.testing.assert_array_equal(np.diag(D), 0)
    assert (D[~np.eye(41, dtype=bool)] > 0).all()
    np.testing.assert_allclose(D, fastgd.sqeuclidean(X), rtol=1e-9)
    single = fgd.sqeuclidean(X).compute()  # NumPy input: one chunk
    np.testing.assert_array_equal(single, fastgd.sqeuclidean(X))


@pytest.mark.parametrize("chunks", list(CHUNKS))
@pytest.mark.parametrize("loss, l2", [("mse", 0.0), ("rmse", 0.1), ("sse", 0.0)])
def test_masked_loss_grad_matches_the_in_memory_kernel(scheduler, rng, chunks, loss, l2):
    A = ratings(rng)
    W = rng.random((37, 3))
    H = rng.random((3, 23))
    expected = fastgd.masked_loss_grad(A, W, H, loss=loss, l2=l2)
    A_d = da.from_array(A, chunks=CHUNKS[chunks])
    for W_in in (W, da.from_array(W, chunks=(11, 3))):
        value, dW, dH = fgd.masked_loss_grad(A_d, W_in, H, loss=loss, l2=l2)
        assert value == pytest.approx(expected[0], rel=1e-12)
        np.testing.assert_allclose(dW, expected[1], rtol=1e-11, atol=1e-14)
        np.testing.assert_allclose(dH, expected[2], rtol=1e-11, atol=1e-14)


SOLVERS = {
    "adagrad": {"optimizer": "adagrad", "lr": 0.1},
    "projected gd": {"optimizer": "gd", "lr": 0.05, "nonneg": True},
    "momentum l2": {"optimizer": "gd", "lr": 0.02, "momentum": 0.9, "l2": 0.01,
                    "loss": "mse"},
}


@pytest.mark.parametrize("chunks", list(CHUNKS))
@pytest.mark.parametrize("solver", list(SOLVERS))
def test_factorize_matches_the_in_memory_solver(scheduler, rng, chunks, solver):
    A = ratings(rng)
    W0, H0 = rng.random((37, 3)), rng.random((3, 23))
    options = {"init": (W0, H0), "n_iter": 25, **SOLVERS[solver]}
    expected = fastgd.factorize(A, 3, **options)
    result = fgd.factorize(da.from_array(A, chunks=CHUNKS[chunks]), 3, **options)
    np.testing.assert_allclose(result.loss_history, expected.loss_history, rtol=1e-8)
    np.testing.assert_allclose(result.W, expected.W, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(result.H, expected.H, rtol=1e-8, atol=1e-12)
    assert result.n_iter == expected.n_iter == 25
    for key, value in expected.optimizer_state.items():
        np.testing.assert_allclose(result.optimizer_state[key], value, rtol=1e-8,
                                   atol=1e-12)


def test_factorize_random_init_and_tol_as_in_memory(rng):
    A = ratings(rng)
    options = {"random_state": 3, "n_iter": 1000, "tol": 1e-4}
    expected = fastgd.factorize(A, 2, **options)
    result = fgd.factorize(da.from_array(A, chunks=(12, 23)), 2, **options)
    assert result.converged and result.n_iter == expected.n_iter
    np.testing.assert_allclose(result.loss_history, expected.loss_history, rtol=1e-8)
    np.testing.assert_array_equal(A, A)  # A is read, never written


def test_float32_stays_float32(rng):
    A = ratings(rng).astype(np.float32)
    result = fgd.factorize(da.from_array(A, chunks=(10, 23)), 2, random_state=0, n_iter=5)
    assert result.W.dtype == result.H.dtype == np.float32
    assert fgd.sqeuclidean(da.from_array(A[:, :3].copy())).dtype == np.float32


def test_bad_inputs_raise(rng):
    A = da.from_array(ratings(rng), chunks=10)
    with pytest.raises(ValueError, match="W must have shape"):
        fgd.masked_loss_grad(A, np.ones((5, 2)), np.ones((2, 23)))
    with pytest.raises(ValueError, match="share the rank"):
        fgd.masked_loss_grad(A, np.ones((37, 2)), np.ones((3, 23)))
    with pytest.raises(ValueError, match="Y must have X's 3 features"):
        fgd.sqeuclidean(np.ones((4, 3)), np.ones((4, 2)))
    with pytest.raises(ValueError, match="known chunk sizes"):
        x = da.from_array(np.ones((6, 2)), chunks=3)
        fgd.sqeuclidean(x[x[:, 0] > 0])
    with pytest.raises(TypeError, match="X must hold real numbers"):
        fgd.sqeuclidean(da.from_array(np.ones((2, 2), dtype=complex)))
    with pytest.raises(ValueError, match="no observed entry"):
        fgd.factorize(da.from_array(np.full((4, 3), np.nan)), 1)
    with pytest.raises(ValueError, match="optimizer must be one of"):
        fgd.factorize(A, 2, optimizer="adamax")


def test_import_fastgd_does_not_import_dask(tmp_path):
    code = "import sys, fastgd; assert 'dask' not in sys.modules, 'dask imported'"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr


def test_docstring_examples_run():
    import doctest

    result = doctest.testmod(fgd, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


def test_factorize_callback_sees_w_where_it_is_and_can_stop(scheduler, rng):
    A = ratings(rng)
    W0, H0 = rng.random((37, 3)), rng.random((3, 23))
    seen = []

    def callback(iteration, loss, W, H):
        assert isinstance(W, da.Array) and W.shape == (37, 3) and H.shape == (3, 23)
        seen.append((iteration, loss, W.compute()))
        return iteration == 4

    result = fgd.factorize(da.from_array(A, chunks=(20, 23)), 3, init=(W0, H0), n_iter=50,
                           callback=callback)
    assert result.n_iter == 4 and [s[0] for s in seen] == [1, 2, 3, 4]
    assert result.message == "the callback asked to stop"
    np.testing.assert_array_equal(seen[-1][2], result.W)
    np.testing.assert_array_equal([s[1] for s in seen], result.loss_history[1:])


@pytest.mark.parametrize("optimizer, settings", [("adam", {"lr": 0.05}),
                                                 ("rmsprop", {"lr": 0.01, "momentum": 0.5})])
def test_factorize_with_adam_and_rmsprop_as_in_memory(rng, optimizer, settings):
    """Each row block steps its W with its own optimizer, in step with H's: the same
    steps as the in-memory solver, to rounding."""
    A = rng.standard_normal((60, 20))
    A[rng.random(A.shape) < 0.5] = np.nan
    W0, H0 = rng.standard_normal((60, 3)), rng.standard_normal((3, 20))
    expected = fastgd.factorize(A, 3, init=(W0, H0), optimizer=optimizer, n_iter=20,
                                loss="mse", **settings)
    got = fgd.factorize(da.from_array(A, chunks=(20, 10)), 3, init=(W0, H0),
                        optimizer=optimizer, n_iter=20, loss="mse", **settings)
    np.testing.assert_allclose(got.loss_history, expected.loss_history, rtol=1e-10)
    np.testing.assert_allclose(got.W, expected.W, rtol=1e-8, atol=1e-12)
    assert set(got.optimizer_state) == set(expected.optimizer_state)
