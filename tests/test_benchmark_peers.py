"""The benchmarks compare like with like: in every case, each peer computes what fastgd
computes there, to its dtype's rounding, and each yardstick what it is said to compute.
A peer that did less work than fastgd, or other work, would make its ratio a false one.

The cases are those of ``fastgd bench`` and bench/, run once each on the backend in use,
except the 4000 x 4000 x 256 distances, the 1e7-element update and the two largest
neighbour searches, which take the code paths of smaller cases with several seconds and
gigabytes more.
"""

import importlib.util
import os

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

import fastgd
from fastgd import demo
from fastgd.benchmarks import (
    adam,
    factorize,
    losses,
    masked,
    metrics,
    neighbors,
    sqeuclidean,
    updates,
)

# The library each optional peer needs; every other peer must always be there.
OPTIONAL_PEERS = {
    "sklearn.euclidean_distances": "sklearn",
    "sklearn kneighbors": "sklearn",
    "sklearn pairwise_distances_argmin": "sklearn",
    "faiss IndexFlatL2": "faiss",
    "faiss IndexFlatIP": "faiss",
    "sklearn.nan_euclidean_distances": "sklearn",
    "numba": "numba",
    "autograd": "autograd",
    "autograd tutorial": "autograd",
    "torch fused": "torch",
    "torch for-loop": "torch",
    "torch autograd": "torch",
}
LARGEST_CASES = {"4000x4000x256 float64", "4000x4000x256 float32", "1e7 float64",
                 "1000x100000x32 float32 k=10", "10000x10000x128 float32 k=10",
                 "cosine 1000x100000x32 float32 k=10"}


def _cases(module):
    return [case for case in module.CASES if case not in LARGEST_CASES]


def _peers(module, case):
    """peers(case, 1), after checking that it left out only peers that do not apply or
    whose library is missing (none of them where CI installs them all)."""
    functions = module.peers(case, 1)
    required = os.environ.get("FASTGD_REQUIRE_PEERS") == "1"
    assert module.OURS[0] in functions  # fastgd's main way of calling the kernel
    for peer in [*module.OURS[1:], *module.PEERS]:
        if not module.applies(case, peer):
            assert peer not in functions
        elif peer not in functions:
            library = OPTIONAL_PEERS.get(peer)
            if peer == "bandwidth floor":  # compiled, like the updates it measures
                library = "fastgd._ext._updates"
            assert library is not None, f"peers() left out {peer!r}"
            assert not required and importlib.util.find_spec(library) is None, (
                f"peers() left out {peer!r} although {library} is installed")
    return functions


def _squared_norms(A):
    A = A.astype(np.float64)
    return np.einsum("ij,ij->i", A, A)


@pytest.mark.parametrize("case", _cases(sqeuclidean))
def test_distance_peers_compute_fastgds_distances(case):
    functions = _peers(sqeuclidean, case)
    X, Y = sqeuclidean.make_data(*sqeuclidean.CASES[case])
    distances = functions.pop("fastgd")()
    assert distances.dtype == X.dtype and distances.shape == (X.shape[0], Y.shape[0])
    # Each entry to a few units of rounding of the squares it is made from.
    norms = _squared_norms(X)[:, None] + _squared_norms(Y)[None, :]
    tolerance = 32 * np.finfo(X.dtype).eps * norms
    # The GEMM is the yardstick: the cross term of the expansion alone.
    cross = functions.pop("gemm X@Y.T")().astype(np.float64)
    assert np.all(np.abs(norms - 2 * cross - distances) <= tolerance)
    for peer, function in functions.items():
        got = np.asarray(function(), dtype=np.float64)
        assert got.shape == distances.shape, peer
        assert np.all(np.abs(got - distances) <= tolerance), peer


def _exact_distances(X, Y, chosen, metric):
    """The metric's distances from each row of X to its rows of Y listed in ``chosen``
    (n x k), in float64: squared distances, or cosine's 1 - cos."""
    x = X.astype(np.float64)[:, None, :]
    y = Y.astype(np.float64)[chosen]
    if metric == "sqeuclidean":
        return np.einsum("nkd,nkd->nk", x - y, x - y)
    cosines = np.einsum("nkd,nkd->nk", x, y) / (
        np.linalg.norm(x, axis=2) * np.linalg.norm(y, axis=2))
    return 1 - cosines


@pytest.mark.parametrize("case", _cases(neighbors))
def test_neighbour_peers_find_fastgds_neighbours(case):
    """Each peer's k nearest are fastgd's: the same rows, or, where two candidates are
    that close (faiss and scikit-learn round in float32 by their own expansions, faiss's
    IndexFlatIP by inner products of unit rows), rows at the same exact distance to the
    peer's rounding."""
    functions = _peers(neighbors, case)
    n, m, d, dtype, k = neighbors.CASES[case]
    metric = neighbors.metric(case)
    X, Y = neighbors.make_data(n, m, d, dtype)
    expected = np.asarray(functions.pop("fastgd")()).reshape(n, k)
    exact = np.concatenate([_exact_distances(X[start:start + 1000], Y,
                                             expected[start:start + 1000], metric)
                            for start in range(0, n, 1000)])
    if metric == "sqeuclidean":  # in the exact order (near ties recomputed directly)
        tolerance = 64 * np.finfo(dtype).eps * (exact + 2 * _squared_norms(X)[:, None])
        assert (np.diff(exact, axis=1) >= -1e-12 * exact[:, 1:]).all()
    else:  # in the order of the rounded unit rows: cos to a few roundings of d terms
        tolerance = np.full(exact.shape, 4 * (d + 2) * np.finfo(dtype).eps)
        assert (np.diff(exact, axis=1) >= -tolerance[:, 1:]).all()
    # fastgd's are the k nearest: none of Y is nearer than the k-th (on a sample).
    sample = np.arange(0, n, max(1, n // 50))
    from scipy.spatial.distance import cdist
    full = cdist(X[sample].astype(np.float64), Y.astype(np.float64), metric)
    kth = np.sort(full, axis=1)[:, k - 1]
    slack = 1e-12 * kth if metric == "sqeuclidean" else tolerance[sample, -1]
    assert (np.abs(exact[sample, -1] - kth) <= slack).all()
    for peer, function in functions.items():
        got = np.asarray(function()).reshape(n, k)
        same = got == expected
        assert same.mean() > 0.99, peer
        rows, places = np.nonzero(~same)
        peer_exact = _exact_distances(X[rows], Y, got[rows, places][:, None], metric)[:, 0]
        assert (np.abs(peer_exact - exact[rows, places]) <= tolerance[rows, places]).all(), peer


@pytest.mark.parametrize("case", _cases(metrics))
def test_metric_peers_compute_fastgds_distances(case):
    """SciPy's cdist and scikit-learn's nan_euclidean_distances give fastgd's distances
    (to float32's rounding where the inputs are float32: SciPy computes in float64); the
    yardstick, the squared distances of the same points with NaN as 0."""
    functions = _peers(metrics, case)
    n, m, d, dtype, metric = metrics.CASES[case]
    XA, XB = metrics.make_data(n, m, d, dtype, metric)
    expected = functions.pop("fastgd")()
    assert expected.dtype == dtype and expected.shape == (n, m)
    squared = functions.pop("fastgd.sqeuclidean")()
    assert_allclose(squared, fastgd.sqeuclidean(np.nan_to_num(XA), np.nan_to_num(XB)))
    rtol = 1e-10 if dtype == np.float64 else 1e-4
    for peer, function in functions.items():
        got = np.asarray(function(), dtype=np.float64)
        assert_array_equal(np.isnan(got), np.isnan(expected), err_msg=peer)
        assert_allclose(got, expected, rtol=rtol, atol=rtol, err_msg=peer)


def _assert_loss_and_gradients_close(got, expected, rtol, peer):
    loss, dW, dH = got
    assert_allclose(loss, expected[0], rtol=rtol, err_msg=f"{peer}: loss")
    for name, value, reference in (("dW", dW, expected[1]), ("dH", dH, expected[2])):
        assert value.shape == reference.shape, f"{peer}: {name} shape"
        assert_allclose(value, reference, rtol=0, atol=rtol * np.abs(reference).max(),
                        err_msg=f"{peer}: {name}")


@pytest.mark.parametrize("case", _cases(masked))
def test_masked_peers_compute_fastgds_loss_and_gradients(case):
    functions = _peers(masked, case)
    m, n, k, fraction, dtype = masked.CASES[case]
    rtol = 1e-12 if dtype == np.float64 else 1e-5
    expected = functions.pop("fastgd plan")()
    assert expected[1].dtype == dtype and expected[2].dtype == dtype
    autograd_peer = functions.pop("autograd", None)
    for peer, function in functions.items():
        _assert_loss_and_gradients_close(function(), expected, rtol, peer)
    if autograd_peer is not None:
        # The tutorial's cost is the RMSE: fastgd's loss="rmse" on the same problem.
        rows, cols, values, W, H = masked.make_problem(m, n, k, fraction, dtype)
        plan = fastgd.observed((rows, cols, values, (m, n)))
        _assert_loss_and_gradients_close(
            autograd_peer(), fastgd.masked_loss_grad(plan, W, H, loss="rmse"), rtol,
            "autograd")


def _as_arrays(params):
    return [np.asarray(p.detach()) if hasattr(p, "detach") else p for p in params]


@pytest.mark.parametrize("case", _cases(updates))
def test_update_peers_take_fastgds_step(case):
    functions = _peers(updates, case)
    shapes = updates.CASES[case]
    start, grads, _ = updates.make_state(shapes)
    # One step from the same state, before fastgd's projected step steps its arrays on.
    expected = [p.copy() for p in functions.pop("fastgd.adagrad_update")()]
    for p, p0, g in zip(expected, start, grads, strict=True):
        # From G = 0: G = g^2, and the step is lr * g / (|g| + eps).
        assert_allclose(p, p0 - updates.LR * g / (np.abs(g) + updates.EPS), rtol=1e-15,
                        atol=1e-16)
    projected = functions.pop("fastgd lower_bound=0")()
    for p, p1, g in zip(projected, expected, grads, strict=True):
        second = p1 - updates.LR * g / (np.sqrt(2 * g * g) + updates.EPS)
        assert_allclose(p, np.maximum(second, 0.0), rtol=1e-15, atol=1e-16)
    floor = functions.pop("bandwidth floor", None)
    if floor is not None:
        # The yardstick's pass: p += g (and G += g), bit for bit.
        assert_array_equal(floor()[0], start[0] + grads[0])
    for peer, function in functions.items():
        got = _as_arrays(function())
        assert len(got) == len(expected), peer
        for p, reference in zip(got, expected, strict=True):
            assert_allclose(p, reference, rtol=1e-14, atol=1e-16, err_msg=peer)


@pytest.mark.parametrize("case", _cases(adam))
def test_adam_peers_take_fastgds_step(case):
    functions = _peers(adam, case)
    shapes = adam.CASES[case]
    start, grads, _, _ = adam.make_state(shapes)
    expected = [p.copy() for p in functions.pop("fastgd.adam_update")()]
    for p, p0, g in zip(expected, start, grads, strict=True):
        # The first step from zero moments: m = (1 - b1) g, v = (1 - b2) g^2, and after the
        # bias corrections p moves by lr * g / (|g| + eps / sqrt(1 - b2) ... ) = lr sign(g)
        # to rounding.
        assert_allclose(p, p0 - adam.LR * g / (np.abs(g) + adam.EPS), rtol=1e-12,
                        atol=1e-15)
    floor = functions.pop("bandwidth floor", None)
    if floor is not None:
        assert_array_equal(floor()[0], start[0] + grads[0])
    for peer, function in functions.items():
        got = _as_arrays(function())
        for p, reference in zip(got, expected, strict=True):
            assert_allclose(p, reference, rtol=1e-13, atol=1e-15, err_msg=peer)


def _tutorial_rmse(W, H):
    A = np.asarray(demo.TUTORIAL_MATRIX, dtype=np.float64)
    observed = ~np.isnan(A)
    return np.sqrt(np.mean((W @ H - A)[observed] ** 2))


@pytest.mark.parametrize("case", _cases(factorize))
def test_factorize_peers_run_fastgds_iterations(case, monkeypatch):
    # The large case's calls read the number of iterations when they run: 2 of them
    # check the same code as 10, in a fifth of the time.
    monkeypatch.setattr(factorize, "LARGE_ITERATIONS", 2)
    functions = _peers(factorize, case)
    result = functions.pop("fastgd.factorize")()
    for peer, function in functions.items():
        W, H = function()[:2]
        if case == "tutorial Adagrad 4x3 k=2, 2000 steps":
            # At lr 0.1 this tutorial oscillates: rounding differences grow about 1e12-fold
            # after step 200, and the loops end apart, but at the same loss to 1e-3.
            assert_allclose(_tutorial_rmse(W, H), _tutorial_rmse(result.W, result.H),
                            rtol=1e-3, err_msg=peer)
        else:
            assert_allclose(W, result.W, rtol=0, atol=1e-12, err_msg=peer)
            assert_allclose(H, result.H, rtol=0, atol=1e-12, err_msg=peer)


def test_the_numpy_loop_projects_like_factorize():
    """The projected-GD tutorial's W and H stay positive from its start, so its case never
    exercises the NumPy loop's projection: from a start with negative entries, it clamps
    where factorize does."""
    A = np.asarray(demo.TUTORIAL_MATRIX, dtype=np.float64)
    rng = np.random.default_rng(1)
    W0 = rng.standard_normal((A.shape[0], demo.RANK))
    H0 = rng.standard_normal((demo.RANK, A.shape[1]))
    settings = {**demo.PROJECTED_GD, "n_iter": 300}
    W, H = factorize.numpy_loop(A, W0, H0, 300, **settings)
    result = fastgd.factorize(A, demo.RANK, init=(W0, H0), **settings)
    unprojected = fastgd.factorize(A, demo.RANK, init=(W0, H0), **{**settings, "nonneg": False})
    assert np.abs(unprojected.W - result.W).max() > 0.1  # the projection matters here
    assert_allclose(W, result.W, rtol=0, atol=1e-12)
    assert_allclose(H, result.H, rtol=0, atol=1e-12)


@pytest.mark.parametrize("case", _cases(losses))
def test_loss_peers_compute_fastgds_loss(case):
    """Every peer of the Huber and weighted cases computes the same loss and gradients as
    fastgd's call; the squared call, the yardstick, computes the squared loss on the same
    plan."""
    functions = _peers(losses, case)
    expected = functions.pop("fastgd plan")()
    squared = functions.pop("fastgd squared")()
    m, n, k, fraction, _ = losses.CASES[case]
    rows, cols, values, W, H = masked.make_problem(m, n, k, fraction, np.float64)
    plan = fastgd.observed((rows, cols, values, (m, n)))
    with fastgd.use_backend("numpy"):
        assert_allclose(squared[0], fastgd.masked_loss_grad(plan, W, H)[0], rtol=1e-10)
    for name, function in functions.items():
        got = function()
        assert_allclose(got[0], expected[0], rtol=1e-10, err_msg=name)
        for a, b in zip(got[1:], expected[1:], strict=True):
            assert_allclose(a, b, rtol=1e-9, atol=1e-12, err_msg=name)
