"""The NumPy twin of fastgd._ext._pairwise (src_c/_pairwise.pyx): pairwise squared
Euclidean distances."""

import numpy as np

from fastgd import _codes

# The same constants as src_c/_pairwise.pyx.
PAIRWISE_ROW_CHUNK = 256
ARGKMIN_GEMM_ROWS = 512
FINISH_SQRT, FINISH_HALF = (_codes.code_of(_codes.DISTANCE_FINISHES, name)
                            for name in ("sqrt", "half"))
CANCELLATION_RATIO = 0.5


def _sqeuclidean_term(x, y):
    diff = x - y
    return diff * diff


# The metrics' terms and finishes (the twins of src_c/metrics.h's functors): an entry is
# finish(the sum of term(x[k], y[k]) over the features k, in order).
METRICS = {"sqeuclidean": (_sqeuclidean_term, lambda total: total)}


def _sequential_sqdist(X_rows, Y_rows, metric="sqeuclidean"):
    """Row-wise sum of the metric's terms, summed over k in order (as the C loop)."""
    term, finish = METRICS[metric]
    acc = np.zeros(X_rows.shape[0])
    with np.errstate(invalid="ignore", over="ignore"):  # NaN and inf propagate, as in C
        for k in range(X_rows.shape[1]):
            acc += term(X_rows[:, k], Y_rows[:, k])
    return finish(acc)


def _nonzero_unless_equal(out_rows, X_rows, Y):
    """Where a distance rounded to 0 for rows that differ (underflow), the smallest
    subnormal instead: 0 means equal rows."""
    r, c = np.nonzero(out_rows == 0)
    differ = np.any(X_rows[r] != Y[c], axis=1)
    out_rows[r[differ], c[differ]] = np.finfo(out_rows.dtype).smallest_subnormal


def _mirror_upper_triangle(out):
    """out[j, i] = out[i, j] for j > i, and a zero diagonal, block by block."""
    n = out.shape[0]
    for i0 in range(0, n, PAIRWISE_ROW_CHUNK):
        i1 = min(i0 + PAIRWISE_ROW_CHUNK, n)
        out[i0:i1, :i0] = out[:i0, i0:i1].T
        block = np.triu(out[i0:i1, i0:i1], 1)
        out[i0:i1, i0:i1] = block + block.T


def sqeuclidean(X, Y, out, symmetric, expansion, n_threads, stream=False, finish=0):
    """Fill out[i, j] = ||X[i] - Y[j]||^2; the twin of ``_pairwise.sqeuclidean``.

    ``expansion`` selects the centred expansion with direct recomputation of the
    cancellation-prone entries; otherwise the direct sum over features. ``finish`` (a code
    of _codes.DISTANCE_FINISHES) then takes each entry's square root or half.
    ``n_threads`` and ``stream`` (how the compiled loops store) are accepted for the
    common signature and ignored.
    """
    X64 = X.astype(np.float64, copy=False)
    Y64 = Y.astype(np.float64, copy=False)
    if expansion:
        rows = X64 if symmetric else np.concatenate([X64, Y64])
        with np.errstate(over="ignore", invalid="ignore"):
            shift = rows.mean(axis=0)
        shift[~np.isfinite(shift)] = 0.0
        # Centred values rounded to the input precision, multiplied in it (as the
        # compiled sgemm/dgemm); their norms summed in float64.
        with np.errstate(over="ignore", invalid="ignore"):
            Xc = (X64 - shift).astype(X.dtype)
            Yc = (Y64 - shift).astype(Y.dtype)
            x_norms = np.square(Xc, dtype=np.float64).sum(axis=1)
            y_norms = np.square(Yc, dtype=np.float64).sum(axis=1)
    for i0 in range(0, X.shape[0], PAIRWISE_ROW_CHUNK):
        i1 = min(i0 + PAIRWISE_ROW_CHUNK, X.shape[0])
        if expansion:
            norms_sum = x_norms[i0:i1, None] + y_norms[None, :]
            with np.errstate(invalid="ignore", over="ignore"):
                dist = norms_sum + (-2.0 * (Xc[i0:i1] @ Yc.T)).astype(np.float64)
                # Kept entries exceed the floor, so never round to 0 in the output dtype.
                floor = np.finfo(np.float32).smallest_subnormal if out.dtype == np.float32 else 0
                margin = dist - np.maximum(CANCELLATION_RATIO * norms_sum, floor)
                suspect = ~((margin > 0) & np.isfinite(margin))
            r, c = np.nonzero(suspect)
            dist[r, c] = _sequential_sqdist(X64[i0 + r], Y64[c])
        else:
            term, metric_finish = METRICS["sqeuclidean"]
            dist = np.zeros((i1 - i0, Y.shape[0]))
            with np.errstate(invalid="ignore", over="ignore"):
                for k in range(X.shape[1]):
                    dist += term(X64[i0:i1, k, None], Y64[None, :, k])
            dist = metric_finish(dist)
        out[i0:i1] = dist
        _nonzero_unless_equal(out[i0:i1], X[i0:i1], Y)
    if symmetric:
        _mirror_upper_triangle(out)
    if finish == FINISH_SQRT:
        np.sqrt(out, out=out)
    elif finish == FINISH_HALF:
        out *= 0.5


# argkmin: tiles of sqeuclidean merged into every row's best candidates.

# Distances per tile of the twin's argkmin (a block of query rows x a chunk of Y), into
# one reused buffer; query rows per block, at most.
ARGKMIN_TILE_ENTRIES = 1 << 20
ARGKMIN_BLOCK_ROWS = 1024


def order_key(values):
    """Distances as argkmin's sort keys: a NaN distance counts as +inf."""
    return np.where(np.isnan(values), np.inf, values)


def smallest(keys, values, indices, count):
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
    # nonzero gives the rows in order: where each one's run starts, and each its run.
    new_row = np.diff(rows, prepend=-1) != 0
    changed = open_rows[rows[new_row]]
    position = np.cumsum(new_row) - 1
    entered = part[rows, cols]
    owner = np.concatenate([np.repeat(np.arange(changed.shape[0]), kept), position])
    all_k = np.concatenate([near_k[changed].ravel(), order_key(entered)])
    all_d = np.concatenate([near_d[changed].ravel(), entered])
    all_i = np.concatenate([near_i[changed].ravel(), cols + start])
    order = np.lexsort((all_i, all_k, owner))
    # Each changed row has at least its kept candidates: its first kept in the order.
    first = np.searchsorted(owner[order], np.arange(changed.shape[0]))
    take = order[first[:, None] + np.arange(kept)]
    near_k[changed], near_d[changed], near_i[changed] = all_k[take], all_d[take], all_i[take]


def _argkmin_part(X, Y, start, stop, self_search, expansion, values, indices):
    """argkmin against Y's rows start, ..., stop - 1: the best ``kept`` (or all of them,
    then the sentinels) into values and indices (n x kept)."""
    n, kept = values.shape
    block_rows = min(n, ARGKMIN_BLOCK_ROWS)
    chunk = max(kept, ARGKMIN_TILE_ENTRIES // block_rows)
    buffer = np.empty(block_rows * min(chunk, stop - start), dtype=values.dtype)
    for first in range(0, n, block_rows):
        size = min(n, first + block_rows) - first
        near = (np.empty((size, 0), X.dtype), np.empty((size, 0), X.dtype),
                np.empty((size, 0), np.intp))
        for begin in range(start, stop, chunk):
            end = min(stop, begin + chunk)
            tile = buffer[:size * (end - begin)].reshape(size, end - begin)
            sqeuclidean(X[first:first + size], Y[begin:end], tile, False, expansion, 1)
            own = (np.arange(max(first, begin), min(first + size, end)) if self_search
                   else np.empty(0, np.intp))
            if near[0].shape[1] < kept:
                keys = order_key(tile)
                keys[own - first, own - begin] = np.nan
                candidates = np.broadcast_to(np.arange(begin, end), tile.shape)
                near = smallest(*(np.concatenate(pair, axis=1) for pair in zip(
                    near, (keys, tile, candidates), strict=True)),
                    min(kept, near[0].shape[1] + tile.shape[1]))
            else:
                tile[own - first, own - begin] = np.inf
                _merge(near, tile, begin)
        found = near[0].shape[1]
        rows = slice(first, first + size)
        values[rows, :found], indices[rows, :found] = near[1], near[2]
        values[rows, found:], indices[rows, found:] = np.nan, np.iinfo(np.intp).max
        if self_search:
            # A row's own entry (key NaN) comes after every other: only where the part
            # has no more candidates, and it becomes a sentinel.
            own = indices[rows] == np.arange(first, first + size)[:, None]
            values[rows][own], indices[rows][own] = np.nan, np.iinfo(np.intp).max


def argkmin_task_rows(d, expansion, itemsize):
    """The compiled kernel's most query rows per task below the AVX-512 level (its work
    split, ARGKMIN_GEMM_ROWS float32 rows' bytes a task through BLAS; the twin computes
    alike with any)."""
    return ARGKMIN_GEMM_ROWS * 4 // itemsize if expansion else PAIRWISE_ROW_CHUNK


def argkmin(X, Y, self_search, expansion, values, indices, part_cols, task_rows, n_threads):
    """The twin of ``_pairwise.argkmin``: for every row of X, the ``kept`` nearest rows of
    each part of Y (part p: rows p * part_cols, ...) in the order of (distance with NaN
    as +inf, index), sentinels (NaN, max intp) where a part has fewer. ``task_rows`` and
    ``n_threads`` are accepted for the common signature and ignored."""
    for part in range(values.shape[0]):
        start = part * part_cols
        _argkmin_part(X, Y, start, min(Y.shape[0], start + part_cols), self_search,
                      expansion, values[part], indices[part])


def nan_euclidean_finish(norms, gram, count, d, out, suspects):
    """cdist's "nan_euclidean" from its expansion; the twin of
    ``_pairwise.nan_euclidean_finish`` (the same operations, so the same bits)."""
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        dist = norms - 2.0 * gram
        margin = dist - CANCELLATION_RATIO * norms
        present = count.astype(np.float64)
        kept = (present > 0) & (margin > 0) & (margin < np.inf)
        out[...] = np.where(kept, np.sqrt(dist * (d / present)), np.nan)
    flat = np.flatnonzero(~kept & (present > 0))
    suspects[:flat.size] = flat
    return flat.size
