"""The NumPy twin of fastgd._ext._updates (src_c/_updates.pyx): fused in-place optimizer
updates."""

import numpy as np

from fastgd import _codes

# NumPy keeps float32 arrays in float32 when the hyperparameters are Python floats (NEP
# 50), so these run in the array's own precision, with the compiled kernel's order of
# operations.

EPS_OUTSIDE, EPS_INSIDE, EPS_ACCUMULATE = (
    _codes.code_of(_codes.EPS_MODES, mode) for mode in ("outside", "inside", "accumulate"))


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
