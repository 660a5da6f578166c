"""Masked matrix factorisation: the residual, loss and gradients of W @ H at observed entries.

A (m x n) has missing entries, W is (m x k) and H is (k x n). ``masked_residual``
and ``masked_loss_grad`` take A dense (NaN = missing, or a boolean ``mask``), as a
scipy.sparse matrix (its stored entries are the observed ones), or as an
``ObservedEntries`` plan built once by ``observed`` and reused across iterations.
"""

from __future__ import annotations

import contextlib
import math
import numbers
from typing import TYPE_CHECKING

import numpy as np

from fastgd import _backend, _caches, _losses, _plan, _threads, _validation
from fastgd._plan import ObservedEntries, kernels, observed

if TYPE_CHECKING:
    from fastgd._typing import (
        Any,
        ArrayLike,
        FloatArray,
        Loss,
        MaskedMethod,
        NDArray,
        Reduction,
    )

LOSSES = _losses.LOSSES
LOSS_CODES = _losses.CODES
# The squared losses' reduction codes (the small-problem call's first test).
SQUARED_LOSS_CODES = {name: codes[0] for name, codes in LOSS_CODES.items() if codes[1] == 0}
METHODS = ("auto", "dense", "sparse")

# The tuning constants below were measured as docs/performance.md ("Tuning constants")
# records; change them only with a side-by-side measurement.

# method="auto" takes the sparse path (O(nnz k), finding the observed entries first) for
# a dense A observed at most this fraction, the dense path (three BLAS products over
# tiles, O(m n k)) above it. The density is estimated from up to DENSITY_SAMPLE_ROWS
# evenly spaced rows.
SPARSE_MAX_DENSITY = 0.3
DENSITY_SAMPLE_ROWS = 64

# Below this many multiply-adds (k times the entries visited) no parallel region is opened
# and BLAS threads are left alone: their cost would dwarf the work.
PARALLEL_MIN_WORK = 1 << 18

# Dense problems with at most this many multiply-adds (m n k), and plans with at most this
# many over their entries (nnz k), take one compiled call that validates and computes with
# direct dot products: at this size, the general path's validation and BLAS calls would
# cost more than the arithmetic.
SMALL_MAX_WORK = 4096

# With deterministic=True the rows are cut into this many parts whatever the thread count;
# each part sums its own dH, and the parts are added in a fixed order.
DETERMINISTIC_PARTS = 8

# The plan path scatters into rows of dH.T and reads rows of H.T in random order. When
# those rows take more than TILE_ABOVE_L2 of a core's L2 cache, it takes the columns in
# tiles whose rows fill TILE_L2 of it, but at least TILE_MIN_BYTES (and at most all of
# it), every row's entries in one tile before the next tile's, if the rows have on
# average at least TILE_MIN_ENTRIES entries in a tile (each tile reads W's rows again).
# The result is bitwise the same as untiled.
TILE_ABOVE_L2 = 0.75
TILE_L2 = 0.5
TILE_MIN_BYTES = 1 << 20
TILE_MIN_ENTRIES = 4
L2_BYTES_UNKNOWN = 1 << 20


def _prepare(A, W, H, mask):
    """(plan or None, dense A or None, mask, W, H, dtype): W, H and a dense A in the one
    float dtype they compute in, C-contiguous, the mask as uint8 or None. A copy of a
    dense A lives in the thread's scratch (_validation.as_contiguous_in_scratch): it serves
    this call only."""
    if isinstance(A, ObservedEntries) or _plan.is_sparse(A):
        plan = observed(A, mask)
        dense = None
        values = plan.values
    else:
        plan = None
        dense, mask = _plan.as_dense(A, mask)
        values = dense
    W, H = _plan.check_factors(W, H, values.shape if plan is None else plan.shape)
    dtype = _validation.result_dtype(values, W, H)
    W = _validation.as_contiguous(W, dtype)
    H = _validation.as_contiguous(H, dtype)
    _plan.check_finite_factor(W, "W")
    _plan.check_finite_factor(H, "H")
    if dense is not None:
        # Slot 2: distances.py's copies take slots 0 and 1.
        dense = _validation.as_contiguous_in_scratch(dense, dtype, 2)
    return plan, dense, mask, W, H, dtype


def _transposed_copy(H, dtype=None):
    """H.T, C-contiguous, in ``dtype`` (default H's). The plan's residuals fetch its rows
    at random, so with the compiled backend they start on a cache line (a row of k = 32
    doubles then spans 4 lines, not 5), as do the tiles of H.T that plan_loss_grad makes."""
    dtype = H.dtype if dtype is None else dtype
    if _backend.get_backend() != "compiled":
        return np.ascontiguousarray(H.T, dtype=dtype)
    HT = _backend.ext._memory.empty_aligned(H.shape[::-1], dtype)
    HT[...] = H.T
    return HT


def _thread_count(n_threads, work):
    n_threads = _threads.resolve_n_threads(n_threads)
    return 1 if work < PARALLEL_MIN_WORK else n_threads


def _l2_cache_bytes():
    """A core's L2 cache in bytes, as Linux reports it (L2_BYTES_UNKNOWN elsewhere)."""
    return _caches.cache_bytes(2, L2_BYTES_UNKNOWN)


def plan_tile_cols(plan, k, itemsize):
    """The plan path's column tile width for this problem, 0 for no tiles (see TILE_L2;
    and no tiles when a row's columns do not ascend: the kernel takes a row's entries in
    a tile up to the first one outside it)."""
    m, n = plan.shape
    l2 = _l2_cache_bytes()
    column_bytes = 2 * k * itemsize
    if n * column_bytes <= TILE_ABOVE_L2 * l2 or not plan._columns_ascend():
        return 0
    tile_bytes = min(l2, max(int(TILE_L2 * l2), TILE_MIN_BYTES))
    tile_cols = max(1, tile_bytes // column_bytes)
    n_tiles = -(-n // tile_cols)
    return tile_cols if plan.nnz >= TILE_MIN_ENTRIES * m * n_tiles else 0


def masked_residual(A: Any, W: ArrayLike, H: ArrayLike, *, mask: ArrayLike | None = None,
                    out: NDArray[Any] | None = None,
                    n_threads: int | None = None) -> FloatArray:
    """The residual ``W @ H - A`` at the observed entries of A.

    Parameters
    ----------
    A : array_like of shape (m, n), or ObservedEntries, or scipy.sparse matrix
        The data, NaN where missing (or see ``mask``); or a plan from ``observed``.
    W : array_like of shape (m, k)
    H : array_like of shape (k, n)
    mask : array_like of bool, shape (m, n), optional
        True where A is observed (only with a dense A); A's values elsewhere are ignored.
    out : ndarray, optional
        Where to write the result: of the result's shape and dtype, C-contiguous,
        writeable, sharing no memory with the inputs.
    n_threads : int, optional
        OpenMP threads (None: all CPUs or OMP_NUM_THREADS; -1 all; 0 is an error).

    Returns
    -------
    ndarray
        For a dense A, shape (m, n): ``W @ H - A`` where observed, 0 elsewhere. For a
        plan or sparse A, shape (nnz,): the residuals in the plan's order (turn them
        into a matrix with ``plan.to_sparse(r)``). float32 if every input is float32,
        else float64.

    Raises
    ------
    ValueError
        Mismatched shapes, NaN or inf in W or H, an infinite (or, with a mask, NaN)
        observed value of A, an unsuitable ``out``.
    TypeError
        A non-real dtype or a non-boolean mask.

    Examples
    --------
    >>> import numpy as np
    >>> import fastgd
    >>> A = np.array([[1.0, np.nan], [np.nan, 4.0]])
    >>> W = np.array([[1.0], [2.0]])
    >>> H = np.array([[3.0, 1.0]])
    >>> fastgd.masked_residual(A, W, H)
    array([[ 2.,  0.],
           [ 0., -2.]])
    >>> fastgd.masked_residual(fastgd.observed(A), W, H)
    array([ 2., -2.])
    """
    inputs = {"A": A, "W": W, "H": H, "mask": mask}  # as given: out may alias none of them
    plan, dense, mask, W, H, dtype = _prepare(A, W, H, mask)
    k = W.shape[1]
    if plan is None:
        m, n = dense.shape
        shape = (m, n)
    else:
        shape = (plan.nnz,)
    if out is None:
        out = np.empty(shape, dtype=dtype)
    else:
        _validation.check_out(out, "out", shape, dtype, inputs)
    if plan is None:
        n_threads = _thread_count(n_threads, m * n * max(k, 1))
        with _blas_held(m * n * max(k, 1)):
            sse = kernels().dense_residual(dense, mask, W, H, out, n_threads)
        if not math.isfinite(sse):
            _plan.raise_if_observed_nonfinite(dense, mask)
    else:
        HT = _transposed_copy(H)
        n_threads = _thread_count(n_threads, plan.nnz * max(k, 1))
        kernels().plan_residual(
            plan.indptr, plan.indices, _plan.plan_values(plan, dtype), W, HT, out, n_threads
        )
    return out


def _blas_held(work):
    """BLAS held to one thread for work worth a parallel region: inside fastgd's own threads
    (no oversubscription), and with n_threads=1 (one thread means one, and BLAS's threaded
    sums would make the result depend on its thread count)."""
    if work < PARALLEL_MIN_WORK:
        return contextlib.nullcontext()
    return _threads.single_threaded_blas()


def check_l2(l2, name="l2"):
    if isinstance(l2, bool) or not isinstance(l2, numbers.Real):
        raise TypeError(f"{name} must be a real number; got {type(l2).__name__}")
    if not (math.isfinite(l2) and l2 >= 0):
        raise ValueError(f"{name} must be finite and >= 0; got {l2}")
    return float(l2)


def _estimated_density(A, mask):
    m = A.shape[0]
    # Evenly spaced rows, distinct as they are at least one apart (every row when m is
    # at most DENSITY_SAMPLE_ROWS).
    if m <= DENSITY_SAMPLE_ROWS:
        rows = slice(None)
    else:
        rows = np.linspace(0, m - 1, DENSITY_SAMPLE_ROWS).astype(np.intp)
    sampled = min(m, DENSITY_SAMPLE_ROWS)
    if mask is not None:
        return float(np.count_nonzero(mask[rows])) / (sampled * A.shape[1])
    return float(np.count_nonzero(~np.isnan(A[rows]))) / (sampled * A.shape[1])


def masked_loss_grad(A: Any, W: ArrayLike, H: ArrayLike, *, mask: ArrayLike | None = None,
                     loss: Loss = "mse", l2: float = 0.0, delta: float | None = None,
                     reduction: Reduction | None = None, weights: ArrayLike | None = None,
                     n_threads: int | None = None, deterministic: bool = False,
                     method: MaskedMethod = "auto",
                     ) -> tuple[float, FloatArray, FloatArray]:
    """The loss of ``W @ H`` against the observed entries of A, and its exact gradients.

    With ``r = (W @ H - A)`` at the N observed entries, the loss is ``sum(r^2)``
    ("sse"), ``sum(r^2) / N`` ("mse"), ``sqrt(sum(r^2) / N)`` ("rmse"), or the mean of
    Huber's loss of r ("huber": ``0.5 r^2`` where ``|r| <= delta``, ``delta (|r| -
    delta / 2)`` beyond; robust to outliers), plus ``0.5 * l2 * (||W||_F^2 + ||H||_F^2)``.
    With ``weights``, each entry's term is multiplied by its weight and a mean is over
    the total weight instead of N.

    Parameters
    ----------
    A : array_like of shape (m, n), or ObservedEntries, or scipy.sparse matrix
        The data, NaN where missing (or see ``mask``); or a plan from ``observed``,
        the fastest way to call this in a loop.
    W : array_like of shape (m, k)
    H : array_like of shape (k, n)
    mask : array_like of bool, shape (m, n), optional
        True where A is observed (only with a dense A); A's values elsewhere are ignored.
    loss : {"mse", "sse", "rmse", "huber"}
    l2 : float, default 0
        Weight of the squared Frobenius norms of W and H (adds ``l2 * W`` and ``l2 * H``
        to the gradients).
    delta : float, optional
        Huber's threshold (only with ``loss="huber"``; default 1): residuals beyond it
        count linearly.
    reduction : {"mean", "sum"}, optional
        For ``loss="huber"``: the mean over the observed entries (default) or their sum.
        (The squared losses name their reduction: "sse" sums, "mse" averages.)
    weights : array_like, optional
        A non-negative weight per observed entry: an array shaped like A (its values at
        missing entries are ignored), or, for a plan or a sparse A, one value per
        observed entry in the plan's order.
    n_threads : int, optional
        OpenMP threads (None: all CPUs or OMP_NUM_THREADS; -1 all; 0 is an error).
        Small problems run on one thread.
    deterministic : bool, default False
        Bitwise-identical results whatever the thread count (the rows are cut into
        a fixed number of parts whose dH are added in a fixed order; costs a little
        memory, n k per part). Without it, results are reproducible for a given
        thread count.
    method : {"auto", "dense", "sparse"}
        "dense": tiles of ``W @ H`` by BLAS with the residual, mask and loss fused,
        O(m n k); "sparse": a loop over the observed entries, O(nnz k); "auto" takes
        the sparse path for a plan, a sparse A, or a dense A observed at most
        ``SPARSE_MAX_DENSITY``. Both give the same answer to rounding.

    Returns
    -------
    loss : float
        Accumulated in float64, also for float32 inputs.
    dW : ndarray of shape (m, k)
    dH : ndarray of shape (k, n)
        The gradients of ``loss``, C-contiguous, float32 if every input is float32.
        For "rmse" at a loss of exactly 0 the gradients are 0.

    Raises
    ------
    ValueError
        Mismatched shapes, NaN or inf in W or H, an infinite (or, with a mask, NaN)
        observed value of A, no observed entry (or weight) for a mean, a negative l2,
        a negative or non-finite weight, ``delta`` not > 0 or without Huber, or an
        unknown ``loss``, ``reduction`` or ``method``.
    TypeError
        A non-real dtype or a non-boolean mask.

    See Also
    --------
    observed : the reusable plan of A's observed entries.
    check_grad : compare these gradients with finite differences.

    Examples
    --------
    >>> import numpy as np
    >>> import fastgd
    >>> A = np.array([[1.0, 0.0], [0.0, 4.0]])
    >>> is_observed = np.array([[True, False], [False, True]])
    >>> W, H = np.array([[1.0], [2.0]]), np.array([[3.0, 1.0]])
    >>> loss, dW, dH = fastgd.masked_loss_grad(A, W, H, mask=is_observed, loss="sse")
    >>> loss, dW, dH
    (8.0, array([[12.],
           [-4.]]), array([[ 4., -8.]]))

    Huber's loss counts the residuals (2 and -2) beyond ``delta`` linearly:

    >>> fastgd.masked_loss_grad(A, W, H, mask=is_observed, loss="huber", delta=1.0)[0]
    1.5
    """
    small_problems = _backend.masked_fast_path
    if (small_problems is not None and mask is None and method == "auto"
            and (deterministic is False or deterministic is True)
            and type(l2) is float and 0 <= l2 < math.inf
            and (n_threads is None or (type(n_threads) is int and n_threads != 0
                                       and n_threads <= _threads.MAX_THREADS))):
        # Small problems, a dense A or a plan, with settings that need no checking: one
        # compiled call validates the arrays and computes (None: the general path below
        # handles them, and raises about what is wrong). The tests of the settings are
        # written out here; a helper's call would cost a tenth of a tutorial-sized call.
        if (type(loss) is str and loss in SQUARED_LOSS_CODES and delta is None
                and weights is None and reduction is None):
            if type(A) is not ObservedEntries:
                result = small_problems.small_loss_grad(A, W, H, SQUARED_LOSS_CODES[loss],
                                                        l2, SMALL_MAX_WORK)
            elif A._weights is None:
                # The plan's slots, not its properties (a call each, on the tutorial's
                # path).
                m, n = A._shape
                result = small_problems.small_plan_loss_grad(
                    A._indptr, A._indices, A._values, m, n, W, H, SQUARED_LOSS_CODES[loss],
                    l2, SMALL_MAX_WORK)
            else:
                result = _small_entry_loss_grad(small_problems, A, W, H, loss, l2, delta,
                                                reduction, weights)
        else:
            result = _small_entry_loss_grad(small_problems, A, W, H, loss, l2, delta,
                                            reduction, weights)
        if result is not None:
            return result
    spec = _losses.resolve(loss, delta, reduction)
    _validation.check_choice(method, "method", METHODS)
    deterministic = _validation.check_flag(deterministic, "deterministic")
    l2 = check_l2(l2)
    plan, dense, mask, W, H, dtype = _prepare(A, W, H, mask)
    if weights is not None and plan is not None and plan.weights is not None:
        raise ValueError("weights were given twice: the plan A has its own (observed(..., "
                         "weights=...)); pass them in one place")
    if plan is not None and weights is not None:
        plan = plan._with_weights(_losses.plan_weights(weights, plan, dtype))
        weights = None
    if plan is not None and method == "dense":
        if plan.weights is not None:
            weights = plan.to_dense(plan.weights, fill_value=0).astype(dtype, copy=False)
        dense, plan = _validation.as_contiguous(plan.to_dense(), dtype), None
    elif plan is None and takes_sparse_path(method, dense, mask):
        plan = _plan.plan_from_dense(dense, mask)
        if weights is not None:
            plan = plan._with_weights(_losses.plan_weights(weights, plan, dtype))
            weights = None
    m, k = W.shape
    n = H.shape[1]
    dW = np.empty((m, k), dtype=dtype)
    dH = np.empty((k, n), dtype=dtype)
    # The plan kernel scales the gradients as it writes them where the scale does not
    # depend on the loss's value (all but "rmse"): the same bits, one pass less.
    scaled_in_kernel = plan is not None and spec.scale_is_constant
    if plan is None:
        weight_total = None
        if weights is not None:
            weights, weight_total = _losses.dense_weights(weights, dense, mask, dtype)
        n_threads = _thread_count(n_threads, m * n * max(k, 1))
        n_parts = DETERMINISTIC_PARTS if deterministic else n_threads
        with _blas_held(m * n * max(k, 1)):
            total, count = kernels().dense_loss_grad(
                dense, mask, W, H, dW, dH, n_threads, n_parts, spec.entry, spec.delta,
                weights)
        if not math.isfinite(total):
            _plan.raise_if_observed_nonfinite(dense, mask)
        if weight_total is None:
            weight_total = count
    else:
        weight_total = plan.total_weight
        n_threads = _thread_count(n_threads, plan.nnz * max(k, 1))
        n_parts = DETERMINISTIC_PARTS if deterministic else n_threads
        kernel_scale = (_losses.value_and_scale(spec, 0.0, weight_total)[1]
                        if scaled_in_kernel else 1.0)
        tile_cols = plan_tile_cols(plan, k, W.itemsize)
        indices, values, tile_starts, weights = plan._entries_for_tiles(tile_cols, dtype)
        with _blas_held(plan.nnz * max(k, 1)):  # the NumPy twin's sums use BLAS
            total = kernels().plan_loss_grad(
                plan.indptr, indices, values, W, H, dW, dH, n_threads, n_parts, tile_cols,
                kernel_scale, tile_starts, spec.entry, spec.delta, weights,
            )
    value, scale = _losses.value_and_scale(spec, total, weight_total)
    if not scaled_in_kernel:
        dW *= scale
        dH *= scale
    if l2:
        value += 0.5 * l2 * (sum_of_squares(W) + sum_of_squares(H))
        dW += l2 * W
        dH += l2 * H
    return value, dW, dH


def _small_entry_loss_grad(small_problems, A, W, H, loss, l2, delta, reduction, weights):
    """masked_loss_grad's small-problem call with an entry loss or weights (the plan's
    too), or None for what the general path must check (weights given twice too)."""
    if (type(loss) is not str or loss not in LOSS_CODES or reduction is not None
            or (weights is not None and type(weights) is not np.ndarray)):
        return None
    reduction_code, entry_code = LOSS_CODES[loss]
    if delta is None:
        delta = _losses.DEFAULT_DELTA
    elif not (entry_code != 0 and type(delta) is float and 0 < delta < math.inf):
        return None
    if type(A) is not ObservedEntries:
        return small_problems.small_entry_loss_grad(A, W, H, reduction_code, l2,
                                                    SMALL_MAX_WORK, entry_code, delta, weights)
    if A._weights is not None:
        if weights is not None:
            return None
        weights = A._weights
    m, n = A._shape
    return small_problems.small_plan_entry_loss_grad(
        A._indptr, A._indices, A._values, m, n, W, H, reduction_code, l2, SMALL_MAX_WORK,
        entry_code, delta, weights)


def takes_sparse_path(method, dense, mask):
    if method == "sparse":
        return True
    return (method == "auto" and dense.size > 0
            and _estimated_density(dense, mask) <= SPARSE_MAX_DENSITY)


def sum_of_squares(array):
    flat = array.ravel().astype(np.float64, copy=False)
    return float(np.dot(flat, flat))
