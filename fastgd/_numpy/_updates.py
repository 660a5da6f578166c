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


def _lerp(start, end, weight):
    """torch's lerp, as src_c/update_loops.h's FASTGD_LERP."""
    t = start.dtype.type
    if weight < 0.5:
        return start + t(weight) * (end - start)
    return end - (end - start) * (t(1) - t(weight))


def _maximum(a, b):
    """torch.maximum: NaN where either is NaN."""
    return np.where(np.isnan(a), a, np.where(a >= b, a, b))


def adam_update(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, lr, beta1, beta2, eps,
                weight_decay, decoupled, amsgrad, maximize, step, lower_bound, n_threads,
                parallel_min_elements, counter=None):
    """Adam (AdamW with ``decoupled``) in place; the twin of ``_updates.adam_update``."""
    step_size = lr / (1.0 - beta1 ** step)
    correction2 = np.sqrt(1.0 - beta2 ** step)
    for k, (param, grad) in enumerate(zip(params, grads, strict=True)):
        t = param.dtype.type
        g = -grad if maximize else grad.copy()
        p = param.copy()
        if weight_decay != 0 and not decoupled:
            g = g + t(weight_decay) * p
        if decoupled:
            p = p * t(1.0 - lr * weight_decay)
        m = _lerp(exp_avgs[k], g, 1.0 - beta1)
        v = exp_avg_sqs[k] * t(beta2) + t(1.0 - beta2) * g * g
        exp_avgs[k][...] = m
        exp_avg_sqs[k][...] = v
        if amsgrad:
            v = _maximum(max_exp_avg_sqs[k], v)
            max_exp_avg_sqs[k][...] = v
        denominator = np.sqrt(v) / t(correction2) + t(eps)
        _bounded(param, p + (-t(step_size)) * (m / denominator), lower_bound)
    _count_step(counter)


def rmsprop_update(params, grads, square_avgs, momentum_buffers, grad_avgs, lr, alpha, eps,
                   weight_decay, momentum, centered, maximize, lower_bound, n_threads,
                   parallel_min_elements, counter=None):
    """RMSprop in place; the twin of ``_updates.rmsprop_update``."""
    for k, (param, grad) in enumerate(zip(params, grads, strict=True)):
        t = param.dtype.type
        g = _effective_grad(grad, param, maximize, weight_decay)
        v = square_avgs[k] * t(alpha) + t(1.0 - alpha) * g * g
        square_avgs[k][...] = v
        if centered:
            a = _lerp(grad_avgs[k], g, 1.0 - alpha)
            grad_avgs[k][...] = a
            with np.errstate(invalid="ignore"):
                avg = np.sqrt(v + t(-1) * a * a)
        else:
            avg = np.sqrt(v)
        avg = avg + t(eps)
        with np.errstate(divide="ignore", invalid="ignore"):
            if momentum > 0:
                b = momentum_buffers[k] * t(momentum) + g / avg
                momentum_buffers[k][...] = b
                value = param + (-t(lr)) * b
            else:
                value = param + (-t(lr)) * (g / avg)
        _bounded(param, value, lower_bound)
    _count_step(counter)
