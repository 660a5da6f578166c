"""The NumPy twin of fastgd._ext._masked (src_c/_masked.pyx): the masked residual, loss and
gradients of W @ H."""

import math

import numpy as np

from fastgd import _codes

# ``mask`` is a uint8 array (nonzero = observed) or None (then NaN in A means missing);
# ``n_threads`` and ``n_parts`` are accepted for the common signature and ignored.


SQUARED = _codes.code_of(_codes.ENTRY_LOSSES, "squared")
HUBER = _codes.code_of(_codes.ENTRY_LOSSES, "huber")


def loss_value_and_scale(loss_code, entry_loss, total, total_weight):
    """The loss from the sum of the entry losses over entries of total weight
    ``total_weight``, and the factor that turns the gradient-factor-weighted sums into
    its gradient: the twin of src_c/losses.h's fastgd_loss_value_and_scale, operation for
    operation."""
    derivative = 2.0 if entry_loss == SQUARED else 1.0
    if loss_code == _codes.code_of(_codes.LOSSES, "sse"):
        return total, derivative
    if loss_code == _codes.code_of(_codes.LOSSES, "mse"):
        return total / total_weight, derivative / total_weight
    root = math.sqrt(total / total_weight)
    return root, (1.0 / (total_weight * root) if root > 0 else 0.0)


def entry_loss_terms(entry_loss, delta, r, weights=None):
    """The entry losses at residuals ``r`` (float64) and their gradient factors (in r's
    dtype): the twin of src_c/losses.h's fastgd_entry_loss_term, element by element."""
    with np.errstate(invalid="ignore", over="ignore"):
        if entry_loss == HUBER:
            limit = r.dtype.type(delta)
            size = np.abs(r.astype(np.float64))
            inside = size <= float(limit)
            values = np.where(inside, 0.5 * (r.astype(np.float64) ** 2),
                              float(limit) * (size - 0.5 * float(limit)))
            factors = np.where(inside, r, np.where(r < 0, -limit, limit)).astype(r.dtype)
        else:
            values = r.astype(np.float64) ** 2
            factors = r.copy()
        if weights is not None:
            values = values * weights.astype(np.float64)
            factors = (factors * weights).astype(r.dtype, copy=False)
    return values, factors


def _gradient_factors(r, entry_loss, delta, weights):
    """(sum of the entry losses, the gradient factors) at residuals r; plain squared
    residuals without weights keep the sum of squares of r and r itself."""
    if entry_loss == SQUARED and weights is None:
        return sum_of_squares(r), r
    values, factors = entry_loss_terms(entry_loss, delta, r, weights)
    return float(np.sum(values)), factors


def _observed(A, mask):
    return ~np.isnan(A) if mask is None else mask.astype(bool)


def all_finite(array):
    """True if no element of ``array`` is NaN or infinite."""
    return bool(np.isfinite(array).all())


def count_observed_rows(A, mask, counts):
    """counts[i] = the number of observed entries in row i of A."""
    counts[...] = _observed(A, mask).sum(axis=1)


def fill_plan(A, mask, indptr, indices, values):
    """The column indices and values of A's observed entries, row by row."""
    observed = _observed(A, mask)
    indices[...] = np.nonzero(observed)[1]
    values[...] = A[observed]


def _dense_residuals(A, mask, W, H):
    observed = _observed(A, mask)
    with np.errstate(invalid="ignore", over="ignore"):
        R = np.where(observed, W @ H - A, 0).astype(A.dtype, copy=False)
    return R, int(np.count_nonzero(observed))


def sum_of_squares(values):
    return float(np.dot(values.ravel().astype(np.float64), values.ravel().astype(np.float64)))


def dense_residual(A, mask, W, H, out, n_threads):
    """out = W @ H - A at observed entries, 0 elsewhere; returns the sum of squares."""
    out[...], _ = _dense_residuals(A, mask, W, H)
    return sum_of_squares(out)


def dense_loss_grad(A, mask, W, H, dW, dH, n_threads, n_parts, entry_loss=SQUARED,
                    delta=0.0, weights=None):
    """dW = G @ H.T and dH = W.T @ G for the entry losses' gradient factors G at the masked
    residual (the residual itself for squared ones without weights, like A); returns
    (sum of the entry losses, number of observed entries)."""
    R, count = _dense_residuals(A, mask, W, H)
    if weights is not None:
        weights = np.where(_observed(A, mask), weights, 0).astype(A.dtype, copy=False)
    total, G = _gradient_factors(R, entry_loss, delta, weights)
    with np.errstate(invalid="ignore", over="ignore"):
        dW[...] = G @ H.T
        dH[...] = W.T @ G
    return total, count


def _plan_rows(indptr):
    return np.repeat(np.arange(indptr.shape[0] - 1), np.diff(indptr))


def _tiled_rows(m, tile_starts):
    """The row of every entry of a plan laid out tile by tile (tile_starts, m rows)."""
    rows = np.tile(np.arange(m), (tile_starts.shape[0] - 1) // max(m, 1))
    return np.repeat(rows, np.diff(tile_starts))


def _plan_residuals(indptr, indices, values, W, HT):
    rows = _plan_rows(indptr)
    with np.errstate(invalid="ignore", over="ignore"):
        return np.einsum("ek,ek->e", W[rows], HT[indices]) - values, rows


def plan_residual(indptr, indices, values, W, HT, out, n_threads):
    """out[e] = W[i] . H[:, j] - values[e] for the plan's e-th entry (i, j)."""
    out[...], _ = _plan_residuals(indptr, indices, values, W, HT)


def plan_loss_grad(indptr, indices, values, W, H, dW, dH, n_threads, n_parts, tile_cols=0,
                   scale=1.0, tile_starts=None, entry_loss=SQUARED, delta=0.0, weights=None):
    """dW = scale * (G @ H.T) and dH = scale * (W.T @ G) for the gradient factors G of the
    plan's entry losses (its residuals for squared ones without weights; each sum
    rounded, then scaled in the gradients' dtype); returns the sum of the entry losses
    (weights: the entries', in the order of values). With
    tile_starts, indices and values hold the entries tile by tile (tile t's of row i from
    tile_starts[t * m + i] on). (n_threads, n_parts and tile_cols only arrange the
    compiled kernel's work.)"""
    HT = H.T
    m, n = indptr.shape[0] - 1, H.shape[1]
    tile_cols = n if tile_cols <= 0 or tile_cols > n else tile_cols
    if tile_starts is not None and tile_starts.shape[0] != -(-n // tile_cols) * m + 1:
        raise ValueError(
            f"tile_starts must have n_tiles * m + 1 = {-(-n // tile_cols) * m + 1} "
            f"elements; got {tile_starts.shape[0]}")
    if tile_starts is not None:
        # Back to the plan's order (by row, then column): the sums of its own layout.
        order = np.lexsort((indices, _tiled_rows(m, tile_starts)))
        indices, values = indices[order], values[order]
        weights = None if weights is None else weights[order]
    r, rows = _plan_residuals(indptr, indices, values, W, HT)
    total, r = _gradient_factors(r, entry_loss, delta, weights)
    dW[...] = 0
    dHT = np.zeros((HT.shape[0], W.shape[1]), dtype=dW.dtype)
    with np.errstate(invalid="ignore", over="ignore"):
        np.add.at(dW, rows, r[:, None] * HT[indices])
        np.add.at(dHT, indices, r[:, None] * W[rows])
    dH[...] = dHT.T
    if scale != 1:
        dW *= dW.dtype.type(scale)
        dH *= dH.dtype.type(scale)
    return total
