"""The NumPy twin of fastgd._ext._solvers (src_c/_solvers.pyx): factorize's iteration
loop."""

import numpy as np

from fastgd import _codes
from fastgd._numpy._masked import (
    SQUARED,
    loss_value_and_scale,
    plan_loss_grad,
    sum_of_squares,
)
from fastgd._numpy._updates import adagrad_update, sgd_update

OPTIMIZER_ADAGRAD = _codes.code_of(_codes.OPTIMIZERS, "adagrad")
STATUS_MAX_ITER, STATUS_CONVERGED, STATUS_NONFINITE = (
    _codes.code_of(_codes.LOOP_STATUSES, status)
    for status in ("max_iter", "converged", "nonfinite"))


def _solver_loss_and_gradients(indptr, indices, values, W, HT, grad_W, grad_HT, loss_code,
                               l2, entry_loss, delta, weights, total_weight):
    """The loss at (W, HT); grad_W and grad_HT receive the gradients of its data term."""
    grad_H = np.empty(HT.shape[::-1], dtype=HT.dtype)
    total = plan_loss_grad(indptr, indices, values, W, HT.T, grad_W, grad_H, 1, 1,
                           entry_loss=entry_loss, delta=delta, weights=weights)
    loss, scale = loss_value_and_scale(loss_code, entry_loss, total, total_weight)
    grad_W *= scale
    grad_HT[...] = grad_H.T * grad_H.dtype.type(scale)
    if l2 != 0:
        loss += 0.5 * l2 * (sum_of_squares(W) + sum_of_squares(HT))
    return float(loss)


def run_iterations(indptr, indices, values, W, HT, state_W, state_HT, grad_W, grad_HT,
                   history, n_steps, loss_code, l2, optimizer, lr, eps, eps_mode, momentum,
                   nesterov, lower_bound, tol, entry_loss=SQUARED, delta=0.0, weights=None,
                   total_weight=-1.0):
    """Up to n_steps gradient steps in place; the twin of ``_solvers.run_iterations``."""
    params, grads, states = [W, HT], [grad_W, grad_HT], [state_W, state_HT]
    if total_weight < 0:
        total_weight = float(indptr[-1])
    entry = (entry_loss, delta, weights, total_weight)
    loss = _solver_loss_and_gradients(indptr, indices, values, W, HT, grad_W, grad_HT,
                                      loss_code, l2, *entry)
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
                                          loss_code, l2, *entry)
        history[step] = loss
        previous = history[step - 1]
        if not np.isfinite(loss):
            status = STATUS_NONFINITE
        elif tol >= 0 and abs(loss - previous) <= tol * abs(previous):
            status = STATUS_CONVERGED
    return step, status
