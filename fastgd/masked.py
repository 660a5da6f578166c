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
import sys
from typing import TYPE_CHECKING

import numpy as np

from fastgd import _backend, _caches, _codes, _threads, _validation
from fastgd._numpy._masked import loss_value_and_scale

if TYPE_CHECKING:
    from fastgd._typing import Any, ArrayLike, FloatArray, Loss, MaskedMethod, NDArray

LOSSES = _codes.LOSSES
LOSS_CODES = {name: code for code, name in enumerate(LOSSES)}
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


def kernels():
    """The masked kernels of the active backend: ``fastgd._ext._masked`` (compiled from
    ``src_c/_masked.pyx``), or its NumPy twin ``fastgd._numpy._masked``, which has the same
    functions with the same signatures and semantics."""
    if _backend.get_backend() == "compiled":
        from fastgd._ext import _masked
    else:
        from fastgd._numpy import _masked
    return _masked

class ObservedEntries:
    """The observed entries of an (m, n) matrix, stored row by row: a reusable plan.

    Built by :func:`observed`, or from CSR arrays by this constructor; every ``masked_*``
    function accepts it in place of A. The layout is scipy's CSR: the entries of row
    ``i`` are ``indptr[i]:indptr[i + 1]``, with column indices ``indices`` and observed
    values ``values``. Indices are int32 where they fit, int64 otherwise.

    The constructor checks everything the compiled kernels rely on (``indptr`` of length
    m + 1 rising from 0 to nnz, every column in ``[0, n)``, distinct entries, finite
    values) and copies the arrays, so a plan is valid and immutable once made.

    Parameters
    ----------
    indptr : array_like of int, shape (m + 1,)
    indices : array_like of int, shape (nnz,)
    values : array_like of float, shape (nnz,)
    shape : tuple of int
        ``(m, n)``.

    Raises
    ------
    ValueError
        A malformed structure, a column outside ``[0, n)``, a repeated entry or a
        non-finite value (the message names the argument).
    TypeError
        Non-integer indices or non-real values.

    Attributes
    ----------
    shape : tuple of int
        ``(m, n)``.
    indptr : ndarray of shape (m + 1,)
    indices : ndarray of shape (nnz,)
    values : ndarray of shape (nnz,), float32 or float64

    Notes
    -----
    The arrays are read-only, and so are the attributes. When n is large,
    ``masked_loss_grad`` takes the columns in tiles that fit the L2 cache; a plan it is
    given a second time then keeps a copy of its entries laid out tile by tile (as much
    memory again as ``indices`` and ``values``), which it reads faster.

    Examples
    --------
    >>> import numpy as np
    >>> import fastgd
    >>> plan = fastgd.observed(np.array([[1.0, np.nan], [np.nan, 4.0]]))
    >>> plan
    ObservedEntries(shape=(2, 2), nnz=2, dtype=float64, index dtype=int32)
    >>> plan.rows, plan.cols, plan.values
    (array([0, 1], dtype=int32), array([0, 1], dtype=int32), array([1., 4.]))
    >>> fastgd.ObservedEntries([0, 1, 2], [1, 7], [1.0, 4.0], (2, 2))
    Traceback (most recent call last):
    ...
    ValueError: indices must lie in [0, 2) for shape (2, 2); got 7 at position 1
    """

    __slots__ = ("_ascending", "_indices", "_indptr", "_shape", "_tiled", "_tiled_wanted",
                 "_values")

    def __init__(self, indptr: ArrayLike, indices: ArrayLike, values: ArrayLike,
                 shape: tuple[int, int]) -> None:
        m, n = _check_shape(shape)
        indptr = _as_index_array(indptr, "indptr", np.int64)
        indices = _as_index_array(indices, "indices", np.int64)
        values = _validation.as_float_array(values, "values", 1, "(nnz,)")
        nnz = values.shape[0]
        if indptr.shape != (m + 1,):
            raise ValueError(f"indptr must have shape (m + 1,) = ({m + 1},) for shape "
                             f"{(m, n)}; got shape {indptr.shape}")
        if indices.shape != (nnz,):
            raise ValueError(f"indices must have the length of values ({nnz}); got shape "
                             f"{indices.shape}")
        steps = np.diff(indptr)
        if indptr[0] != 0 or indptr[-1] != nnz or (steps.size and steps.min() < 0):
            raise ValueError(f"indptr must rise from 0 to nnz = {nnz} and never fall; got "
                             f"indptr[0] = {indptr[0]}, indptr[-1] = {indptr[-1]}"
                             + (f", a fall at row {int(np.argmin(steps))}"
                                if steps.size and steps.min() < 0 else ""))
        _check_index_range(indices, "indices", n, (m, n))
        rows = np.repeat(np.arange(m, dtype=np.int64), steps)
        ascending = _columns_ascend(indptr, indices)
        if not ascending:
            _check_distinct(rows, indices, np.lexsort((indices, rows)))
        values = np.array(values, copy=True)  # the plan's own, so nobody else can write it
        _check_observed_values(values, lambda e: f"row {rows[e]}, column {indices[e]}",
                               "values")
        index_dtype = _index_dtype(nnz, m, n)
        self._init(indptr.astype(index_dtype), indices.astype(index_dtype), values, (m, n),
                   ascending)

    @classmethod
    def _trusted(cls, indptr, indices, values, shape, ascending):
        """A plan from arrays the package built and checked itself (no copies, no checks)."""
        plan = cls.__new__(cls)
        plan._init(indptr, indices, values, shape, ascending)
        return plan

    def _init(self, indptr, indices, values, shape, ascending):
        for array in (indptr, indices, values):
            array.flags.writeable = False
        self._indptr = indptr
        self._indices = indices
        self._values = values
        self._shape = shape
        # Whether every row's columns ascend (the plan path takes its columns in tiles
        # only then).
        self._ascending = ascending
        # The entries in column tiles (see _entries_for_tiles): ((tile_cols, dtype),
        # starts, indices, values) once made; the (tile_cols, dtype) of the last call.
        self._tiled = None
        self._tiled_wanted = None

    # The plan is immutable: the compiled kernels trust its arrays without checking them.
    @property
    def indptr(self) -> NDArray[np.integer[Any]]:
        """Where each row's entries start and end, shape (m + 1,) (read-only)."""
        return self._indptr

    @property
    def indices(self) -> NDArray[np.integer[Any]]:
        """The column of every entry, shape (nnz,) (read-only)."""
        return self._indices

    @property
    def values(self) -> FloatArray:
        """The observed values, shape (nnz,) (read-only)."""
        return self._values

    @property
    def shape(self) -> tuple[int, int]:
        """``(m, n)``."""
        return self._shape

    def _columns_ascend(self):
        return self._ascending

    def _entries_for_tiles(self, tile_cols, dtype):
        """(indices, values, tile_starts) for the plan kernel taking the columns in tiles
        of tile_cols (0: no tiles), the values in ``dtype``.

        From the second call with the same tiles and dtype on, the entries come tile by
        tile (tile t's entries of row i are indices[tile_starts[t * m + i]:
        tile_starts[t * m + i + 1]], in the plan's order), so that the kernel reads them in
        one stream per tile rather than a few from every row, with the same bits. That
        copy of the entries is kept (one, for the latest tiles and dtype); a plan used once
        is not copied.
        Otherwise tile_starts is None and the entries are the plan's own.
        """
        key = (tile_cols, np.dtype(dtype))
        if 0 < tile_cols < self.shape[1] and self._tiled_wanted == key:
            if self._tiled is None or self._tiled[0] != key:
                self._tiled = (key, *self._in_tiles(tile_cols, dtype))
            return self._tiled[2], self._tiled[3], self._tiled[1]
        self._tiled_wanted = key
        return self.indices, _plan_values(self, dtype), None

    def _in_tiles(self, tile_cols, dtype):
        """(tile_starts, indices, values): the entries tile by tile, rows in order within
        a tile (see _entries_for_tiles); read-only."""
        m, n = self.shape
        n_tiles = -(-n // tile_cols)
        tiles = self.indices // tile_cols
        counts = np.bincount(tiles.astype(np.int64) * m + self.rows, minlength=n_tiles * m)
        tile_starts = np.zeros(n_tiles * m + 1, dtype=self.indptr.dtype)
        np.cumsum(counts, out=tile_starts[1:])
        # A row's entries in a tile are consecutive in the plan (its columns ascend): the
        # segment (t, i) starts in the plan at row i's start plus its entries in tiles < t.
        counts = counts.reshape(n_tiles, m)
        plan_starts = self.indptr[:-1] + np.cumsum(counts, axis=0) - counts
        shift = plan_starts.ravel() - tile_starts[:-1]
        source = np.arange(self.nnz, dtype=np.int64) + np.repeat(shift, counts.ravel())
        arrays = (tile_starts, self.indices[source], self.values[source].astype(dtype))
        for array in arrays:
            array.flags.writeable = False
        return arrays

    @property
    def nnz(self) -> int:
        """The number of observed entries."""
        return self.values.shape[0]

    @property
    def dtype(self) -> np.dtype[Any]:
        """The dtype of the observed values."""
        return self.values.dtype

    @property
    def density(self) -> float:
        """The fraction of the m x n entries that are observed."""
        m, n = self.shape
        return self.nnz / (m * n) if m * n else 0.0

    @property
    def rows(self) -> NDArray[np.integer[Any]]:
        """The row index of every entry, in the plan's order."""
        counts = np.diff(self.indptr)
        return np.repeat(np.arange(self.shape[0], dtype=self.indices.dtype), counts)

    @property
    def cols(self) -> NDArray[np.integer[Any]]:
        """The column index of every entry, in the plan's order (``indices``)."""
        return self.indices

    def _entry_values(self, data, name):
        if data is None:
            return self.values
        data = np.asarray(data)
        if data.shape != (self.nnz,):
            raise ValueError(
                f"{name} must be a 1-D array of shape (nnz,) = ({self.nnz},) in the plan's "
                f"order; got shape {data.shape}"
            )
        return data

    def to_sparse(self, data: ArrayLike | None = None) -> Any:
        """The entries as a ``scipy.sparse.csr_array``.

        Parameters
        ----------
        data : ndarray of shape (nnz,), optional
            Values in the plan's order, e.g. the residuals that ``masked_residual``
            returns for a plan; the observed values when omitted.

        Examples
        --------
        >>> import numpy as np
        >>> import fastgd
        >>> plan = fastgd.observed(np.array([[1.0, np.nan], [np.nan, 4.0]]))
        >>> plan.to_sparse(np.array([0.5, -0.5])).toarray()
        array([[ 0.5,  0. ],
               [ 0. , -0.5]])
        """
        import scipy.sparse

        values = self._entry_values(data, "data")
        return scipy.sparse.csr_array(
            (values, self.indices.copy(), self.indptr.copy()), shape=self.shape
        )

    def to_dense(self, data: ArrayLike | None = None, fill_value: float = np.nan) -> FloatArray:
        """The entries as a dense (m, n) array, ``fill_value`` where nothing is observed.

        Examples
        --------
        >>> import numpy as np
        >>> import fastgd
        >>> fastgd.observed((np.array([1]), np.array([0]), np.array([7.0]), (2, 2))).to_dense()
        array([[nan, nan],
               [ 7., nan]])
        """
        values = self._entry_values(data, "data")
        dense = np.full(self.shape, fill_value, dtype=values.dtype)
        dense[self.rows, self.indices] = values
        return dense

    def __repr__(self):
        return (
            f"ObservedEntries(shape={self.shape}, nnz={self.nnz}, dtype={self.dtype}, "
            f"index dtype={self.indices.dtype})"
        )


def _columns_ascend(indptr, indices):
    """Whether the columns of every row of a CSR structure strictly ascend."""
    row_starts = np.zeros(indices.shape[0] + 1, dtype=bool)
    row_starts[indptr] = True
    return bool(np.all((np.diff(indices) > 0) | row_starts[1:-1]))


def _index_dtype(*sizes):
    return np.dtype(np.int32) if max(sizes, default=0) < 2**31 else np.dtype(np.int64)


def _first_nonfinite(values):
    return int(np.flatnonzero(~np.isfinite(values))[0])


def _check_observed_values(values, describe, name="A"):
    """ValueError if an observed value is NaN or infinite; ``describe(e)`` locates entry e."""
    if not kernels().all_finite(values):
        e = _first_nonfinite(values)
        raise ValueError(
            f"{name} must be finite at every observed entry; got {values[e]} at {describe(e)}"
        )


def _as_mask(mask, shape):
    mask = np.asarray(mask)
    if mask.dtype != np.bool_:
        raise TypeError(
            f"mask must be a boolean array (True = observed); got dtype {mask.dtype}"
        )
    if mask.shape != shape:
        raise ValueError(f"mask must have A's shape {shape}; got shape {mask.shape}")
    return np.ascontiguousarray(mask).view(np.uint8)


def _as_dense(A, mask):
    """A as a float array and mask as C-contiguous uint8 or None. The masked entries of a
    numpy.ma.MaskedArray A are missing, as its NaN are (or as mask's False are)."""
    masked_out = None
    if isinstance(A, np.ma.MaskedArray):
        masked_out = np.ma.getmaskarray(A)
        A = A.data
    A = _validation.as_float_array(A, "A", 2, "(m, n)")
    if mask is not None:
        mask = _as_mask(mask, A.shape)
    if masked_out is not None:
        observed_entries = ~np.isnan(A) if mask is None else mask.view(bool)
        mask = (observed_entries & ~masked_out).view(np.uint8)
    return A, mask


def _plan_from_dense(A, mask):
    m, n = A.shape
    A = _validation.as_contiguous(A, A.dtype)
    index_dtype = _index_dtype(m * n, m, n)
    counts = np.empty(m, dtype=np.int64)
    kernels().count_observed_rows(A, mask, counts)
    indptr = np.zeros(m + 1, dtype=index_dtype)
    np.cumsum(counts, out=indptr[1:])
    nnz = int(indptr[-1])
    indices = np.empty(nnz, dtype=index_dtype)
    values = np.empty(nnz, dtype=A.dtype)
    kernels().fill_plan(A, mask, indptr, indices, values)
    if index_dtype == np.int64 and _index_dtype(nnz, m, n) == np.int32:
        indptr, indices = indptr.astype(np.int32), indices.astype(np.int32)

    def describe(e):
        row = int(np.searchsorted(indptr, e, side="right")) - 1
        return f"row {row}, column {int(indices[e])}"

    _check_observed_values(values, describe)
    return _ascending_plan(indptr, indices, values, (m, n))


def _check_shape(shape):
    message = f"shape must be a pair of non-negative ints (m, n); got {shape!r}"
    try:
        m, n = shape
    except (TypeError, ValueError):
        raise ValueError(message) from None
    for size in (m, n):
        if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 0:
            raise ValueError(message)
    return int(m), int(n)


def _as_index_array(value, name, dtype=np.int64):
    array = np.asarray(value)
    if array.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of indices; got shape {array.shape}")
    if array.dtype.kind not in "iu" and not (array.size == 0 and array.dtype.kind == "f"):
        raise TypeError(f"{name} must hold integers; got dtype {array.dtype}")
    if array.dtype.kind == "u" and array.size and array.max() > np.iinfo(np.int64).max:
        raise ValueError(f"{name} must hold indices below 2**63; got {array.max()}")
    return array.astype(dtype)


def _plan_from_entries(rows, cols, values, shape):
    """A plan from coordinates: sorted by row then column, duplicates refused."""
    m, n = _check_shape(shape)
    rows = _as_index_array(rows, "rows")
    cols = _as_index_array(cols, "cols")
    values = _validation.as_float_array(values, "values", 1, "(nnz,)")
    if not rows.shape == cols.shape == values.shape:
        raise ValueError(
            f"rows, cols and values must have the same length; got {rows.shape[0]}, "
            f"{cols.shape[0]} and {values.shape[0]}"
        )
    _check_index_range(rows, "rows", m, (m, n))
    _check_index_range(cols, "cols", n, (m, n))
    if m * n <= np.iinfo(np.int64).max:
        order = np.argsort(rows * n + cols, kind="stable")
    else:  # rows * n + cols would wrap
        order = np.lexsort((cols, rows))
    _check_distinct(rows, cols, order)
    rows, cols, values = rows[order], cols[order], np.ascontiguousarray(values[order])
    index_dtype = _index_dtype(values.shape[0], m, n)
    indptr = np.zeros(m + 1, dtype=index_dtype)
    np.cumsum(np.bincount(rows, minlength=m), out=indptr[1:])
    indices = cols.astype(index_dtype)
    _check_observed_values(values, lambda e: f"row {rows[e]}, column {cols[e]}")
    return _ascending_plan(indptr, indices, values, (m, n))


def _check_index_range(index, name, size, shape):
    """ValueError naming ``name`` unless every entry of ``index`` lies in [0, size)."""
    if index.size and (index.min() < 0 or index.max() >= size):
        bad = int(np.flatnonzero((index < 0) | (index >= size))[0])
        raise ValueError(f"{name} must lie in [0, {size}) for shape {shape}; got {index[bad]} "
                         f"at position {bad}")


def _check_distinct(rows, cols, order):
    """ValueError unless the (row, col) pairs are distinct; ``order`` sorts them by row,
    then column."""
    sorted_rows, sorted_cols = rows[order], cols[order]
    repeated = np.flatnonzero((sorted_rows[1:] == sorted_rows[:-1])
                              & (sorted_cols[1:] == sorted_cols[:-1]))
    if repeated.size:
        first = int(order[repeated[0]])
        raise ValueError(f"the observed entries must be distinct; (row {rows[first]}, column "
                         f"{cols[first]}) appears more than once")


def _ascending_plan(indptr, indices, values, shape):
    """An ObservedEntries the package built: its rows' columns ascend."""
    return ObservedEntries._trusted(indptr, indices, values, shape, True)


def _plan_from_sparse(matrix):
    coo = matrix.tocoo()
    return _plan_from_entries(coo.row, coo.col, coo.data, coo.shape)


def observed(A: Any, mask: ArrayLike | None = None) -> ObservedEntries:
    """A reusable plan of the observed entries of A.

    Build it once and pass it in place of A to ``masked_residual`` and
    ``masked_loss_grad``: every later call then skips finding the observed entries
    and runs the sparse path, O(nnz k).

    Parameters
    ----------
    A : array_like of shape (m, n), scipy.sparse matrix or array, or tuple
        A dense array with NaN where an entry is missing; a dense array with ``mask``;
        any scipy.sparse matrix or array (its stored entries, explicit zeros included,
        are the observed ones); or ``(rows, cols, values, shape)``, a tuple whose last
        item is the tuple ``(m, n)`` (pass a dense A as an ndarray, not as a tuple).
    mask : array_like of bool, shape (m, n), optional
        True where A is observed, only with a dense A; A's values elsewhere are
        ignored, even NaN or inf.

    Returns
    -------
    ObservedEntries
        Values in A's float dtype (float32 stays float32; integers become float64).

    Raises
    ------
    ValueError
        A NaN or infinite observed value, duplicate (row, col) pairs, indices outside
        the shape, a mask of another shape, or a mask together with a sparse A.
    TypeError
        A non-real dtype, a non-boolean mask, or non-integer indices.

    Examples
    --------
    >>> import numpy as np
    >>> import fastgd
    >>> A = np.array([[5.0, np.nan, 1.0], [np.nan, 2.0, np.nan]])
    >>> plan = fastgd.observed(A)
    >>> plan.nnz, plan.indptr, plan.indices
    (3, array([0, 2, 3], dtype=int32), array([0, 2, 1], dtype=int32))
    >>> fastgd.observed((np.array([1, 0]), np.array([1, 0]), np.array([2.0, 5.0]), (2, 3))).values
    array([5., 2.])
    """
    if isinstance(A, ObservedEntries):
        if mask is not None:
            raise ValueError("mask cannot be combined with an ObservedEntries plan")
        return A
    if _is_sparse(A):
        if mask is not None:
            raise ValueError("mask cannot be combined with a scipy.sparse A")
        return _plan_from_sparse(A)
    if isinstance(A, tuple) and len(A) == 4 and isinstance(A[3], tuple):
        if mask is not None:
            raise ValueError("mask cannot be combined with (rows, cols, values, shape)")
        return _plan_from_entries(*A)
    if isinstance(A, tuple) and len(A) == 3:
        raise ValueError("A as a tuple must be (rows, cols, values, shape), shape the tuple "
                         "(m, n); got 3 items (the shape is missing?). Pass a dense A as an "
                         "ndarray")
    A, mask = _as_dense(A, mask)
    return _plan_from_dense(A, mask)


def _is_sparse(value):
    # A sparse matrix exists only once scipy.sparse is imported: until then (most programs
    # never import it) a call does not pay its import.
    sparse = sys.modules.get("scipy.sparse")
    return sparse is not None and sparse.issparse(value)


def _check_factors(W, H, shape, names=("W", "H")):
    """W and H validated against A's shape (m, n); ``names`` are theirs in messages."""
    m, n = shape
    w_name, h_name = names
    W = _validation.as_float_array(W, w_name, 2, f"(m, k) = ({m}, k)")
    H = _validation.as_float_array(H, h_name, 2, f"(k, n) = (k, {n})")
    if W.shape[0] != m:
        raise ValueError(
            f"{w_name} must have shape (m, k) = ({m}, k), m the rows of A; got {W.shape}")
    if H.shape[1] != n:
        raise ValueError(
            f"{h_name} must have shape (k, n) = (k, {n}), n the columns of A; got {H.shape}"
        )
    if W.shape[1] != H.shape[0]:
        raise ValueError(
            f"{w_name} and {h_name} must share the rank k (the columns of one, the rows of "
            f"the other); got shapes {W.shape} and {H.shape}"
        )
    return W, H


def _check_finite_factor(array, name):
    if not kernels().all_finite(array):
        where = np.unravel_index(_first_nonfinite(array.ravel()), array.shape)
        raise ValueError(
            f"{name} must be finite; got {array[where]} at {name}[{where[0]}, {where[1]}]"
        )


def _prepare(A, W, H, mask):
    """(plan or None, dense A or None, mask, W, H, dtype): W, H and a dense A in the one
    float dtype they compute in, C-contiguous, the mask as uint8 or None."""
    if isinstance(A, ObservedEntries) or _is_sparse(A):
        plan = observed(A, mask)
        dense = None
        values = plan.values
    else:
        plan = None
        dense, mask = _as_dense(A, mask)
        values = dense
    W, H = _check_factors(W, H, values.shape if plan is None else plan.shape)
    dtype = _validation.result_dtype(values, W, H)
    W = _validation.as_contiguous(W, dtype)
    H = _validation.as_contiguous(H, dtype)
    _check_finite_factor(W, "W")
    _check_finite_factor(H, "H")
    if dense is not None:
        dense = _validation.as_contiguous(dense, dtype)
    return plan, dense, mask, W, H, dtype


def _raise_if_observed_nonfinite(A, mask):
    """After a non-finite sum of squares: an observed NaN or inf in A is the caller's error
    (otherwise W @ H overflowed, and the result is honestly infinite)."""
    observed_entries = ~np.isnan(A) if mask is None else mask.view(bool)
    bad = np.flatnonzero((observed_entries & ~np.isfinite(A)).ravel())
    if bad.size:
        i, j = np.unravel_index(int(bad[0]), A.shape)
        raise ValueError(
            f"A must be finite at every observed entry; got {A[i, j]} at row {i}, column {j}"
        )


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


def _plan_tile_cols(plan, k, itemsize):
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


def _plan_values(plan, dtype):
    return plan.values if plan.values.dtype == dtype else plan.values.astype(dtype)


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
            _raise_if_observed_nonfinite(dense, mask)
    else:
        HT = _transposed_copy(H)
        n_threads = _thread_count(n_threads, plan.nnz * max(k, 1))
        kernels().plan_residual(
            plan.indptr, plan.indices, _plan_values(plan, dtype), W, HT, out, n_threads
        )
    return out


def _blas_held(work):
    """BLAS held to one thread for work worth a parallel region: inside fastgd's own threads
    (no oversubscription), and with n_threads=1 (one thread means one, and BLAS's threaded
    sums would make the result depend on its thread count)."""
    if work < PARALLEL_MIN_WORK:
        return contextlib.nullcontext()
    return _threads.single_threaded_blas()


def _check_l2(l2):
    if isinstance(l2, bool) or not isinstance(l2, numbers.Real):
        raise TypeError(f"l2 must be a real number; got {type(l2).__name__}")
    if not (math.isfinite(l2) and l2 >= 0):
        raise ValueError(f"l2 must be finite and >= 0; got {l2}")
    return float(l2)


def _estimated_density(A, mask):
    m = A.shape[0]
    rows = np.unique(np.linspace(0, m - 1, min(m, DENSITY_SAMPLE_ROWS)).astype(np.intp))
    if mask is not None:
        return float(np.count_nonzero(mask[rows])) / (rows.size * A.shape[1])
    return float(np.count_nonzero(~np.isnan(A[rows]))) / (rows.size * A.shape[1])


def masked_loss_grad(A: Any, W: ArrayLike, H: ArrayLike, *, mask: ArrayLike | None = None,
                     loss: Loss = "mse", l2: float = 0.0, n_threads: int | None = None,
                     deterministic: bool = False,
                     method: MaskedMethod = "auto",
                     ) -> tuple[float, FloatArray, FloatArray]:
    """The loss of ``W @ H`` against the observed entries of A, and its exact gradients.

    With ``r = (W @ H - A)`` at the N observed entries, the loss is ``sum(r^2)``
    ("sse"), ``sum(r^2) / N`` ("mse") or ``sqrt(sum(r^2) / N)`` ("rmse"), plus
    ``0.5 * l2 * (||W||_F^2 + ||H||_F^2)``.

    Parameters
    ----------
    A : array_like of shape (m, n), or ObservedEntries, or scipy.sparse matrix
        The data, NaN where missing (or see ``mask``); or a plan from ``observed``,
        the fastest way to call this in a loop.
    W : array_like of shape (m, k)
    H : array_like of shape (k, n)
    mask : array_like of bool, shape (m, n), optional
        True where A is observed (only with a dense A); A's values elsewhere are ignored.
    loss : {"mse", "sse", "rmse"}
    l2 : float, default 0
        Weight of the squared Frobenius norms of W and H (adds ``l2 * W`` and ``l2 * H``
        to the gradients).
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
        observed value of A, no observed entry for "mse" or "rmse", a negative l2, or
        an unknown ``loss`` or ``method``.
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
    """
    small_problems = _backend.masked_fast_path
    if (small_problems is not None and mask is None and method == "auto"
            and (deterministic is False or deterministic is True)
            and type(loss) is str and loss in LOSS_CODES
            and type(l2) is float and 0 <= l2 < math.inf
            and (n_threads is None or (type(n_threads) is int and n_threads != 0
                                       and n_threads <= _threads.MAX_THREADS))):
        # Small problems, a dense A or a plan, with settings that need no checking: one
        # compiled call validates the arrays and computes (None: the general path below
        # handles them, and raises about what is wrong). The tests of the settings are
        # written out here; a helper's call would cost a tenth of a tutorial-sized call.
        if type(A) is ObservedEntries:
            # The plan's slots, not its properties (a call each, on the tutorial's path).
            m, n = A._shape
            result = small_problems.small_plan_loss_grad(
                A._indptr, A._indices, A._values, m, n, W, H, LOSS_CODES[loss], l2,
                SMALL_MAX_WORK)
        else:
            result = small_problems.small_loss_grad(A, W, H, LOSS_CODES[loss], l2,
                                                    SMALL_MAX_WORK)
        if result is not None:
            return result
    _validation.check_choice(loss, "loss", LOSSES)
    _validation.check_choice(method, "method", METHODS)
    deterministic = _validation.check_flag(deterministic, "deterministic")
    l2 = _check_l2(l2)
    plan, dense, mask, W, H, dtype = _prepare(A, W, H, mask)
    if plan is not None and method == "dense":
        dense, plan = _validation.as_contiguous(plan.to_dense(), dtype), None
    elif plan is None and _takes_sparse_path(method, dense, mask):
        plan = _plan_from_dense(dense, mask)
    m, k = W.shape
    n = H.shape[1]
    dW = np.empty((m, k), dtype=dtype)
    dH = np.empty((k, n), dtype=dtype)
    # The plan kernel scales the gradients as it writes them where the scale does not
    # depend on the loss's value (all but "rmse"): the same bits, one pass less.
    scaled_in_kernel = plan is not None and loss != "rmse"
    if plan is None:
        n_threads = _thread_count(n_threads, m * n * max(k, 1))
        n_parts = DETERMINISTIC_PARTS if deterministic else n_threads
        with _blas_held(m * n * max(k, 1)):
            sse, count = kernels().dense_loss_grad(
                dense, mask, W, H, dW, dH, n_threads, n_parts
            )
        if not math.isfinite(sse):
            _raise_if_observed_nonfinite(dense, mask)
    else:
        count = plan.nnz
        n_threads = _thread_count(n_threads, count * max(k, 1))
        n_parts = DETERMINISTIC_PARTS if deterministic else n_threads
        kernel_scale = _loss_and_scale(loss, 0.0, count)[1] if scaled_in_kernel else 1.0
        tile_cols = _plan_tile_cols(plan, k, W.itemsize)
        indices, values, tile_starts = plan._entries_for_tiles(tile_cols, dtype)
        with _blas_held(count * max(k, 1)):  # the NumPy twin's sums use BLAS
            sse = kernels().plan_loss_grad(
                plan.indptr, indices, values, W, H, dW, dH, n_threads, n_parts, tile_cols,
                kernel_scale, tile_starts,
            )
    value, scale = _loss_and_scale(loss, sse, count)
    if not scaled_in_kernel:
        dW *= scale
        dH *= scale
    if l2:
        value += 0.5 * l2 * (_sum_of_squares(W) + _sum_of_squares(H))
        dW += l2 * W
        dH += l2 * H
    return value, dW, dH


def _takes_sparse_path(method, dense, mask):
    if method == "sparse":
        return True
    return (method == "auto" and dense.size > 0
            and _estimated_density(dense, mask) <= SPARSE_MAX_DENSITY)


def _sum_of_squares(array):
    flat = array.ravel().astype(np.float64, copy=False)
    return float(np.dot(flat, flat))


def _check_loss_defined(loss, count):
    """ValueError when ``loss`` is a mean over no observed entry at all."""
    if loss != "sse" and count == 0:
        raise ValueError(
            f"A has no observed entry, so loss={loss!r} (a mean over them) is undefined; "
            "use loss='sse'"
        )


def _loss_and_scale(loss, sse, count):
    """The loss named ``loss`` from the sum of squared residuals, and d loss / d (W @ H)
    per unit residual (the formula: fastgd._numpy._masked.loss_value_and_scale)."""
    _check_loss_defined(loss, count)
    return loss_value_and_scale(LOSS_CODES[loss], sse, count)
