"""The k nearest rows of Y for every row of X (``argkmin``, ``nearest``), without the
n x m distance matrix.

The kernel (``argkmin`` of the pairwise family: src_c/_pairwise.pyx, twin in
fastgd/_numpy/_pairwise.py) computes sqeuclidean's tiles and reduces each, while it is in
cache, into every query row's best candidates: the ``k + 1`` smallest so far in the
exact order of (distance, index). Work is split over query rows, and over parts of Y
when there are fewer row tiles than threads; the parts' candidates are merged here. The
extra candidate tells where the k-th place is decided by less than sqeuclidean's error
bound; those rows, and rows whose own k nearest are that close to one another, are then
settled by direct differences in float64, so that the result does not depend on the
backend, the instruction-set level or the number of threads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, overload

import numpy as np

from fastgd import _threads, _validation, distances
from fastgd._numpy._pairwise import PAIRWISE_ROW_CHUNK, order_key, smallest

if TYPE_CHECKING:
    from fastgd._typing import ArrayLike, FloatArray, IndexArray, Literal, Metric

METRICS = distances.CDIST_METRICS
# The kernel's direct method below this many features, the expansion from it on (as
# distances.DIRECT_MAX_FEATURES). At the AVX2 level the expansion through BLAS tests the
# Gram entries against the rows' thresholds without forming distances, which beats the
# blocked direct sums from 16 features in float64 and at every d in float32 (whose GEMM
# runs twice as many lanes as the direct sums in double).
DIRECT_MAX_FEATURES = {"avx2": {"float32": 1, "float64": 16}}
# Distances computed at once, at most, by the search a block at a time of the metrics
# without a kernel of their own.
BLOCK_ENTRIES = 1 << 20
# With fewer query rows than tasks for every thread, the kernel's tasks shrink to share
# the rows while each keeps at least this many; below, Y is split into parts as well,
# which costs more work: every part starts its rows' candidates afresh (about k ln(m / k)
# entries offered per row and part), and the parts are merged after.
MIN_TASK_ROWS = 64


def _relative_error_bound(d, dtype):
    """sqeuclidean's bound on the relative error of one distance: ``4 (d + 2) u``."""
    return 4 * (d + 2) * float(np.finfo(dtype).eps) / 2


def _settle(X, Y, self_search, near, k, n_threads):
    """Rows whose order is decided by less than sqeuclidean's error bound, ordered again
    by direct differences in float64. ``near``: every row's (keys, values, indices) of
    the k + 1 best (or k, when Y has no more), changed in place.

    * Two of a row's k nearest within the bound of each other: those two (and any such
      run) by direct distances, and the row in order again.
    * The k-th place within the bound of the next candidate: the row's k nearest again,
      from every row of Y within the bound of the k-th distance (found by the kernel,
      with more candidates until the last is beyond it).
    """
    near_k, near_d, near_i = near
    bound = 3 * _relative_error_bound(X.shape[1], X.dtype)
    keys = near_k.astype(np.float64)
    # Distances of 0 are exact: sqeuclidean gives 0 for equal rows only.
    close = np.isfinite(keys[:, 1:]) & (keys[:, 1:] > 0) & ~(
        keys[:, 1:] > keys[:, :-1] * (1 + bound))
    boundary = np.flatnonzero(close[:, k - 1]) if near_k.shape[1] > k else np.empty(0, int)
    # Rows with two of their k nearest that close: the candidates of those pairs get
    # direct distances, and the row is sorted again (the order of the others is sure;
    # a direct distance is within the bound of the old one, so it stays among them).
    inside = np.setdiff1d(np.flatnonzero(close[:, :k - 1].any(axis=1)), boundary,
                          assume_unique=True)
    if inside.shape[0]:
        pair = close[inside, :k - 1]
        redo = np.zeros((inside.shape[0], k), bool)
        redo[:, :-1] |= pair
        redo[:, 1:] |= pair
        rows, places = np.nonzero(redo)
        values = near_d[inside, :k].astype(np.float64)
        values[rows, places] = distances.direct_pairs(X, Y, inside[rows],
                                                      near_i[inside[rows], places])
        near_k[inside, :k], near_d[inside, :k], near_i[inside, :k] = smallest(
            order_key(values), values, near_i[inside, :k], k)
    searched = Y.shape[0]
    wide = k + 8
    while boundary.shape[0]:
        # Every one of the true k nearest is within the window (the bound both ways).
        limit = keys[boundary, k - 1] * (1 + bound)
        count = min(wide + self_search, searched)
        window_k, _, window_i = _candidates(X[boundary], Y, False, count, n_threads)
        own = window_i == boundary[:, None] if self_search else np.zeros_like(window_i, bool)
        # The window is whole when a candidate beyond it (or all of Y) was seen.
        whole = (count == searched) | (np.where(own, -np.inf, window_k).max(axis=1) > limit)
        window_k = np.where(own, np.inf, window_k)
        rows, cols = np.nonzero(whole[:, None] & (window_k <= limit[:, None]))
        exact = np.full(window_k.shape, np.inf)
        exact[rows, cols] = distances.direct_pairs(X, Y, boundary[rows],
                                                   window_i[rows, cols])
        done = boundary[whole]
        near_k[done, :k], near_d[done, :k], near_i[done, :k] = smallest(
            exact[whole], exact[whole], window_i[whole], k)
        boundary = boundary[~whole]
        wide *= 4


def _candidates(X, Y, self_search, kept, n_threads):
    """(keys, values, indices) of shape (n, kept): every row's ``kept`` nearest rows of Y
    by sqeuclidean's distances, in the order of (key, index), by the kernel (its parts
    merged)."""
    n, m, d = X.shape[0], Y.shape[0], X.shape[1]
    if n * m * d < distances.PARALLEL_MIN_WORK:
        n_threads = 1
    expansion = d >= distances.direct_max_features(X.dtype, DIRECT_MAX_FEATURES)
    kernels = distances.kernels()
    n_parts = 1
    task_rows = kernels.argkmin_task_rows(d, expansion, X.dtype.itemsize)
    if -(-n // task_rows) < n_threads:  # few queries: smaller tasks, or Y in parts too
        if n >= MIN_TASK_ROWS * n_threads:
            task_rows = -(-n // n_threads)
        else:
            n_parts = min(n_threads, -(-m // PAIRWISE_ROW_CHUNK))
    # Parts of whole tiles (PAIRWISE_ROW_CHUNK is the kernel's TILE).
    part_cols = -(-m // n_parts)
    part_cols = -(-part_cols // PAIRWISE_ROW_CHUNK) * PAIRWISE_ROW_CHUNK
    n_parts = -(-m // part_cols)
    values = np.empty((n_parts, n, kept), X.dtype)
    indices = np.empty((n_parts, n, kept), np.intp)
    with _threads.single_threaded_blas():
        kernels.argkmin(X, Y, self_search, expansion, values, indices, part_cols,
                        task_rows, n_threads)
    if n_parts == 1:
        return order_key(values[0]), values[0], indices[0]
    values = values.transpose(1, 0, 2).reshape(n, n_parts * kept)
    indices = indices.transpose(1, 0, 2).reshape(n, n_parts * kept)
    return smallest(order_key(values), values, indices, kept)


@overload
def argkmin(X: ArrayLike, Y: ArrayLike | None = ..., k: int = ..., *,
            metric: Metric = ..., return_distance: Literal[True] = ...,
            n_threads: int | None = ...) -> tuple[FloatArray, IndexArray]: ...
@overload
def argkmin(X: ArrayLike, Y: ArrayLike | None = ..., k: int = ..., *,
            metric: Metric = ..., return_distance: Literal[False],
            n_threads: int | None = ...) -> IndexArray: ...
def argkmin(X: ArrayLike, Y: ArrayLike | None = None, k: int = 1, *,
            metric: Metric = "sqeuclidean", return_distance: bool = True,
            n_threads: int | None = None) -> tuple[FloatArray, IndexArray] | IndexArray:
    """The k nearest rows of Y for every row of X, without the n x m distance matrix.

    Parameters
    ----------
    X : array_like of shape (n_samples_X, n_features)
        The query rows.
    Y : array_like of shape (n_samples_Y, n_features), optional
        The rows searched. None: X against itself, each row left out of its own list.
    k : int, default 1
        How many neighbours; at most the number of rows searched (``n_samples_X - 1``
        with ``Y=None``).
    metric : {"sqeuclidean", "euclidean", "cosine", "nan_euclidean"}
        The distance, as :func:`fastgd.cdist` defines it: "euclidean" orders as
        "sqeuclidean" and returns the square roots; "cosine" searches the unit rows (a
        zero row's distances are NaN, and it comes last); "nan_euclidean" treats NaN
        coordinates as missing (computed in blocks of rows by ``cdist``, without the
        settling below).
    return_distance : bool, default True
        Return the distances with the indices.
    n_threads : int, optional
        Threads of the distance tiles (as in :func:`fastgd.sqeuclidean`).

    Returns
    -------
    distances : ndarray of shape (n_samples_X, k)
        Sorted, in the metric's distances (float32 for float32 inputs); only with
        ``return_distance``.
    indices : ndarray of shape (n_samples_X, k), intp
        The rows of Y, nearest first; equal distances in the order of their index.

    Raises
    ------
    TypeError
        A non-int k, or inputs of a non-real dtype.
    ValueError
        k below 1 or above the number of rows searched, an unknown metric, or inputs as
        :func:`fastgd.sqeuclidean` refuses them.

    Notes
    -----
    The distances are sqeuclidean's, within ``4 (d + 2) u D`` of the exact ones (the
    other metrics keep cdist's bounds). Where
    the k-th nearest and the next candidate are closer than that bound, the row's
    candidates near the k-th distance are compared by direct differences in float64, so
    that which rows make the k nearest does not depend on rounding; so are a row's k
    nearest when two of them are that close (their distances are then the direct ones).
    A NaN distance (a row with NaN) counts as +inf: such neighbours come last, in the
    order of their index. The compiled kernel reduces each tile of distances (256 x 256)
    into every row's candidates while it is in cache: memory beyond the inputs and
    outputs is O(n k) plus a few tiles per thread, whatever n and m.

    Examples
    --------
    >>> import numpy as np
    >>> import fastgd
    >>> X = np.array([[0.0, 0.0], [1.0, 0.0], [5.0, 5.0], [0.0, 2.0]])
    >>> distances, indices = fastgd.argkmin(X, k=2)   # X against itself, self left out
    >>> indices
    array([[1, 3],
           [0, 3],
           [3, 1],
           [0, 1]])
    >>> distances[0]
    array([1., 4.])
    """
    X, Y, self_search = distances.check_point_sets(X, Y)
    distances.check_metric(metric, METRICS)
    k = _validation.check_int(k, "k", 1)
    searched = Y.shape[0] - 1 if self_search else Y.shape[0]
    if k > searched:
        what = "n_samples_X - 1 (Y=None leaves each row out)" if self_search else "n_samples_Y"
        raise ValueError(f"k must be at most {what} = {searched}; got k={k}")
    return_distance = _validation.check_flag(return_distance, "return_distance")
    n_threads = _threads.resolve_n_threads(n_threads)
    dtype = _validation.result_dtype(X, Y)
    X = _validation.as_contiguous(X, dtype)
    Y = X if self_search else _validation.as_contiguous(Y, dtype)
    n = X.shape[0]
    best_d = np.empty((n, k), dtype=dtype)
    best_i = np.empty((n, k), dtype=np.intp)
    if n and metric == "nan_euclidean":
        _search_blocks(X, Y, self_search, k, metric, best_d, best_i)
    elif n:
        if metric == "cosine":
            X = distances.unit_rows(X)
            Y = X if self_search else distances.unit_rows(Y)
        _search(X, Y, self_search, k, n_threads, best_d, best_i)
        if metric == "euclidean":
            np.sqrt(best_d, out=best_d)
        elif metric == "cosine":
            best_d *= 0.5
    return (best_d, best_i) if return_distance else best_i


def _search_blocks(X, Y, self_search, k, metric, best_d, best_i):
    """The k nearest by ``cdist(metric)`` a block of rows at a time (about
    BLOCK_ENTRIES distances each), ties by index, each row's own entry after every
    other when X searches itself."""
    n, m = X.shape[0], Y.shape[0]
    step = max(1, BLOCK_ENTRIES // max(m, 1))
    for start in range(0, n, step):
        block = np.arange(start, min(n, start + step))
        values = distances.cdist(X[block], Y, metric)
        keys = order_key(values)
        if self_search:
            keys[np.arange(block.shape[0]), block] = np.nan
        chosen = smallest(keys, values, np.broadcast_to(np.arange(m), values.shape), k)
        best_d[block], best_i[block] = chosen[1], chosen[2]


def _search(X, Y, self_search, k, n_threads, best_d, best_i):
    """argkmin's candidates and their settling: the k nearest into best_d and best_i."""
    kept = min(k + 1, Y.shape[0] - self_search)  # the k nearest and the next, if any
    near = _candidates(X, Y, self_search, kept, n_threads)
    _settle(X, Y, self_search, near, k, n_threads)
    best_d[:] = near[1][:, :k]
    best_i[:] = near[2][:, :k]


def nearest(X: ArrayLike, Y: ArrayLike, *, n_threads: int | None = None) -> IndexArray:
    """For every row of X, the index of its nearest row of Y (the k-means assignment).

    ``argkmin(X, Y, k=1, return_distance=False)[:, 0]``: equal distances go to the
    smaller index.

    Parameters
    ----------
    X : array_like of shape (n_samples_X, n_features)
    Y : array_like of shape (n_samples_Y, n_features)
        At least one row.
    n_threads : int, optional

    Returns
    -------
    ndarray of shape (n_samples_X,), intp

    Examples
    --------
    >>> import numpy as np
    >>> import fastgd
    >>> points = np.array([[0.0, 0.1], [4.9, 5.0], [0.2, 0.0]])
    >>> centres = np.array([[0.0, 0.0], [5.0, 5.0]])
    >>> fastgd.nearest(points, centres)
    array([0, 1, 0])
    """
    if Y is None:
        raise ValueError("nearest needs Y (the rows searched); for X against itself use "
                         "argkmin(X, k=1)")
    indices = argkmin(X, Y, k=1, return_distance=False, n_threads=n_threads)
    return indices[:, 0]
