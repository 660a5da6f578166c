"""Masked residual, loss and gradients: against an exact oracle, finite differences,
autograd, the NumPy twin, across paths, layouts, dtypes and thread counts."""

import numpy as np
import pytest
import scipy.sparse
from conftest import require_peer
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal
from oracles import masked_loss_grad_exact

import fastgd
from fastgd import masked

LOSSES = ["sse", "mse", "rmse"]
TUTORIAL = np.array([[3, 4, 5, 2], [4, 4, 3, 3], [5, 5, 4, 3]], dtype=np.float32).T


def tolerance(dtype, k=8):
    return 2e-4 * max(1, k) ** 0.5 if dtype == np.float32 else 1e-11 * max(1, k)


def make_case(rng, m, n, k, density, dtype, kind="random"):
    """(A with NaN for missing, W, H) of a named kind: the masked array zoo."""
    A = rng.random((m, n)) * 4 + 1
    observed_mask = rng.random((m, n)) < density
    if kind == "empty_rows_cols" and m > 2 and n > 2:
        observed_mask[1] = False
        observed_mask[:, 2] = False
    elif kind == "single":
        observed_mask[:] = False
        if m and n:
            observed_mask[m // 2, n // 2] = True
    elif kind == "offset":
        A += 1e6
    A[~observed_mask] = np.nan
    W = rng.standard_normal((m, k)) / max(1, k) ** 0.5
    H = rng.standard_normal((k, n)) / max(1, k) ** 0.5
    if kind == "offset":
        W += 1e3 / max(1, k) ** 0.5
        H += 1e3 / max(1, k) ** 0.5
    return A.astype(dtype), W.astype(dtype), H.astype(dtype)


def layout(array, kind):
    """The same values in another memory layout."""
    if kind == "fortran":
        return np.asfortranarray(array)
    if kind == "strided":
        wide = np.zeros((array.shape[0], 2 * array.shape[1] + 1), dtype=array.dtype)
        wide[:, 1::2] = array
        return wide[:, 1::2]
    if kind == "reversed":
        return np.ascontiguousarray(array[::-1, ::-1])[::-1, ::-1]
    return array


ZOO = [
    (7, 5, 3, 0.6, "random"),
    (1, 1, 1, 1.0, "random"),
    (9, 11, 1, 0.4, "random"),
    (6, 4, 9, 0.5, "random"),          # k > min(m, n)
    (8, 7, 3, 0.5, "empty_rows_cols"),
    (5, 6, 2, 0.5, "single"),
    (40, 30, 4, 0.3, "offset"),
    (130, 600, 5, 0.2, "random"),      # several dense tiles in both directions
    (70, 1100, 6, 0.02, "random"),
]


@pytest.mark.parametrize("case", ZOO, ids=lambda c: "-".join(map(str, c)))
@pytest.mark.parametrize("method", ["dense", "sparse"])
@pytest.mark.parametrize("loss", LOSSES)
def test_zoo_against_exact_oracle(backend, float_dtype, rng, case, method, loss):
    m, n, k, density, kind = case
    A, W, H = make_case(rng, m, n, k, density, float_dtype, kind)
    l2 = 0.3 if kind == "random" else 0.0
    value, dW, dH = fastgd.masked_loss_grad(A, W, H, loss=loss, l2=l2, method=method)
    exact_value, exact_dW, exact_dH = masked_loss_grad_exact(A, ~np.isnan(A), W, H, loss, l2)
    assert dW.dtype == dH.dtype == float_dtype
    assert dW.shape == W.shape and dH.shape == H.shape
    assert dW.flags.c_contiguous and dH.flags.c_contiguous
    assert isinstance(value, float)
    scale = 1e6 if kind == "offset" else 1.0  # residuals cancel a large offset
    rtol = tolerance(float_dtype, k) * scale
    assert_allclose(value, exact_value, rtol=rtol)
    gradient_scale = max(float(np.abs(exact_dW).max(initial=0)),
                         float(np.abs(exact_dH).max(initial=0)), 1e-30)
    assert_allclose(dW, exact_dW.astype(np.float64), rtol=rtol, atol=rtol * gradient_scale)
    assert_allclose(dH, exact_dH.astype(np.float64), rtol=rtol, atol=rtol * gradient_scale)


@pytest.mark.parametrize("case", ZOO, ids=lambda c: "-".join(map(str, c)))
def test_compiled_matches_numpy_twin(rng, float_dtype, case):
    m, n, k, density, kind = case
    A, W, H = make_case(rng, m, n, k, density, float_dtype, kind)
    plan = fastgd.observed(A)
    results = {}
    for backend in ("compiled", "numpy"):
        with fastgd.use_backend(backend):
            results[backend] = (
                fastgd.masked_loss_grad(A, W, H, loss="sse", method="dense"),
                fastgd.masked_loss_grad(plan, W, H, loss="sse"),
                fastgd.masked_residual(A, W, H),
                fastgd.masked_residual(plan, W, H),
                fastgd.observed(A),
            )
    rtol = tolerance(float_dtype, k) * (1e6 if kind == "offset" else 1)
    compiled, twin = results["compiled"], results["numpy"]
    for got, expected in zip(compiled[:2], twin[:2], strict=True):
        assert_allclose(got[0], expected[0], rtol=rtol)
        for a, b in zip(got[1:], expected[1:], strict=True):
            assert a.dtype == b.dtype
            assert_allclose(a, b, rtol=rtol, atol=rtol * max(1, np.abs(b).max(initial=0)))
    for a, b in zip(compiled[2:4], twin[2:4], strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert_allclose(a, b, rtol=rtol, atol=rtol * max(1, np.abs(b).max(initial=0)))
    for name in ("indptr", "indices", "values"):
        assert_array_equal(getattr(compiled[4], name), getattr(twin[4], name))


@pytest.mark.parametrize("kind", ["fortran", "strided", "reversed"])
def test_layouts_give_the_same_answer(backend, float_dtype, rng, kind):
    A, W, H = make_case(rng, 33, 21, 4, 0.5, float_dtype)
    expected = fastgd.masked_loss_grad(A, W, H, loss="sse")
    got = fastgd.masked_loss_grad(layout(A, kind), layout(W, kind), layout(H, kind),
                                  loss="sse")
    assert got[0] == pytest.approx(expected[0], rel=tolerance(float_dtype))
    for a, b in zip(got[1:], expected[1:], strict=True):
        assert_allclose(a, b, rtol=tolerance(float_dtype), atol=tolerance(float_dtype))


def test_strided_inputs_through_the_scratch_copy_are_left_alone(backend, rng):
    """A strided A is copied into the thread's reused scratch: calls in a row, on the
    dense path, the sparse path built from it and masked_residual, give what the
    C-ordered A gives, and leave A as it was."""
    A, W, H = make_case(rng, 120, 90, 8, 0.5, np.float64)
    wide = np.repeat(A, 2, axis=1)
    strided = wide[:, ::2]
    before = strided.copy()
    for method in ("dense", "sparse", "dense"):
        got = fastgd.masked_loss_grad(strided, W, H, method=method)
        expected = fastgd.masked_loss_grad(np.ascontiguousarray(A), W, H, method=method)
        assert got[0] == expected[0]
        for a, b in zip(got[1:], expected[1:], strict=True):
            assert_array_equal(a, b)
        assert_array_equal(fastgd.masked_residual(strided, W, H),
                           fastgd.masked_residual(np.ascontiguousarray(A), W, H))
    assert_array_equal(strided, before)


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("l2", [0.0, 0.5])
@pytest.mark.parametrize("use_plan", [False, True], ids=["dense", "plan"])
def test_gradients_match_finite_differences(backend, float_dtype, rng, loss, l2, use_plan):
    A, W, H = make_case(rng, 6, 5, 3, 0.6, np.float64)
    data = fastgd.observed(A.astype(float_dtype)) if use_plan else A.astype(float_dtype)
    point = [W.astype(float_dtype), H.astype(float_dtype)]

    def fun(p):
        return fastgd.masked_loss_grad(data, p[0], p[1], loss=loss, l2=l2)[0]

    def grad(p):
        return fastgd.masked_loss_grad(data, p[0], p[1], loss=loss, l2=l2)[1:]

    report = fastgd.check_grad(fun, grad, point, raise_on_failure=True)
    assert report.passed


def test_tutorial_case_against_autograd(backend):
    """The tutorial: 4 x 3 float32 ratings, A[0, 0] missing, rank 2, RMSE cost."""
    autograd = require_peer("autograd")
    import autograd.numpy as anp

    A = TUTORIAL.copy()
    A[0, 0] = np.nan
    rng = np.random.default_rng(0)
    W = rng.random((4, 2)).astype(np.float32)
    H = rng.random((2, 3)).astype(np.float32)
    mask = ~np.isnan(A)

    def cost(W, H):
        return anp.sqrt(anp.mean((anp.dot(W, H) - A)[mask] ** 2))

    expected_value = cost(W.astype(np.float64), H.astype(np.float64))
    expected_dW, expected_dH = autograd.grad(cost, [0, 1])(W.astype(np.float64),
                                                           H.astype(np.float64))
    value, dW, dH = fastgd.masked_loss_grad(A, W, H, loss="rmse")
    assert dW.dtype == np.float32 and dH.dtype == np.float32
    assert value == pytest.approx(expected_value, rel=1e-6)
    assert_allclose(dW, expected_dW, rtol=1e-5)
    assert_allclose(dH, expected_dH, rtol=1e-5)
    same = fastgd.masked_loss_grad(np.nan_to_num(A, nan=99.0), W, H, mask=mask, loss="rmse")
    assert same[0] == pytest.approx(value, rel=1e-6)
    assert_allclose(same[1], dW, rtol=1e-5)


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("shape", [(4, 3, 2), (1, 1, 1), (9, 7, 5), (3, 5, 0), (0, 2, 2)])
def test_small_problem_fast_path_matches_the_general_path(float_dtype, rng, loss, shape):
    """Small dense A with method="auto" takes one compiled call (small_loss_grad);
    method="dense" and "sparse" take the general paths."""
    m, n, k = shape
    A, W, H = make_case(rng, m, n, k, 0.7, float_dtype)
    A.flat[:1] = 2.0  # at least one observed entry where there is any
    if A.size == 0 and loss != "sse":
        with pytest.raises(ValueError, match="no observed entry"):
            fastgd.masked_loss_grad(A, W, H, loss=loss)
        return
    for l2 in (0.0, 0.25):
        fast = fastgd.masked_loss_grad(A, W, H, loss=loss, l2=l2)
        general = fastgd.masked_loss_grad(A, W, H, loss=loss, l2=l2, method="sparse")
        assert fast[0] == pytest.approx(general[0], rel=tolerance(float_dtype))
        for a, b in zip(fast[1:], general[1:], strict=True):
            assert a.dtype == float_dtype and a.shape == b.shape and a.flags.c_contiguous
            assert_allclose(a, b, rtol=tolerance(float_dtype), atol=tolerance(float_dtype))
    assert fastgd.masked._backend.ext._masked.small_loss_grad(
        A, W, H, 0, 0.0, masked.SMALL_MAX_WORK) is not None


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("shape", [(4, 3, 2), (1, 1, 1), (9, 7, 5), (3, 5, 0), (6, 40, 3)])
def test_small_plan_fast_path_matches_the_general_path(float_dtype, rng, loss, index_dtype,
                                                       shape):
    """A small plan takes one compiled call (small_plan_loss_grad), with rows and columns
    that have no entry; method="sparse" takes the general plan path, the dense A the dense
    one."""
    m, n, k = shape
    A, W, H = make_case(rng, m, n, k, 0.5, float_dtype, kind="empty_rows_cols")
    A.flat[:1] = 2.0
    plan = fastgd.observed(A)
    plan = masked.ObservedEntries(plan.indptr.astype(index_dtype),
                                  plan.indices.astype(index_dtype), plan.values, plan.shape)
    assert fastgd.masked._backend.ext._masked.small_plan_loss_grad(
        plan.indptr, plan.indices, plan.values, m, n, W, H, 0, 0.0,
        masked.SMALL_MAX_WORK) is not None
    for l2 in (0.0, 0.25):
        fast = fastgd.masked_loss_grad(plan, W, H, loss=loss, l2=l2)
        for general in (fastgd.masked_loss_grad(plan, W, H, loss=loss, l2=l2, method="sparse"),
                        fastgd.masked_loss_grad(A, W, H, loss=loss, l2=l2, method="dense")):
            assert fast[0] == pytest.approx(general[0], rel=tolerance(float_dtype))
            for a, b in zip(fast[1:], general[1:], strict=True):
                assert a.dtype == float_dtype and a.shape == b.shape and a.flags.c_contiguous
                assert_allclose(a, b, rtol=tolerance(float_dtype), atol=tolerance(float_dtype))


def test_small_plan_fast_path_leaves_the_rest_to_the_general_path(rng):
    """Whatever the one-call plan path does not take (mixed dtypes, other layouts, wrong
    shapes, too much work, anything to raise about) goes to the general path, which
    computes or raises as it always did."""
    A = np.array([[1.0, np.nan], [3.0, 4.0]])
    plan = fastgd.observed(A)
    W, H = np.ones((2, 1)), np.ones((1, 2))
    small = fastgd.masked._backend.ext._masked.small_plan_loss_grad
    args = (plan.indptr, plan.indices, plan.values, 2, 2)
    assert small(*args, W, H, 1, 0.0, masked.SMALL_MAX_WORK) is not None
    assert small(*args, W.astype(np.float32), H, 1, 0.0, masked.SMALL_MAX_WORK) is None
    assert small(*args, np.asfortranarray(np.ones((2, 2))), np.ones((2, 2)), 1, 0.0,
                 masked.SMALL_MAX_WORK) is None
    assert small(*args, np.ones((3, 1)), H, 1, 0.0, masked.SMALL_MAX_WORK) is None
    assert small(*args, W, H, 1, 0.0, 2) is None  # 3 entries x k = 1 is above 2
    assert small(plan.indptr.astype(np.int16), *args[1:], W, H, 1, 0.0, 99) is None
    with pytest.raises(ValueError, match=r"W must be finite; got nan at W\[1, 0\]"):
        fastgd.masked_loss_grad(plan, np.array([[1.0], [np.nan]]), H)
    with pytest.raises(ValueError, match=r"H must be finite; got inf at H\[0, 1\]"):
        fastgd.masked_loss_grad(plan, W, np.array([[1.0, np.inf]]))
    with pytest.raises(ValueError, match="A must be finite at every observed entry"):
        fastgd.masked_loss_grad(fastgd.observed(np.array([[1.0, np.inf], [3.0, 4.0]])), W, H)
    with pytest.raises(ValueError, match="no observed entry"):
        fastgd.masked_loss_grad(fastgd.observed(np.full((2, 2), np.nan)), W, H)
    assert fastgd.masked_loss_grad(fastgd.observed(np.full((2, 2), np.nan)), W, H,
                                   loss="sse")[0] == 0.0
    with pytest.raises(ValueError, match="share the rank k"):
        fastgd.masked_loss_grad(plan, W, np.ones((2, 2)))
    mixed = fastgd.masked_loss_grad(fastgd.observed(A.astype(np.float32)), W, H)
    assert mixed[1].dtype == np.float64
    W_before, H_before = W.copy(), H.copy()
    fastgd.masked_loss_grad(plan, W, H)
    assert_array_equal(W, W_before)
    assert_array_equal(H, H_before)


def test_small_problem_fast_path_leaves_errors_to_the_general_path():
    A = np.array([[1.0, np.nan], [3.0, 4.0]])
    W, H = np.ones((2, 1)), np.ones((1, 2))
    with pytest.raises(ValueError, match=r"W must be finite; got nan at W\[1, 0\]"):
        fastgd.masked_loss_grad(A, np.array([[1.0], [np.nan]]), H)
    with pytest.raises(ValueError, match="A must be finite at every observed entry"):
        fastgd.masked_loss_grad(np.array([[1.0, np.inf], [3.0, 4.0]]), W, H)
    with pytest.raises(ValueError, match="no observed entry"):
        fastgd.masked_loss_grad(np.full((2, 2), np.nan), W, H)
    with pytest.raises(ValueError, match="share the rank k"):
        fastgd.masked_loss_grad(A, W, np.ones((2, 2)))
    with pytest.raises(ValueError, match="n_threads must be"):
        fastgd.masked_loss_grad(A, W, H, n_threads=0)
    with pytest.raises(ValueError, match="l2 must be finite"):
        fastgd.masked_loss_grad(A, W, H, l2=float("nan"))
    mixed = fastgd.masked_loss_grad(A.astype(np.float32), W, H)  # float32 + float64
    assert mixed[1].dtype == np.float64


def test_dense_and_sparse_paths_agree(backend, float_dtype, rng):
    A, W, H = make_case(rng, 150, 700, 8, 0.3, float_dtype)
    dense = fastgd.masked_loss_grad(A, W, H, method="dense")
    sparse = fastgd.masked_loss_grad(A, W, H, method="sparse")
    planned = fastgd.masked_loss_grad(fastgd.observed(A), W, H, method="auto")
    for other in (sparse, planned):
        assert other[0] == pytest.approx(dense[0], rel=tolerance(float_dtype))
        for a, b in zip(other[1:], dense[1:], strict=True):
            assert_allclose(a, b, rtol=tolerance(float_dtype), atol=tolerance(float_dtype))


@pytest.mark.parametrize("method", ["dense", "sparse"])
def test_thread_counts_agree_bitwise_when_deterministic(float_dtype, rng, method):
    A, W, H = make_case(rng, 700, 600, 8, 0.4, float_dtype)
    results = [fastgd.masked_loss_grad(A, W, H, n_threads=t, deterministic=True,
                                       method=method) for t in (1, 2, 3)]
    for other in results[1:]:
        assert other[0] == results[0][0]
        assert_array_equal(other[1], results[0][1])
        assert_array_equal(other[2], results[0][2])
    loose = fastgd.masked_loss_grad(A, W, H, n_threads=2, method=method)
    assert loose[0] == pytest.approx(results[0][0], rel=tolerance(float_dtype))
    assert_allclose(loose[2], results[0][2], rtol=tolerance(float_dtype, 64),
                    atol=tolerance(float_dtype, 64))


def test_column_tiles_are_chosen_by_cache_size_and_change_no_bit(monkeypatch, float_dtype,
                                                                 rng):
    """With a small L2 cache the plan path takes the columns in tiles (when the rows have
    enough entries in each); the result is bitwise the untiled one, with any threads."""
    A, W, H = make_case(rng, 60, 900, 16, 0.5, float_dtype)
    plan = fastgd.observed(A)
    assert masked._l2_cache_bytes() >= 64 * 1024
    monkeypatch.setattr(masked, "_l2_cache_bytes", lambda: 16 << 20)
    assert masked.plan_tile_cols(plan, 16, W.itemsize) == 0
    untiled = fastgd.masked_loss_grad(plan, W, H, n_threads=1, deterministic=True)
    # Half the L2 but at least TILE_MIN_BYTES, at most all of it: here all 64 KiB.
    monkeypatch.setattr(masked, "_l2_cache_bytes", lambda: 64 * 1024)
    tile_cols = masked.plan_tile_cols(plan, 16, W.itemsize)
    assert tile_cols == 64 * 1024 // (2 * 16 * W.itemsize)
    monkeypatch.setattr(masked, "TILE_MIN_BYTES", 16 * 1024)
    assert masked.plan_tile_cols(plan, 16, W.itemsize) == tile_cols // 2
    monkeypatch.setattr(masked, "TILE_MIN_BYTES", 48 * 1024)
    assert masked.plan_tile_cols(plan, 16, W.itemsize) == 48 * 1024 // (2 * 16 * W.itemsize)
    monkeypatch.undo()
    monkeypatch.setattr(masked, "_l2_cache_bytes", lambda: 64 * 1024)
    for n_threads in (1, 2):
        tiled = fastgd.masked_loss_grad(plan, W, H, n_threads=n_threads, deterministic=True)
        assert tiled[0] == untiled[0]
        assert_array_equal(tiled[1], untiled[1])
        assert_array_equal(tiled[2], untiled[2])
    # Too few entries per row in a tile: no tiles.
    sparse_plan = fastgd.observed(np.where(rng.random(A.shape) < 0.01, A, np.nan))
    assert masked.plan_tile_cols(sparse_plan, 16, W.itemsize) == 0


def test_a_plan_used_again_keeps_its_entries_in_tiles(monkeypatch, float_dtype, rng):
    """From the second call with the same tiles and dtype, the plan path reads the entries
    from a copy laid out tile by tile (rows in order within a tile, each row's entries in
    the plan's order): the same bits as the plan's own layout, on both backends."""
    A, W, H = make_case(rng, 50, 700, 16, 0.4, float_dtype, kind="empty_rows_cols")
    plan = fastgd.observed(A)
    monkeypatch.setattr(masked, "_l2_cache_bytes", lambda: 64 * 1024)
    tile_cols = masked.plan_tile_cols(plan, 16, W.itemsize)
    assert 0 < tile_cols < plan.shape[1]
    first = fastgd.masked_loss_grad(plan, W, H, n_threads=1, deterministic=True)
    assert plan._tiled is None  # a plan used once is not copied
    for n_threads in (1, 2, 1):
        again = fastgd.masked_loss_grad(plan, W, H, n_threads=n_threads, deterministic=True)
        assert again[0] == first[0]
        assert_array_equal(again[1], first[1])
        assert_array_equal(again[2], first[2])
    key, tile_starts, indices, values, weights = plan._tiled
    assert weights is None  # an unweighted plan
    assert key == (tile_cols, np.dtype(float_dtype))
    # The layout against a sort by (tile, row, column).
    rows, cols = plan.rows, plan.indices
    order = np.lexsort((cols, rows, cols // tile_cols))
    assert_array_equal(indices, cols[order])
    assert_array_equal(values, plan.values[order].astype(float_dtype))
    assert values.dtype == float_dtype and tile_starts.dtype == plan.indptr.dtype
    m, n_tiles = plan.shape[0], -(-plan.shape[1] // tile_cols)
    segments = np.bincount((cols // tile_cols) * m + rows, minlength=n_tiles * m)
    assert_array_equal(tile_starts, np.concatenate([[0], np.cumsum(segments)]))
    for array in (tile_starts, indices, values):
        assert not array.flags.writeable
    with fastgd.use_backend("numpy"):
        twin = fastgd.masked_loss_grad(plan, W, H)
    assert twin[0] == pytest.approx(first[0], rel=tolerance(float_dtype))
    assert_allclose(twin[1], first[1], rtol=tolerance(float_dtype, 16),
                    atol=tolerance(float_dtype, 16))
    assert_allclose(twin[2], first[2], rtol=tolerance(float_dtype, 16),
                    atol=tolerance(float_dtype, 16))
    # Other tiles: the plan's own entries for one call, then a copy for those tiles.
    monkeypatch.setattr(masked, "_l2_cache_bytes", lambda: 48 * 1024)
    assert 0 < masked.plan_tile_cols(plan, 16, W.itemsize) < tile_cols
    for _ in range(2):
        other = fastgd.masked_loss_grad(plan, W, H, n_threads=2, deterministic=True)
        assert other[0] == first[0]
        assert_array_equal(other[1], first[1])
        assert_array_equal(other[2], first[2])
    assert plan._tiled[0] == (masked.plan_tile_cols(plan, 16, W.itemsize),
                              np.dtype(float_dtype))


def test_tile_starts_of_the_wrong_length_are_refused(backend, rng):
    A, W, H = make_case(rng, 6, 40, 3, 0.5, np.float64)
    plan = fastgd.observed(A)
    kernel = fastgd.masked.kernels().plan_loss_grad
    starts = np.zeros(4 * 6, dtype=plan.indptr.dtype)  # 4 tiles of 10 need 4 * 6 + 1
    with pytest.raises(ValueError, match="tile_starts must have n_tiles"):
        kernel(plan.indptr, plan.indices, plan.values, W, H, np.empty_like(W),
               np.empty_like(H), 1, 1, 10, 1.0, starts)


def test_unsorted_plan_rows_are_still_summed_whole(monkeypatch, rng):
    """A plan built by hand with a row's columns out of order is never taken in column
    tiles (the kernel takes a row's entries in a tile up to the first one outside it):
    every entry is still taken once, only the order of the sums may change."""
    A, W, H = make_case(rng, 30, 900, 16, 0.5, np.float64)
    plan = fastgd.observed(A)
    indices, values = plan.indices.copy(), plan.values.copy()
    for i in range(plan.shape[0]):
        row = slice(plan.indptr[i], plan.indptr[i + 1])
        order = rng.permutation(row.stop - row.start)
        indices[row], values[row] = indices[row][order], values[row][order]
    shuffled = masked.ObservedEntries(plan.indptr, indices, values, plan.shape)
    in_order = masked.ObservedEntries(plan.indptr, plan.indices, plan.values, plan.shape)
    monkeypatch.setattr(masked, "_l2_cache_bytes", lambda: 64 * 1024)
    assert masked.plan_tile_cols(plan, 16, W.itemsize) > 0
    assert masked.plan_tile_cols(in_order, 16, W.itemsize) > 0  # looked at: ascending
    assert masked.plan_tile_cols(shuffled, 16, W.itemsize) == 0
    expected = fastgd.masked_loss_grad(plan, W, H, loss="sse")
    for n_threads in (1, 2):
        got = fastgd.masked_loss_grad(shuffled, W, H, loss="sse", n_threads=n_threads)
        assert got[0] == pytest.approx(expected[0], rel=1e-12)
        assert_allclose(got[1], expected[1], rtol=1e-12, atol=1e-12)
        assert_allclose(got[2], expected[2], rtol=1e-12, atol=1e-12)
    # Given tiles anyway, the compiled kernel stays inside them: no entry outside its tile
    # is read or written (some are then left out, which the Python layer never lets
    # happen). The twin takes every entry whatever the tiles.
    with fastgd.use_backend("compiled"):  # also when the suite runs on the NumPy backend
        kernel = fastgd.masked.kernels().plan_loss_grad
    dW, dH = np.empty_like(W), np.empty_like(H)
    sse = kernel(shuffled.indptr, shuffled.indices, shuffled.values, W, H, dW, dH, 1, 1, 50)
    assert 0 < sse < expected[0]


@pytest.mark.parametrize("n_parts", [1, 3])
def test_plan_kernel_scales_gradients_bitwise(backend, float_dtype, rng, n_parts):
    """The plan kernel's ``scale`` gives bitwise the unscaled gradients multiplied by the
    scale in their dtype (what masked_loss_grad did after the kernel before it passed the
    scale in), with tiles, empty rows and columns, and several parts; the sum of squares
    does not change."""
    A, W, H = make_case(rng, 37, 410, 16, 0.3, float_dtype, kind="empty_rows_cols")
    A[-1] = np.nan  # the last row, empty too
    plan = fastgd.observed(A)
    kernel = fastgd.masked.kernels().plan_loss_grad
    scale = 2.0 / plan.nnz
    for tile_cols in (0, 64):
        args = (plan.indptr, plan.indices, plan.values, W, H)
        dW, dH = np.empty_like(W), np.empty_like(H)
        sse = kernel(*args, dW, dH, min(n_parts, 2), n_parts, tile_cols)
        scaled_dW = np.full_like(W, np.nan)
        scaled_dH = np.full_like(H, np.nan)
        scaled_sse = kernel(*args, scaled_dW, scaled_dH, min(n_parts, 2), n_parts, tile_cols,
                            scale)
        assert scaled_sse == sse
        assert_array_equal(scaled_dW, dW * np.dtype(float_dtype).type(scale))
        assert_array_equal(scaled_dH, dH * np.dtype(float_dtype).type(scale))
        assert scaled_dW.dtype == scaled_dH.dtype == float_dtype
        assert np.all(scaled_dW[1] == 0) and np.all(scaled_dH[:, 2] == 0)


@pytest.mark.parametrize("loss", LOSSES)
def test_plan_gradients_match_dense_path_scaled(backend, loss, rng):
    """masked_loss_grad on a plan (the scale applied in the kernel for sse and mse, after
    it for rmse) agrees with the dense path, whose scale is applied afterwards."""
    A, W, H = make_case(rng, 23, 31, 4, 0.4, np.float64)
    dense = fastgd.masked_loss_grad(A, W, H, loss=loss, method="dense")
    sparse = fastgd.masked_loss_grad(fastgd.observed(A), W, H, loss=loss)
    assert sparse[0] == pytest.approx(dense[0], rel=1e-12)
    assert_allclose(sparse[1], dense[1], rtol=1e-11, atol=1e-14)
    assert_allclose(sparse[2], dense[2], rtol=1e-11, atol=1e-14)


def test_mask_ignores_unobserved_values(backend, rng):
    A, W, H = make_case(rng, 6, 7, 2, 0.5, np.float64)
    mask = ~np.isnan(A)
    poisoned = np.where(mask, A, np.inf)
    poisoned[0, ~mask[0]] = np.nan
    expected = fastgd.masked_loss_grad(A, W, H, method="dense")
    got = fastgd.masked_loss_grad(poisoned, W, H, mask=mask, method="dense")
    assert got[0] == expected[0]
    assert_array_equal(got[1], expected[1])
    got = fastgd.masked_loss_grad(poisoned, W, H, mask=mask, method="sparse")
    assert got[0] == pytest.approx(expected[0], rel=1e-12)
    assert_array_equal(fastgd.masked_residual(poisoned, W, H, mask=mask),
                       fastgd.masked_residual(A, W, H))


def test_masked_residual_dense_and_plan(backend, float_dtype, rng):
    A, W, H = make_case(rng, 70, 530, 3, 0.3, float_dtype)
    R = fastgd.masked_residual(A, W, H)
    observed_mask = ~np.isnan(A)
    expected = np.where(observed_mask, W.astype(np.float64) @ H - np.nan_to_num(A), 0)
    assert R.dtype == float_dtype and R.shape == A.shape
    assert_allclose(R, expected, rtol=tolerance(float_dtype), atol=tolerance(float_dtype))
    assert np.all(R[~observed_mask] == 0)
    plan = fastgd.observed(A)
    r = fastgd.masked_residual(plan, W, H)
    assert r.shape == (plan.nnz,)
    assert_allclose(plan.to_sparse(r).toarray(), R, rtol=tolerance(float_dtype),
                    atol=tolerance(float_dtype))
    out = np.empty_like(R)
    assert fastgd.masked_residual(A, W, H, out=out) is out
    assert_array_equal(out, R)
    with pytest.raises(ValueError, match="out must not share memory with A"):
        fastgd.masked_residual(A, W, H, out=A)
    # W converted (Fortran order -> C) still counts as the caller's W, which out overlaps.
    m, k = W.shape
    buffer = np.zeros(2 * m * A.shape[1], dtype=float_dtype)
    overlapping_W = buffer[:m * k].reshape(k, m).T
    overlapping_W[...] = W
    with pytest.raises(ValueError, match="out must not share memory with W"):
        fastgd.masked_residual(A, overlapping_W, H, out=buffer[:A.size].reshape(A.shape))
    assert_array_equal(overlapping_W, W)


def test_observed_from_every_kind_of_input(backend):
    A = np.array([[1.0, np.nan, 0.0], [np.nan, np.nan, np.nan], [2.0, 3.0, np.nan]])
    expected = [(0, 0, 1.0), (0, 2, 0.0), (2, 0, 2.0), (2, 1, 3.0)]
    mask = ~np.isnan(A)
    coo = scipy.sparse.coo_matrix(([2.0, 1.0, 3.0, 0.0], ([2, 0, 2, 0], [0, 0, 1, 2])),
                                  shape=(3, 3))  # an explicit zero: observed
    plans = [
        fastgd.observed(A),
        fastgd.observed(np.nan_to_num(A, nan=-5.0), mask=mask),
        fastgd.observed(coo),
        fastgd.observed(coo.tocsc()),
        fastgd.observed(scipy.sparse.csr_array(coo)),
        fastgd.observed((np.array([2, 0, 2, 0]), np.array([1, 2, 0, 0]),
                         np.array([3.0, 0.0, 2.0, 1.0]), (3, 3))),
    ]
    for plan in plans:
        assert plan.shape == (3, 3) and plan.nnz == 4
        assert plan.indices.dtype == np.int32 and plan.indptr.dtype == np.int32
        assert_array_equal(plan.indptr, [0, 2, 2, 4])
        assert list(zip(plan.rows.tolist(), plan.cols.tolist(), plan.values.tolist(),
                        strict=True)) == expected
        assert_array_equal(plan.to_dense(), A)
        assert not plan.values.flags.writeable
    assert fastgd.observed(plans[0]) is plans[0]
    rows_as_lists = ([1.0, np.nan], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0])  # a dense 4 x 2 A
    assert fastgd.observed(rows_as_lists).shape == (4, 2)
    assert fastgd.observed(A.astype(np.float32)).dtype == np.float32
    assert fastgd.observed(np.array([[1, 2]])).dtype == np.float64


@pytest.mark.parametrize("last_rows_empty", [0, 1, 3])
def test_observed_with_empty_rows_at_the_end(backend, last_rows_empty):
    """The compiled plan builder writes ahead of its entries; nothing may land past them
    when the last rows hold no entry (a debug build, FASTGD_DEBUG_BUILD=1, bounds-checks
    this)."""
    A = np.full((6, 5), np.nan)
    A[0, 1] = 1.0
    A[1, :2] = 2.0  # observed, then missing entries to the end of the row
    A[2, 4] = 3.0
    if last_rows_empty:
        A[-last_rows_empty:] = np.nan
    plan = fastgd.observed(A)
    rows, cols = np.nonzero(~np.isnan(A))
    assert_array_equal(plan.rows, rows)
    assert_array_equal(plan.cols, cols)
    assert_array_equal(plan.values, A[rows, cols])


def test_plan_and_sparse_inputs_to_loss(backend, rng):
    A, W, H = make_case(rng, 12, 9, 3, 0.4, np.float64)
    expected = fastgd.masked_loss_grad(A, W, H, method="dense")
    sparse = scipy.sparse.csr_array(np.nan_to_num(A, nan=0.0) * ~np.isnan(A))
    sparse = fastgd.observed(A).to_sparse()
    for data in (fastgd.observed(A), sparse):
        got = fastgd.masked_loss_grad(data, W, H)
        assert got[0] == pytest.approx(expected[0], rel=1e-12)
        assert_allclose(got[1], expected[1], rtol=1e-11, atol=1e-13)
    densified = fastgd.masked_loss_grad(fastgd.observed(A), W, H, method="dense")
    assert densified[0] == pytest.approx(expected[0], rel=1e-12)


def test_index_dtype_rule():
    assert fastgd._plan.smallest_index_dtype(2**31 - 1, 5) == np.int32
    assert fastgd._plan.smallest_index_dtype(2**31, 5) == np.int64


def test_no_observed_entries(backend):
    A = np.full((3, 2), np.nan)
    W, H = np.ones((3, 1)), np.ones((1, 2))
    value, dW, dH = fastgd.masked_loss_grad(A, W, H, loss="sse")
    assert value == 0.0 and not dW.any() and not dH.any()
    for loss in ("mse", "rmse"):
        with pytest.raises(ValueError, match="no observed entry"):
            fastgd.masked_loss_grad(A, W, H, loss=loss)


def test_rmse_at_exact_fit_has_zero_gradient(backend):
    W, H = np.array([[1.0], [2.0]]), np.array([[3.0, 1.0]])
    A = W @ H
    value, dW, dH = fastgd.masked_loss_grad(A, W, H, loss="rmse")
    assert value == 0.0 and not dW.any() and not dH.any()


@pytest.mark.parametrize("shape", [(0, 4, 2), (3, 0, 2), (3, 4, 0)])
def test_empty_dimensions(backend, shape):
    m, n, k = shape
    A = np.ones((m, n))
    W, H = np.ones((m, k)), np.ones((k, n))
    value, dW, dH = fastgd.masked_loss_grad(A, W, H, loss="sse")
    assert dW.shape == (m, k) and dH.shape == (k, n)
    assert value == m * n  # residual -1 everywhere when k = 0; nothing when m or n is 0
    assert_array_equal(fastgd.masked_residual(A, W, H), -np.ones((m, n)) if k == 0
                       else np.zeros((m, n)))
    plan_value, _, _ = fastgd.masked_loss_grad(fastgd.observed(A), W, H, loss="sse")
    assert plan_value == value


def test_inputs_are_not_modified(backend, rng):
    A, W, H = make_case(rng, 9, 8, 3, 0.5, np.float64)
    mask = ~np.isnan(A)
    copies = [x.copy() for x in (A, W, H, mask)]
    fastgd.masked_loss_grad(A, W, H, mask=mask, l2=0.1)
    fastgd.masked_residual(A, W, H)
    fastgd.masked_loss_grad(A, W, H, method="sparse")
    for original, copy in zip((A, W, H, mask), copies, strict=True):
        assert_array_equal(original, copy)


def test_bad_inputs_raise_clear_errors(backend):
    A = np.array([[1.0, np.nan], [3.0, 4.0]])
    W, H = np.ones((2, 1)), np.ones((1, 2))
    cases = [
        (ValueError, "W must be finite", lambda: fastgd.masked_loss_grad(
            A, np.array([[np.nan], [1.0]]), H)),
        (ValueError, r"H must be finite; got inf at H\[0, 1\]", lambda: fastgd.masked_loss_grad(
            A, W, np.array([[1.0, np.inf]]))),
        (ValueError, "A must be finite at every observed entry; got inf at row 1, column 0",
         lambda: fastgd.masked_loss_grad(np.array([[1.0, np.nan], [np.inf, 4.0]]), W, H)),
        (ValueError, "A must be finite at every observed entry",
         lambda: fastgd.masked_loss_grad(A, W, H, mask=np.ones((2, 2), bool))),
        (ValueError, "A must be finite at every observed entry",
         lambda: fastgd.masked_residual(np.array([[1.0, -np.inf]]), W[:1], H)),
        (ValueError, "A must be finite at every observed entry",
         lambda: fastgd.masked_loss_grad(A, W, H, mask=np.ones((2, 2), bool),
                                         method="sparse")),
        (ValueError, r"W must have shape \(m, k\) = \(2, k\)",
         lambda: fastgd.masked_loss_grad(A, np.ones((3, 1)), H)),
        (ValueError, "H must have shape", lambda: fastgd.masked_loss_grad(A, W, np.ones((1, 3)))),
        (ValueError, "share the rank k", lambda: fastgd.masked_loss_grad(A, W, np.ones((2, 2)))),
        (ValueError, "A must be a 2-D array", lambda: fastgd.masked_loss_grad(A[0], W, H)),
        (TypeError, "A must hold real numbers", lambda: fastgd.masked_loss_grad(
            A.astype(complex), W, H)),
        (TypeError, "W must hold real numbers", lambda: fastgd.masked_loss_grad(
            A, W.astype(object), H)),
        (TypeError, "mask must be a boolean array", lambda: fastgd.masked_loss_grad(
            A, W, H, mask=np.ones((2, 2)))),
        (ValueError, r"mask must have A's shape \(2, 2\)", lambda: fastgd.masked_loss_grad(
            A, W, H, mask=np.ones((2, 3), bool))),
        (ValueError, "mask cannot be combined", lambda: fastgd.masked_loss_grad(
            fastgd.observed(A), W, H, mask=np.ones((2, 2), bool))),
        (ValueError, "loss must be one of", lambda: fastgd.masked_loss_grad(A, W, H, loss="l1")),
        (ValueError, r"loss must be one of .*; got \['mse'\]", lambda: fastgd.masked_loss_grad(
            A, W, H, loss=["mse"])),
        (TypeError, "deterministic must be a bool; got str", lambda: fastgd.masked_loss_grad(
            A, W, H, deterministic="yes")),
        (TypeError, "deterministic must be a bool; got NoneType",
         lambda: fastgd.masked_loss_grad(fastgd.observed(A), W, H, deterministic=None)),
        (ValueError, "method must be one of", lambda: fastgd.masked_loss_grad(
            A, W, H, method="fast")),
        (ValueError, "l2 must be finite and >= 0", lambda: fastgd.masked_loss_grad(
            A, W, H, l2=-1.0)),
        (TypeError, "l2 must be a real number", lambda: fastgd.masked_loss_grad(
            A, W, H, l2="0.1")),
        (ValueError, "n_threads must be", lambda: fastgd.masked_loss_grad(
            A, W, H, n_threads=0)),
        (ValueError, "must be distinct; \\(row 0, column 1\\)", lambda: fastgd.observed(
            ([0, 0], [1, 1], [1.0, 2.0], (2, 2)))),
        (ValueError, r"cols must lie in \[0, 2\)", lambda: fastgd.observed(
            ([0, 1], [1, 2], [1.0, 2.0], (2, 2)))),
        (ValueError, "rows, cols and values must have the same length", lambda: fastgd.observed(
            ([0, 1], [1], [1.0, 2.0], (2, 2)))),
        (ValueError, r"shape must be a pair of non-negative ints \(m, n\); got \(2,\)",
         lambda: fastgd.observed(([0], [0], [1.0], (2,)))),
        (ValueError, "shape must be a pair of non-negative ints", lambda: fastgd.observed(
            ([0], [0], [1.0], (2, -1)))),
        (TypeError, "rows must hold integers", lambda: fastgd.observed(
            ([0.5], [1], [1.0], (2, 2)))),
        (ValueError, "A must be finite at every observed entry", lambda: fastgd.observed(
            scipy.sparse.csr_array(np.array([[np.nan, 1.0]])))),
        (ValueError, "must be distinct", lambda: fastgd.observed(scipy.sparse.coo_array(
            ([1.0, 2.0], ([0, 0], [1, 1])), shape=(2, 2)))),
        (ValueError, r"out must have shape \(2, 2\)", lambda: fastgd.masked_residual(
            A, W, H, out=np.empty((2, 3)))),
        (ValueError, r"data must be a 1-D array of shape \(nnz,\) = \(3,\)",
         lambda: fastgd.observed(A).to_sparse(np.ones(2))),
    ]
    for error, message, call in cases:
        with pytest.raises(error, match=message):
            call()


@settings(max_examples=40, deadline=None)
@given(
    m=st.integers(0, 12), n=st.integers(0, 12), k=st.integers(0, 5),
    density=st.floats(0, 1), seed=st.integers(0, 2**32 - 1),
    dtype=st.sampled_from([np.float32, np.float64]), loss=st.sampled_from(["sse", "mse"]),
)
def test_property_compiled_equals_twin(m, n, k, density, seed, dtype, loss):
    rng = np.random.default_rng(seed)
    A, W, H = make_case(rng, m, n, k, density, dtype)
    if loss == "mse" and not np.any(~np.isnan(A)):
        loss = "sse"
    results = []
    for backend in ("compiled", "numpy"):
        with fastgd.use_backend(backend):
            for method in ("dense", "sparse"):
                results.append(fastgd.masked_loss_grad(A, W, H, loss=loss, method=method))
    rtol = tolerance(dtype, k)
    for other in results[1:]:
        assert other[0] == pytest.approx(results[0][0], rel=rtol, abs=rtol)
        for a, b in zip(other[1:], results[0][1:], strict=True):
            assert a.dtype == np.dtype(dtype)
            assert_allclose(a, b, rtol=rtol, atol=rtol)


def test_auto_picks_the_sparse_path_for_sparse_data(monkeypatch, rng):
    A, W, H = make_case(rng, 200, 100, 3, 0.02, np.float64)
    called = []
    monkeypatch.setattr(fastgd._plan, "plan_from_dense",
                        lambda *a, _f=fastgd._plan.plan_from_dense: called.append(1) or _f(*a))
    fastgd.masked_loss_grad(A, W, H)
    assert called
    called.clear()
    A, W, H = make_case(rng, 200, 100, 3, 0.8, np.float64)
    fastgd.masked_loss_grad(A, W, H)
    assert not called


@pytest.mark.parametrize("k", [1, 7, 8, 15, 16, 17, 32, 37])
def test_simd_variants_agree_bitwise(float_dtype, rng, k):
    """The plan path's loops (plain C, the baseline's vectors, AVX2) do the same operations
    in the same order."""
    A, W, H = make_case(rng, 60, 50, k, 0.3, float_dtype)
    plan = fastgd.observed(A)
    levels = fastgd._backend.SIMD_LEVELS
    select = fastgd.masked._backend.ext._masked.select_simd
    try:
        results = {}
        for level in ("scalar", "baseline", "avx2"):
            chosen = levels[select(levels.index(level))]
            results[chosen] = fastgd.masked_loss_grad(plan, W, H, n_threads=1)
    finally:
        fastgd.masked._backend.select_simd("avx512")
    assert "scalar" in results and len(results) >= 2
    reference = results.pop("scalar")
    for other in results.values():
        assert other[0] == reference[0]
        assert_array_equal(other[1], reference[1])
        assert_array_equal(other[2], reference[2])


def test_plans_never_allocate_m_by_n(backend):
    """A 100000 x 100000 problem with 2000 observed entries: any m x n array would take
    at least 10 GB; the plan path's peak stays within a few n x k arrays."""
    import tracemalloc

    m = n = 100_000
    k = 4
    rng = np.random.default_rng(1)
    flat = np.unique(rng.integers(0, m * n, size=2000))
    rows, cols = np.divmod(flat, n)
    W = rng.standard_normal((m, k))
    H = rng.standard_normal((k, n))
    tracemalloc.start()
    try:
        plan = fastgd.observed((rows, cols, rng.random(flat.size), (m, n)))
        value, dW, _ = fastgd.masked_loss_grad(plan, W, H, n_threads=2)
        r = fastgd.masked_residual(plan, W, H)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 40 * n * k * 8
    assert r.shape == (flat.size,) and np.isfinite(value)
    assert np.count_nonzero(dW.any(axis=1)) == np.unique(rows).size


@settings(max_examples=30, deadline=None)
@given(nnz=st.integers(0, 300), shape=st.sampled_from([(7, 5), (1000, 3), (3, 2**40),
                                                        (16, 2**51), (4, 2**61)]),
       seed=st.integers(0, 2**32 - 1))
def test_a_plan_from_coordinates_sorts_them_by_row_then_column(nnz, shape, seed):
    # The shapes take each sorting path: positions packed beside the keys, a stable
    # argsort where they do not fit, and lexsort where row * n + col would wrap.
    rng = np.random.default_rng(seed)
    m, n = shape
    pairs = {(int(r), int(c)) for r, c in zip(rng.integers(0, m, size=nnz),
                                              rng.integers(0, n, size=nnz), strict=True)}
    pairs = sorted(pairs, key=lambda pair: rng.random())
    rows = np.array([r for r, _ in pairs], dtype=np.int64)
    cols = np.array([c for _, c in pairs], dtype=np.int64)
    values = rng.standard_normal(rows.shape[0])
    plan = fastgd.observed((rows, cols, values, shape))
    order = np.lexsort((cols, rows))
    assert_array_equal(plan.rows, rows[order])
    assert_array_equal(plan.cols, cols[order])
    assert_array_equal(plan.values, values[order])
    if rows.shape[0]:
        with pytest.raises(ValueError, match="must be distinct"):
            fastgd.observed((np.r_[rows, rows[:1]], np.r_[cols, cols[:1]],
                             np.r_[values, 1.0], shape))
