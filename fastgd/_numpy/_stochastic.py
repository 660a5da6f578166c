"""The NumPy twin of ``fastgd._ext._stochastic``: the stochastic solver's pass and loss
sum, with the same signatures and semantics (src_c/stochastic_loops.h), operation for
operation in the arrays' precision: the oracle of the compiled loops, and their fallback.

The pass steps one entry at a time in Python, so it is slow (microseconds per entry; the
compiled pass takes nanoseconds); the losses are taken by whole arrays, added in the
compiled loops' order.
"""

from __future__ import annotations

import math

import numpy as np

from fastgd import _codes
from fastgd._numpy._masked import entry_loss_terms

# The compiled loops' partial sums over k (stochastic_loops.h's FASTGD_STOCHASTIC_LANES).
LANES = 8
LOSS_CHUNK = 8192
SGD, ADAGRAD, ADAGRAD_VECTOR = (_codes.code_of(_codes.STOCHASTIC_STEPS, name)
                                for name in _codes.STOCHASTIC_STEPS)
HUBER = _codes.code_of(_codes.ENTRY_LOSSES, "huber")


def _lanes_sum(terms):
    """The sums of ``terms`` over the last axis (length k) as the compiled loops take
    them: term f into lane f % LANES, each lane in order, then the lanes in a fixed
    tree."""
    k = terms.shape[-1]
    padded = np.zeros((*terms.shape[:-1], -(-k // LANES) * LANES), dtype=terms.dtype)
    padded[..., :k] = terms
    acc = np.zeros((*terms.shape[:-1], LANES), dtype=terms.dtype)
    for start in range(0, padded.shape[-1], LANES):
        acc = acc + padded[..., start:start + LANES]
    lane = [acc[..., f] for f in range(LANES)]
    return ((lane[0] + lane[4]) + (lane[2] + lane[6])) + ((lane[1] + lane[5]) + (lane[3] + lane[7]))


def _predictions(W, HT, mu, row_bias, col_bias, u, i):
    """The model's predictions at entries (u, i): scalars or arrays of indices."""
    prediction = _lanes_sum(W[u] * HT[i])
    if row_bias.shape[0]:
        prediction = ((mu + row_bias[u]) + col_bias[i]) + prediction
    return prediction


def _loss_in_order(residuals, entry_loss, delta, weights):
    """The entries' losses at ``residuals`` added one by one in float64, as the compiled
    loops add them (losses.h's values)."""
    if residuals.shape[0] == 0:
        return 0.0
    terms = entry_loss_terms(entry_loss, delta, residuals, weights)[0]
    return float(np.add.accumulate(terms)[-1])


def run_pass(rows, cols, values, weights, block_ptr, grid, W, HT, row_bias, col_bias,
             state_W, state_HT, state_row_bias, state_col_bias, reg_W, reg_HT,
             reg_row_bias, reg_col_bias, lr, eps, lower_bound, step, entry_loss, delta, mu,
             n_threads, reg_factors=0.0, reg_biases=0.0):
    """One pass over the entries, and the sum of their losses each just before its step:
    see ``fastgd._ext._stochastic.run_pass``. Overflow gives inf and NaN silently, as in
    the compiled loops (factorize then stops and says so)."""
    with np.errstate(all="ignore"):
        return _run_pass(rows, cols, values, weights, block_ptr, grid, W, HT, row_bias,
                         col_bias, state_W, state_HT, state_row_bias, state_col_bias, reg_W,
                         reg_HT, reg_row_bias, reg_col_bias, lr, eps, lower_bound, step,
                         entry_loss, delta, mu, reg_factors, reg_biases)


def _run_pass(rows, cols, values, weights, block_ptr, grid, W, HT, row_bias, col_bias,
              state_W, state_HT, state_row_bias, state_col_bias, reg_W, reg_HT,
              reg_row_bias, reg_col_bias, lr, eps, lower_bound, step, entry_loss, delta, mu,
              reg_factors, reg_biases):
    real = W.dtype.type
    lr, eps, lower, mu, delta = (real(x) for x in (lr, eps, lower_bound, mu, delta))
    k = W.shape[1]
    inv_k = real(1) / real(k) if k else real(0)
    biases = row_bias.shape[0] != 0
    # Empty coefficient arrays: one coefficient of every row.
    reg_W, reg_HT, reg_row_bias, reg_col_bias = (
        np.full(size, real(value), dtype=W.dtype) if reg.shape[0] == 0 else reg
        for reg, size, value in ((reg_W, W.shape[0], reg_factors),
                                 (reg_HT, HT.shape[0], reg_factors),
                                 (reg_row_bias, W.shape[0], reg_biases),
                                 (reg_col_bias, HT.shape[0], reg_biases)))
    if step == ADAGRAD:
        state_W, state_HT = state_W.reshape(W.shape), state_HT.reshape(HT.shape)
    block_losses = [0.0] * (grid * grid)
    for stratum in range(grid):
        for a in range(grid):
            block = a * grid + (a + stratum) % grid
            first, end = int(block_ptr[block]), int(block_ptr[block + 1])
            residuals = np.empty(end - first, dtype=W.dtype)
            for e in range(first, end):
                u, i = int(rows[e]), int(cols[e])
                w, h = W[u], HT[i]
                g = values[e] - _predictions(W, HT, mu, row_bias, col_bias, u, i)
                residuals[e - first] = g
                if entry_loss == HUBER:
                    g = g if g > -delta else -delta
                    g = g if g < delta else delta
                if weights is not None:
                    g = g * weights[e]
                lw, lh = reg_W[u], reg_HT[i]
                if biases:
                    gb = reg_row_bias[u] * row_bias[u] - g
                    gc = reg_col_bias[i] * col_bias[i] - g
                    if step == SGD:
                        row_bias[u] = row_bias[u] - lr * gb
                        col_bias[i] = col_bias[i] - lr * gc
                    elif step == ADAGRAD:
                        state_row_bias[u] = state_row_bias[u] + gb * gb
                        state_col_bias[i] = state_col_bias[i] + gc * gc
                        row_bias[u] = row_bias[u] - lr * gb / (np.sqrt(state_row_bias[u]) + eps)
                        col_bias[i] = col_bias[i] - lr * gc / (np.sqrt(state_col_bias[i]) + eps)
                    else:
                        row_bias[u] = row_bias[u] - (lr / (np.sqrt(state_row_bias[u]) + eps)) * gb
                        col_bias[i] = col_bias[i] - (lr / (np.sqrt(state_col_bias[i]) + eps)) * gc
                        state_row_bias[u] = state_row_bias[u] + gb * gb
                        state_col_bias[i] = state_col_bias[i] + gc * gc
                old_w, old_h = w.copy(), h.copy()
                dw = lw * old_w - g * old_h
                dh = lh * old_h - g * old_w
                if step == SGD:
                    w[:] = old_w - lr * dw
                    h[:] = old_h - lr * dh
                elif step == ADAGRAD:
                    state_W[u] = state_W[u] + dw * dw
                    state_HT[i] = state_HT[i] + dh * dh
                    w[:] = old_w - lr * dw / (np.sqrt(state_W[u]) + eps)
                    h[:] = old_h - lr * dh / (np.sqrt(state_HT[i]) + eps)
                else:
                    w[:] = old_w - (lr / (np.sqrt(state_W[u]) + eps)) * dw
                    h[:] = old_h - (lr / (np.sqrt(state_HT[i]) + eps)) * dh
                    state_W[u] = state_W[u] + _lanes_sum(dw * dw) * inv_k
                    state_HT[i] = state_HT[i] + _lanes_sum(dh * dh) * inv_k
                if lower_bound > -math.inf:
                    w[:] = np.where(w > lower, w, lower)
                    h[:] = np.where(h > lower, h, lower)
            block_losses[block] = _loss_in_order(
                residuals, entry_loss, delta, None if weights is None else weights[first:end])
    return sum(block_losses, 0.0)


def loss_sum(rows, cols, values, weights, W, HT, row_bias, col_bias, entry_loss, delta, mu,
             n_threads):
    """The sum of the entry losses: see ``fastgd._ext._stochastic.loss_sum``."""
    with np.errstate(all="ignore"):
        return _loss_sum(rows, cols, values, weights, W, HT, row_bias, col_bias, entry_loss,
                         delta, mu)


def _loss_sum(rows, cols, values, weights, W, HT, row_bias, col_bias, entry_loss, delta, mu):
    real = W.dtype.type
    mu = real(mu)
    chunks = []
    for start in range(0, rows.shape[0], LOSS_CHUNK):
        part = slice(start, start + LOSS_CHUNK)
        residuals = values[part] - _predictions(W, HT, mu, row_bias, col_bias,
                                                rows[part], cols[part])
        chunks.append(_loss_in_order(residuals, entry_loss, delta,
                                     None if weights is None else weights[part]))
    return sum(chunks, 0.0)


_MASK64 = (1 << 64) - 1


def _splitmix64(state):
    """(the new state, the next number) of SplitMix64, as the compiled layout draws."""
    state = (state + 0x9E3779B97F4A7C15) & _MASK64
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return state, z ^ (z >> 31)


def block_layout(rows, cols, values, weights, row_group, col_group, grid, seed, out_rows,
                 out_cols, out_values, out_weights, block_ptr, n_chunks=1):
    """The entries laid out block by block and shuffled within each block: see
    ``fastgd._ext._stochastic.block_layout``."""
    block = row_group[rows].astype(np.int64) * grid + col_group[cols]
    order = np.argsort(block, kind="stable")
    block_ptr[0] = 0
    np.cumsum(np.bincount(block, minlength=grid * grid), out=block_ptr[1:])
    arrays = [(out_rows, rows), (out_cols, cols), (out_values, values)]
    if weights is not None:
        arrays.append((out_weights, weights))
    for out, source in arrays:
        out[:] = source[order]
    for b in range(grid * grid):
        state = (int(seed) + (b << 32)) & _MASK64
        start = int(block_ptr[b])
        for i in range(int(block_ptr[b + 1]) - start - 1, 0, -1):
            state, number = _splitmix64(state)
            j = number % (i + 1)
            for out, _ in arrays:
                out[start + i], out[start + j] = out[start + j], out[start + i]
