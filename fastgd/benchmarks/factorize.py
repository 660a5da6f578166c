"""The factorisation cases: the two tutorials end to end (fastgd.factorize against the
tutorials' own autograd loops and the same loop in plain NumPy), and one full-batch
Adagrad iteration of a large ratings matrix against the two kernel calls it is made
of (masked_loss_grad + adagrad_update): the solver's own overhead."""

import numpy as np

import fastgd
from fastgd import demo

KERNEL = "factorize"

# The large case times this many iterations: factorize end to end (its setup and the loss
# at the last point included) against as many pairs of kernel calls.
LARGE_ITERATIONS = 10

CASES = {
    "tutorial projected GD 4x3 k=2, 10000 steps": ("projected", 10000),
    "tutorial Adagrad 4x3 k=2, 2000 steps": ("adagrad", 2000),
    "tutorial projected GD 4x3 k=2, 1000 steps": ("projected", 1000),
    "tutorial Adagrad 4x3 k=2, 200 steps": ("adagrad", 200),
    "20000x5000, 1e6 observed, k=32: 10 Adagrad iterations": ("large", LARGE_ITERATIONS),
}
QUICK_CASES = ["tutorial projected GD 4x3 k=2, 1000 steps",
               "tutorial Adagrad 4x3 k=2, 200 steps"]
OURS = ["fastgd.factorize"]
PEERS = ["autograd tutorial", "numpy loop", "masked_loss_grad + adagrad_update"]


def applies(case, peer):
    """The tutorials have the autograd and NumPy loops as peers; the large case has the
    kernel calls."""
    large = CASES[case][0] == "large"
    return large == (peer == "masked_loss_grad + adagrad_update")


def threaded(case):
    """Whether fastgd's call starts threads with ``n_threads=-1``: the tutorials' loops,
    far below factorize's bound for its compiled loop, run on one thread."""
    return CASES[case][0] == "large"


def autograd_projected_gd(A, W, H, lr, n_steps):
    """The projected-gradient tutorial's loop: autograd's gradient of the RMSE over the
    observed entries, a step, and W, H clamped at 0. Returns (W, H, final cost)."""
    import autograd.numpy as anp
    from autograd import grad

    mask = ~np.isnan(A)

    def cost(W, H):
        pred = anp.dot(W, H)
        return anp.sqrt(((pred - A)[mask].flatten() ** 2).mean(axis=None))

    gradients = grad(lambda params: cost(*params))
    W, H = W.copy(), H.copy()
    for _ in range(n_steps):
        del_W, del_H = gradients((W, H))
        W = W - del_W * lr
        H = H - del_H * lr
        W[W < 0] = 0
        H[H < 0] = 0
    return W, H, cost(W, H)


def autograd_adagrad(A, W, H, lr, eps, n_steps):
    """The Adagrad tutorial's loop, with its record of parameters, gradients, learning
    rates and costs at every step. Returns (W, H, final cost)."""
    import autograd.numpy as anp
    from autograd import grad

    mask = ~np.isnan(A)

    def cost(param_list):
        W, H = param_list
        pred = anp.dot(W, H)
        return anp.sqrt(((pred - A)[mask].flatten() ** 2).mean(axis=None))

    grad_cost = grad(cost)
    params = [W.copy(), H.copy()]
    param_array, grad_array = [params], []
    lr_array, cost_array = [[lr * np.ones_like(p) for p in params]], [cost(params)]
    sum_squares = [np.zeros_like(p) for p in params]
    for _ in range(n_steps):
        gradients = grad_cost(params)
        sum_squares = [eps + s + np.square(g) for s, g in zip(sum_squares, gradients,
                                                              strict=True)]
        lrs = [np.divide(lr, np.sqrt(s)) for s in sum_squares]
        params = [p - rate * g for p, rate, g in zip(params, lrs, gradients, strict=True)]
        param_array.append(params)
        lr_array.append(lrs)
        grad_array.append(gradients)
        cost_array.append(cost(params))
    return params[0], params[1], cost_array[-1]


def numpy_loop(A, W, H, n_steps, *, optimizer, lr, eps=1e-8, nonneg=False, **_):
    """The same iterations as a hand-written NumPy loop (gradient written out)."""
    mask = ~np.isnan(A)
    data = np.where(mask, A, 0.0)
    count = mask.sum()
    W, H = W.copy(), H.copy()
    GW, GH = np.zeros_like(W), np.zeros_like(H)
    for _ in range(n_steps):
        R = np.where(mask, W @ H - data, 0.0)
        rmse = np.sqrt(np.sum(R * R) / count)
        scale = 1.0 / (count * rmse)
        dW, dH = scale * (R @ H.T), scale * (W.T @ R)
        if optimizer == "adagrad":
            GW += dW * dW + eps
            GH += dH * dH + eps
            W, H = W - lr / np.sqrt(GW) * dW, H - lr / np.sqrt(GH) * dH
        else:
            W, H = W - lr * dW, H - lr * dH
        if nonneg:
            np.maximum(W, 0, out=W)
            np.maximum(H, 0, out=H)
    return W, H


def large_problem(seed=0, shape=(20000, 5000), nnz=1_000_000, rank=32):
    """A plan of nnz observed entries at distinct random positions, and W0, H0."""
    rng = np.random.default_rng(seed)
    m, n = shape
    # Distinct positions without materialising all m n of them: draw a few more, keep
    # the distinct ones, and take nnz of those in random order.
    flat = rng.permutation(np.unique(rng.integers(0, m * n, size=nnz + nnz // 50)))[:nnz]
    rows, cols = np.divmod(flat, n)
    values = rng.random(nnz) * 4 + 1
    plan = fastgd.observed((rows, cols, values, shape))
    W0 = rng.random((m, rank)) * 0.3
    H0 = rng.random((rank, n)) * 0.3
    return plan, W0, H0


def peers(case, n_threads):
    """name -> zero-argument callable running the case once and returning its result
    (factorize's result; the loops' final W and H); missing peers left out."""
    kind, n_steps = CASES[case]
    if kind == "large":
        return _large_peers(n_threads)
    A = np.array(demo.TUTORIAL_MATRIX)
    if kind == "projected":
        settings = {**demo.PROJECTED_GD, "n_iter": n_steps}
        W0, H0 = demo.projected_gd_start()
    else:
        settings = {**demo.ADAGRAD, "n_iter": n_steps}
        W0, H0 = demo.adagrad_start()
    result = {
        "fastgd.factorize": lambda: fastgd.factorize(A, demo.RANK, init=(W0, H0),
                                                     n_threads=n_threads, **settings),
        "numpy loop": lambda: numpy_loop(A, W0, H0, n_steps, **settings),
    }
    try:
        import autograd  # noqa: F401
    except ImportError:
        return result
    if kind == "projected":
        result["autograd tutorial"] = lambda: autograd_projected_gd(A, W0, H0,
                                                                    settings["lr"], n_steps)
    else:
        result["autograd tutorial"] = lambda: autograd_adagrad(A, W0, H0, settings["lr"],
                                                               settings["eps"], n_steps)
    return result


def _large_peers(n_threads):
    plan, W0, H0 = large_problem()
    settings = {"lr": 0.05, "eps": 1e-8}

    def ours():
        return fastgd.factorize(plan, W0.shape[1], init=(W0, H0), optimizer="adagrad",
                                n_iter=LARGE_ITERATIONS, loss="mse", n_threads=n_threads,
                                **settings)

    W, H = W0.copy(), H0.copy()
    accums = [np.zeros_like(W), np.zeros_like(H)]

    # Each call goes on from where the last one left W, H and their sums of squares: the
    # same work per call as factorize's (which starts from W0, H0 every time).
    def kernel_calls():
        for _ in range(LARGE_ITERATIONS):
            _, dW, dH = fastgd.masked_loss_grad(plan, W, H, loss="mse", n_threads=n_threads)
            fastgd.adagrad_update([W, H], [dW, dH], accums, n_threads=n_threads, **settings)
        return W, H

    return {"fastgd.factorize": ours, "masked_loss_grad + adagrad_update": kernel_calls}
