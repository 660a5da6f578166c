"""Pure-NumPy twins of the compiled kernels.

Each function here has the signature and the semantics of the compiled kernel
of the same name in ``fastgd._ext._<family>``: it receives inputs the Python
layer has already validated, and fills ``out`` the same way. It is the runtime
fallback when the extension is missing and the oracle in every test. It is
written to be obviously right, not fast.
"""

import numpy as np

# The same constants as src_c/_pairwise.pyx.
PAIRWISE_ROW_CHUNK = 256
CANCELLATION_RATIO = 0.5


def _sequential_sqdist(X_rows, Y_rows):
    """Row-wise sum of squared differences, summed over k in order (as the C loop)."""
    acc = np.zeros(X_rows.shape[0])
    with np.errstate(invalid="ignore", over="ignore"):  # NaN and inf propagate, as in C
        for k in range(X_rows.shape[1]):
            diff = X_rows[:, k] - Y_rows[:, k]
            acc += diff * diff
    return acc


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
            dist = np.zeros((i1 - i0, Y.shape[0]))
            with np.errstate(invalid="ignore", over="ignore"):
                for k in range(X.shape[1]):
                    diff = np.subtract.outer(X64[i0:i1, k], Y64[:, k])
                    dist += diff * diff
        out[i0:i1] = dist
        _nonzero_unless_equal(out[i0:i1], X[i0:i1], Y)
    if symmetric:
        _mirror_upper_triangle(out)


# Fused optimizer updates: the twins of fastgd._ext._updates. NumPy keeps float32
# arrays in float32 when the hyperparameters are Python floats (NEP 50), so these run
# in the array's own precision, with the compiled kernel's order of operations.

EPS_OUTSIDE, EPS_INSIDE, EPS_ACCUMULATE = 0, 1, 2


def _effective_grad(grad, param, maximize, weight_decay):
    grad = -grad if maximize else grad.copy()
    if weight_decay != 0:
        grad += param.dtype.type(weight_decay) * param
    return grad


def _bounded(param, value, lower_bound):
    """param[...] = max(value, lower_bound), NaN kept."""
    if lower_bound != -np.inf:
        bound = param.dtype.type(lower_bound)
        value = np.where(value < bound, bound, value)
    param[...] = value


def adagrad_update(params, grads, accums, rate, eps, eps_mode, weight_decay, maximize,
                   lower_bound, n_threads, parallel_min_elements, counter=None):
    """Adagrad in place; the twin of ``_updates.adagrad_update``."""
    for param, grad, accum in zip(params, grads, accums, strict=True):
        t = param.dtype.type
        g = _effective_grad(grad, param, maximize, weight_decay)
        acc = accum + g * g
        if eps_mode == EPS_ACCUMULATE:
            acc = acc + t(eps)
        accum[...] = acc
        step = -t(rate) * g
        if eps_mode == EPS_OUTSIDE:
            value = param + step / (np.sqrt(acc) + t(eps))
        elif eps_mode == EPS_INSIDE:
            with np.errstate(divide="ignore", invalid="ignore"):
                value = np.where(acc > 0, param + step / np.sqrt(acc + t(eps)), param)
        else:
            value = param + step / np.sqrt(acc)
        _bounded(param, value, lower_bound)
    _count_step(counter)


def _count_step(counter):
    if counter is not None:
        counter[0] += 1


def sgd_update(params, grads, velocities, lr, momentum, dampening, nesterov, weight_decay,
               maximize, lower_bound, n_threads, parallel_min_elements, counter=None):
    """SGD in place; the twin of ``_updates.sgd_update`` (velocities None: no momentum)."""
    for k, (param, grad) in enumerate(zip(params, grads, strict=True)):
        t = param.dtype.type
        g = _effective_grad(grad, param, maximize, weight_decay)
        if velocities is not None:
            buffer = velocities[k] * t(momentum) + t(1.0 - dampening) * g
            velocities[k][...] = buffer
            g = g + t(momentum) * buffer if nesterov else buffer
        _bounded(param, param + (-t(lr)) * g, lower_bound)
    _count_step(counter)


# Masked matrix-factorisation kernels: the twins of fastgd._ext._masked. ``mask`` is a
# uint8 array (nonzero = observed) or None (then NaN in A means missing); ``n_threads``
# and ``n_parts`` are accepted for the common signature and ignored.


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


def _sum_of_squares(values):
    return float(np.dot(values.ravel().astype(np.float64), values.ravel().astype(np.float64)))


def dense_residual(A, mask, W, H, out, n_threads):
    """out = W @ H - A at observed entries, 0 elsewhere; returns the sum of squares."""
    out[...], _ = _dense_residuals(A, mask, W, H)
    return _sum_of_squares(out)


def dense_loss_grad(A, mask, W, H, dW, dH, n_threads, n_parts):
    """dW = R @ H.T and dH = W.T @ R for the masked residual R; returns (sum of r^2,
    number of observed entries)."""
    R, count = _dense_residuals(A, mask, W, H)
    with np.errstate(invalid="ignore", over="ignore"):
        dW[...] = R @ H.T
        dH[...] = W.T @ R
    return _sum_of_squares(R), count


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
                   scale=1.0, tile_starts=None):
    """dW = scale * (R @ H.T) and dH = scale * (W.T @ R) for the plan's residuals R (each
    sum rounded, then scaled in the gradients' dtype); returns the sum of r^2. With
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
    r, rows = _plan_residuals(indptr, indices, values, W, HT)
    dW[...] = 0
    dHT = np.zeros((HT.shape[0], W.shape[1]), dtype=dW.dtype)
    with np.errstate(invalid="ignore", over="ignore"):
        np.add.at(dW, rows, r[:, None] * HT[indices])
        np.add.at(dHT, indices, r[:, None] * W[rows])
    dH[...] = dHT.T
    if scale != 1:
        dW *= dW.dtype.type(scale)
        dH *= dH.dtype.type(scale)
    return _sum_of_squares(r)


# The solver loop: the twin of fastgd._ext._solvers (codes as in fastgd.factorization).
LOSS_SSE, LOSS_MSE, LOSS_RMSE = 0, 1, 2
OPTIMIZER_ADAGRAD = 0
STATUS_MAX_ITER, STATUS_CONVERGED, STATUS_NONFINITE = 0, 1, 2


def _solver_loss_and_gradients(indptr, indices, values, W, HT, grad_W, grad_HT, loss_code,
                               l2):
    """The loss at (W, HT); grad_W and grad_HT receive the gradients of its data term."""
    grad_H = np.empty(HT.shape[::-1], dtype=HT.dtype)
    sse = plan_loss_grad(indptr, indices, values, W, HT.T, grad_W, grad_H, 1, 1)
    count = indptr[-1]
    if loss_code == LOSS_SSE:
        loss, scale = sse, 2.0
    elif loss_code == LOSS_MSE:
        loss, scale = sse / count, 2.0 / count
    else:
        loss = np.sqrt(sse / count)
        scale = 1.0 / (count * loss) if loss > 0 else 0.0
    grad_W *= scale
    grad_HT[...] = grad_H.T * grad_H.dtype.type(scale)
    if l2 != 0:
        loss += 0.5 * l2 * (_sum_of_squares(W) + _sum_of_squares(HT))
    return float(loss)


def run_iterations(indptr, indices, values, W, HT, state_W, state_HT, grad_W, grad_HT,
                   history, n_steps, loss_code, l2, optimizer, lr, eps, eps_mode, momentum,
                   nesterov, lower_bound, tol):
    """Up to n_steps gradient steps in place; the twin of ``_solvers.run_iterations``."""
    params, grads, states = [W, HT], [grad_W, grad_HT], [state_W, state_HT]
    loss = _solver_loss_and_gradients(indptr, indices, values, W, HT, grad_W, grad_HT,
                                      loss_code, l2)
    history[0] = loss
    status, step = (STATUS_MAX_ITER if np.isfinite(loss) else STATUS_NONFINITE), 0
    while status == STATUS_MAX_ITER and step < n_steps:
        if optimizer == OPTIMIZER_ADAGRAD:
            adagrad_update(params, grads, states, lr, eps, eps_mode, l2, False, lower_bound,
                           1, 0)
        else:
            sgd_update(params, grads, states if momentum != 0 else None, lr, momentum, 0.0,
                       nesterov, l2, False, lower_bound, 1, 0)
        step += 1
        loss = _solver_loss_and_gradients(indptr, indices, values, W, HT, grad_W, grad_HT,
                                          loss_code, l2)
        history[step] = loss
        previous = history[step - 1]
        if not np.isfinite(loss):
            status = STATUS_NONFINITE
        elif tol >= 0 and abs(loss - previous) <= tol * abs(previous):
            status = STATUS_CONVERGED
    return step, status
