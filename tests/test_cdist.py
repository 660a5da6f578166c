"""fastgd.cdist and argkmin's metrics: against SciPy's cdist and scikit-learn's
nan_euclidean_distances on an array zoo, within each metric's stated bound of a
higher-precision reference on near-duplicates and large offsets, and bad input."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import cdist as scipy_cdist
from sklearn.metrics.pairwise import nan_euclidean_distances

import fastgd

METRICS = ["euclidean", "sqeuclidean", "cosine", "nan_euclidean"]


def reference(XA, XB, metric):
    """The metric in long double (64-bit significand on x86), by the formulas that do not
    cancel: differences for the Euclidean ones, unit vectors for cosine."""
    A = np.asarray(XA, np.longdouble)
    B = np.asarray(XB, np.longdouble)
    if metric == "cosine":
        A = A / np.sqrt((A * A).sum(axis=1))[:, None]
        B = B / np.sqrt((B * B).sum(axis=1))[:, None]
        return ((A[:, None, :] - B[None, :, :]) ** 2).sum(axis=2) / 2
    difference = A[:, None, :] - B[None, :, :]
    if metric == "nan_euclidean":
        present = ~np.isnan(difference)
        count = present.sum(axis=2)
        total = np.where(present, difference, 0) ** 2
        with np.errstate(invalid="ignore", divide="ignore"):
            squared = total.sum(axis=2) * A.shape[1] / count
        return np.sqrt(np.where(count > 0, squared, np.nan))
    squared = (difference ** 2).sum(axis=2)
    return squared if metric == "sqeuclidean" else np.sqrt(squared)


def bound(metric, d, dtype, exact):
    """cdist's stated accuracy (its Notes) for each exact value."""
    u = np.finfo(dtype).eps / 2
    exact = np.asarray(exact, np.float64)
    if metric == "sqeuclidean":
        return 4 * (d + 2) * u * exact
    if metric == "cosine":
        return 4 * (d + 2) * u * exact + (d + 4) * u * np.sqrt(2 * exact)
    return (2 * (d + 2) + 1) * u * exact


def peer(XA, XB, metric):
    if metric == "nan_euclidean" and (len(XA) == 0 or len(XB) == 0):
        return np.empty((len(XA), len(XB)))  # scikit-learn refuses empty inputs
    if metric == "nan_euclidean":
        return nan_euclidean_distances(np.asarray(XA, np.float64), np.asarray(XB, np.float64))
    return scipy_cdist(np.asarray(XA, np.float64), np.asarray(XB, np.float64), metric)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", ["C", "F", "strided"])
def test_matches_scipy_and_sklearn_on_the_zoo(backend, rng, metric, dtype, layout):
    for n, m, d in [(1, 1, 1), (0, 4, 3), (5, 0, 3), (7, 9, 2), (40, 33, 12), (3, 70, 64)]:
        XA = rng.standard_normal((n, 2 * d)).astype(dtype)[:, ::2]
        XB = rng.standard_normal((m, d)).astype(dtype)
        if metric == "nan_euclidean" and n and m:
            XA[rng.random(XA.shape) < 0.25] = np.nan
            XB[0] = np.nan  # no coordinate in common with anything: NaN
        if layout == "C":
            XA = np.ascontiguousarray(XA)
        elif layout == "F":
            XA, XB = np.asfortranarray(XA), np.asfortranarray(XB)
        before = XA.copy(), XB.copy()
        got = fastgd.cdist(XA, XB, metric)
        assert got.dtype == dtype and got.shape == (n, m)
        expected = peer(XA, XB, metric)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
        tolerance = 64 * d * np.finfo(dtype).eps * (1 + np.nan_to_num(expected))
        assert (np.abs(got - expected)[~np.isnan(expected)] <= tolerance[~np.isnan(expected)]).all()
        np.testing.assert_array_equal(XA, before[0])
        np.testing.assert_array_equal(XB, before[1])


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_within_the_stated_bound_on_near_duplicates_and_large_offsets(backend, rng, metric,
                                                                      dtype):
    """Points 1e-3 apart around an offset of 1e4 (a common offset cancels the textbook
    expansion; for cosine the vectors are nearly parallel, where 1 - cos cancels)."""
    d = 16
    offset = 1e4 if dtype == np.float32 else 1e8
    base = offset + rng.standard_normal(d)
    XA = (base + 1e-3 * offset * np.finfo(dtype).eps ** 0.5
          * rng.standard_normal((30, d))).astype(dtype)
    XB = np.vstack([XA[:5], (base + rng.standard_normal((20, d))).astype(dtype)])
    if metric == "nan_euclidean":
        XA[rng.random(XA.shape) < 0.2] = np.nan
    got = fastgd.cdist(XA, XB, metric).astype(np.float64)
    exact = reference(XA, XB, metric).astype(np.float64)
    finite = np.isfinite(exact)
    error = np.abs(got - exact)[finite]
    assert (error <= bound(metric, d, dtype, exact)[finite]).all(), error.max()
    if metric != "cosine":  # equal rows are exactly 0 apart
        assert (got[np.nonzero(exact == 0)] == 0).all()


def test_zero_vectors_and_rows_without_a_common_coordinate_give_nan(backend):
    X = np.array([[0.0, 0.0], [1.0, 0.0]])
    got = fastgd.cdist(X, np.array([[0.0, 2.0], [0.0, 0.0]]), "cosine")
    np.testing.assert_array_equal(np.isnan(got), [[True, True], [False, True]])
    assert got[1, 0] == 1.0
    A = np.array([[1.0, np.nan], [np.nan, np.nan]])
    got = fastgd.cdist(A, np.array([[np.nan, 2.0], [3.0, 5.0]]), "nan_euclidean")
    np.testing.assert_array_equal(np.isnan(got), [[True, False], [True, True]])
    assert got[0, 1] == np.sqrt(2 * 4.0)  # (1 - 3)^2 scaled by 2 features / 1 present
    # Against itself: 0 on the diagonal where a coordinate is present, as scikit-learn.
    np.testing.assert_array_equal(np.diag(fastgd.cdist(A, A, "nan_euclidean")), [0, np.nan])


def test_unknown_metric_lists_the_supported_ones():
    with pytest.raises(ValueError, match="metric must be one of 'sqeuclidean', 'euclidean', "
                                         "'cosine', 'nan_euclidean'; got 'cityblock'"):
        fastgd.cdist(np.ones((2, 2)), np.ones((2, 2)), "cityblock")
    with pytest.raises(ValueError, match="metric must be one of"):
        fastgd.argkmin(np.ones((2, 2)), k=1, metric="minkowski")
    for metric in METRICS:
        with pytest.raises(ValueError, match="XA and XB must have the same number of "):
            fastgd.cdist(np.ones((2, 2)), np.ones((2, 3)), metric)
    with pytest.raises(TypeError, match="XA must"):
        fastgd.cdist(np.ones((2, 2), complex), np.ones((2, 2)), "cosine")


def test_out_is_filled_and_returned(rng):
    XA, XB = rng.standard_normal((6, 4)), rng.standard_normal((5, 4))
    for metric in METRICS:
        out = np.empty((6, 5))
        assert fastgd.cdist(XA, XB, metric, out=out) is out
        np.testing.assert_allclose(out, peer(XA, XB, metric), rtol=1e-12)


@pytest.mark.parametrize("metric", METRICS)
def test_argkmin_takes_the_same_metrics(backend, rng, metric):
    X = rng.standard_normal((60, 12))
    Y = rng.standard_normal((300, 12))
    X[3] = 0.0  # cosine: a zero row, all its distances NaN, neighbours in index order
    if metric == "nan_euclidean":
        X[rng.random(X.shape) < 0.3] = np.nan
    for XA, XB in ((X, Y), (X, None)):
        searched = X if XB is None else XB
        D = peer(XA, searched, metric)
        keys = np.where(np.isnan(D), np.inf, D)
        if XB is None:
            keys[np.arange(len(X)), np.arange(len(X))] = np.nan  # after every other
        expected = np.argsort(keys, axis=1, kind="stable")[:, :6]
        distances, indices = fastgd.argkmin(XA, XB, 6, metric=metric)
        np.testing.assert_array_equal(indices, expected)
        np.testing.assert_allclose(distances, np.take_along_axis(D, expected, axis=1),
                                   rtol=1e-12, atol=1e-14)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 12), m=st.integers(1, 12), d=st.integers(1, 6),
       seed=st.integers(0, 2**32 - 1))
def test_property_metrics_agree_with_one_another(n, m, d, seed):
    """euclidean is the root of sqeuclidean; nan_euclidean without NaN is euclidean; cosine
    is half the squared distance of the unit rows, 1 - cos."""
    rng = np.random.default_rng(seed)
    XA, XB = rng.standard_normal((n, d)), rng.standard_normal((m, d))
    squared = fastgd.cdist(XA, XB, "sqeuclidean")
    np.testing.assert_array_equal(fastgd.cdist(XA, XB, "euclidean"), np.sqrt(squared))
    np.testing.assert_allclose(fastgd.cdist(XA, XB, "nan_euclidean"), np.sqrt(squared),
                               rtol=1e-13, atol=1e-15)
    cosine = 1 - (XA @ XB.T) / np.outer(np.linalg.norm(XA, axis=1), np.linalg.norm(XB, axis=1))
    np.testing.assert_allclose(fastgd.cdist(XA, XB, "cosine"), cosine, rtol=0, atol=1e-13)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("d", [5, 70], ids=["direct", "expansion"])
@pytest.mark.parametrize("symmetric", [False, True], ids=["XA-XB", "XA-XA"])
@pytest.mark.parametrize("n_threads", [1, 2])
def test_kernel_finish_is_numpys_root_and_half_on_every_tile(rng, dtype, d, symmetric,
                                                             n_threads):
    """The compiled kernel takes euclidean's root and cosine's half in each tile while it
    is in cache (the lower triangle's tiles mirrored from the upper one with XA-XA, the
    first tile cut at a cache line into an out= that starts inside one): bitwise NumPy's
    np.sqrt and * 0.5 of sqeuclidean's result, every entry finished exactly once."""
    n, m = 530, 610  # three row tiles and three column tiles, the last ones cut short
    XA = rng.standard_normal((n, d)).astype(dtype)
    XB = XA if symmetric else rng.standard_normal((m, d)).astype(dtype)
    XA[7] = 0.0  # a zero vector: NaN for cosine
    squared = fastgd.sqeuclidean(XA, XB, n_threads=n_threads)
    euclidean = fastgd.cdist(XA, XB, "euclidean", n_threads=n_threads)
    np.testing.assert_array_equal(euclidean, np.sqrt(squared))
    unit_A = fastgd.distances.unit_rows(XA)
    unit_B = unit_A if symmetric else fastgd.distances.unit_rows(XB)
    cosine = fastgd.cdist(XA, XB, "cosine", n_threads=n_threads)
    np.testing.assert_array_equal(cosine, fastgd.sqeuclidean(unit_A, unit_B) * dtype(0.5))
    assert np.isnan(cosine[7]).all()
    buffer = np.empty(euclidean.size + 16, dtype)
    start = (-buffer.ctypes.data % 64) // buffer.itemsize + 1  # 1 element past a line
    out = buffer[start:start + euclidean.size].reshape(euclidean.shape)
    assert fastgd.cdist(XA, XB, "euclidean", out=out, n_threads=n_threads) is out
    np.testing.assert_array_equal(out, euclidean)
    with fastgd.use_backend("numpy"):
        twin = fastgd.cdist(XA, XB, "euclidean")
    if d < fastgd.distances.direct_max_features(dtype):  # the same sums in the same order
        np.testing.assert_array_equal(euclidean, twin)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("count_dtype", [np.float32, np.float64])
@pytest.mark.parametrize("d", [9, (1 << 16) + 7])  # its scales from a table, and divided
def test_nan_euclidean_finish_matches_its_twin_bitwise(rng, dtype, count_dtype, d):
    """nan_euclidean's compiled pass against its NumPy twin on a block with every case:
    kept entries, cancelled ones (suspects, listed in order), no common coordinate (NaN,
    not a suspect), overflowed and NaN norms (suspects)."""
    from fastgd._ext import _pairwise as compiled
    from fastgd._numpy import _pairwise as twin

    n, m = 37, 53
    norms = rng.uniform(0, 10, (n, m))
    gram = rng.uniform(-2, 2, (n, m))
    gram[::3, ::4] = norms[::3, ::4] / 2 * (1 - 1e-9)  # D ~ 0: the expansion cancelled
    count = rng.integers(0, d + 1, (n, m)).astype(count_dtype)
    norms[5, :7] = np.inf
    norms[6, 7:9] = np.nan
    results = []
    for kernels in (compiled, twin):
        out = np.full((n, m), 7.0, dtype)
        suspects = np.full(n * m, -1, np.intp)
        found = kernels.nan_euclidean_finish(norms, gram, count, d, out, suspects)
        results.append((out, suspects[:found]))
    (out, suspects), (twin_out, twin_suspects) = results
    np.testing.assert_array_equal(out, twin_out)
    np.testing.assert_array_equal(suspects, twin_suspects)
    flagged = np.zeros(n * m, bool)
    flagged[suspects] = True
    flagged = flagged.reshape(n, m)
    assert flagged[::3, ::4][count[::3, ::4] > 0].all()
    assert flagged[5, :7][count[5, :7] > 0].all()
    assert not flagged[count == 0].any() and np.isnan(out[count == 0]).all()
    assert np.isnan(out[flagged]).all() and np.isfinite(out[~flagged & (count > 0)]).all()
    kept = ~flagged & (count > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        expected = np.sqrt((norms - 2 * gram) * (d / count.astype(np.float64)))
    np.testing.assert_array_equal(out[kept], expected[kept].astype(dtype))


def test_nan_euclidean_in_blocks_of_rows(monkeypatch, backend, rng):
    """nan_euclidean runs in blocks of rows (NAN_EUCLIDEAN_BLOCK_ENTRIES): blocks of 3 rows,
    the last one short, give scikit-learn's distances within the bound, the diagonal of
    XA against itself (recomputed in each block) exactly 0."""
    monkeypatch.setattr(fastgd.distances, "NAN_EUCLIDEAN_BLOCK_ENTRIES", 3 * 41)
    XA = rng.standard_normal((41, 6)) + 100.0
    XA[rng.random(XA.shape) < 0.3] = np.nan
    XA[4] = np.nan  # a row without any coordinate
    for XB in (XA, rng.standard_normal((41, 6)) + 100.0):
        got = fastgd.cdist(XA, XB, "nan_euclidean")
        exact = reference(XA, XB, "nan_euclidean").astype(np.float64)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(exact))
        finite = np.isfinite(exact)
        assert (np.abs(got - exact)[finite] <= bound("nan_euclidean", 6, np.float64,
                                                      exact)[finite]).all()
    diagonal = np.diag(fastgd.cdist(XA, XA, "nan_euclidean"))
    assert (diagonal[np.arange(41) != 4] == 0).all() and np.isnan(diagonal[4])
