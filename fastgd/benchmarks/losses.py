"""The masked losses beyond the squared one: Huber's loss and entry weights on the plan
path, next to the squared call on the same plan (the architecture issue's bound: a Huber
or weighted call at most 1.15x the squared call's time, so its "fastgd squared" speedup
at least 0.87) and to the peers that compute the same loss and gradients: PyTorch's
autograd over the gathered entries (torch.nn.functional.huber_loss, or the weighted mean
of squares), and the vectorised NumPy/SciPy twin of the masked kernel's general path.
"""

import os

import numpy as np

import fastgd
from fastgd.benchmarks.masked import make_problem

DELTA = 0.5
# name -> (m, n, k, observed fraction, loss setting)
CASES = {
    "1000x1000 k=16 50% huber": (1000, 1000, 16, 0.5, "huber"),
    "5000x5000 k=32 5% huber": (5000, 5000, 32, 0.05, "huber"),
    "5000x5000 k=32 5% weighted": (5000, 5000, 32, 0.05, "weighted"),
}
QUICK_CASES = ["1000x1000 k=16 50% huber"]
KERNEL = "masked_loss_grad (huber, weights)"
OURS = ["fastgd plan"]
PEERS = ["fastgd squared", "numpy twin", "torch autograd"]


def applies(case, peer):
    return True


def threaded(case):
    m, n, k, fraction, _ = CASES[case]
    return fraction * m * n * k >= fastgd.masked.PARALLEL_MIN_WORK


def settings(setting, plan):
    """(the plan to call with, masked_loss_grad's keyword arguments) of a setting."""
    if setting == "huber":
        return plan, {"loss": "huber", "delta": DELTA}
    weights = np.random.default_rng(1).random(plan.nnz)
    return fastgd.observed(plan, weights=weights), {"loss": "mse"}


def peers(case, n_threads):
    """name -> zero-argument callable returning (loss, dW, dH)."""
    m, n, k, fraction, setting = CASES[case]
    rows, cols, values, W, H = make_problem(m, n, k, fraction, np.float64)
    plan = fastgd.observed((rows, cols, values, (m, n)))
    data, kwargs = settings(setting, plan)
    result = {
        "fastgd plan": lambda: fastgd.masked_loss_grad(data, W, H, n_threads=n_threads,
                                                       **kwargs),
        "fastgd squared": lambda: fastgd.masked_loss_grad(plan, W, H, n_threads=n_threads),
    }

    def numpy_twin():
        with fastgd.use_backend("numpy"):
            return fastgd.masked_loss_grad(data, W, H, **kwargs)

    result["numpy twin"] = numpy_twin
    torch_peer = _torch_peer(data, W, H, kwargs, n_threads)
    if torch_peer is not None:
        result["torch autograd"] = torch_peer
    return result


def _torch_peer(plan, W, H, kwargs, n_threads):
    """The loss over the plan's entries by PyTorch's autograd: the entries' rows of W and
    columns of H gathered, their dot products, the loss, backward()."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(1 if n_threads == 1 else os.cpu_count())
    rows = torch.from_numpy(plan.rows.astype(np.int64))
    cols = torch.from_numpy(plan.cols.astype(np.int64))
    values = torch.from_numpy(plan.values.copy())  # torch wants writeable arrays
    weights = None if plan.weights is None else torch.from_numpy(plan.weights.copy())
    W_t = torch.from_numpy(W.copy()).requires_grad_()
    HT_t = torch.from_numpy(np.ascontiguousarray(H.T)).requires_grad_()

    def run():
        W_t.grad = HT_t.grad = None
        predictions = (W_t[rows] * HT_t[cols]).sum(dim=1)
        if kwargs["loss"] == "huber":
            loss = torch.nn.functional.huber_loss(predictions, values, delta=kwargs["delta"])
        else:
            loss = (weights * (predictions - values) ** 2).sum() / weights.sum()
        loss.backward()
        return loss.item(), W_t.grad.numpy(), HT_t.grad.numpy().T

    return run
