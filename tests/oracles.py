"""Independent references for the tests (never the code under test)."""

import numpy as np

LONGDOUBLE_EPS = float(np.finfo(np.longdouble).eps)


def exact_sqeuclidean(X, Y):
    """||X[i] - Y[j]||^2 in long double (80-bit where the platform has it)."""
    X = np.asarray(X, dtype=np.longdouble)
    Y = np.asarray(Y, dtype=np.longdouble)
    acc = np.zeros((X.shape[0], Y.shape[0]), dtype=np.longdouble)
    for k in range(X.shape[1]):
        diff = np.subtract.outer(X[:, k], Y[:, k])
        acc += diff * diff
    return acc


def sqeuclidean_error_bound(exact, d, dtype):
    """The promise: within 4 (d + 2) u D, u the unit roundoff of the output dtype,
    plus (d + 2) of its smallest subnormals where the result underflows, plus what
    the long-double oracle itself may be off by."""
    finfo = np.finfo(dtype)
    u = finfo.eps / 2
    oracle = 2 * (d + 2) * LONGDOUBLE_EPS
    relative = (4 * (d + 2) * u + oracle) * np.abs(exact.astype(np.float64))
    return relative + (d + 2) * float(finfo.smallest_subnormal)


def masked_loss_grad_exact(A, observed_mask, W, H, loss, l2):
    """The masked loss and its gradients in long double, from the definitions."""
    W = np.asarray(W, dtype=np.longdouble)
    H = np.asarray(H, dtype=np.longdouble)
    values = np.where(observed_mask, np.asarray(A, dtype=np.float64), 0).astype(np.longdouble)
    R = np.where(observed_mask, W @ H - values, 0)
    sse = np.sum(R * R)
    count = int(np.count_nonzero(observed_mask))
    if loss == "sse":
        value, scale = sse, 2
    elif loss == "mse":
        value, scale = sse / count, np.longdouble(2) / count
    else:
        value = np.sqrt(sse / count)
        scale = 1 / (count * value) if value > 0 else 0
    value = value + l2 / 2 * (np.sum(W * W) + np.sum(H * H))
    return float(value), scale * (R @ H.T) + l2 * W, scale * (W.T @ R) + l2 * H
