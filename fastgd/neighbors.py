"""The k nearest rows of Y for every row of X (``argkmin``, ``nearest``), without the
n x m distance matrix.

Distances come from :func:`fastgd.sqeuclidean` a tile at a time (a block of query rows
against a chunk of Y's rows, into one reused buffer), and each tile is merged into every
query row's best candidates: the ``k + 1`` smallest so far, in the exact order of
(distance, index). The extra candidate tells where the k-th place is decided by less than
sqeuclidean's error bound; those rows alone are settled by direct differences in float64.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, overload

import numpy as np

from fastgd import _threads, _validation, distances

if TYPE_CHECKING:
    from fastgd._typing import ArrayLike, FloatArray, IndexArray, Literal, Metric

METRICS = ("sqeuclidean",)
# Distances per tile (a block of query rows x a chunk of Y): the buffer is reused tile
# after tile, and each tile is one sqeuclidean call.
TILE_ENTRIES = 1 << 20
# Query rows per block, at most.
BLOCK_ROWS = 1024


def _relative_error_bound(d, dtype):
    """sqeuclidean's bound on the relative error of one distance: ``4 (d + 2) u``."""
    return 4 * (d + 2) * float(np.finfo(dtype).eps) / 2


def _order_key(values):
    """Distances as sort keys: a NaN distance counts as +inf."""
    return np.where(np.isnan(values), np.inf, values)


def _smallest(keys, values, indices, count):
    """Per row, the ``count`` candidates of smallest (key, index), in that order: keys,
    values and indices of shape (rows, candidates) -> the same three of (rows, count). A
    NaN key (a row's own entry when X searches itself) comes after every other."""
    if count < keys.shape[1]:
        chosen = np.argpartition(keys, count - 1, axis=1)[:, :count]
        kth = np.take_along_axis(keys, chosen, axis=1).max(axis=1)
        # argpartition splits ties at the boundary arbitrarily: a row with more candidates
        # at the count-th key than places is chosen again, by index.
        tied = np.flatnonzero(np.count_nonzero(keys <= kth[:, None], axis=1) > count)
        if tied.shape[0]:
            chosen[tied] = np.lexsort((indices[tied], keys[tied]), axis=1)[:, :count]
        keys, values, indices = (np.take_along_axis(a, chosen, axis=1)
                                 for a in (keys, values, indices))
    order = np.lexsort((indices, keys), axis=1)
    return tuple(np.take_along_axis(a, order, axis=1) for a in (keys, values, indices))


def _direct(X, Y, rows, cols):
    """Squared distances of the pairs (X[rows[p]], Y[cols[p]]) by direct differences in
    float64, about TILE_ENTRIES differences at a time."""
    result = np.empty(rows.shape[0])
    step = max(1, TILE_ENTRIES // max(X.shape[1], 1))
    for start in range(0, rows.shape[0], step):
        pairs = slice(start, start + step)
        difference = X[rows[pairs]].astype(np.float64) - Y[cols[pairs]].astype(np.float64)
        result[pairs] = np.einsum("pd,pd->p", difference, difference)
    return result


def _settle(X, Y, first, self_search, near, k, n_threads):
    """Query rows first, first + 1, ... whose k-th place is within sqeuclidean's error
    bound of the next candidate: their k nearest again, from every candidate within the
    bound of the k-th distance, by direct differences in float64. ``near``: their
    (keys, values, indices) of the k + 1 best, changed in place."""
    near_k, near_d, near_i = near
    bound = _relative_error_bound(X.shape[1], X.dtype)
    kth = near_k[:, k - 1].astype(np.float64)
    limit = kth * (1 + 3 * bound)
    # A k-th distance of 0 is exact: sqeuclidean gives 0 for equal rows only.
    rows = np.flatnonzero(np.isfinite(kth) & (kth > 0) & ~(near_k[:, k] > limit))
    m = Y.shape[0]
    step = max(1, TILE_ENTRIES // m)
    for start in range(0, rows.shape[0], step):
        block = rows[start:start + step]
        tile = distances.sqeuclidean(X[first + block], Y, n_threads=n_threads)
        if self_search:
            tile[np.arange(block.shape[0]), first + block] = np.inf
        # Every one of the true k nearest is within this window (the bound both ways).
        pair_rows, pair_cols = np.nonzero(tile <= limit[block, None])
        exact = np.full(tile.shape, np.inf)
        exact[pair_rows, pair_cols] = _direct(X, Y, first + block[pair_rows], pair_cols)
        keys, values, indices = _smallest(exact, exact, np.broadcast_to(np.arange(m),
                                                                        exact.shape), k)
        near_k[block, :k], near_d[block, :k], near_i[block, :k] = keys, values, indices


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
    metric : {"sqeuclidean"}
        The distance.
    return_distance : bool, default True
        Return the distances with the indices.
    n_threads : int, optional
        Threads of the distance tiles (as in :func:`fastgd.sqeuclidean`).

    Returns
    -------
    distances : ndarray of shape (n_samples_X, k)
        Sorted, in sqeuclidean's dtype (float32 for float32 inputs); only with
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
    The distances are sqeuclidean's, within ``4 (d + 2) u D`` of the exact ones. Where
    the k-th nearest and the next candidate are closer than that bound, the row's
    candidates near the k-th distance are compared by direct differences in float64, so
    that which rows make the k nearest does not depend on rounding. A NaN distance (a
    row with NaN) counts as +inf: such neighbours come last, in the order of their index.
    Distances are computed a tile of about ``TILE_ENTRIES`` at a time into one reused
    buffer, so memory stays at O(n k) plus that tile.

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
    if not isinstance(metric, str) or metric not in METRICS:
        raise ValueError(f"metric must be one of {', '.join(map(repr, METRICS))}; "
                         f"got {metric!r}")
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
    if n:
        _search(X, Y, self_search, k, n_threads, best_d, best_i)
    return (best_d, best_i) if return_distance else best_i


def _search(X, Y, self_search, k, n_threads, best_d, best_i):
    """argkmin's tiles, merges and settling: the k nearest into best_d and best_i."""
    n, m = X.shape[0], Y.shape[0]
    kept = min(k + 1, m - self_search)  # the k nearest and, where there is one, the next
    block_rows = min(n, BLOCK_ROWS)
    chunk = max(kept, TILE_ENTRIES // block_rows)
    buffer = np.empty(block_rows * min(chunk, m), dtype=X.dtype)
    for first in range(0, n, block_rows):
        size = min(n, first + block_rows) - first
        near = (np.empty((size, 0), X.dtype), np.empty((size, 0), X.dtype),
                np.empty((size, 0), np.intp))
        for start in range(0, m, chunk):
            stop = min(m, start + chunk)
            tile = buffer[:size * (stop - start)].reshape(size, stop - start)
            distances.sqeuclidean(X[first:first + size], Y[start:stop], out=tile,
                                  n_threads=n_threads)
            own = (np.arange(max(first, start), min(first + size, stop)) if self_search
                   else np.empty(0, np.intp))
            if near[0].shape[1] < kept:
                keys = _order_key(tile)
                keys[own - first, own - start] = np.nan
                candidates = np.broadcast_to(np.arange(start, stop), tile.shape)
                near = _smallest(*(np.concatenate(pair, axis=1) for pair in zip(
                    near, (keys, tile, candidates), strict=True)),
                    min(kept, near[0].shape[1] + tile.shape[1]))
            else:
                tile[own - first, own - start] = np.inf
                _merge(near, tile, start)
        if kept > k:
            _settle(X, Y, first, self_search, near, k, n_threads)
        best_d[first:first + size] = near[1][:, :k]
        best_i[first:first + size] = near[2][:, :k]


def _merge(near, values, start):
    """Merge a tile (the distances of columns start, start + 1, ...; a row's own entry
    +inf when X searches itself) into every row's best candidates ``near`` (keys, values,
    indices, full and in order), in place. A candidate enters only below its row's last
    key (an equal key has a larger index), so after the first tiles few do, and only
    their rows are sorted again."""
    near_k, near_d, near_i = near
    kept = near_k.shape[1]
    last = near_k[:, -1]
    # A row searching itself whose last candidate is still its own entry (key NaN, from
    # an earlier tile): anything may enter.
    holds_own = np.isnan(last)
    # fmin skips NaN distances, which never enter below a last key (their key is +inf).
    lowest = np.fmin.reduce(values, axis=1)
    open_rows = np.flatnonzero((lowest < last) | holds_own)
    if open_rows.shape[0] == 0:
        return
    if 2 * open_rows.shape[0] < values.shape[0]:
        part, last, holds_own = values[open_rows], last[open_rows], holds_own[open_rows]
    else:  # most rows: the whole tile, without a copy
        part, open_rows = values, np.arange(values.shape[0])
    enter = part < last[:, None]
    if holds_own.any():
        enter[holds_own] = True
    rows, cols = np.nonzero(enter)
    if rows.shape[0] == 0:
        return
    # nonzero gives the rows in order: their distinct values, and each one's position.
    starts = np.flatnonzero(np.diff(rows, prepend=-1))
    changed = open_rows[rows[starts]]
    position = np.cumsum(np.diff(rows, prepend=-1) != 0) - 1
    entered = part[rows, cols]
    owner = np.concatenate([np.repeat(np.arange(changed.shape[0]), kept), position])
    all_k = np.concatenate([near_k[changed].ravel(), _order_key(entered)])
    all_d = np.concatenate([near_d[changed].ravel(), entered])
    all_i = np.concatenate([near_i[changed].ravel(), cols + start])
    order = np.lexsort((all_i, all_k, owner))
    # Each changed row has at least its kept candidates: its first kept in the order.
    first = np.searchsorted(owner[order], np.arange(changed.shape[0]))
    take = order[first[:, None] + np.arange(kept)]
    near_k[changed], near_d[changed], near_i[changed] = all_k[take], all_d[take], all_i[take]


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
