"""fastgd on Dask: the same compiled kernels inside Dask tasks, for data beyond one machine.

``import fastgd.dask`` (``pip install "fastgd[dask]"``); ``import fastgd`` alone never
imports Dask. Every function works on whatever scheduler is active: Dask's default
threaded scheduler, or a ``distributed.Client`` (a ``LocalCluster`` or a remote
scheduler). Inside the tasks the kernels run with ``n_threads=1`` by default, so that
Dask's workers and OpenMP do not oversubscribe the cores; they release the GIL, so the
threaded scheduler runs blocks in parallel.

- :func:`sqeuclidean`: pairwise squared distances, a lazy array chunked like (X's rows,
  Y's rows), each block computed on whole feature rows by the in-memory kernel.
- :func:`masked_loss_grad`: the loss and gradients of ``W @ H`` against a chunked A with
  NaN as missing, the blocks' parts added by tree reductions.
- :func:`factorize`: data-parallel full-batch gradient descent; the row blocks of A (as
  plans of their observed entries) and of W, with W's optimizer state, stay on the
  workers, and only H, its gradient and the loss travel.
"""

from __future__ import annotations

import math
import operator
import os
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np

try:
    import dask
    import dask.array as da
    import dask.base
except ImportError as error:
    raise ImportError(
        f"fastgd.dask needs Dask ({error}): pip install \"fastgd[dask]\"") from error

from fastgd import _losses, _plan, _validation, distances, factorization, masked

if TYPE_CHECKING:
    from fastgd._typing import (
        Any,
        ArrayLike,
        Callable,
        EpsMode,
        Loss,
        Optimizer,
        RandomState,
        Reduction,
    )

__all__ = ["factorize", "masked_loss_grad", "sqeuclidean"]


def _as_dask(value, name, shape_hint):
    """A 2-D dask array of a float dtype (NumPy input becomes one chunk)."""
    if isinstance(value, da.Array):
        if value.ndim != 2:
            raise ValueError(f"{name} must be a 2-D array of shape {shape_hint}; got a "
                             f"{value.ndim}-D array of shape {value.shape}")
        dtype = _validation.float_dtype_of(value, name)
        if any(math.isnan(c) for chunks in value.chunks for c in chunks):
            raise ValueError(f"{name} must have known chunk sizes; call "
                             f"{name}.compute_chunk_sizes() first")
        return value.astype(dtype) if value.dtype != dtype else value
    array = _validation.as_float_array(value, name, 2, shape_hint)
    return da.from_array(array, chunks=array.shape or (0, 0))


def _tree_sum(items):
    """Delayed pairwise sum of a list of delayed values (a tree of depth log2 n)."""
    items = list(items)
    while len(items) > 1:
        pairs = zip(items[::2], items[1::2], strict=False)  # the odd one out waits
        items = [dask.delayed(operator.add)(a, b) for a, b in pairs] + (
            [items[-1]] if len(items) % 2 else [])
    return items[0]


# sqeuclidean ---------------------------------------------------------------------------

def _distance_block(x, y, n_threads):
    return distances.sqeuclidean(x, y, n_threads=n_threads)


def _self_distance_block(x, n_threads):
    return distances.sqeuclidean(x, n_threads=n_threads)


def _transposed(block):
    return np.ascontiguousarray(block.T)


def sqeuclidean(X: Any, Y: Any = None, *, n_threads: int = 1) -> da.Array:
    """Pairwise squared Euclidean distances of chunked arrays, lazily.

    Parameters
    ----------
    X : dask.array.Array or array_like of shape (n, d)
    Y : dask.array.Array or array_like of shape (m, d), optional
        None means X; then only the blocks on and above the diagonal are computed, each
        diagonal block by the in-memory kernel's symmetric path, and the blocks below
        are their transposes: the result is exactly symmetric with an exactly zero
        diagonal.
    n_threads : int, default 1
        The threads of each task's kernel call.

    Returns
    -------
    dask.array.Array of shape (n, m)
        Chunked (X's row chunks, Y's row chunks); feature chunks are joined first, so
        every block is computed on whole rows, with :func:`fastgd.sqeuclidean`'s
        guarantees (never negative, 0 only for equal rows, within its error bound).

    Examples
    --------
    >>> import dask.array as da
    >>> import numpy as np
    >>> import fastgd.dask
    >>> X = da.from_array(np.array([[0.0, 0.0], [3.0, 4.0], [6.0, 8.0]]), chunks=(2, 1))
    >>> fastgd.dask.sqeuclidean(X).compute()
    array([[  0.,  25., 100.],
           [ 25.,   0.,  25.],
           [100.,  25.,   0.]])
    """
    X = _as_dask(X, "X", "(n, d)")
    if Y is not None:
        Y = _as_dask(Y, "Y", "(m, d)")
        if Y.shape[1] != X.shape[1]:
            raise ValueError(f"Y must have X's {X.shape[1]} features (columns); got shape "
                             f"{Y.shape}")
        dtype = np.result_type(X.dtype, Y.dtype)
        X = X.astype(dtype).rechunk({1: -1})
        Y = Y.astype(dtype).rechunk({1: -1})
        return da.blockwise(_distance_block, "ij", X, "ik", Y, "jk", dtype=dtype,
                            concatenate=True, n_threads=n_threads)
    X = X.rechunk({1: -1})
    rows = X.to_delayed()[:, 0] if X.numblocks[1] else []
    sizes = X.chunks[0]
    upper = {}
    for i, xi in enumerate(rows):
        upper[i, i] = dask.delayed(_self_distance_block)(xi, n_threads)
        for j in range(i + 1, len(rows)):
            upper[i, j] = dask.delayed(_distance_block)(xi, rows[j], n_threads)
    grid = [[da.from_delayed(upper[i, j] if i <= j else dask.delayed(_transposed)(upper[j, i]),
                             shape=(sizes[i], sizes[j]), dtype=X.dtype)
             for j in range(len(rows))] for i in range(len(rows))]
    if not grid:
        return da.zeros((X.shape[0], X.shape[0]), dtype=X.dtype)
    return da.block(grid)


# masked_loss_grad ----------------------------------------------------------------------

def _block_partial(A_block, W_block, H_block, weights_block, loss, n_threads):
    """(sum of the entry losses, the observed entries' total weight, and the gradients of
    that sum) of one block: the summed form of ``loss``, from which the loss and its
    gradients follow."""
    if weights_block is not None:
        A_block = _plan.observed(A_block, weights=weights_block)
    if isinstance(A_block, _plan.ObservedEntries):
        count = A_block.total_weight
    else:
        count = int(np.count_nonzero(~np.isnan(A_block)))
    total, dW, dH = masked.masked_loss_grad(A_block, W_block, H_block, n_threads=n_threads,
                                            **_losses.summed(loss))
    return total, count, dW, dH


def _weight_blocks(A, weights):
    """The blocks of ``weights`` (like A, chunked like A) as delayed objects, or None."""
    if weights is None:
        return None
    weights = _as_dask(weights, "weights", "(m, n)")
    if weights.shape != A.shape:
        raise ValueError(f"weights must have A's shape {A.shape}; got shape {weights.shape}")
    return weights.rechunk(A.chunks).to_delayed()


def _aligned_factors(A, W, H):
    """W chunked like A's rows (one column chunk), H like A's columns (one row chunk)."""
    W = _as_dask(W, "W", "(m, k)")
    H = _as_dask(H, "H", "(k, n)")
    m, n = A.shape
    if W.shape[0] != m:
        raise ValueError(f"W must have shape (m, k) = ({m}, k); got {W.shape}")
    if H.shape[1] != n:
        raise ValueError(f"H must have shape (k, n) = (k, {n}); got {H.shape}")
    if W.shape[1] != H.shape[0]:
        raise ValueError(f"W and H must share the rank k; got W of shape {W.shape} and H "
                         f"of shape {H.shape}")
    return W.rechunk((A.chunks[0], -1)), H.rechunk((-1, A.chunks[1]))


def masked_loss_grad(A: Any, W: Any, H: Any, *, loss: Loss = "mse", l2: float = 0.0,
                     delta: float | None = None, reduction: Reduction | None = None,
                     weights: Any = None, n_threads: int = 1) -> tuple[Any, Any, Any]:
    """The masked loss of ``W @ H`` against a chunked A and its gradients.

    Every block ``A[I, J]`` gives, by the in-memory kernel, its sum of squared residuals,
    its count of observed entries and its parts of both gradients; the counts and sums
    are added by tree reductions, and the loss and gradients follow as in
    :func:`fastgd.masked_loss_grad`.

    Parameters
    ----------
    A : dask.array.Array or array_like of shape (m, n)
        NaN where missing; chunked along rows and columns.
    W : dask.array.Array or array_like of shape (m, k)
        Rechunked along A's row chunks.
    H : dask.array.Array or array_like of shape (k, n)
    loss : {"mse", "sse", "rmse", "huber"}
    l2 : float
    delta, reduction
        As in :func:`fastgd.masked_loss_grad`.
    weights : dask.array.Array or array_like of shape (m, n), optional
        A non-negative weight per observed entry (rechunked like A).
    n_threads : int, default 1
        The threads of each task's kernel call.

    Returns
    -------
    loss : float
    dW : ndarray of shape (m, k)
    dH : ndarray of shape (k, n)
        Equal to the in-memory kernel's results to rounding.

    Examples
    --------
    >>> import dask.array as da
    >>> import numpy as np
    >>> import fastgd, fastgd.dask
    >>> A = np.array([[1.0, np.nan, 2.0], [3.0, 4.0, np.nan]])
    >>> W, H = np.ones((2, 1)), np.ones((1, 3))
    >>> loss, dW, dH = fastgd.dask.masked_loss_grad(da.from_array(A, chunks=1), W, H)
    >>> bool(np.isclose(loss, fastgd.masked_loss_grad(A, W, H)[0]))
    True
    """
    spec = _losses.resolve(loss, delta, reduction)
    l2 = masked.check_l2(l2)
    A = _as_dask(A, "A", "(m, n)")
    W, H = _aligned_factors(A, W, H)
    weight_blocks = _weight_blocks(A, weights)
    dtype = np.result_type(A.dtype, W.dtype, H.dtype)
    A_blocks, W_blocks, H_blocks = (A.to_delayed(), W.astype(dtype).to_delayed()[:, 0],
                                    H.astype(dtype).to_delayed()[0, :])
    partials = [[dask.delayed(_block_partial, nout=4)(
                     A_blocks[i, j], W_blocks[i], H_blocks[j],
                     None if weight_blocks is None else weight_blocks[i, j], spec, n_threads)
                 for j in range(A.numblocks[1])] for i in range(A.numblocks[0])]
    flat = [p for row in partials for p in row]
    sse = _tree_sum(p[0] for p in flat) if flat else 0.0
    count = _tree_sum(p[1] for p in flat) if flat else 0
    dW_rows = [_tree_sum(p[2] for p in row) for row in partials]
    dH_cols = [_tree_sum(partials[i][j][3] for i in range(A.numblocks[0]))
               for j in range(A.numblocks[1])] if partials else []
    sse, count, dW_rows, dH_cols = dask.compute(sse, count, dW_rows, dH_cols)
    (m, n), k = A.shape, W.shape[1]
    dW = np.concatenate(dW_rows, axis=0) if dW_rows else np.zeros((m, k), dtype)
    dH = np.concatenate(dH_cols, axis=1) if dH_cols else np.zeros((k, n), dtype)
    value, scale = _losses.value_and_scale(spec, float(sse), float(count))
    # The blocks' gradients are those of the summed form: rescale to the loss asked for.
    dW = dW * dtype.type(scale / _losses.summed_scale(spec))
    dH = dH * dtype.type(scale / _losses.summed_scale(spec))
    if l2:
        W_np, H_np = dask.compute(W.astype(dtype), H.astype(dtype))
        value += 0.5 * l2 * (masked.sum_of_squares(W_np) + masked.sum_of_squares(H_np))
        dW += l2 * W_np
        dH += l2 * H_np
    return value, dW, dH


# factorize -----------------------------------------------------------------------------
# Each row block of A lives in one place as a _RowBlock: the plans of its blocks (one per
# column chunk), its block of W, W's optimizer state and W's last gradient. On a
# distributed cluster it is an Actor on one worker (calls go straight to it, and its
# arrays never move); otherwise an object in this process, called from a thread pool
# (the kernels release the GIL). Every iteration, each row block takes W's fused step in
# place and evaluates its part of the loss and gradients at the new point; only H, its
# gradient and a few numbers travel.

def _row_plans(A_blocks, weight_blocks):
    """The plans of one row of A's blocks, with their weights (None: unweighted; A's
    blocks are only read)."""
    if weight_blocks is None:
        weight_blocks = [None] * len(A_blocks)
    return [_plan.observed(block, weights=weights)
            for block, weights in zip(A_blocks, weight_blocks, strict=True)]


class _RowBlock:
    """One row block of the factorisation: see the comment above. Its buffers are
    allocated once and reused every iteration."""

    def __init__(self, plans, col_edges, n_threads):
        self.plans, self.col_edges, self.n_threads = plans, col_edges, n_threads
        self.W = self.optimizer = self.grad = None

    def totals(self):
        """(observed entries, sum of their |values|, their total weight)."""
        return (sum(plan.nnz for plan in self.plans),
                sum(float(np.sum(np.abs(plan.values), dtype=np.float64))
                    for plan in self.plans),
                sum(plan.total_weight for plan in self.plans))

    def start(self, W_block, settings):
        """Take W's block (a copy, updated in place from now on) and its optimizer, with
        factorize's settings (its state starts at zero)."""
        self.W = np.array(W_block, order="C")
        dtype, rank = self.W.dtype, self.W.shape[1]
        self.optimizer = factorization.make_optimizer([self.W], settings, self.n_threads)
        self.values = [plan.values.astype(dtype, copy=False) for plan in self.plans]
        self.weights = [None if plan.weights is None else plan.weights.astype(dtype)
                        for plan in self.plans]
        self.loss = settings["loss_spec"]
        self.grad = np.zeros_like(self.W)  # R H' (raw, unscaled) at the current point
        self.scratch = np.empty_like(self.W) if len(self.plans) > 1 else None
        self.grad_H = [np.empty((rank, self.col_edges[j + 1] - self.col_edges[j]), dtype)
                       for j in range(len(self.plans))]

    def iterate(self, step, H, with_squares):
        """W's step (``step`` = (scale, settings), or None at the start), then the
        block's (sum of the entry losses, W' G, with_squares the sum of W's squares), by
        the masked kernel on the plans."""
        if step is not None:
            scale, l2 = step
            self.grad *= self.W.dtype.type(scale)
            if l2:
                self.grad += l2 * self.W
            self.optimizer.step([self.grad])
        kernel = masked.kernels().plan_loss_grad
        sse = 0.0
        for j, plan in enumerate(self.plans):
            H_part = np.ascontiguousarray(H[:, self.col_edges[j]:self.col_edges[j + 1]],
                                          dtype=self.W.dtype)
            target = self.grad if j == 0 else self.scratch
            sse += kernel(plan.indptr, plan.indices, self.values[j], self.W, H_part, target,
                          self.grad_H[j], self.n_threads, self.n_threads,
                          masked.plan_tile_cols(plan, self.W.shape[1], self.W.itemsize),
                          1.0, None, self.loss.entry, self.loss.delta, self.weights[j])
            if j:
                self.grad += self.scratch
        squares = masked.sum_of_squares(self.W) if with_squares else 0.0
        return sse, np.concatenate(self.grad_H, axis=1), squares

    def factors(self):
        """A copy of W's block, and {name: copy} of its optimizer's state."""
        return self.W.copy(), {name: arrays[0].copy() for name, arrays in
                               factorization.optimizer_state(self.optimizer).items()}


def _distributed_client():
    """The distributed client that dask computes with now, or None (another scheduler is
    active, e.g. with dask.config.set(scheduler="threads") while a client exists)."""
    try:
        from distributed import get_client

        client = get_client()
    except (ImportError, ValueError):
        return None
    return client if dask.base.get_scheduler() == client.get else None


class _RowBlocks:
    """The row blocks of A (and W), where they live, and calls of all of them at once."""

    def __init__(self, A, n_threads, weights=None):
        self.row_chunks = A.chunks[0]
        self.row_edges = np.cumsum((0, *self.row_chunks))
        col_edges = np.cumsum((0, *A.chunks[1]))
        blocks = A.to_delayed()
        weight_blocks = _weight_blocks(A, weights)
        rows = [dask.delayed(_row_plans)(list(blocks[i]),
                                         None if weight_blocks is None
                                         else list(weight_blocks[i]))
                for i in range(A.numblocks[0])]
        self.client = _distributed_client()
        if self.client is None:
            plans = dask.compute(rows)[0]
            self.blocks = [_RowBlock(p, col_edges, n_threads) for p in plans]
            self.pool = ThreadPoolExecutor(max_workers=max(1, min(len(rows),
                                                                  os.cpu_count() or 1)))
            return
        # One worker per row block, round robin: its plans are built there, and the actor
        # holding them lives there.
        workers = sorted(self.client.scheduler_info()["workers"])
        self.blocks = []
        for i, row in enumerate(rows):
            where = {"workers": [workers[i % len(workers)]], "allow_other_workers": False}
            plans = self.client.compute(row, **where)
            self.blocks.append(self.client.submit(
                _RowBlock, plans, col_edges, n_threads, actor=True,
                **where).result())

    def call(self, method, *args, per_block=None):
        """``method(*args)`` of every row block concurrently (``per_block``: one more
        argument each); their results in order."""
        extra = per_block if per_block is not None else [()] * len(self.blocks)
        calls = [(getattr(block, method), (*args, *more))
                 for block, more in zip(self.blocks, extra, strict=True)]
        if self.client is None:
            return list(self.pool.map(lambda call: call[0](*call[1]), calls))
        futures = [function(*arguments) for function, arguments in calls]
        return [future.result() for future in futures]

    def close(self):
        if self.client is None:
            self.pool.shutdown()


def _lazy_W(blocks, rank, dtype):
    """W as a dask array that fetches the row blocks' current factors when computed."""
    parts = [da.from_delayed(dask.delayed(_W_of)(block), shape=(rows, rank), dtype=dtype)
             for block, rows in zip(blocks.blocks, blocks.row_chunks, strict=True)]
    return da.concatenate(parts, axis=0)


def _W_of(block):
    return _factors_of(block)[0]


def _factors_of(block):
    factors = block.factors()
    return factors.result() if hasattr(factors, "result") else factors


def factorize(A: Any, rank: int, *, init: tuple[ArrayLike, ArrayLike] | None = None,
              random_state: RandomState = None, optimizer: Optimizer = "adagrad",
              lr: float = 0.1, n_iter: int = 1000, eps: float = 1e-8,
              eps_mode: EpsMode = "outside", momentum: float = 0.0, nesterov: bool = False,
              nonneg: bool = False, loss: Loss = "rmse", l2: float = 0.0,
              delta: float | None = None, reduction: Reduction | None = None,
              weights: Any = None, tol: float | None = None,
              callback: Callable[..., Any] | None = None,
              n_threads: int = 1) -> factorization.FactorizationResult:
    """Data-parallel full-batch :func:`fastgd.factorize` of a chunked A.

    Each iteration, every block of A computes its part of the loss and of both gradients
    with the compiled kernel where it lives; W's row blocks take their fused step where
    they live (with their optimizer state), H's gradient is added across blocks and H
    takes its step in the client. For the same init and settings the result equals
    :func:`fastgd.factorize` on the gathered matrix to rounding.

    The stochastic solver (``fastgd.factorize(solver="stochastic")``) is not offered here:
    its passes step the factors after every rating, so blocks on different workers would
    have to exchange their rows of W and H between strata many times a pass (DSGD's
    schedule), where this full-batch form exchanges H once an iteration. Ratings of up to
    billions of entries fit one machine's memory (12 bytes a rating in float32), where the
    stochastic solver runs on all its cores.

    Parameters
    ----------
    A : dask.array.Array or array_like of shape (m, n)
        NaN where missing; chunked along rows (and columns). Each block is turned once
        into a plan of its observed entries, kept on its worker.
    rank, init, random_state, optimizer, lr, n_iter, eps, eps_mode, momentum, nesterov, \
nonneg, loss, l2, delta, reduction, tol
        As in :func:`fastgd.factorize` (init's W0 is cut along A's row chunks).
    weights : dask.array.Array or array_like of shape (m, n), optional
        A non-negative weight per observed entry (rechunked like A), kept with the
        blocks' plans.
    callback : callable, optional
        ``callback(iteration, loss, W, H)`` after every iteration, W a lazy dask array of
        the row blocks where they are (compute it only if needed), H an in-memory copy;
        returning True stops the run.
    n_threads : int, default 1
        The threads of each task's kernel call.

    Returns
    -------
    FactorizationResult
        W gathered into one array at the end.

    Examples
    --------
    >>> import dask.array as da
    >>> import numpy as np
    >>> import fastgd, fastgd.dask
    >>> A = np.array([[np.nan, 4, 5], [4, 4, 5], [5, 3, 4], [2, 3, 3]])
    >>> result = fastgd.dask.factorize(da.from_array(A, chunks=(2, 3)), 2, random_state=0,
    ...                                optimizer="gd", lr=0.01, n_iter=300, nonneg=True)
    >>> same = fastgd.factorize(A, 2, random_state=0, optimizer="gd", lr=0.01, n_iter=300,
    ...                         nonneg=True)
    >>> bool(np.allclose(result.loss_history, same.loss_history, rtol=1e-10))
    True
    """
    rank = _validation.check_int(rank, "rank", 1)
    settings = factorization.check_settings(
        optimizer=optimizer, lr=lr, n_iter=n_iter, eps=eps, eps_mode=eps_mode,
        momentum=momentum, nesterov=nesterov, nonneg=nonneg, loss=loss, l2=l2, tol=tol,
        delta=delta, reduction=reduction)
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable or None; got {type(callback).__name__}")
    A = _as_dask(A, "A", "(m, n)")
    blocks = _RowBlocks(A, n_threads, weights)
    try:
        return _train(blocks, A, rank, init, random_state, settings, callback)
    finally:
        blocks.close()


def _train(blocks, A, rank, init, random_state, settings, callback):
    totals = blocks.call("totals")
    count = sum(t[0] for t in totals)
    total_weight = sum(t[2] for t in totals)
    _losses.check_defined(settings["loss_spec"], total_weight)
    magnitude = sum(t[1] for t in totals)
    W, H = factorization.initial_factors(A.shape, A.dtype, rank, init, random_state,
                                         lambda: magnitude / count if count else 0.0)
    edges = blocks.row_edges
    blocks.call("start", per_block=[(W[edges[i]:edges[i + 1]], settings)
                                    for i in range(len(blocks.blocks))])
    H_optimizer = factorization.make_optimizer([H], settings, 1)
    l2 = settings["l2"]

    def evaluate(step):
        summaries = blocks.call("iterate", step, H, l2 != 0)
        sse = sum(summary[0] for summary in summaries)
        grad_H = summaries[0][1].copy()
        for summary in summaries[1:]:
            grad_H += summary[1]
        value, scale = _losses.value_and_scale(settings["loss_spec"], sse, total_weight)
        if l2:
            squares = sum(summary[2] for summary in summaries)
            value += 0.5 * l2 * (squares + masked.sum_of_squares(H))
        return value, scale, grad_H

    value, scale, grad_H = evaluate(None)
    history = factorization.LossHistory()
    history.extend([value])
    status = (factorization.STATUS_MAX_ITER if math.isfinite(value)
              else factorization.STATUS_NONFINITE)
    done = 0
    while status == factorization.STATUS_MAX_ITER and done < settings["n_iter"]:
        dH = grad_H * H.dtype.type(scale)
        if l2:
            dH += l2 * H
        # H steps here; W's blocks step where they are, from the same point, and then
        # evaluate at the new point.
        H_optimizer.step([dH])
        previous = value
        value, scale, grad_H = evaluate((scale, l2))
        history.extend([value])
        done += 1
        status = factorization.status_after(value, previous, settings)
        if (status == factorization.STATUS_MAX_ITER and callback is not None
                and callback(done, value, _lazy_W(blocks, rank, W.dtype), H.copy())):
            status = factorization.STATUS_STOPPED_BY_CALLBACK
    parts = blocks.call("factors")
    W = np.concatenate([W[:0], *(part[0] for part in parts)], axis=0)
    states = {name: (np.concatenate([W[:0], *(part[1][name] for part in parts)], axis=0),
                     arrays[0])
              for name, arrays in factorization.optimizer_state(H_optimizer).items()}
    return factorization.finished_run(W, H, history.values(), done, status, states,
                                      settings, lambda: magnitude / count if count else 0.0)
