"""Matrix factorisation with missing values by gradient descent: ``fastgd.factorize``.

Each iteration computes the masked loss of ``W @ H`` and its gradients and applies a
fused update (Adagrad, or gradient descent with optional momentum), optionally
projected onto ``W, H >= 0``. Small problems run the whole iteration loop in compiled
code (``fastgd._ext._solvers``: no Python per iteration); larger ones call the threaded
kernels ``masked_loss_grad`` and ``adagrad_update`` / ``sgd_update`` once per
iteration, where a call's cost no longer matters. Both give the same answer to rounding.
"""

from __future__ import annotations

import math
import numbers
import os
import sys
import warnings
from typing import TYPE_CHECKING

import numpy as np

from fastgd import _backend, _codes, _losses, _plan, _threads, _validation, masked, updates

if TYPE_CHECKING:
    from fastgd._typing import (
        Accumulator,
        Any,
        ArrayLike,
        Callable,
        EpsMode,
        FloatArray,
        Loss,
        Optimizer,
        RandomState,
        Reduction,
        Regularization,
        Solver,
    )

# The compiled loop's optimizers (their codes), and those that step from Python with the
# fused updates only (the kernel loop, whatever the problem's size).
OPTIMIZER_CODES = {name: code for code, name in enumerate(_codes.OPTIMIZERS)}
OPTIMIZERS = (*_codes.OPTIMIZERS, "adam", "rmsprop")

# How a run ended: the compiled loop's statuses, and the callback's (Python's alone).
STATUS_MAX_ITER, STATUS_CONVERGED, STATUS_NONFINITE = (
    _codes.code_of(_codes.LOOP_STATUSES, status)
    for status in ("max_iter", "converged", "nonfinite"))
STATUS_STOPPED_BY_CALLBACK = len(_codes.LOOP_STATUSES)
STATUS_EARLY_STOPPED = STATUS_STOPPED_BY_CALLBACK + 1
STATUS_MESSAGES = {
    STATUS_EARLY_STOPPED: "the validation RMSE stopped improving (early stopping); the "
                          "factors are those of its best iteration",
    STATUS_MAX_ITER: "the maximum number of iterations was reached",
    STATUS_CONVERGED: "the relative change of the loss fell below tol",
    STATUS_NONFINITE: "the loss is no longer finite: lower lr",
    STATUS_STOPPED_BY_CALLBACK: "the callback asked to stop",
}

# Problems with at most this many multiply-adds per iteration (observed entries times
# the rank) run their iteration loop in compiled code, on one thread; larger ones call
# the threaded kernels once per iteration. The same bound as the kernels' own
# threshold for opening a parallel region.
SOLVER_LOOP_MAX_WORK = masked.PARALLEL_MIN_WORK

# With progress=True (and no callback), the compiled loop reports this many times.
PROGRESS_UPDATES = 100

# The compiled loop runs at most this many iterations per call, so that the loss history
# it fills is allocated as the run goes: n_iter is an upper bound (a run with tol may stop
# long before it), not a size to allocate up front. Calls in turn give the same bits.
ITERATIONS_PER_CALL = 1 << 16


def kernels():
    """The solver loop of the active backend: ``fastgd._ext._solvers`` (compiled from
    ``src_c/_solvers.pyx``), or its NumPy twin ``fastgd._numpy._solvers``, which has the same
    functions with the same signatures and semantics."""
    if _backend.get_backend() == "compiled":
        from fastgd._ext import _solvers
    else:
        from fastgd._numpy import _solvers
    return _solvers

class FactorizationResult:
    """The outcome of :func:`factorize` (and of ``fastgd.dask.factorize``).

    Parameters
    ----------
    W : ndarray of shape (m, rank)
    H : ndarray of shape (rank, n)
    loss_history : array_like of shape (n_iter + 1,)
    n_iter : int
    converged : bool
    message : str
    optimizer_state : dict, optional
    data_loss, penalty : float, optional
        The final loss's two terms; NaN when not given.
    validation_history : array_like of shape (n_iter + 1,), optional
    best_iteration : int, optional
    global_mean : float, optional
    row_bias : ndarray of shape (m,), optional
    col_bias : ndarray of shape (n,), optional
        The biases of a model with them (``biases=True``); None without.

    Attributes
    ----------
    W : ndarray of shape (m, rank)
    H : ndarray of shape (rank, n)
    loss_history : ndarray of shape (n_iter + 1,)
        The loss at the initial point, then after every iteration (float64). It is the
        objective: the data term plus the ``l2`` penalty when ``l2 > 0``.
    data_loss : float
        The data term of the final loss (the ``loss`` over the observed entries, e.g. the
        training RMSE for ``loss="rmse"``), without the penalty.
    penalty : float
        ``0.5 * l2 * (||W||² + ||H||²)`` at the final point: ``loss_history[-1]`` is
        ``data_loss + penalty``.
    n_iter : int
        The number of iterations run.
    converged : bool
        Whether the relative change of the loss fell below ``tol``.
    message : str
        Why the run stopped.
    optimizer_state : dict
        The optimizer's state at the end, shaped like W and H: Adagrad's sums of squared
        gradients (``"accum_W"``, ``"accum_H"``), the momentum buffers (``"velocity_W"``,
        ``"velocity_H"``), Adam's moments (``"exp_avg_W"``, ``"exp_avg_sq_W"``, ...),
        RMSprop's (``"square_avg_W"``, ``"momentum_buffer_W"``, ``"grad_avg_W"``, ...);
        empty for plain gradient descent.
    validation_history : ndarray of shape (n_iter + 1,) or None
        With ``validation``: the RMSE over the held-out entries at the initial point, then
        after every iteration.
    best_iteration : int or None
        With ``validation``: the iteration of the lowest validation RMSE (0: the initial
        point). With ``early_stopping`` the result's factors are that iteration's, and
        ``data_loss`` and ``penalty`` its loss's terms.
    global_mean, row_bias, col_bias : float, ndarray, ndarray or None
        With ``biases=True``: the model is ``global_mean + row_bias[i] + col_bias[j] +
        (W @ H)[i, j]``; None without biases.

    Examples
    --------
    >>> import numpy as np
    >>> import fastgd
    >>> A = np.array([[1.0, 2.0], [2.0, np.nan]])
    >>> result = fastgd.factorize(A, 1, random_state=0, n_iter=500)
    >>> result.reconstruct().round(2)
    array([[1., 2.],
           [2., 4.]])
    >>> result.predict([1], [1]).round(2)
    array([4.])
    >>> bool(result.data_loss + result.penalty == result.loss_history[-1])
    True

    A result can be made from factors found elsewhere, to use its methods:

    >>> own = fastgd.FactorizationResult(np.ones((2, 1)), np.ones((1, 2)), [0.5], 0)
    >>> own.reconstruct()
    array([[1., 1.],
           [1., 1.]])
    """

    def __init__(self, W: FloatArray, H: FloatArray, loss_history: ArrayLike, n_iter: int, *,
                 converged: bool = False, message: str = "",
                 optimizer_state: dict[str, FloatArray] | None = None,
                 data_loss: float | None = None, penalty: float | None = None,
                 validation_history: ArrayLike | None = None,
                 best_iteration: int | None = None, global_mean: float | None = None,
                 row_bias: FloatArray | None = None, col_bias: FloatArray | None = None,
                 row_ids: ArrayLike | None = None, col_ids: ArrayLike | None = None) -> None:
        self.W = W
        self.H = H
        self.loss_history = np.asarray(loss_history, dtype=np.float64)
        self.n_iter = n_iter
        self.converged = bool(converged)
        self.message = message
        self.optimizer_state = {} if optimizer_state is None else optimizer_state
        self.data_loss = math.nan if data_loss is None else float(data_loss)
        self.penalty = math.nan if penalty is None else float(penalty)
        self.validation_history = (None if validation_history is None
                                   else np.asarray(validation_history, dtype=np.float64))
        self.best_iteration = best_iteration
        if (row_bias is None) != (col_bias is None):
            raise ValueError("row_bias and col_bias go together; got one of them")
        self.global_mean = None if global_mean is None else float(global_mean)
        self.row_bias, self.col_bias = row_bias, col_bias
        if row_bias is not None and self.global_mean is None:
            self.global_mean = 0.0
        if (row_ids is None) != (col_ids is None):
            raise ValueError("row_ids and col_ids go together; got one of them")
        self.row_ids = None if row_ids is None else _IdIndex(row_ids, "row_ids", W.shape[0])
        self.col_ids = None if col_ids is None else _IdIndex(col_ids, "col_ids", H.shape[1])
        # The optimizer's settings, for effective_lr(): set by factorize.
        self._settings = None

    def reconstruct(self) -> FloatArray:
        """The completed matrix ``W @ H`` (plus the biases, with them), of shape (m, n)."""
        product = self.W @ self.H
        if self.row_bias is not None:
            dtype = product.dtype.type
            product += (dtype(self.global_mean) + self.row_bias[:, None]) + self.col_bias
        elif self.global_mean is not None:
            product += product.dtype.type(self.global_mean)
        return product

    def predict(self, rows: ArrayLike, cols: ArrayLike) -> FloatArray:
        """The entries ``reconstruct()[rows[e], cols[e]]``, without forming ``W @ H``.

        Parameters
        ----------
        rows, cols : array_like of one shape
            Row and column indices (negative ones count from the end, as in NumPy); or,
            for a result of a plan made by :func:`observed_from_ids` (which has
            ``row_ids`` and ``col_ids``), the rows' and columns' own ids. An id not
            seen in training is predicted from what is known: ``global_mean`` plus the
            other side's bias when it is known (a model with biases), NaN without biases.

        Returns
        -------
        ndarray of the indices' shape

        Examples
        --------
        >>> import fastgd
        >>> plan = fastgd.observed_from_ids(["ann", "bob", "ann", "cy"], [10, 20, 20, 10],
        ...                                 [4.0, 3.0, 5.0, 3.5])
        >>> result = fastgd.factorize(plan, 2, solver="stochastic", biases=True,
        ...                           n_iter=300, random_state=0)
        >>> result.predict(["ann", "bob"], [10, 20]).round(1)
        array([4. , 3.1])
        >>> bool(result.predict(["dee"], [10])[0]
        ...      == result.global_mean + result.col_bias[0])  # a new user: mean + item bias
        True
        """
        if self.row_ids is not None:
            rows, row_known = self.row_ids.positions(rows)
            cols, col_known = self.col_ids.positions(cols)
            names = "the row and column ids"
        else:
            rows = _index_array(rows, "rows", self.W.shape[0])
            cols = _index_array(cols, "cols", self.H.shape[1])
            row_known = col_known = None
            names = "rows and cols"
        if rows.shape != cols.shape:
            raise ValueError(f"{names} must have one shape; got {rows.shape} and {cols.shape}")
        return self._predict_at(rows, cols, row_known, col_known)

    def _predict_at(self, rows, cols, row_known, col_known):
        """predict at positions; row_known and col_known (None: all known) say which
        positions stand for an id seen in training."""
        if row_known is None:
            product = np.einsum("...k,...k->...", self.W[rows], self.H.T[cols])
        else:
            known = row_known & col_known
            product = np.zeros(rows.shape, dtype=self.W.dtype)
            product[known] = np.einsum("ik,ik->i", self.W[rows[known]], self.H.T[cols[known]])
        dtype = product.dtype.type
        if self.row_bias is not None:
            row_bias, col_bias = self.row_bias[rows], self.col_bias[cols]
            if row_known is not None:
                row_bias = np.where(row_known, row_bias, dtype(0))
                col_bias = np.where(col_known, col_bias, dtype(0))
            product += (dtype(self.global_mean) + row_bias) + col_bias
            return product
        if self.global_mean is not None:
            product += dtype(self.global_mean)
        if row_known is not None:
            product[~known] = np.nan
        return product

    def effective_lr(self) -> tuple[FloatArray, FloatArray]:
        """Adagrad's per-entry learning rates after the last iteration: ``(rates_W,
        rates_H)``, shaped like W and H (see ``fastgd.Adagrad.effective_lr``).

        Raises
        ------
        ValueError
            When the optimizer was not Adagrad.
        """
        if "accum_W" not in self.optimizer_state or self._settings is None:
            raise ValueError("effective_lr needs a result of factorize with "
                             "optimizer='adagrad'")
        s = self._settings
        accums = [self.optimizer_state["accum_W"], self.optimizer_state["accum_H"]]
        rates = updates._adagrad_rates(accums, s["lr"], s["eps"], s["eps_mode"])
        return rates[0], rates[1]

    def __repr__(self):
        return (
            f"FactorizationResult(W: {self.W.shape}, H: {self.H.shape}, n_iter={self.n_iter}, "
            f"loss={self.loss_history[-1]:.6g}, converged={self.converged})"
        )


class _IdIndex:
    """The ids of a result's rows (or columns), and where given ids are among them."""

    def __init__(self, ids, name, size):
        ids = np.asarray(ids)
        if ids.shape != (size,):
            raise ValueError(f"{name} must hold one id per row of the factor ({size}); got "
                             f"shape {ids.shape}")
        self.ids = ids
        self._sorted = ids.dtype != object and bool(np.all(ids[1:] > ids[:-1]))
        self._lookup = None

    def positions(self, wanted):
        """(each id's position, 0 where unknown; whether it is known)."""
        if hasattr(wanted, "to_numpy"):
            wanted = wanted.to_numpy()
        wanted = np.asarray(wanted)
        if self._sorted and wanted.dtype != object and self.ids.size:
            try:
                found = np.searchsorted(self.ids, wanted).clip(0, self.ids.size - 1)
                return found, self.ids[found] == wanted
            except TypeError:  # ids and wanted of kinds that do not compare
                pass
        if self._lookup is None:
            self._lookup = {value: i for i, value in enumerate(self.ids.tolist())}
        found = np.array([self._lookup.get(value, -1) for value in wanted.ravel().tolist()],
                         dtype=np.int64).reshape(wanted.shape)
        return np.maximum(found, 0), found >= 0


def _index_array(value, name, size):
    index = np.asarray(value)
    if index.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integers; got dtype {index.dtype}")
    if index.size and (index.min() < -size or index.max() >= size):
        raise ValueError(f"{name} must lie in [-{size}, {size}); got values from "
                         f"{index.min()} to {index.max()}")
    return index


def check_momentum(optimizer, momentum, nesterov, name):
    """momentum and nesterov checked against the optimizer (named ``name`` in messages):
    momentum for "gd" and "rmsprop", Nesterov's update for "gd" with momentum."""
    momentum = _validation.check_real(momentum, "momentum")
    nesterov = _validation.check_flag(nesterov, "nesterov")
    if optimizer in ("adagrad", "adam") and (momentum != 0 or nesterov):
        raise ValueError(f"momentum applies to {name}='gd' or 'rmsprop', nesterov to 'gd'; "
                         f"got momentum={momentum}, nesterov={nesterov} with {optimizer!r}")
    if nesterov and optimizer != "gd":
        raise ValueError(f"nesterov applies to {name}='gd'; got it with {optimizer!r}")
    if nesterov and momentum == 0:
        raise ValueError("nesterov=True needs momentum > 0")
    return momentum, nesterov


SOLVERS = ("batch", "stochastic")
# The stochastic solver's default l2, per rating: the value that the recommender guide's
# recipe was tuned to on a validation split of MovieLens' training ratings.
STOCHASTIC_L2 = 0.1


def check_settings(*, optimizer, lr, n_iter, eps, eps_mode, momentum, nesterov, nonneg,
                   loss, l2, tol, delta=None, reduction=None, solver="batch", biases=False,
                   regularization=None, l2_bias=None, accumulator=None, grid=None):
    """factorize's settings, validated, as a dict (fastgd.dask.factorize's too). solver
    None: "stochastic" with biases, else "batch"."""
    if solver is None:
        solver = "stochastic" if biases is True else "batch"
    _validation.check_choice(solver, "solver", SOLVERS)
    if l2 is None:
        l2 = 0.0 if solver == "batch" else STOCHASTIC_L2
    stochastic = _check_stochastic(solver, optimizer, biases, regularization, accumulator,
                                   eps_mode, momentum, nesterov, grid)
    _validation.check_choice(optimizer, "optimizer", OPTIMIZERS)
    _validation.check_choice(eps_mode, "eps_mode", tuple(updates.EPS_MODES))
    loss_spec = _losses.resolve(loss, delta, reduction)
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real):
        raise TypeError(f"lr must be a real number; got {type(lr).__name__}")
    lr = float(lr)
    if not (lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr must be > 0 and finite; got {lr}")
    momentum, nesterov = check_momentum(optimizer, momentum, nesterov, "optimizer")
    if tol is not None:
        tol = _validation.check_real(tol, "tol")
    return {
        "optimizer": optimizer, "lr": lr, "n_iter": _validation.check_int(n_iter, "n_iter", 0),
        "eps": _validation.check_real(eps, "eps"), "eps_mode": eps_mode, "momentum": momentum,
        "nesterov": nesterov, "nonneg": _validation.check_flag(nonneg, "nonneg"),
        "loss": loss, "delta": delta, "reduction": reduction, "loss_spec": loss_spec,
        "l2": masked.check_l2(l2), "tol": tol, "solver": solver,
        "l2_bias": masked.check_l2(l2 if l2_bias is None else l2_bias, "l2_bias"),
        **stochastic,
    }


def _check_stochastic(solver, optimizer, biases, regularization, accumulator, eps_mode,
                      momentum, nesterov, grid):
    """The stochastic solver's settings ({} of defaults for the batch solver); what
    applies to one solver only is a ValueError with the other."""
    biases = _validation.check_flag(biases, "biases")
    if regularization is not None:
        _validation.check_choice(regularization, "regularization", ("per_rating", "factors"))
    if accumulator is not None:
        _validation.check_choice(accumulator, "accumulator", ("coordinate", "vector"))
    if grid is not None:
        grid = _validation.check_int(grid, "grid", 1)
    if solver == "batch":
        given = [f"{name}={value!r}" for name, value, default in (
            ("biases", biases, False), ("regularization", regularization or "factors", "factors"),
            ("accumulator", accumulator, None), ("grid", grid, None)) if value != default]
        if given:
            raise ValueError(f"{', '.join(given)} needs solver='stochastic' (the batch solver "
                             "has no biases and penalises the whole factors)")
        return {"biases": False, "regularization": "factors", "step": None, "grid": None}
    if optimizer not in ("adagrad", "gd"):
        raise ValueError(f"solver='stochastic' steps with optimizer='adagrad' or 'gd' (SGD); "
                         f"got {optimizer!r}")
    if momentum != 0 or nesterov:
        raise ValueError("solver='stochastic' takes no momentum or nesterov")
    if eps_mode != "outside":
        raise ValueError(f"solver='stochastic' adds eps outside the square root "
                         f"(eps_mode='outside'); got eps_mode={eps_mode!r}")
    if optimizer == "gd" and accumulator is not None:
        raise ValueError("accumulator applies to optimizer='adagrad'")
    step = "sgd" if optimizer == "gd" else (
        "adagrad" if accumulator == "coordinate" else "adagrad_vector")
    return {"biases": biases, "regularization": regularization or "per_rating",
            "step": step, "grid": grid}


class _ObservedData:
    """A's observed entries, ready to iterate on: a plan (``plan``, with the entries'
    weights if any), or for a large dense A observed densely, the dense array, its mask
    and the weights like A (``weights``: the kernels' BLAS path)."""

    def __init__(self, A, mask, rank, weights=None):
        self.dense = self.mask = self.plan = self.weights = None
        if isinstance(A, _plan.ObservedEntries) or _plan.is_sparse(A):
            self.plan = _plan.observed(A, mask, weights=weights)
            self.shape, self.dtype = self.plan.shape, self.plan.dtype
            return
        dense, mask = _plan.as_dense(A, mask)
        self.shape, self.dtype = dense.shape, dense.dtype
        m, n = dense.shape
        if m * n * rank <= SOLVER_LOOP_MAX_WORK or masked.takes_sparse_path("auto", dense, mask):
            self.plan = _plan.observed(dense, None if mask is None else mask.view(bool),
                                       weights=weights)
        else:
            _plan.raise_if_observed_nonfinite(dense, mask)
            self.dense, self.mask = dense, None if mask is None else mask.view(bool)
            if weights is not None:
                self.weights, self._total_weight = _losses.dense_weights(
                    weights, dense, mask, dense.dtype)

    @property
    def n_observed(self):
        if self.plan is not None:
            return self.plan.nnz
        if self.mask is not None:
            return int(np.count_nonzero(self.mask))
        return int(np.count_nonzero(~np.isnan(self.dense)))

    @property
    def total_weight(self):
        """The observed entries' total weight (their number without weights)."""
        if self.plan is not None:
            return self.plan.total_weight
        return self._total_weight if self.weights is not None else float(self.n_observed)

    def mean_magnitude(self):
        """The mean |value| of the observed entries (0 when there is none)."""
        if self.plan is not None:
            values = self.plan.values
        elif self.mask is not None:
            values = self.dense[self.mask]
        else:
            values = self.dense[~np.isnan(self.dense)]
        return float(np.mean(np.abs(values), dtype=np.float64)) if values.size else 0.0


def as_generator(random_state):
    """random_state as a numpy.random.Generator (a RandomState is kept as it is)."""
    if isinstance(random_state, np.random.RandomState):
        return random_state
    try:
        return np.random.default_rng(random_state)
    except (TypeError, ValueError) as error:
        raise TypeError("random_state must be None, an int, a numpy.random.Generator or "
                        f"RandomState; got {type(random_state).__name__} "
                        f"{random_state!r}") from error


# The centred start's standard deviation (the stochastic solver's default start, as
# Surprise's and cornac's).
CENTRED_INIT_SCALE = 0.1


def random_factors(shape, mean_magnitude, rank, random_state, dtype, centred=False):
    """Random positive W (m, rank) and H (rank, n), scaled so that ``W @ H`` has the mean
    magnitude of the observed values (scikit-learn NMF's random initialisation); with
    ``centred``, N(0, CENTRED_INIT_SCALE²) entries instead. W is drawn first, then H."""
    m, n = shape
    rng = as_generator(random_state)
    if centred:
        W = CENTRED_INIT_SCALE * rng.standard_normal((m, rank))
        H = CENTRED_INIT_SCALE * rng.standard_normal((rank, n))
        return W.astype(dtype), H.astype(dtype)
    scale = math.sqrt(mean_magnitude / rank) if mean_magnitude > 0 else 1.0
    W = scale * np.abs(rng.standard_normal((m, rank)))
    H = scale * np.abs(rng.standard_normal((rank, n)))
    return W.astype(dtype), H.astype(dtype)


def initial_factors(shape, dtype, rank, init, random_state, mean_magnitude, centred=False):
    """(W, H): copies of ``init`` in the computing dtype, or random factors (centred
    ones with ``centred``); the mean magnitude of the observed values is asked for (a
    callable) only for the positive random start."""
    if init is None:
        if centred:
            return random_factors(shape, 0.0, rank, random_state, dtype, centred=True)
        return random_factors(shape, mean_magnitude(), rank, random_state, dtype)
    try:
        W0, H0 = init
    except (TypeError, ValueError):
        raise ValueError("init must be None or a pair (W0, H0); got "
                         f"{type(init).__name__}") from None
    W0, H0 = _plan.check_factors(W0, H0, shape, names=("init[0] (W0)", "init[1] (H0)"))
    if W0.shape[1] != rank:
        raise ValueError(f"init must have rank {rank} (W0's columns); got W0 of shape "
                         f"{W0.shape}")
    dtype = np.result_type(dtype, W0.dtype, H0.dtype)
    W = np.array(W0, dtype=dtype, order="C")  # copies: init is never modified
    H = np.array(H0, dtype=dtype, order="C")
    _plan.check_finite_factor(W, "init[0] (W0)")
    _plan.check_finite_factor(H, "init[1] (H0)")
    return W, H


class _CompiledLoop:
    """Steps of a small problem, run by ``_solvers.run_iterations`` (or its twin)."""

    def __init__(self, data, W, H, settings):
        plan = data.plan
        dtype = W.dtype
        self.W, self.HT = W, np.ascontiguousarray(H.T)
        self.s = settings
        self.plan_arrays = (plan.indptr, plan.indices, plan.values.astype(dtype, copy=False))
        spec = settings["loss_spec"]
        self.entry_loss = (spec.entry, spec.delta,
                           None if plan.weights is None else plan.weights.astype(dtype),
                           plan.total_weight)
        self.grads = (np.empty_like(self.W), np.empty_like(self.HT))
        self.has_state = has_optimizer_state(settings)
        self.states = tuple(np.zeros_like(a) if self.has_state else np.empty((0, 0), dtype)
                            for a in (self.W, self.HT))
        self.kernel = kernels().run_iterations

    def advance(self, n_steps):
        s = self.s
        history = np.empty(n_steps + 1)
        steps, status = self.kernel(
            *self.plan_arrays, self.W, self.HT, *self.states, *self.grads, history, n_steps,
            s["loss_spec"].reduction, s["l2"], OPTIMIZER_CODES[s["optimizer"]], s["lr"],
            s["eps"], updates.EPS_MODES[s["eps_mode"]], s["momentum"], s["nesterov"],
            0.0 if s["nonneg"] else -math.inf, -1.0 if s["tol"] is None else s["tol"],
            *self.entry_loss,
        )
        return steps, status, history[:steps + 1]

    def factors(self):
        return self.W, self.HT.T

    def state(self):
        """{name: (of W, of H)} of the optimizer's state."""
        if not self.has_state:
            return {}
        name = "accum" if self.s["optimizer"] == "adagrad" else "velocity"
        return {name: (self.states[0], self.states[1].T)}


def has_optimizer_state(settings):
    """Adagrad, Adam and RMSprop keep state, momentum keeps buffers; plain GD nothing."""
    return settings["optimizer"] != "gd" or settings["momentum"] != 0


def make_optimizer(params, settings, n_threads):
    """The fused-update optimizer that steps ``params`` (updated in place) with factorize's
    settings; its state is optimizer_state()'s."""
    bound = 0.0 if settings["nonneg"] else None
    common = {"lr": settings["lr"], "lower_bound": bound, "n_threads": n_threads}
    optimizer = settings["optimizer"]
    if optimizer == "adagrad":
        return updates.Adagrad(params, eps=settings["eps"], eps_mode=settings["eps_mode"],
                               **common)
    if optimizer == "gd":
        return updates.SGD(params, momentum=settings["momentum"],
                           nesterov=settings["nesterov"], **common)
    if optimizer == "adam":
        return updates.Adam(params, eps=settings["eps"], **common)
    return updates.RMSprop(params, eps=settings["eps"], momentum=settings["momentum"],
                           **common)


# The optimizer objects' state lists, by the names FactorizationResult.optimizer_state
# gives them (with "_W" and "_H").
STATE_NAMES = {
    "Adagrad": {"accum": "accums"},
    "SGD": {"velocity": "velocities"},
    "Adam": {"exp_avg": "exp_avgs", "exp_avg_sq": "exp_avg_sqs",
             "max_exp_avg_sq": "max_exp_avg_sqs"},
    "RMSprop": {"square_avg": "square_avgs", "momentum_buffer": "momentum_buffers",
                "grad_avg": "grad_avgs"},
}


def optimizer_state(optimizer):
    """{name: list of arrays, one per parameter} of an optimizer's state (none unused)."""
    names = STATE_NAMES[type(optimizer).__name__]
    state = {name: getattr(optimizer, attribute) for name, attribute in names.items()}
    return {name: arrays for name, arrays in state.items() if arrays is not None}


def status_after(loss, previous, settings):
    """How the run stands after the loss ``loss`` (``previous`` the step's before): on,
    converged or not finite."""
    if not math.isfinite(loss):
        return STATUS_NONFINITE
    if settings["tol"] is not None and abs(loss - previous) <= settings["tol"] * abs(previous):
        return STATUS_CONVERGED
    return STATUS_MAX_ITER


class _KernelLoop:
    """Steps of a large problem: one masked_loss_grad and one fused update per step, each
    threaded. The loss and gradients at the current point are kept between calls."""

    def __init__(self, data, W, H, settings, n_threads):
        self.data, self.W, self.H = data, W, H
        self.s, self.n_threads = settings, n_threads
        self.optimizer = make_optimizer([W, H], settings, n_threads)
        self.current = None

    def _evaluate(self):
        s = self.s
        A = self.data.plan if self.data.plan is not None else self.data.dense
        try:
            loss, dW, dH = masked.masked_loss_grad(
                A, self.W, self.H, mask=self.data.mask, loss=s["loss"], l2=s["l2"],
                delta=s["delta"], reduction=s["reduction"], weights=self.data.weights,
                n_threads=self.n_threads)
        except ValueError:
            if np.isfinite(self.W).all() and np.isfinite(self.H).all():
                raise
            return math.nan, None  # a step overflowed W or H
        return loss, [dW, dH]

    def advance(self, n_steps):
        s = self.s
        if self.current is None:
            self.current = self._evaluate()
        history = [self.current[0]]
        status = STATUS_MAX_ITER if math.isfinite(history[0]) else STATUS_NONFINITE
        steps = 0
        while status == STATUS_MAX_ITER and steps < n_steps:
            self.optimizer.step(self.current[1])
            steps += 1
            self.current = self._evaluate()
            history.append(self.current[0])
            status = status_after(history[-1], history[-2], s)
        return steps, status, np.array(history)

    def factors(self):
        return self.W, self.H

    def state(self):
        """{name: (of W, of H)} of the optimizer's state."""
        return {name: (arrays[0], arrays[1])
                for name, arrays in optimizer_state(self.optimizer).items()}


def _progress_bar(progress, n_iter):
    if not _validation.check_flag(progress, "progress"):
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        raise ImportError("progress=True needs tqdm: pip install 'fastgd[progress]'") from None
    return tqdm(total=n_iter, desc="factorize", unit="it")


def _solve(data, W, H, settings, callback, progress, n_threads, tracker=None):
    """Run the iterations on W and H (updated in place); a FactorizationResult. The
    settings are validated by the caller; ``tracker`` (a ValidationTracker, or None)
    records the validation RMSE after every iteration and may stop the run."""
    n_threads = _threads.resolve_n_threads(n_threads)
    n_iter = settings["n_iter"]
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable or None; got {type(callback).__name__}")
    _losses.check_defined(settings["loss_spec"], data.total_weight)
    rank = W.shape[1]
    if (settings["optimizer"] in OPTIMIZER_CODES and data.plan is not None
            and data.plan.nnz * max(rank, 1) <= SOLVER_LOOP_MAX_WORK):
        loop = _CompiledLoop(data, W, H, settings)
    else:
        loop = _KernelLoop(data, W, H, settings, n_threads)
    bar = _progress_bar(progress, n_iter)
    if callback is not None or tracker is not None:
        chunk = 1
    elif bar is not None:
        chunk = max(1, n_iter // PROGRESS_UPDATES)
    else:
        chunk = max(n_iter, 1)
    chunk = min(chunk, ITERATIONS_PER_CALL)
    history, done = LossHistory(), 0
    if tracker is not None:
        tracker.record(0, loop.factors())
    try:
        while True:
            steps, status, losses = loop.advance(min(chunk, n_iter - done))
            history.extend(losses if not len(history) else losses[1:])
            done += steps
            if bar is not None:
                bar.update(steps)
                bar.set_postfix(loss=f"{history.last:.6g}", refresh=False)
            if steps and tracker is not None and tracker.record(done, loop.factors()):
                status = STATUS_EARLY_STOPPED if status == STATUS_MAX_ITER else status
            if status == STATUS_MAX_ITER and steps and callback is not None:
                W_now, H_now = (a.view() for a in loop.factors())
                W_now.flags.writeable = H_now.flags.writeable = False
                if callback(done, history.last, W_now, H_now):
                    status = STATUS_STOPPED_BY_CALLBACK
            if status != STATUS_MAX_ITER or done >= n_iter:
                break
    finally:
        if bar is not None:
            bar.close()
    W_final, H_final = loop.factors()
    return finished_run(W_final, H_final, history.values(), done, status, loop.state(),
                        settings, data.mean_magnitude, tracker)


class ValidationTracker:
    """The RMSE over held-out entries (a plan) after every iteration, its best iteration,
    and with ``early_stopping`` a copy of the best factors and the verdict to stop once
    ``patience`` iterations have passed without a lower RMSE."""

    def __init__(self, plan, early_stopping, patience):
        self.plan, self.early_stopping, self.patience = plan, early_stopping, patience
        self.history = []
        self.best, self.best_iteration, self.best_factors = math.inf, 0, None

    def rmse_of(self, W, H):
        """The RMSE of ``W @ H`` over the held-out entries."""
        residual = masked.masked_residual(self.plan, W, H)
        return math.sqrt(masked.sum_of_squares(residual) / residual.shape[0])

    def record(self, iteration, factors, rmse=None):
        """Record the RMSE after ``iteration`` of the model ``factors`` (a tuple of
        arrays, copied when best; with ``rmse`` None, (W, H) and their rmse_of); True
        when the run should stop."""
        if rmse is None:
            rmse = self.rmse_of(*factors)
        self.history.append(rmse)
        if rmse < self.best:
            self.best, self.best_iteration = rmse, iteration
            if self.early_stopping:
                self.best_factors = tuple(np.array(a, order="C") for a in factors)
        return self.early_stopping and iteration - self.best_iteration >= self.patience


def held_out_split(A, mask, weights, validation, random_state):
    """(training data, held-out plan): A's observed entries less a random ``validation``
    fraction of them (a float), or A and the held-out entries ``validation`` of A's shape
    (any form of A)."""
    if isinstance(validation, bool):
        raise TypeError("validation must be a fraction of the observed entries to hold out "
                        "or the held-out entries; got a bool")
    if not isinstance(validation, numbers.Real):
        try:
            return None, _plan.observed(validation)
        except (TypeError, ValueError) as error:  # its messages call it A
            raise type(error)(f"validation (the held-out entries): {error}") from None
    fraction = float(validation)
    if not 0 < fraction < 1:
        raise ValueError(f"validation must be a fraction in (0, 1) of the observed entries "
                         f"to hold out, or held-out entries; got {validation}")
    plan = _plan.observed(A, mask, weights=weights)
    rng = (random_state if isinstance(random_state, np.random.RandomState)
           else np.random.default_rng(random_state))
    n_held_out = round(fraction * plan.nnz)
    if not 0 < n_held_out < plan.nnz:
        raise ValueError(f"validation={validation} holds out {n_held_out} of the "
                         f"{plan.nnz} observed entries; it must leave some on both sides")
    held_out = np.zeros(plan.nnz, dtype=bool)
    held_out[rng.permutation(plan.nnz)[:n_held_out]] = True
    return _entries_subset(plan, ~held_out), _entries_subset(plan, held_out, weights=False)


def _entries_subset(plan, keep, weights=True):
    """The plan of the entries where ``keep`` (with their weights, unless told not to)."""
    subset = _plan.observed((plan.rows[keep], plan.cols[keep], plan.values[keep], plan.shape))
    if weights and plan.weights is not None:
        return _plan.observed(subset, weights=plan.weights[keep])
    return subset


def _in_index_of(entries, ids, shape):
    """A plan with ids (``observed_from_ids``) laid out in the rows and columns of other
    ``ids`` of ``shape``: the entries whose ids are among them (a held-out plan of its own
    ids, for a training plan with ids). A plan without ids is returned as it is."""
    if entries.row_ids is None:
        return entries
    rows, row_known = _IdIndex(ids[0], "row_ids", shape[0]).positions(
        entries.row_ids[entries.rows])
    cols, col_known = _IdIndex(ids[1], "col_ids", shape[1]).positions(
        entries.col_ids[entries.cols])
    known = row_known & col_known
    return _plan.observed((rows[known], cols[known], entries.values[known], shape))


def check_early_stopping(validation, early_stopping, patience):
    early_stopping = _validation.check_flag(early_stopping, "early_stopping")
    patience = _validation.check_int(patience, "patience", 1)
    if early_stopping and validation is None:
        raise ValueError("early_stopping=True needs validation= (held-out entries, or the "
                         "fraction of the observed entries to hold out)")
    return early_stopping, patience


class LossHistory:
    """The loss of every iteration in a float64 array that doubles when full: 8 bytes an
    iteration, however many iterations a run takes."""

    def __init__(self):
        self._buffer = np.empty(64)
        self._size = 0

    def __len__(self):
        return self._size

    def extend(self, losses):
        losses = np.asarray(losses, dtype=np.float64)
        end = self._size + losses.shape[0]
        if end > self._buffer.shape[0]:
            grown = np.empty(max(end, 2 * self._buffer.shape[0]))
            grown[:self._size] = self._buffer[:self._size]
            self._buffer = grown
        self._buffer[self._size:end] = losses
        self._size = end

    @property
    def last(self):
        return float(self._buffer[self._size - 1])

    def values(self):
        """The losses so far, as an array of their own."""
        return self._buffer[:self._size].copy()


# The factors count as collapsed when every prediction they can make is below this
# fraction of the data's mean magnitude: what too large an l2 does.
COLLAPSED_FRACTION = 1e-3


def _outside_fastgd():
    """The stacklevel, for a warning issued by this function's caller, of the first frame
    outside the fastgd package: the user's line, however deep the solver's calls."""
    package = os.path.dirname(os.path.abspath(__file__)) + os.sep
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package):
        frame, level = frame.f_back, level + 1
    return level


def finished_run(W, H, history, done, status, states, settings, data_magnitude=None,
                 tracker=None, penalty=None, biases=None, data_loss=None):
    """The FactorizationResult of a run (``states``: {name: (of W, of H)} of the
    optimizer's state), with a warning when the loss stopped being finite, or when the l2
    penalty shrank the factors to ~0 (checked against ``data_magnitude``, the observed
    entries' mean magnitude, a function called only then, when given). With a
    ValidationTracker that keeps the best factors, those are the result's (the caller's
    when it gives the biases, ``(global_mean, row_bias, col_bias)``). A given ``penalty``
    is not part of the history (the stochastic solver's, whose history is the data term),
    and a given ``data_loss`` is the final model's, exact where the history's is not.
    """
    final = -1
    if tracker is not None and tracker.best_factors is not None:
        final = tracker.best_iteration
        if biases is None:
            W, H = tracker.best_factors
    if status == STATUS_NONFINITE:
        warnings.warn(f"factorize stopped at iteration {done}: the loss is {history[-1]}; "
                      "lower lr", RuntimeWarning, stacklevel=_outside_fastgd())
    state = {}
    for name, (of_W, of_H) in states.items():
        state[f"{name}_W"] = np.array(of_W, order="C")
        state[f"{name}_H"] = np.array(of_H, order="C")
    l2 = settings["l2"]
    history = np.asarray(history, dtype=np.float64)
    if penalty is not None:
        data_loss = history[final] if data_loss is None else data_loss
    else:
        penalty = (0.5 * l2 * (masked.sum_of_squares(W) + masked.sum_of_squares(H)) if l2
                   else 0.0)
        data_loss = history[final] - penalty
    if l2 and data_magnitude is not None and status != STATUS_NONFINITE:
        data_magnitude = data_magnitude()
        largest_prediction = (W.shape[1] * float(np.abs(W).max(initial=0.0))
                              * float(np.abs(H).max(initial=0.0)))
        if data_magnitude and largest_prediction < COLLAPSED_FRACTION * data_magnitude:
            warnings.warn(
                f"factorize: the factors collapsed towards 0 (no prediction exceeds "
                f"{largest_prediction:.3g}, the data's mean magnitude is "
                f"{data_magnitude:.3g}): l2={l2:g} outweighs the data term of "
                f"loss={settings['loss']!r}. l2 is not scaled by the number of observed "
                "entries: with 'mse' or 'rmse' the data term is a mean, so use a much "
                "smaller l2 (see factorize's l2 parameter)", RuntimeWarning,
                stacklevel=_outside_fastgd())
    result = FactorizationResult(
        W, np.ascontiguousarray(H), history, done, converged=status == STATUS_CONVERGED,
        message=STATUS_MESSAGES[status], optimizer_state=state,
        data_loss=data_loss, penalty=penalty,
        validation_history=None if tracker is None else tracker.history,
        best_iteration=None if tracker is None else tracker.best_iteration,
        **({} if biases is None else dict(zip(("global_mean", "row_bias", "col_bias"),
                                              biases, strict=True))))
    result._settings = settings
    return result


def factorize(A: Any, rank: int, *, mask: ArrayLike | None = None,
              init: tuple[ArrayLike, ArrayLike] | None = None,
              random_state: RandomState = None, optimizer: Optimizer = "adagrad",
              lr: float = 0.1, n_iter: int = 1000, eps: float = 1e-8,
              eps_mode: EpsMode = "outside", momentum: float = 0.0, nesterov: bool = False,
              nonneg: bool = False, loss: Loss = "rmse", l2: float | None = None,
              delta: float | None = None, reduction: Reduction | None = None,
              weights: ArrayLike | None = None, tol: float | None = None,
              validation: Any = None, early_stopping: bool = False, patience: int = 10,
              solver: Solver | None = None, biases: bool = False,
              regularization: Regularization | None = None, l2_bias: float | None = None,
              accumulator: Accumulator | None = None,
              grid: int | None = None,
              callback: Callable[[int, float, FloatArray, FloatArray], Any] | None = None,
              progress: bool = False, n_threads: int | None = None) -> FactorizationResult:
    """Factorise A ≈ W @ H from its observed entries, by gradient descent.

    Minimises ``loss`` over the observed entries of A (plus
    ``0.5 * l2 * (||W||² + ||H||²)``) with Adagrad or (momentum / Nesterov) gradient
    descent, both factors stepped together from the gradients at the same point, and
    with ``nonneg`` projected onto ``W, H >= 0`` after every step (projected gradient
    descent, projected Adagrad). A small problem runs its whole loop in compiled code;
    a large one uses the threaded kernels.

    Parameters
    ----------
    A : array_like of shape (m, n), scipy.sparse matrix, or ObservedEntries
        The data, NaN where missing (or see ``mask``); a sparse matrix's stored
        entries are the observed ones.
    rank : int
        The inner dimension k of ``W`` (m, k) and ``H`` (k, n).
    mask : array_like of bool, shape (m, n), optional
        True where a dense A is observed.
    init : pair (W0, H0), optional
        The starting point (copied, never modified). Default: random positive factors
        from ``random_state``, scaled to the data.
    random_state : int, numpy.random.Generator or RandomState, optional
    optimizer : {"adagrad", "gd", "adam", "rmsprop"}
        Adagrad, gradient descent (with ``momentum`` and ``nesterov``), Adam or RMSprop
        (with ``momentum``), with torch.optim's semantics and defaults for the settings
        not named here (Adam's betas (0.9, 0.999), RMSprop's alpha 0.99). A small problem
        runs Adagrad and gradient descent in a compiled loop; Adam and RMSprop always step
        from Python with the fused updates.
    lr : float
        The learning rate (> 0).
    n_iter : int
        The maximum number of iterations.
    eps, eps_mode
        The eps of Adagrad, Adam and RMSprop; where it enters Adagrad (see
        :func:`adagrad_update`).
    momentum : float
        For "gd" and "rmsprop": PyTorch's momentum.
    nesterov : bool
        For "gd" with momentum: Nesterov's update.
    nonneg : bool
        Project W and H onto ``>= 0`` after every step.
    loss : {"rmse", "mse", "sse", "huber"}
        As in :func:`masked_loss_grad`. "huber" makes the fit robust to outliers: an
        entry whose residual exceeds ``delta`` pulls on the factors with a force of
        ``delta``, not in proportion to its error.
    l2 : float, optional
        Weight of the penalty (default 0 for the batch solver, 0.1 per rating for the
        stochastic one). The batch solver adds ``0.5 * l2 * (||W||² + ||H||²)`` to the
        loss as it is: it is not scaled by the number of observed entries N. With ``loss="sse"``
        (a sum over the entries) the weight ``λ`` of libraries that penalise each
        observed entry's row and column vectors (Surprise's ``reg``, cornac, LIBMF)
        corresponds to about ``l2 = 2 λ c``, with ``c = 2 N / (m + n)`` the mean number of
        observed entries per row or column; with ``"mse"`` (a mean) divide that by N:
        ``l2 ≈ 4 λ / (m + n)``. So ``l2=0.02`` is mild with ``"sse"`` on ratings data
        but, with ``"mse"`` or ``"rmse"``, shrinks the factors to about 0; a RuntimeWarning
        says so when it happens. The result's ``data_loss`` and ``penalty`` give the two
        terms.
    delta, reduction, weights
        Huber's threshold, the reduction of "huber" ("mean" or "sum"), and a weight per
        observed entry, as in :func:`masked_loss_grad` (weights shaped like A, or one per
        observed entry in the plan's order).
    tol : float, optional
        Stop when ``|loss_i - loss_(i-1)| <= tol * |loss_(i-1)|`` (the training loss).
    validation : float or held-out entries, optional
        Entries to measure the fit on as it runs: a fraction in (0, 1) of A's observed
        entries, held out at random (by ``random_state``) and not trained on, or the
        held-out entries themselves in any form A takes (of A's shape; they should be
        missing from A). When A and the held-out entries are both plans made by
        :func:`observed_from_ids`, they are matched by id (held-out entries of ids that A
        does not have are left out). The result's ``validation_history`` is their RMSE at the
        initial point and after every iteration, ``best_iteration`` where it was lowest.
        The run then returns to Python after every iteration.
    early_stopping : bool, default False
        With ``validation``: stop once the validation RMSE has not improved for
        ``patience`` iterations, and return the factors of its best iteration.
    patience : int, default 10
    solver : {"batch", "stochastic"}, optional
        Default: "stochastic" with ``biases=True``, else "batch".
        ``"batch"``: every iteration is one step on the gradient over all observed
        entries, as above. ``"stochastic"``: every iteration is one pass over the
        observed entries in a shuffled order, each entry stepping only the row of W, the
        column of H and the biases it touches (``optimizer="gd"``: plain SGD, Surprise's
        and cornac's update; ``"adagrad"``: Adagrad), on all ``n_threads`` at once with
        the same result for any number of threads. It is the solver for ratings data
        (large, sparse, with biases): see the guide's recommender page. It minimises
        ``0.5 * sum_e loss_e + penalty``, ``loss_e`` being each entry's squared residual
        (or twice its Huber loss) times its weight. ``loss_history`` holds the data term
        alone as ``loss`` measures it (the training RMSE by default): at the start, then
        each pass's running loss (every entry's just before its step, as LIBMF and
        Surprise report it, at no extra cost; ``tol`` watches it); ``data_loss`` is the
        result's own, exact, and ``penalty`` the penalty's value there. The default start
        is centred: N(0, 0.1²) entries (their absolute values with ``nonneg``).
    biases : bool, default False
        With ``solver="stochastic"``: model ``A[i, j]`` as ``mu + b[i] + c[j] +
        (W @ H)[i, j]``, ``mu`` the (weighted) mean of the observed values and the row
        and column biases ``b`` and ``c`` learnt with W and H (the result's
        ``global_mean``, ``row_bias`` and ``col_bias``; ``predict`` and ``reconstruct``
        include them).
    regularization : {"per_rating", "factors"}, optional
        With ``solver="stochastic"``, how ``l2`` (and ``l2_bias``) penalise:
        ``"per_rating"`` (its default) adds ``0.5 * l2 * (||W[u]||² + ||H[:, i]||²)`` for
        every observed entry (u, i), so a row's penalty grows with its number of entries:
        the ``reg``/``lambda`` of Surprise, cornac and LIBMF, whose values carry over
        (0.02 to 0.1 on ratings); ``"factors"``: ``0.5 * l2 * (||W||² + ||H||²)`` once, as
        the batch solver does.
    l2_bias : float, optional
        The biases' penalty weight, in the form ``regularization`` says (default: l2).
    accumulator : {"vector", "coordinate"}, optional
        With ``solver="stochastic"`` and ``optimizer="adagrad"`` (default "vector"): one
        Adagrad accumulator per coordinate of W and H (torch's Adagrad), or LIBMF's form:
        one per row of W
        and column of H (and per bias), starting at 1, each step taken with the
        accumulator as it was before the entry, which then adds the mean square of the
        entry's gradient over the rank. A rank-th of the memory, and about twice as fast:
        no square root per coordinate, none between two entries of one row.
    grid : int, optional
        With ``solver="stochastic"``: the entries are cut into ``grid x grid`` blocks of
        random row and column groups, which threads take in parallel (default: about
        4096 entries a block, at most 16 x 16; never dependent on n_threads).
    callback : callable, optional
        ``callback(iteration, loss, W, H)`` after every iteration (read-only views of
        the current factors); returning True stops the run. With a callback, the loop
        returns to Python after every iteration.
    progress : bool
        Show a progress bar with the current loss (needs tqdm).
    n_threads : int, optional
        Threads of the kernels of a large problem (None: all CPUs or OMP_NUM_THREADS).

    Returns
    -------
    FactorizationResult
        ``W``, ``H``, ``loss_history`` (n_iter + 1 losses, the first at the initial
        point; the penalty included), ``data_loss`` and ``penalty`` (the final loss's two
        terms), ``n_iter``, ``converged``, ``reconstruct()``, ``predict(rows, cols)``.
        float32 when A and init are float32, else float64.

    Raises
    ------
    ValueError
        A bad shape, rank or setting (a setting of the other solver among them), an init
        of another shape, NaN or inf in init, an
        inf among A's observed values, a negative or non-finite weight, or no observed
        entry (or weight) for a mean.
    TypeError
        A non-real dtype.

    Warns
    -----
    RuntimeWarning
        When the loss stops being finite (the run stops there): lr is too large. When
        ``l2`` shrank the factors to about 0 (every prediction below 1e-3 times the
        observed entries' mean magnitude).

    See Also
    --------
    MatrixFactorization : the same as a scikit-learn estimator.
    masked_loss_grad : the loss and gradients of one iteration.

    Examples
    --------
    The tutorial's 4 x 3 ratings matrix with one missing entry, by projected
    gradient descent:

    >>> import numpy as np
    >>> import fastgd
    >>> A = np.array([[np.nan, 4, 5], [4, 4, 5], [5, 3, 4], [2, 3, 3]])
    >>> result = fastgd.factorize(A, 2, optimizer="gd", lr=0.01, n_iter=10000,
    ...                           nonneg=True, random_state=0)
    >>> result.n_iter, bool(result.loss_history[-1] < 0.1)
    (10000, True)
    >>> result.reconstruct().round()
    array([[5., 4., 5.],
           [4., 4., 5.],
           [5., 3., 4.],
           [2., 3., 3.]])

    Ratings with biases, by the stochastic solver:

    >>> ratings = fastgd.observed((np.array([0, 0, 1, 2, 2]), np.array([0, 1, 1, 0, 2]),
    ...                            np.array([4.0, 3.5, 2.0, 5.0, 4.5]), (3, 3)))
    >>> result = fastgd.factorize(ratings, 2, solver="stochastic", biases=True, l2=0.05,
    ...                           n_iter=200, random_state=0)
    >>> round(result.global_mean, 2), bool(result.loss_history[-1] < 0.1)
    (3.8, True)
    >>> result.predict([0, 2], [0, 2]).round(1)  # two of the ratings
    array([4. , 4.5])
    """
    rank = _validation.check_int(rank, "rank", 1)
    settings = check_settings(optimizer=optimizer, lr=lr, n_iter=n_iter, eps=eps,
                              eps_mode=eps_mode, momentum=momentum, nesterov=nesterov,
                              nonneg=nonneg, loss=loss, l2=l2, tol=tol, delta=delta,
                              reduction=reduction, solver=solver, biases=biases,
                              regularization=regularization, l2_bias=l2_bias,
                              accumulator=accumulator, grid=grid)
    early_stopping, patience = check_early_stopping(validation, early_stopping, patience)
    ids = ((A.row_ids, A.col_ids) if isinstance(A, _plan.ObservedEntries)
           and A.row_ids is not None else None)
    if ids is not None and isinstance(validation, _plan.ObservedEntries):
        validation = _in_index_of(validation, ids, A.shape)
    result = _factorize(A, rank, mask, init, random_state, weights, validation,
                        early_stopping, patience, callback, progress, n_threads, settings)
    if ids is not None:
        result.row_ids = _IdIndex(ids[0], "row_ids", result.W.shape[0])
        result.col_ids = _IdIndex(ids[1], "col_ids", result.H.shape[1])
    return result


def _factorize(A, rank, mask, init, random_state, weights, validation, early_stopping,
               patience, callback, progress, n_threads, settings):
    tracker = None
    if validation is not None:
        training, held_out = held_out_split(A, mask, weights, validation, random_state)
        if training is not None:
            A, mask, weights = training, None, None
    if settings["solver"] == "stochastic":
        data = _plan.observed(A, mask, weights=weights)
    else:
        data = _ObservedData(A, mask, rank, weights)
    if validation is not None:
        if held_out.shape != data.shape:
            raise ValueError(f"validation must have A's shape {data.shape}; got "
                             f"{held_out.shape}")
        if held_out.nnz == 0:
            raise ValueError("validation holds no entry")
        tracker = ValidationTracker(held_out, early_stopping, patience)
    if settings["solver"] == "batch":
        W, H = initial_factors(data.shape, data.dtype, rank, init, random_state,
                               data.mean_magnitude)
        return _solve(data, W, H, settings, callback, progress, n_threads, tracker)
    from fastgd import _stochastic

    _stochastic.check_shape(data.shape)
    rng = as_generator(random_state)
    W, H = initial_factors(data.shape, data.dtype, rank, init, rng, None, centred=True)
    if settings["nonneg"] and init is None:
        W, H = np.abs(W), np.abs(H)
    return _stochastic.solve(data, W, H, settings, callback, progress, n_threads, tracker,
                             rng)
