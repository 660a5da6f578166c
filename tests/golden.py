"""The inputs and calls whose results tests/data/golden.npz holds, saved from the code before
the kernels were reorganised by family (issue 29): tests/test_golden.py compares today's
results with them. Regenerate only on purpose: ``python tests/golden.py`` (it overwrites the
file) after a change that is meant to change results, and say so in the commit.

BITWISE results are promised to be the same bits on every CPU, SIMD level and thread count
(the updates, the masked kernels on the plan path, the direct distances, factorize's
compiled loop); the others call BLAS, whose last bits depend on the CPU's BLAS kernels, and
are compared to a tight tolerance.
"""

import numpy as np

import fastgd


def _masked_problem(rng, m, n, k, density, dtype):
    A = rng.standard_normal((m, n)).astype(dtype)
    A[rng.random((m, n)) >= density] = np.nan
    W = rng.standard_normal((m, k)).astype(dtype)
    H = rng.standard_normal((k, n)).astype(dtype)
    return A, W, H


def cases():
    """{name: (bitwise, function returning an array or a tuple of arrays)}."""
    rng = np.random.default_rng(20261207)
    found = {}
    for dtype in (np.float32, np.float64):
        tag = np.dtype(dtype).name
        X = (rng.standard_normal((37, 5)) * 10 + 1e3).astype(dtype)
        Y = (rng.standard_normal((29, 5)) * 10 + 1e3).astype(dtype)
        found[f"sqeuclidean direct {tag}"] = (
            True, lambda X=X, Y=Y: fastgd.sqeuclidean(X, Y, method="direct", n_threads=1))
        found[f"sqeuclidean direct symmetric {tag}"] = (
            True, lambda X=X: fastgd.sqeuclidean(X, method="direct", n_threads=2))
        X64 = rng.standard_normal((40, 70)).astype(dtype)
        found[f"sqeuclidean expansion {tag}"] = (
            False, lambda X=X64: fastgd.sqeuclidean(X, X[:25] + 0.5, method="expansion"))

        A, W, H = _masked_problem(rng, 30, 23, 4, 0.4, dtype)
        plan = fastgd.observed(A)
        for loss in ("sse", "mse", "rmse"):
            found[f"masked_loss_grad plan {loss} {tag}"] = (
                True, lambda plan=plan, W=W, H=H, loss=loss: _floats(
                    fastgd.masked_loss_grad(plan, W, H, loss=loss, l2=0.01, n_threads=2,
                                            deterministic=True)))
            found[f"masked_loss_grad dense {loss} {tag}"] = (
                False, lambda A=A, W=W, H=H, loss=loss: _floats(
                    fastgd.masked_loss_grad(A, W, H, loss=loss, l2=0.01, method="dense")))
        found[f"masked_residual plan {tag}"] = (
            True, lambda plan=plan, W=W, H=H: fastgd.masked_residual(plan, W, H))
        found[f"masked_residual dense {tag}"] = (
            False, lambda A=A, W=W, H=H: fastgd.masked_residual(A, W, H))
        big = _masked_problem(rng, 200, 150, 16, 0.05, dtype)
        found[f"masked_loss_grad large plan {tag}"] = (
            True, lambda big=big: _floats(fastgd.masked_loss_grad(
                fastgd.observed(big[0]), big[1], big[2], loss="mse", deterministic=True)))

        p0 = rng.standard_normal(1000).astype(dtype)
        grads = [rng.standard_normal(1000).astype(dtype) for _ in range(3)]
        for mode in ("outside", "inside", "accumulate"):
            found[f"adagrad {mode} {tag}"] = (
                True, lambda p0=p0, grads=grads, mode=mode: _adagrad(p0, grads, mode))
        found[f"sgd nesterov {tag}"] = (True, lambda p0=p0, grads=grads: _sgd(p0, grads))

        T, W0, H0 = _masked_problem(rng, 12, 9, 3, 0.6, dtype)
        for optimizer, settings in (("adagrad", {"lr": 0.05}),
                                    ("gd", {"lr": 0.01, "momentum": 0.9, "nonneg": True})):
            found[f"factorize compiled loop {optimizer} {tag}"] = (
                True, lambda T=T, W0=W0, H0=H0, optimizer=optimizer, settings=settings:
                _factorize(T, W0, H0, optimizer, settings))
    found["minimize adagrad rosen"] = (True, _minimize)
    return found


def _floats(result):
    loss, dW, dH = result
    return np.array([loss]), dW, dH


def _adagrad(p0, grads, mode):
    p, accum = p0.copy(), np.zeros_like(p0)
    for step, g in enumerate(grads, start=1):
        fastgd.adagrad_update(p, g, accum, lr=0.1, eps_mode=mode, step=step, lr_decay=0.01,
                              weight_decay=0.001)
    return p, accum


def _sgd(p0, grads):
    p, velocity = p0.copy(), np.zeros_like(p0)
    for g in grads:
        fastgd.sgd_update(p, g, velocity, lr=0.1, momentum=0.9, nesterov=True,
                          weight_decay=0.01, lower_bound=-1.0)
    return p, velocity


def _factorize(A, W0, H0, optimizer, settings):
    result = fastgd.factorize(A, W0.shape[1], init=(W0, H0), optimizer=optimizer,
                              n_iter=50, loss="mse", l2=0.001, **settings)
    return result.W, result.H, result.loss_history


def _minimize():
    import scipy.optimize

    res = fastgd.minimize(scipy.optimize.rosen, np.array([-1.2, 1.0]),
                          jac=scipy.optimize.rosen_der, lr=0.5, maxiter=200, tol=0)
    return res.x, np.array([res.fun])


def results():
    """{key: array}, one key per array of each case's result."""
    saved = {}
    for name, (_, function) in cases().items():
        value = function()
        for i, array in enumerate(value if isinstance(value, tuple) else (value,)):
            saved[f"{name} #{i}"] = np.asarray(array)
    return saved


if __name__ == "__main__":
    from pathlib import Path

    path = Path(__file__).parent / "data" / "golden.npz"
    np.savez_compressed(path, **results())
    print(f"saved {path}")
