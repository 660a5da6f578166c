"""fastgd.argkmin and fastgd.nearest against scipy's cdist and a stable sort, on an array
zoo, across tiles, with ties, near-duplicates, NaN, and bad input."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import cdist

import fastgd
from fastgd import neighbors
from fastgd._numpy import _pairwise as _numpy_pairwise


def oracle(X, Y=None, k=1):
    """The k nearest by scipy's direct float64 distances, ties by index (a stable sort),
    each row itself left out with Y=None."""
    self_search = Y is None
    Y = X if self_search else Y
    D = cdist(np.asarray(X, np.float64), np.asarray(Y, np.float64), "sqeuclidean")
    D = np.where(np.isnan(D), np.inf, D)
    if self_search:
        D[np.arange(len(X)), np.arange(len(X))] = np.nan  # after every other, inf too
    order = np.argsort(D, axis=1, kind="stable")[:, :k]
    return order


def check(X, Y=None, k=1, **kwargs):
    distances, indices = fastgd.argkmin(X, Y, k, **kwargs)
    expected = oracle(X, Y, k)
    np.testing.assert_array_equal(indices, expected)
    assert indices.dtype == np.intp and indices.shape == (len(X), k)
    exact = cdist(np.asarray(X, np.float64),
                  np.asarray(X if Y is None else Y, np.float64), "sqeuclidean")
    exact = np.take_along_axis(exact, expected, axis=1)
    dtype = np.result_type(np.asarray(X).dtype, np.asarray(X if Y is None else Y).dtype)
    assert distances.dtype == dtype
    d = np.asarray(X).shape[1]
    bound = 4 * (d + 2) * np.finfo(dtype).eps / 2
    finite = np.isfinite(exact)
    np.testing.assert_allclose(distances[finite], exact[finite], rtol=bound, atol=0)
    return distances, indices


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", ["C", "F", "strided"])
def test_matches_the_oracle_on_random_shapes(backend, rng, dtype, layout):
    for n, m, d in [(1, 1, 1), (5, 3, 2), (40, 70, 7), (130, 33, 64), (3, 300, 17)]:
        X = rng.standard_normal((n, 2 * d)).astype(dtype)[:, ::2]
        Y = rng.standard_normal((m, d)).astype(dtype)
        if layout == "C":
            X = np.ascontiguousarray(X)
        elif layout == "F":
            X, Y = np.asfortranarray(X), np.asfortranarray(Y)
        for k in sorted({1, min(3, m), m}):
            check(X, Y, k)
        if n > 1:
            check(X, None, min(n - 1, 4))


def test_mixed_dtypes_give_float64(rng):
    X = rng.random((10, 3)).astype(np.float32)
    check(X, rng.random((12, 3)), 5)


def test_across_many_tiles_and_blocks_of_the_twin(rng, monkeypatch):
    monkeypatch.setattr(_numpy_pairwise, "ARGKMIN_TILE_ENTRIES", 64)
    monkeypatch.setattr(_numpy_pairwise, "ARGKMIN_BLOCK_ROWS", 7)
    with fastgd.use_backend("numpy"):
        X = rng.standard_normal((50, 5))
        Y = np.vstack([rng.standard_normal((60, 5)), X[:10]])  # exact duplicates: ties
        for k in (1, 4, 13, 70):
            check(X, Y, k)
        check(X, None, 9)
        duplicated = np.repeat(X[:8], 4, axis=0)
        check(duplicated, None, 5)


@pytest.mark.parametrize("d", [3, 24])  # the direct method, the expansion
@pytest.mark.parametrize("n_threads", [1, 2])
def test_across_many_tiles_tasks_and_parts(backend, rng, d, n_threads):
    """More rows than one task, more columns than one tile (256 and 512 in the compiled
    kernel), Y in parts for few queries, exact duplicates across tiles."""
    X = rng.standard_normal((1100, d))
    Y = np.vstack([rng.standard_normal((1300, d)), X[:40], X[600:610]])
    for k in (1, 6):
        check(X, Y, k, n_threads=n_threads)
        check(X[:5], Y, k, n_threads=n_threads)
    check(Y, None, 3, n_threads=n_threads)


def test_ties_go_to_the_smaller_index(backend):
    Y = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0], [2.0, 0.0]])
    distances, indices = fastgd.argkmin(np.zeros((1, 2)), Y, 5)
    np.testing.assert_array_equal(indices, [[0, 1, 2, 3, 4]])
    np.testing.assert_array_equal(distances, [[1, 1, 1, 1, 4]])
    same = np.ones((6, 3))
    np.testing.assert_array_equal(fastgd.argkmin(same, k=3, return_distance=False),
                                  [[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2], [0, 1, 2],
                                   [0, 1, 2]])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_near_duplicates_at_a_large_offset_come_in_their_exact_order(backend, rng, dtype):
    """Candidates apart by about the expansion's error: the order is settled by direct
    differences, so it is the exact one."""
    offset = 1e4 if dtype == np.float32 else 1e8
    d = 8
    base = np.full(d, offset)
    unit = np.finfo(dtype).eps * offset
    # Y[j] is base moved by j + 1 units along one axis (exact in dtype); the query sits
    # at base, so Y's order is its index order, and then reversed.
    steps = np.arange(1, 40)
    Y = np.tile(base, (steps.size, 1)).astype(dtype)
    Y[:, 0] = (offset + steps * unit).astype(dtype)
    Y = Y[::-1].copy()
    X = base[None].astype(dtype)
    check(X, Y, 5)
    check(X, Y, 38)
    check(np.vstack([X, Y[:3]]), Y, 4)


def test_candidates_closer_than_the_error_bound_are_settled_by_direct_differences(
        backend, rng, monkeypatch):
    """Distances 1 + j 2^-49 (a few units in the last place, under sqeuclidean's bound
    4 (d + 2) u D): the rows within the bound of the k-th place are compared again by
    direct differences, which tell them apart exactly."""
    settled = []
    settle = neighbors._settle

    def spy(X, Y, self_search, near, k, n_threads):
        settled.append(len(X))
        return settle(X, Y, self_search, near, k, n_threads)

    monkeypatch.setattr(neighbors, "_settle", spy)
    j = rng.permutation(30)
    Y = np.zeros((30, 8))
    Y[:, 0] = 1 + j * 2.0**-50
    _, indices = fastgd.argkmin(np.zeros((1, 8)), Y, 6)
    np.testing.assert_array_equal(indices[0], np.argsort(j)[:6])
    assert settled


def test_nan_and_inf_rows_come_last_in_index_order(backend):
    Y = np.array([[0.0, 0.0], [np.nan, 1.0], [3.0, 0.0], [np.inf, 0.0], [1.0, 0.0]])
    distances, indices = fastgd.argkmin(np.array([[0.5, 0.0]]), Y, 5)
    np.testing.assert_array_equal(indices, [[0, 4, 2, 1, 3]])
    assert np.isnan(distances[0, 3]) and np.isinf(distances[0, 4])
    # A query with NaN: every distance NaN, neighbours in index order.
    distances, indices = fastgd.argkmin(np.array([[np.nan, 0.0]]), Y, 3)
    np.testing.assert_array_equal(indices, [[0, 1, 2]])
    assert np.isnan(distances).all()
    # Searching itself, a NaN row still leaves itself out.
    _, indices = fastgd.argkmin(Y, k=4)
    assert all(i not in row for i, row in enumerate(indices))


def test_threads_and_backends_give_the_same_result(rng):
    X = rng.standard_normal((300, 20))
    Y = rng.standard_normal((900, 20))
    one = fastgd.argkmin(X, Y, 7, n_threads=1)
    two = fastgd.argkmin(X, Y, 7, n_threads=2)
    with fastgd.use_backend("numpy"):
        twin = fastgd.argkmin(X, Y, 7)
    for result in (two, twin):
        np.testing.assert_array_equal(result[1], one[1])
        np.testing.assert_allclose(result[0], one[0], rtol=1e-12)


def test_inputs_are_not_modified_and_empty_queries(rng):
    X = rng.random((6, 3))
    Y = rng.random((9, 3))
    copies = X.copy(), Y.copy()
    fastgd.argkmin(X, Y, 4)
    fastgd.argkmin(X, k=2)
    np.testing.assert_array_equal(X, copies[0])
    np.testing.assert_array_equal(Y, copies[1])
    distances, indices = fastgd.argkmin(np.empty((0, 3)), Y, 2)
    assert distances.shape == indices.shape == (0, 2)
    assert fastgd.argkmin(X, Y, 2, return_distance=False).shape == (6, 2)


def test_nearest_is_the_k_means_assignment(backend, rng):
    points = rng.standard_normal((500, 6)).astype(np.float32)
    centres = points[rng.choice(500, 10, replace=False)]
    assignment = fastgd.nearest(points, centres)
    expected = cdist(points.astype(np.float64), centres.astype(np.float64),
                     "sqeuclidean").argmin(axis=1)
    np.testing.assert_array_equal(assignment, expected)
    assert assignment.shape == (500,) and assignment.dtype == np.intp


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_threads", [1, 2])
def test_nearest_on_ties_and_near_ties_across_tiles(backend, rng, dtype, n_threads):
    """k = 1 starts the scan of each tile's row from the tile's second smallest sum: on
    points of a small integer grid (exact ties everywhere), exact duplicates in a later
    tile, NaN and inf rows, near-duplicates at a large offset and a self-search, the
    nearest is the oracle's, ties to the smaller index."""
    d = 16
    X = rng.integers(-2, 3, (300, d)).astype(dtype)
    Y = rng.integers(-2, 3, (1500, d)).astype(dtype)
    Y[1200:1210] = X[:10]
    X[20] = np.nan
    Y[5] = np.inf
    Y[700] = np.nan
    check(X, Y, 1, n_threads=n_threads)
    check(X[21:], None, 1, n_threads=n_threads)
    offset = 1e4 if dtype == np.float32 else 1e8
    base = offset + rng.standard_normal(d)
    spread = 1e-3 * offset * np.finfo(dtype).eps ** 0.5
    Z = (base + spread * rng.standard_normal((700, d))).astype(dtype)
    check(Z[:100], Z[100:], 1, n_threads=n_threads)
    np.testing.assert_array_equal(fastgd.nearest(Z[:100], Z[100:], n_threads=n_threads),
                                  oracle(Z[:100], Z[100:], 1)[:, 0])


def test_errors_name_the_argument():
    X = np.zeros((4, 2))
    with pytest.raises(ValueError, match=r"k must be at most n_samples_Y = 3; got k=4"):
        fastgd.argkmin(X, np.zeros((3, 2)), 4)
    with pytest.raises(ValueError, match=r"k must be at most n_samples_X - 1 .* = 3; got k=4"):
        fastgd.argkmin(X, k=4)
    with pytest.raises(ValueError, match="k must be an int >= 1; got 0"):
        fastgd.argkmin(X, k=0)
    with pytest.raises(TypeError, match="k must be an int >= 1; got str '2'"):
        fastgd.argkmin(X, k="2")
    with pytest.raises(ValueError, match="metric must be one of 'sqeuclidean', 'euclidean', "
                                         "'cosine', 'nan_euclidean'; got 'cityblock'"):
        fastgd.argkmin(X, X, metric="cityblock")
    with pytest.raises(ValueError, match="same number of features"):
        fastgd.argkmin(X, np.zeros((3, 5)))
    with pytest.raises(TypeError, match="X"):
        fastgd.argkmin(np.zeros((3, 2), dtype=complex), X)
    with pytest.raises(TypeError, match="return_distance must be a bool; got str"):
        fastgd.argkmin(X, X, return_distance="yes")
    with pytest.raises(ValueError, match="nearest needs Y"):
        fastgd.nearest(X, None)
    with pytest.raises(ValueError, match="k must be at most n_samples_Y = 0"):
        fastgd.nearest(X, np.zeros((0, 2)))


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 12), m=st.integers(1, 12), d=st.integers(1, 4),
       grid=st.booleans(), data=st.data())
def test_property_equals_the_oracle(n, m, d, grid, data):
    """Small integer grids make many exact ties; real values make none."""
    seed = data.draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    draw = (lambda shape: rng.integers(-2, 3, shape).astype(float)) if grid else (
        lambda shape: rng.standard_normal(shape))
    X, Y = draw((n, d)), draw((m, d))
    k = data.draw(st.integers(1, m))
    check(X, Y, k)
    if n > 1:
        check(X, None, data.draw(st.integers(1, n - 1)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_clusters_far_from_the_mean_and_norms_near_overflow(backend, rng, dtype):
    """The compiled gram test's margin grows with the norms: tight clusters far from the
    common mean (every near distance cancels in the expansion and is recomputed), and
    float32 norms too large for the test (every entry then gets its value)."""
    d = 16
    centre = np.full(d, 1000.0)
    near = centre + 1e-2 * rng.standard_normal((300, d))
    far = -centre + 1e-2 * rng.standard_normal((300, d))
    Y = np.vstack([far, near]).astype(dtype)
    X = (centre + 1e-2 * rng.standard_normal((40, d))).astype(dtype)
    check(X, Y, 7)
    check(Y, None, 4)
    huge = (4e17 * rng.standard_normal((700, d))).astype(dtype)
    check(huge[:30], huge[30:], 5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("d", [1, 3, 12, 40])
def test_the_compiled_kernel_equals_its_twin(rng, dtype, d):
    """fastgd._ext._pairwise.argkmin against fastgd._numpy._pairwise.argkmin: the same
    candidates per part (exact distances within the bound, since the two compute the
    distances in their own ways), sentinels where a part has fewer rows than places,
    the row's own entry left out, NaN rows last."""
    from fastgd._ext import _pairwise as compiled

    X = rng.standard_normal((70, d)).astype(dtype)
    Y = rng.standard_normal((600, d)).astype(dtype)
    X[5] = np.nan
    Y[[7, 300]] = np.nan
    bound = neighbors._relative_error_bound(d, dtype)
    # (self_search, part_cols, kept, task_rows, n_threads): task_rows above the kernel's
    # cap takes the cap.
    for self_search, part_cols, kept, task_rows, n_threads in [
            (False, 600, 1, 1024, 1), (False, 256, 5, 1024, 2), (True, 256, 9, 7, 2),
            (False, 256, 300, 33, 1), (True, 600, 12, 1024, 1), (False, 600, 2, 16, 2),
            (True, 256, 2, 1024, 1)]:
        rows_searched = X if self_search else Y
        m = len(rows_searched)
        n_parts = -(-m // part_cols)
        results = []
        for module in (compiled, _numpy_pairwise):
            values = np.empty((n_parts, len(X), kept), dtype)
            indices = np.empty((n_parts, len(X), kept), np.intp)
            module.argkmin(X, rows_searched, self_search, d >= 10, values, indices,
                           part_cols, task_rows, n_threads)
            results.append((values, indices))
        (values, indices), (twin_values, twin_indices) = results
        sentinel = indices == np.iinfo(np.intp).max
        np.testing.assert_array_equal(sentinel, twin_indices == np.iinfo(np.intp).max)
        assert np.isnan(values[sentinel]).all()
        exact = cdist(X.astype(np.float64), rows_searched.astype(np.float64), "sqeuclidean")
        for part in range(n_parts):
            chosen = np.where(sentinel[part], 0, indices[part])
            twin_chosen = np.where(sentinel[part], 0, twin_indices[part])
            got = np.take_along_axis(exact, chosen, axis=1)
            expected = np.take_along_axis(exact, twin_chosen, axis=1)
            real = ~sentinel[part] & np.isfinite(expected)
            np.testing.assert_allclose(got[real], expected[real], rtol=3 * bound, atol=0)
            np.testing.assert_array_equal(np.isfinite(got) | sentinel[part],
                                          np.isfinite(expected) | sentinel[part])
            assert ((part * part_cols <= chosen) & (chosen < (part + 1) * part_cols)
                    | sentinel[part]).all()
            if self_search:
                assert not (indices[part] == np.arange(len(X))[:, None]).any()
        np.testing.assert_allclose(values[~sentinel], twin_values[~sentinel],
                                   rtol=3 * bound, atol=0)


@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="reads Linux's /proc")
def test_peak_memory_beyond_inputs_and_outputs_is_at_most_64_mib():
    """3 million rows searched (192 MB of float32) on two threads: the resident memory
    the call adds at its peak, beyond the inputs, stays under 64 MiB (the distances are
    never formed; the scratch is a few tiles per thread). In a fresh process."""
    child = textwrap.dedent("""
        import os, numpy as np, fastgd

        def status(field):  # this process's own counters (ru_maxrss survives exec)
            with open("/proc/self/status") as lines:
                line = next(line for line in lines if line.startswith(field + ":"))
            return int(line.split()[1]) * 1024

        rng = np.random.default_rng(0)
        Y = rng.standard_normal((3_000_000, 16), dtype=np.float32)
        X = rng.standard_normal((64, 16), dtype=np.float32)
        fastgd.argkmin(X[:2], Y[:3000], 2)
        before = status("VmRSS")
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")  # the peak (VmHWM) starts again from the resident size
        fastgd.argkmin(X, Y, 10, n_threads=2)
        print(status("VmHWM") - before)
    """)
    # From the root directory, with fastgd found where this process found it (not in a
    # source tree that the working directory would put first).
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in sys.path if p and os.path.isdir(os.path.join(p, "fastgd")))}
    result = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True,
                            timeout=600, cwd=os.sep, env=env)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) < 64 << 20, int(result.stdout)
