"""fastgd.sqeuclidean against an exact oracle, scipy's cdist and its NumPy twin."""

import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from numpy.testing import assert_array_equal
from oracles import exact_sqeuclidean, sqeuclidean_error_bound
from scipy.spatial.distance import cdist

import fastgd
from fastgd.distances import direct_max_features

METHODS = ["auto", "expansion", "direct"]


def make_zoo_case(rng, kind, n, m, d, dtype):
    """Two point sets of a named kind: the array zoo for distances."""
    X = rng.standard_normal((n, d))
    Y = rng.standard_normal((m, d))
    if kind == "offset":
        X += 1e4
        Y += 1e4
    elif kind == "near_duplicates":
        X += 1e4
        Y = X[np.arange(m) % max(n, 1)] + 1e-7 * rng.standard_normal((m, d))
    elif kind == "duplicates":
        Y = X[np.arange(m) % max(n, 1)].copy()
    elif kind == "integers":
        X = np.round(X * 3)
        Y = np.round(Y * 3)
    return X.astype(dtype), Y.astype(dtype)


def assert_accurate(D, X, Y, dtype):
    """Within the promised bound of the exact value, never negative, 0 only for equal rows."""
    exact = exact_sqeuclidean(X, Y)
    error = np.abs(D.astype(np.longdouble) - exact).astype(np.float64)
    bound = sqeuclidean_error_bound(exact, X.shape[1], dtype)
    worst = np.unravel_index(np.argmax(error - bound), error.shape) if error.size else None
    assert np.all(error <= bound), f"entry {worst}: got {D[worst]!r}, exact {exact[worst]!r}"
    assert np.all(D >= 0)
    equal_rows = exact == 0
    assert_array_equal(D == 0, equal_rows)


@pytest.mark.parametrize("kind", ["random", "offset", "near_duplicates", "duplicates", "integers"])
@pytest.mark.parametrize("d", [1, 3, 17, 64, 300])
@pytest.mark.parametrize("method", METHODS)
def test_zoo_against_exact_and_cdist(backend, float_dtype, rng, kind, d, method):
    X, Y = make_zoo_case(rng, kind, 37, 29, d, float_dtype)
    D = fastgd.sqeuclidean(X, Y, method=method)
    assert D.dtype == float_dtype
    assert D.shape == (37, 29)
    assert_accurate(D, X, Y, float_dtype)
    reference = cdist(X.astype(np.float64), Y.astype(np.float64), "sqeuclidean")
    rtol = 1e-4 if float_dtype == np.float32 else 1e-9
    if kind not in ("near_duplicates", "offset"):  # there cdist's own rounding is the limit
        np.testing.assert_allclose(D, reference, rtol=rtol, atol=0)


@pytest.mark.parametrize("kind", ["offset", "near_duplicates", "duplicates"])
@pytest.mark.parametrize("d", [3, 17, 64])
def test_whole_blocks_recompute_what_may_have_cancelled(backend, float_dtype, rng, kind, d):
    """45 x 205: whole register blocks of the AVX-512 expansion (8 x 24 in float64, 8 x 48
    in float32) and blocks cut at both edges, where near-duplicates and a large offset
    make the kernel recompute entries after a block's stores."""
    X, Y = make_zoo_case(rng, kind, 45, 205, d, float_dtype)
    D = fastgd.sqeuclidean(X, Y, method="expansion")
    assert_accurate(D, X, Y, float_dtype)
    with fastgd.use_backend("numpy"):
        twin = fastgd.sqeuclidean(X, Y, method="expansion")
    assert_array_equal(D == 0, twin == 0)


@pytest.mark.parametrize("kind", ["random", "offset", "near_duplicates", "duplicates"])
@pytest.mark.parametrize("method", METHODS)
def test_symmetric_exactly_symmetric_zero_diagonal(backend, float_dtype, rng, kind, method):
    X, _ = make_zoo_case(rng, kind, 300, 300, 40, float_dtype)  # more than one tile
    if kind == "duplicates":
        X[150:] = X[:150]
    D = fastgd.sqeuclidean(X, method=method)
    assert_array_equal(D, D.T)
    assert_array_equal(np.diag(D), 0)
    assert_accurate(D, X, X, float_dtype)


def test_auto_takes_the_direct_method_against_few_rows_of_y(float_dtype, rng):
    """k-means' assignment (few centres, many features): where the level has a column
    crossover (DIRECT_BELOW_COLUMNS), method="auto" gives the direct method's bits below
    it and the expansion's from it on; on every backend alike."""
    X = rng.standard_normal((300, 64)).astype(float_dtype) + 3
    below = fastgd.distances.DIRECT_BELOW_COLUMNS.get(fastgd.distances._pairwise_level(), 0)
    for m in (1, 10, 15, 16, 40):
        Y = rng.standard_normal((m, 64)).astype(float_dtype) + 3
        method = "direct" if m < below else "expansion"
        assert_array_equal(fastgd.sqeuclidean(X, Y), fastgd.sqeuclidean(X, Y, method=method))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("shape", [(257, 513, 3), (600, 300, 70), (300, 300, 300), (1, 1000, 5)])
def test_compiled_matches_numpy_twin(float_dtype, rng, method, shape):
    n, m, d = shape
    X = rng.standard_normal((n, d)).astype(float_dtype) + 3
    Y = rng.standard_normal((m, d)).astype(float_dtype) + 3
    for Y_arg in (Y, None):
        with fastgd.use_backend("compiled"):
            compiled = fastgd.sqeuclidean(X, Y_arg, method=method)
        with fastgd.use_backend("numpy"):
            twin = fastgd.sqeuclidean(X, Y_arg, method=method)
        if method == "direct" or (method == "auto" and d < direct_max_features(float_dtype)):
            # Same additions in the same order: bitwise identical.
            assert_array_equal(compiled, twin)
        else:
            # GEMMs block differently; both are within the bound of the exact value.
            exact = exact_sqeuclidean(X, X if Y_arg is None else Y_arg)
            bound = 2 * sqeuclidean_error_bound(exact, d, float_dtype)
            assert np.all(np.abs(compiled.astype(np.float64) - twin) <= bound)


def test_threads_do_not_change_bits(float_dtype, rng):
    X = rng.standard_normal((700, 90)).astype(float_dtype)
    Y = rng.standard_normal((650, 90)).astype(float_dtype)
    with fastgd.use_backend("compiled"):
        for Y_arg in (Y, None):
            for method in METHODS:
                one = fastgd.sqeuclidean(X, Y_arg, n_threads=1, method=method)
                two = fastgd.sqeuclidean(X, Y_arg, n_threads=2, method=method)
                assert_array_equal(one, two)


def test_tile_order_does_not_change_bits(float_dtype, rng):
    """The AVX-512 expansion takes its tiles column by column when the panels of X take at
    most 1 MiB (packing each tile of Y once), row by row otherwise; either way it computes
    every entry alike. X whole (panels over 1 MiB) against X in parts of 1000 rows (under
    it). The rows come in pairs x, -x, so that the common shift is exactly 0 for X whole
    and for every part: any difference would be the tile order's."""

    def paired(rows):
        return np.stack([rows, -rows], axis=1).reshape(-1, rows.shape[1])

    X = paired(rng.standard_normal((2100, 64)).astype(float_dtype))
    near = X[:40:2].astype(np.float64) + 1e-6 * rng.standard_normal((20, 64))
    Y = paired(np.vstack([rng.standard_normal((30, 64)), near]).astype(float_dtype))
    with fastgd.use_backend("compiled"):
        whole = fastgd.sqeuclidean(X, Y, method="expansion")
        parts = np.vstack([fastgd.sqeuclidean(X[i:i + 1000], Y, method="expansion")
                           for i in range(0, X.shape[0], 1000)])
        fused = fastgd._backend.ext._pairwise.fused_expansion(64, X.itemsize)
    assert_accurate(whole, X, Y, float_dtype)
    if fused:
        assert_array_equal(parts, whole)
    else:  # BLAS's GEMMs of other shapes may round differently, within the bound
        assert_accurate(parts, X, Y, float_dtype)


@pytest.mark.parametrize("layout", ["fortran", "strided", "negative_strides", "byteswapped",
                                    "readonly", "integer", "bool", "float16", "list"])
def test_layouts_and_dtypes(backend, rng, layout):
    base_X = rng.standard_normal((23, 9))
    base_Y = rng.standard_normal((31, 9))
    expected_dtype = np.float64
    if layout == "fortran":
        X, Y = np.asfortranarray(base_X), np.asfortranarray(base_Y)
    elif layout == "strided":
        X = np.repeat(base_X, 2, axis=1)[:, ::2]
        Y = np.repeat(base_Y, 3, axis=0)[::3]
    elif layout == "negative_strides":
        X, Y = base_X[::-1, ::-1], base_Y[::-1, ::-1]
    elif layout == "byteswapped":
        X = base_X.astype(base_X.dtype.newbyteorder())
        Y = base_Y.astype(base_Y.dtype.newbyteorder())
    elif layout == "readonly":
        X, Y = base_X.copy(), base_Y.copy()
        X.flags.writeable = False
        Y.flags.writeable = False
    elif layout == "integer":
        X, Y = (base_X * 10).astype(np.int32), (base_Y * 10).astype(np.int64)
    elif layout == "bool":
        X, Y = base_X > 0, base_Y > 0
    elif layout == "float16":
        X, Y = base_X.astype(np.float16), base_Y.astype(np.float16)
        expected_dtype = np.float32
    else:
        X, Y = base_X.tolist(), base_Y.tolist()
    D = fastgd.sqeuclidean(X, Y)
    assert D.dtype == expected_dtype
    reference = cdist(np.asarray(X, dtype=np.float64), np.asarray(Y, dtype=np.float64),
                      "sqeuclidean")
    np.testing.assert_allclose(D, reference, rtol=1e-6 if expected_dtype == np.float32 else 1e-12,
                               atol=1e-12)


def test_mixed_precision_computes_in_float64(backend, rng):
    X = rng.standard_normal((5, 4)).astype(np.float32)
    Y = rng.standard_normal((6, 4))
    D = fastgd.sqeuclidean(X, Y)
    assert D.dtype == np.float64
    np.testing.assert_allclose(D, cdist(X.astype(np.float64), Y, "sqeuclidean"), rtol=1e-12)


@pytest.mark.parametrize("shape", [(0, 3, 4), (3, 0, 4), (0, 0, 4), (3, 5, 0), (1, 1, 1)])
def test_empty_and_tiny(backend, float_dtype, shape):
    n, m, d = shape
    X = np.arange(n * d, dtype=float_dtype).reshape(n, d)
    Y = np.arange(m * d, dtype=float_dtype).reshape(m, d) + 0.5
    D = fastgd.sqeuclidean(X, Y)
    assert D.shape == (n, m)
    assert D.dtype == float_dtype
    np.testing.assert_array_equal(D, cdist(X, Y, "sqeuclidean") if n and m else np.zeros((n, m)))
    assert fastgd.sqeuclidean(X).shape == (n, n)


def test_nan_and_inf_propagate_like_the_direct_formula(backend, float_dtype):
    X = np.array([[0.0, 1.0], [np.nan, 1.0], [np.inf, 0.0], [2.0, 2.0]], dtype=float_dtype)
    Y = np.array([[0.0, 0.0], [np.inf, 0.0], [1.0, -np.inf]], dtype=float_dtype)
    for method in METHODS:
        D = fastgd.sqeuclidean(X, Y, method=method)
        with np.errstate(invalid="ignore"):
            expected = cdist(X.astype(np.float64), Y.astype(np.float64), "sqeuclidean")
        np.testing.assert_array_equal(D, expected.astype(float_dtype))


def test_huge_values_do_not_overflow_the_answer(backend):
    # The centred norms overflow to inf; the distance between the first two rows does not.
    X = np.array([[1e155, 1.0], [1e155, 4.0], [-1e155, 0.0]])
    for method in METHODS:
        D = fastgd.sqeuclidean(X, method=method)
        assert D[0, 1] == 9.0
        assert np.isinf(D[0, 2])


def test_out_is_filled_and_returned(backend, float_dtype, rng):
    X = rng.standard_normal((8, 3)).astype(float_dtype)
    Y = rng.standard_normal((5, 3)).astype(float_dtype)
    out = np.full((8, 5), -1.0, dtype=float_dtype)
    result = fastgd.sqeuclidean(X, Y, out=out)
    assert result is out
    np.testing.assert_allclose(out, cdist(X, Y, "sqeuclidean"), rtol=1e-5)


def test_inputs_are_not_modified(backend, rng):
    X = rng.standard_normal((40, 20)) + 1e3
    Y = rng.standard_normal((30, 20)) + 1e3
    X_before, Y_before = X.copy(), Y.copy()
    for method in METHODS:
        fastgd.sqeuclidean(X, Y, method=method)
        fastgd.sqeuclidean(X, method=method)
    assert_array_equal(X, X_before)
    assert_array_equal(Y, Y_before)


@given(
    data=st.data(),
    n=st.integers(1, 12),
    m=st.integers(1, 12),
    d=st.integers(1, 40),
    dtype=st.sampled_from([np.float32, np.float64]),
    offset=st.sampled_from([0.0, 1.0, 1e3, 1e6, -1e5]),
    method=st.sampled_from(METHODS),
)
@settings(max_examples=150, deadline=None)
def test_property_accurate_nonnegative_zero_iff_equal(data, n, m, d, dtype, offset, method):
    elements = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False, width=32)
    X = data.draw(hnp.arrays(np.float64, (n, d), elements=elements)) + offset
    Y = data.draw(hnp.arrays(np.float64, (m, d), elements=elements)) + offset
    # Some rows of Y repeat rows of X, some differ from them by one ulp.
    repeats = data.draw(st.lists(st.integers(0, n - 1), min_size=0, max_size=m))
    for j, i in enumerate(repeats):
        Y[j] = X[i] if j % 2 == 0 else np.nextafter(X[i], np.inf)
    X, Y = X.astype(dtype), Y.astype(dtype)
    for backend in ("compiled", "numpy"):
        with fastgd.use_backend(backend):
            D = fastgd.sqeuclidean(X, Y, method=method)
            S = fastgd.sqeuclidean(X, method=method)
        assert_accurate(D, X, Y, dtype)
        assert_array_equal(S, S.T)
        assert_array_equal(np.diag(S), 0)


@pytest.mark.parametrize("margin", [0.0, -0.0, -1e-300, -np.inf, np.inf, np.nan, -np.nan,
                                    5e-324, 1.0, 1e308])
def test_expansion_trusts_only_positive_finite_margins(margin):
    """The bit trick behind the epilogue: compared with the plain predicate it replaces."""
    kept = bool(margin > 0 and np.isfinite(margin))
    bits = np.array([margin]).view(np.uint64)[0]
    with np.errstate(over="ignore"):
        flagged = ((bits + np.uint64(1 << 52)) | (bits - np.uint64(1))) >> np.uint64(63)
    assert bool(flagged) is not kept


def test_no_temporaries_of_the_output_size(rng):
    import tracemalloc

    X = rng.standard_normal((1500, 64))
    Y = rng.standard_normal((1200, 64))
    out = np.empty((1500, 1200))
    out_square = np.empty((1500, 1500))
    with fastgd.use_backend("compiled"):
        for method in METHODS:
            fastgd.sqeuclidean(X, Y, out=out, method=method)  # warm up imports and caches
            tracemalloc.start()
            fastgd.sqeuclidean(X, Y, out=out, method=method)
            fastgd.sqeuclidean(X, out=out_square, method=method)
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            # The traced (NumPy) allocations are the norms and the shift, O(n + m + d); the
            # output is 14 MB. The per-thread tiles (about 1.5 MB) are malloc'ed in C.
            assert peak < 200_000, (method, peak)


@pytest.mark.parametrize("kind", ["random", "offset", "clustered"])
@pytest.mark.parametrize("d", [16, 64, 256])
def test_float32_is_accurate_to_a_few_ulps(backend, rng, kind, d):
    """float32 results: the direct path is correctly rounded (it sums in float64); the
    expansion (sgemm, float64 norms, float64 recomputation) stays within a few ulps."""
    X = rng.standard_normal((200, d))
    Y = rng.standard_normal((150, d))
    if kind == "offset":
        X += 100
        Y += 100
    elif kind == "clustered":
        centre = rng.standard_normal(d)
        X = 0.1 * X + centre
        Y = 0.1 * Y + centre
    X, Y = X.astype(np.float32), Y.astype(np.float32)
    exact = exact_sqeuclidean(X, Y).astype(np.float64)
    ulp = np.spacing(exact.astype(np.float32)).astype(np.float64)
    for method, max_ulps in (("direct", 0.5 + 1e-6), ("expansion", 8.0)):
        D = fastgd.sqeuclidean(X, Y, method=method).astype(np.float64)
        assert np.max(np.abs(D - exact) / ulp) <= max_ulps, method


@pytest.mark.parametrize("method", METHODS)
def test_many_features_are_taken_in_chunks(backend, float_dtype, rng, method):
    # d above the kernels' chunk of 256 features: several GEMM / direct passes per tile.
    X = rng.standard_normal((40, 700)).astype(float_dtype) + 5
    Y = rng.standard_normal((300, 700)).astype(float_dtype) + 5
    D = fastgd.sqeuclidean(X, Y, method=method)
    assert_accurate(D, X, Y, float_dtype)
    S = fastgd.sqeuclidean(Y, method=method)
    assert_array_equal(S, S.T)
    assert_accurate(S, Y, Y, float_dtype)


def test_strided_inputs_are_copied_into_reused_scratch(rng, monkeypatch):
    """A strided or Fortran-order input is copied into a buffer of the calling thread that
    the next call reuses (no fresh pages per call), each input slot its own; another thread
    has its own buffers; inputs beyond SCRATCH_MAX_BYTES get a fresh copy; the results
    are those of the C-ordered inputs, and the inputs are left as they were."""
    from fastgd import _validation

    wide = rng.standard_normal((300, 130))
    X, Y = wide[:, :64], np.asfortranarray(rng.standard_normal((40, 64)))
    X_before, Y_before = X.copy(), Y.copy()
    first = _validation.as_contiguous_in_scratch(X, np.float64, 0)
    second = _validation.as_contiguous_in_scratch(wide[:, 1:65], np.float64, 0)
    other_slot = _validation.as_contiguous_in_scratch(Y, np.float32, 1)
    assert first.flags.c_contiguous and np.shares_memory(first, second)
    assert_array_equal(second, wide[:, 1:65])
    assert other_slot.dtype == np.float32 and not np.shares_memory(other_slot, second)
    assert_array_equal(other_slot, Y.astype(np.float32))
    contiguous = np.ascontiguousarray(X)
    assert _validation.as_contiguous_in_scratch(contiguous, np.float64, 0) is contiguous

    in_thread = []
    worker = threading.Thread(target=lambda: in_thread.append(
        _validation.as_contiguous_in_scratch(X, np.float64, 0)))
    worker.start()
    worker.join()
    assert_array_equal(in_thread[0], X)
    assert not np.shares_memory(in_thread[0], second)
    monkeypatch.setattr(_validation, "SCRATCH_MAX_BYTES", X.nbytes - 1)
    assert not np.shares_memory(_validation.as_contiguous_in_scratch(X, np.float64, 0),
                                second)
    monkeypatch.undo()

    expected = fastgd.sqeuclidean(np.ascontiguousarray(X), np.ascontiguousarray(Y))
    for _ in range(2):
        assert_array_equal(fastgd.sqeuclidean(X, Y), expected)
        assert_array_equal(fastgd.cdist(X, Y, "euclidean"), np.sqrt(expected))
    assert_array_equal(X, X_before)
    assert_array_equal(Y, Y_before)
