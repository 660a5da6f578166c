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

import contextlib
import math
import operator
import warnings

import dask
import dask.array as da
import numpy as np

from fastgd import _validation, distances, factorization, masked
from fastgd.factorization import FactorizationResult

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


def sqeuclidean(X, Y=None, *, n_threads=1):
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

def _block_partial(A_block, W_block, H_block, n_threads):
    """(sum of r², observed count, 2 R H', 2 W' R) of one block: the "sse" loss and its
    gradients, from which every loss and its gradients follow."""
    if isinstance(A_block, masked.ObservedEntries):
        count = A_block.nnz
    else:
        count = int(np.count_nonzero(~np.isnan(A_block)))
    sse, dW, dH = masked.masked_loss_grad(A_block, W_block, H_block, loss="sse",
                                          n_threads=n_threads)
    return sse, count, dW, dH


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


def masked_loss_grad(A, W, H, *, loss="mse", l2=0.0, n_threads=1):
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
    loss : {"mse", "sse", "rmse"}
    l2 : float
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
    _validation.check_choice(loss, "loss", masked.LOSSES)
    l2 = masked._check_l2(l2)
    A = _as_dask(A, "A", "(m, n)")
    W, H = _aligned_factors(A, W, H)
    dtype = np.result_type(A.dtype, W.dtype, H.dtype)
    A_blocks, W_blocks, H_blocks = (A.to_delayed(), W.astype(dtype).to_delayed()[:, 0],
                                    H.astype(dtype).to_delayed()[0, :])
    partials = [[dask.delayed(_block_partial, nout=4)(A_blocks[i, j], W_blocks[i],
                                                      H_blocks[j], n_threads)
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
    value, scale = masked._loss_and_scale(loss, float(sse), int(count))
    # The blocks' gradients are those of "sse" (scale 2): rescale to the loss asked for.
    dW = dW * dtype.type(scale / 2)
    dH = dH * dtype.type(scale / 2)
    if l2:
        W_np, H_np = dask.compute(W.astype(dtype), H.astype(dtype))
        value += 0.5 * l2 * (masked._sum_of_squares(W_np) + masked._sum_of_squares(H_np))
        dW += l2 * W_np
        dH += l2 * H_np
    return value, dW, dH


# factorize -----------------------------------------------------------------------------
# Each row block of A lives on one worker as the plans of its blocks (one per column
# chunk), next to its block of W, W's optimizer state there, and W's gradient there.
# One task per row block and iteration steps W's block and evaluates the block's part of
# the loss and gradients at the new point; only H, its gradient and scalars travel.

def _row_plans(*A_blocks):
    """The plans of one row of A's blocks, and their observed count and sum of |value|."""
    plans = [masked.observed(block) for block in A_blocks]
    count = sum(plan.nnz for plan in plans)
    magnitude = sum(float(np.sum(np.abs(plan.values), dtype=np.float64)) for plan in plans)
    return plans, count, magnitude


def _row_task(row, previous, step, H, col_edges, with_squares, n_threads):
    """One row block's iteration: the step of W's block (``step`` = (scale, settings),
    or None at the start), then the block's part of the loss and gradients.

    ``previous`` is the row's last (state, summary), the state being (W block, optimizer
    state or None, 2 R H' at the previous point or None); returns the new state and its
    summary (sum of r², 2 W' R, and with_squares the sum of W's squares)."""
    plans = row[0]
    W_block, optimizer_state, grad = previous[0]
    if step is not None:
        scale, settings = step
        W_block = W_block.copy()
        optimizer_state = None if optimizer_state is None else optimizer_state.copy()
        grad = grad * W_block.dtype.type(scale / 2)
        if settings["l2"]:
            grad += settings["l2"] * W_block
        factorization.apply_step([W_block], [grad],
                                 None if optimizer_state is None else [optimizer_state],
                                 settings, n_threads)
    sse, grad_W, grad_H_parts = 0.0, None, []
    for j, plan in enumerate(plans):
        H_block = H[:, col_edges[j]:col_edges[j + 1]]
        part_sse, _, part_W, part_H = _block_partial(plan, W_block, H_block, n_threads)
        sse += part_sse
        grad_W = part_W if grad_W is None else np.add(grad_W, part_W, out=grad_W)
        grad_H_parts.append(part_H)
    grad_H = grad_H_parts[0] if len(grad_H_parts) == 1 else np.concatenate(grad_H_parts, 1)
    squares = masked._sum_of_squares(W_block) if with_squares else 0.0
    return (W_block, optimizer_state, grad_W), (sse, grad_H, squares)


def _row_workers(n_rows):
    """Per row block, the worker of a distributed cluster that keeps it (round robin), so
    that a row's plans, W block and optimizer state never move; None with other
    schedulers."""
    try:
        from distributed import get_client

        workers = sorted(get_client().scheduler_info()["workers"])
    except (ImportError, ValueError):
        workers = []
    return [workers[i % len(workers)] if workers else None for i in range(n_rows)]


def _pinned(worker):
    """The context in which a row's tasks are built: pinned to its worker, if any."""
    if worker is None:
        return contextlib.nullcontext()
    return dask.annotate(workers=[worker], allow_other_workers=False)


class _DistributedProblem:
    """A's row blocks as plans, persisted where they are computed, and one pass of the
    row tasks over them."""

    def __init__(self, A, n_threads):
        self.row_chunks, self.col_chunks = A.chunks
        self.col_edges = np.cumsum((0, *self.col_chunks))
        self.n_threads = n_threads
        blocks = A.to_delayed()
        self.workers = _row_workers(A.numblocks[0])
        rows = []
        for i in range(A.numblocks[0]):
            with _pinned(self.workers[i]):
                rows.append(dask.delayed(_row_plans)(*blocks[i]))
        (self.rows,) = dask.persist(rows)
        totals = [dask.delayed(operator.itemgetter(1, 2))(row) for row in self.rows]
        totals = dask.compute(totals)[0]
        self.count = sum(t[0] for t in totals)
        self.mean_magnitude = sum(t[1] for t in totals) / self.count if self.count else 0.0

    def iterate(self, outputs, step, H, with_squares):
        """Every row task once: their outputs (persisted where they ran; each the row's
        state and summary), and the summaries added: (sum of r², 2 W' R, sum of W's
        squares). Only the summaries travel."""
        tasks = []
        for row, previous, worker in zip(self.rows, outputs, self.workers, strict=True):
            with _pinned(worker):
                tasks.append(dask.delayed(_row_task)(row, previous, step, H, self.col_edges,
                                                     with_squares, self.n_threads))
        (outputs,) = dask.persist(tasks)
        (summaries,) = dask.compute([output[1] for output in outputs])
        sse = sum(summary[0] for summary in summaries)
        grad_H = summaries[0][1].copy()
        for summary in summaries[1:]:
            grad_H += summary[1]
        squares = sum(summary[2] for summary in summaries)
        return outputs, float(sse), grad_H, float(squares)


def _lazy_W(outputs, row_chunks, rank, dtype):
    """W as a dask array over the persisted row blocks (nothing is moved)."""
    blocks = [da.from_delayed(output[0][0], shape=(rows, rank), dtype=dtype)
              for output, rows in zip(outputs, row_chunks, strict=True)]
    return da.concatenate(blocks, axis=0)


def factorize(A, rank, *, init=None, random_state=None, optimizer="adagrad", lr=0.1,
              n_iter=1000, eps=1e-8, eps_mode="outside", momentum=0.0, nesterov=False,
              nonneg=False, loss="rmse", l2=0.0, tol=None, callback=None, n_threads=1):
    """Data-parallel full-batch :func:`fastgd.factorize` of a chunked A.

    Each iteration, every block of A computes its part of the loss and of both gradients
    with the compiled kernel where it lives; W's row blocks take their fused step where
    they live (with their optimizer state), H's gradient is added across blocks and H
    takes its step in the client. For the same init and settings the result equals
    :func:`fastgd.factorize` on the gathered matrix to rounding.

    Parameters
    ----------
    A : dask.array.Array or array_like of shape (m, n)
        NaN where missing; chunked along rows (and columns). Each block is turned once
        into a plan of its observed entries, kept on its worker.
    rank, init, random_state, optimizer, lr, n_iter, eps, eps_mode, momentum, nesterov, \
nonneg, loss, l2, tol
        As in :func:`fastgd.factorize` (init's W0 is cut along A's row chunks).
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
    rank = factorization._check_int(rank, "rank", 1)
    settings = factorization.check_settings(
        optimizer=optimizer, lr=lr, n_iter=n_iter, eps=eps, eps_mode=eps_mode,
        momentum=momentum, nesterov=nesterov, nonneg=nonneg, loss=loss, l2=l2, tol=tol)
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable or None; got {type(callback).__name__}")
    A = _as_dask(A, "A", "(m, n)")
    problem = _DistributedProblem(A, n_threads)
    if settings["loss"] != "sse" and problem.count == 0:
        raise ValueError(f"A has no observed entry, so loss={settings['loss']!r} (a mean "
                         "over them) is undefined; use loss='sse'")
    W, H = factorization.initial_factors(A.shape, A.dtype, rank, init, random_state,
                                         lambda: problem.mean_magnitude)
    row_edges = np.cumsum((0, *problem.row_chunks))
    has_state = factorization.has_optimizer_state(settings)
    outputs = []
    for i in range(len(problem.row_chunks)):
        block = W[row_edges[i]:row_edges[i + 1]]
        outputs.append(dask.delayed(((block, np.zeros_like(block) if has_state else None,
                                     None), None)))
    H_state = np.zeros_like(H) if has_state else None
    l2 = settings["l2"]

    def loss_and_scale(sse, squares):
        value, scale = masked._loss_and_scale(settings["loss"], sse, problem.count)
        if l2:
            value += 0.5 * l2 * (squares + masked._sum_of_squares(H))
        return value, scale

    outputs, sse, grad_H, squares = problem.iterate(outputs, None, H, l2 != 0)
    value, scale = loss_and_scale(sse, squares)
    history = [value]
    status = (factorization.STATUS_MAX_ITER if math.isfinite(value)
              else factorization.STATUS_NONFINITE)
    done = 0
    while status == factorization.STATUS_MAX_ITER and done < settings["n_iter"]:
        dH = grad_H * H.dtype.type(scale / 2)
        if l2:
            dH += l2 * H
        # H steps here; W's blocks step in their row tasks, from the same point, and the
        # row tasks then evaluate at the new point.
        factorization.apply_step([H], [dH], None if H_state is None else [H_state],
                                 settings, n_threads)
        outputs, sse, grad_H, squares = problem.iterate(outputs, (scale, settings), H, l2 != 0)
        value, scale = loss_and_scale(sse, squares)
        history.append(value)
        done += 1
        status = factorization.status_after(history, settings)
        if (status == factorization.STATUS_MAX_ITER and callback is not None
                and callback(done, value, _lazy_W(outputs, problem.row_chunks, rank, W.dtype),
                             H.copy())):
            status = factorization.STATUS_STOPPED_BY_CALLBACK
    if status == factorization.STATUS_NONFINITE:
        warnings.warn(f"factorize stopped at iteration {done}: the loss is {history[-1]}; "
                      "lower lr", RuntimeWarning, stacklevel=2)
    (parts,) = dask.compute([output[0] for output in outputs])
    W_parts = [part[0] for part in parts]
    state_parts = [part[1] for part in parts]
    W = np.concatenate([W, *W_parts], axis=0)[W.shape[0]:]  # W's shape when m is 0 too
    kind = "accum" if settings["optimizer"] == "adagrad" else "velocity"
    optimizer_state = {} if not has_state else {
        f"{kind}_W": np.concatenate([W[:0], *state_parts], axis=0), f"{kind}_H": H_state}
    return FactorizationResult(W, H, np.asarray(history, dtype=np.float64), done, status,
                               optimizer_state, settings)
