"""The NumPy twin of fastgd._ext._pairwise (src_c/_pairwise.pyx): pairwise squared
Euclidean distances."""

import numpy as np

# The same constants as src_c/_pairwise.pyx.
PAIRWISE_ROW_CHUNK = 256
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


def sqeuclidean(X, Y, out, symmetric, expansion, n_threads, stream=False):
    """Fill out[i, j] = ||X[i] - Y[j]||^2; the twin of ``_pairwise.sqeuclidean``.

    ``expansion`` selects the centred expansion with direct recomputation of the
    cancellation-prone entries; otherwise the direct sum over features.
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
            term, finish = METRICS["sqeuclidean"]
            dist = np.zeros((i1 - i0, Y.shape[0]))
            with np.errstate(invalid="ignore", over="ignore"):
                for k in range(X.shape[1]):
                    dist += term(X64[i0:i1, k, None], Y64[None, :, k])
            dist = finish(dist)
        out[i0:i1] = dist
        _nonzero_unless_equal(out[i0:i1], X[i0:i1], Y)
    if symmetric:
        _mirror_upper_triangle(out)
