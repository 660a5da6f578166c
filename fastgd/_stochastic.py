"""factorize's stochastic solver (``solver="stochastic"``): passes over the observed
entries in a shuffled order, each entry stepping only the row of W, the column of H and
the two biases it touches (SGD, Adagrad per coordinate, or LIBMF's Adagrad per vector).

The entries are laid out once, block by block on a grid of row groups x column groups
(random groups, a random order within each block, from ``random_state``); a pass visits
the blocks in strata of blocks that share no row or column, so threads step them in
parallel and the result does not depend on the number of threads (``_ext._stochastic``).
The grid depends on the problem's size only, never on n_threads.

The objective a pass descends is ``0.5 * sum_e loss_e + penalty``: for ``"per_rating"``
regularisation each entry adds ``0.5 * l2 * (||W[u]||² + ||H[:, i]||²)`` and
``0.5 * l2_bias * (b[u]² + c[i]²)`` (Surprise's, cornac's and LIBMF's form: a row's
penalty is weighted by its count), for ``"factors"`` the penalty is
``0.5 * l2 * (||W||² + ||H||²) + 0.5 * l2_bias * (||b||² + ||c||²)``, spread over each
row's entries (a coefficient of l2 / count per visit).
"""

from __future__ import annotations

import math

import numpy as np

from fastgd import _backend, _codes, _losses, _threads, factorization, masked

STEP_CODES = {name: code for code, name in enumerate(_codes.STOCHASTIC_STEPS)}

# The grid has about this many entries per block, and at most MAX_GRID groups a side: a
# block's rows of W and H then stay in cache while its entries stream, and a stratum has
# enough blocks to share among threads.
ENTRIES_PER_BLOCK = 4096
MAX_GRID = 16
# The layout's counting sort takes a thread per this many entries (up to n_threads).
LAYOUT_CHUNK = 1 << 16
# Below this many entries times the rank, a pass runs on one thread (a parallel region
# costs more than the pass).
PARALLEL_MIN_WORK = masked.PARALLEL_MIN_WORK


def kernels():
    """The stochastic loops of the active backend: ``fastgd._ext._stochastic`` or its
    NumPy twin ``fastgd._numpy._stochastic``."""
    if _backend.get_backend() == "compiled":
        from fastgd._ext import _stochastic
    else:
        from fastgd._numpy import _stochastic
    return _stochastic


def check_shape(shape):
    """ValueError unless the loops' int32 row and column indices reach every row and
    column of ``shape``."""
    if max(shape) > np.iinfo(np.int32).max:
        raise ValueError(f"solver='stochastic' takes at most 2**31 - 1 rows and columns; got "
                         f"A of shape {shape}")


def choose_grid(nnz, shape):
    """The grid's side for ``nnz`` entries of a matrix of ``shape``: about
    ENTRIES_PER_BLOCK entries a block, at most MAX_GRID, at most m and n."""
    side = math.isqrt(max(nnz, 0) // ENTRIES_PER_BLOCK)
    return max(1, min(MAX_GRID, side, *shape))


class BlockedEntries:
    """The entries of a plan laid out block by block on a ``grid`` x ``grid`` grid
    (int32 rows and columns, values and weights in ``dtype``), and ``block_ptr``; the
    same on any number of threads."""

    def __init__(self, plan, grid, rng, dtype, n_threads=1):
        m, n = plan.shape
        rows, cols = plan.rows.astype(np.int32), plan.cols.astype(np.int32)
        row_group = (rng.permutation(m) * grid // max(m, 1)).astype(np.int32)
        col_group = (rng.permutation(n) * grid // max(n, 1)).astype(np.int32)
        seed = int(rng.integers(0, 2**63))
        values = plan.values.astype(dtype, copy=False)
        weights = None if plan.weights is None else plan.weights.astype(dtype, copy=False)
        self.grid = grid
        self.block_ptr = np.empty(grid * grid + 1, dtype=np.int64)
        self.rows, self.cols = np.empty_like(rows), np.empty_like(cols)
        self.values = np.empty(plan.nnz, dtype=dtype)
        self.weights = None if weights is None else np.empty(plan.nnz, dtype=dtype)
        kernels().block_layout(rows, cols, values, weights, row_group, col_group, grid, seed,
                               self.rows, self.cols, self.values, self.weights,
                               self.block_ptr, min(n_threads, plan.nnz // LAYOUT_CHUNK + 1))
        self.row_counts = np.bincount(rows, minlength=m)
        self.col_counts = np.bincount(cols, minlength=n)
        self.total_weight = plan.total_weight


class Model:
    """The parameters a pass steps: W, HT (H transposed), the biases (empty arrays
    without them) and mu."""

    def __init__(self, W, HT, row_bias, col_bias, mu):
        self.W, self.HT, self.row_bias, self.col_bias, self.mu = W, HT, row_bias, col_bias, mu

    @classmethod
    def start(cls, W, H, biases, mu):
        """The model at factors (W, H), biases 0 (or none)."""
        HT = np.ascontiguousarray(H.T)
        sizes = (W.shape[0], HT.shape[0]) if biases else (0, 0)
        return cls(W, HT, *(np.zeros(size, dtype=W.dtype) for size in sizes), mu)

    def arrays(self):
        """(W, HT, row_bias, col_bias): the arrays themselves, not copies."""
        return (self.W, self.HT, self.row_bias, self.col_bias)


def _coefficients(counts, l2, form, dtype):
    """Each row's penalty coefficient per visit: none (the loops' one coefficient of
    every row, l2) for "per_rating"."""
    if form == "per_rating":
        return np.empty(0, dtype=dtype)
    return (l2 / np.maximum(counts, 1)).astype(dtype)


def penalty(model, entries, settings):
    """The penalty's value at the model (the module docstring's two forms)."""
    l2, l2_bias = settings["l2"], settings["l2_bias"]
    norms = [np.einsum("ij,ij->i", a, a, dtype=np.float64) for a in (model.W, model.HT)]
    biases = [b.astype(np.float64) ** 2 for b in (model.row_bias, model.col_bias)]
    if settings["regularization"] == "per_rating":
        counts = (entries.row_counts, entries.col_counts)
        factor_term = sum(float(c @ v) for c, v in zip(counts, norms, strict=True))
        bias_term = sum(float(c @ v) for c, v in zip(counts, biases, strict=True) if v.shape[0])
    else:
        factor_term = sum(float(v.sum()) for v in norms)
        bias_term = sum(float(v.sum()) for v in biases)
    return 0.5 * l2 * factor_term + 0.5 * l2_bias * bias_term


class Solver:
    """Passes over the blocked entries, and the training loss after each."""

    def __init__(self, entries, model, settings, n_threads):
        self.entries, self.model, self.s = entries, model, settings
        dtype = model.W.dtype
        m, k = model.W.shape
        n = model.HT.shape[0]
        step = settings["step"]
        per_row = {"sgd": 0, "adagrad": k, "adagrad_vector": 1}[step]
        # LIBMF's per-vector accumulators start at 1 (their first step is then lr).
        start = np.ones if step == "adagrad_vector" else np.zeros
        self.states = (start(m * per_row, dtype), start(n * per_row, dtype),
                       start(model.row_bias.shape[0] if per_row else 0, dtype),
                       start(model.col_bias.shape[0] if per_row else 0, dtype))
        form = settings["regularization"]
        self.reg = (_coefficients(entries.row_counts, settings["l2"], form, dtype),
                    _coefficients(entries.col_counts, settings["l2"], form, dtype),
                    _coefficients(entries.row_counts, settings["l2_bias"], form, dtype),
                    _coefficients(entries.col_counts, settings["l2_bias"], form, dtype))
        work = entries.rows.shape[0] * max(k, 1)
        self.n_threads = n_threads if work >= PARALLEL_MIN_WORK else 1
        self.kernels = kernels()

    def run_pass(self):
        """One pass; its running loss (each entry's just before its step)."""
        e, model, s = self.entries, self.model, self.s
        spec = s["loss_spec"]
        total = self.kernels.run_pass(
            e.rows, e.cols, e.values, e.weights, e.block_ptr, e.grid, model.W, model.HT,
            model.row_bias, model.col_bias, *self.states, *self.reg, s["lr"], s["eps"],
            0.0 if s["nonneg"] else -math.inf, STEP_CODES[s["step"]], spec.entry,
            spec.delta, model.mu, self.n_threads, s["l2"], s["l2_bias"])
        return _losses.value_and_scale(spec, total, e.total_weight)[0]

    def training_loss(self):
        e, model = self.entries, self.model
        spec = self.s["loss_spec"]
        total = self.kernels.loss_sum(e.rows, e.cols, e.values, e.weights, model.W, model.HT,
                                      model.row_bias, model.col_bias, spec.entry, spec.delta,
                                      model.mu, self.n_threads)
        return _losses.value_and_scale(spec, total, e.total_weight)[0]

    def held_out_rmse(self, held_out):
        """The model's RMSE over held-out entries (rows, cols, values) in its dtype."""
        rows, cols, values = held_out
        model = self.model
        total = self.kernels.loss_sum(rows, cols, values, None, model.W, model.HT,
                                      model.row_bias, model.col_bias, _losses.SQUARED, 0.0,
                                      model.mu, self.n_threads)
        return math.sqrt(total / rows.shape[0])

    def state(self):
        """{name: (of W, of H)} of the optimizer's state, shaped like W and H (per
        coordinate) or one value per row of W and column of H (per vector)."""
        if self.s["step"] == "sgd":
            return {}
        m, k = self.model.W.shape
        n = self.model.HT.shape[0]
        state_W, state_HT = self.states[0], self.states[1]
        if self.s["step"] == "adagrad":
            state = {"accum": (state_W.reshape(m, k), state_HT.reshape(n, k).T)}
        else:
            state = {"accum": (state_W, state_HT)}
        if self.model.row_bias.shape[0]:
            state["accum_bias"] = (self.states[2], self.states[3])
        return state


def solve(plan, W, H, settings, callback, progress, n_threads, tracker, rng):
    """Run the passes from (W, H); a FactorizationResult. ``plan``: the training entries;
    ``tracker``: a ValidationTracker or None."""
    n_threads = _threads.resolve_n_threads(n_threads)
    n_iter = settings["n_iter"]
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable or None; got {type(callback).__name__}")
    spec = settings["loss_spec"]
    _losses.check_defined(spec, plan.total_weight)
    dtype = W.dtype
    grid = settings["grid"] or choose_grid(plan.nnz, plan.shape)
    entries = BlockedEntries(plan, grid, rng, dtype, n_threads)
    mu = 0.0
    if settings["biases"] and plan.nnz:
        weights = np.ones(plan.nnz) if plan.weights is None else plan.weights
        if weights.sum() > 0:
            mu = float(np.average(plan.values, weights=weights))
    model = Model.start(W, H, settings["biases"], float(dtype.type(mu)))
    solver = Solver(entries, model, settings, n_threads)
    held_out = None
    if tracker is not None:
        held_out = (tracker.plan.rows.astype(np.int32), tracker.plan.cols.astype(np.int32),
                    tracker.plan.values.astype(dtype))
        tracker.record(0, model.arrays(), solver.held_out_rmse(held_out))
    bar = factorization._progress_bar(progress, n_iter)
    history = factorization.LossHistory()
    history.extend([solver.training_loss()])
    status = (factorization.STATUS_MAX_ITER if math.isfinite(history.last)
              else factorization.STATUS_NONFINITE)
    done = 0
    try:
        while status == factorization.STATUS_MAX_ITER and done < n_iter:
            previous = history.last
            history.extend([solver.run_pass()])
            done += 1
            status = factorization.status_after(history.last, previous, settings)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{history.last:.6g}", refresh=False)
            if tracker is not None and status != factorization.STATUS_NONFINITE:
                rmse = solver.held_out_rmse(held_out)
                if tracker.record(done, model.arrays(), rmse):
                    if status == factorization.STATUS_MAX_ITER:
                        status = factorization.STATUS_EARLY_STOPPED
            if status == factorization.STATUS_MAX_ITER and callback is not None:
                W_now, H_now = model.W.view(), model.HT.T
                W_now.flags.writeable = H_now.flags.writeable = False
                if callback(done, history.last, W_now, H_now):
                    status = factorization.STATUS_STOPPED_BY_CALLBACK
    finally:
        if bar is not None:
            bar.close()
    if tracker is not None and tracker.best_factors is not None:
        model = Model(*tracker.best_factors, model.mu)
    state = solver.state()
    solver.model = model
    return factorization.finished_run(
        model.W, model.HT.T, history.values(), done, status, state, settings,
        tracker=tracker, penalty=penalty(model, entries, settings),
        biases=(model.mu, model.row_bias, model.col_bias) if settings["biases"] else None,
        data_loss=solver.training_loss())
