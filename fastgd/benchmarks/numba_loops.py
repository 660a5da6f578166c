"""The loops a user would write with numba instead of calling fastgd: the peers named
"numba" of the sqeuclidean, masked and updates cases. Each is ``@numba.njit(parallel=True)``
(without ``fastmath``, which would change NaN and rounding), compiled on first use for the
case's dtypes and run once before any timing (``warmed``)."""

import functools
import math
import types


@functools.cache
def loops():
    """The jitted loops (a namespace), or None without numba."""
    try:
        import numba
    except ImportError:
        return None

    @numba.njit(parallel=True)
    def sqeuclidean(X, Y, out):
        """out[i, j] = sum_k (X[i, k] - Y[j, k])^2, rows of X in parallel."""
        for i in numba.prange(X.shape[0]):
            for j in range(Y.shape[0]):
                total = 0.0
                for k in range(X.shape[1]):
                    difference = X[i, k] - Y[j, k]
                    total += difference * difference
                out[i, j] = total
        return out

    @numba.njit(parallel=True)
    def masked_loss_grad(indptr, indices, values, W, HT, by_column, column_rows,
                         column_entries, residuals, dW, dHT):
        """The MSE over CSR entries of W @ H and its gradients: residuals and dW by rows
        in parallel, then dH by columns in parallel (the CSC order of the same entries),
        so that no two threads add to one row of a gradient."""
        count = values.shape[0]
        scale = 2.0 / count
        total = 0.0
        for i in numba.prange(W.shape[0]):
            for q in range(W.shape[1]):
                dW[i, q] = 0.0
            for p in range(indptr[i], indptr[i + 1]):
                j = indices[p]
                dot = 0.0
                for q in range(W.shape[1]):
                    dot += W[i, q] * HT[j, q]
                residual = dot - values[p]
                residuals[p] = residual
                total += residual * residual
                for q in range(W.shape[1]):
                    dW[i, q] += scale * residual * HT[j, q]
        for j in numba.prange(HT.shape[0]):
            for q in range(HT.shape[1]):
                dHT[j, q] = 0.0
            for c in range(by_column[j], by_column[j + 1]):
                i = column_rows[c]
                residual = residuals[column_entries[c]]
                for q in range(HT.shape[1]):
                    dHT[j, q] += scale * residual * W[i, q]
        return total / count

    @numba.njit(parallel=True)
    def adagrad(p, g, G, lr, eps):
        """One Adagrad step in place, elements in parallel."""
        for i in numba.prange(p.shape[0]):
            G[i] += g[i] * g[i]
            p[i] -= lr * g[i] / (math.sqrt(G[i]) + eps)

    def use_threads(n_threads):
        """numba's threads: one, or all of them (fastgd's n_threads=-1)."""
        numba.set_num_threads(1 if n_threads == 1 else numba.config.NUMBA_NUM_THREADS)

    return types.SimpleNamespace(sqeuclidean=sqeuclidean, masked_loss_grad=masked_loss_grad,
                                 adagrad=adagrad, use_threads=use_threads)


def warmed(function):
    """Call ``function`` once (numba compiles on the first call for its argument types)
    and return it."""
    function()
    return function
