"""The plan of observed entries (``ObservedEntries``), its builders, and the checks of the
factors against it: the part of the masked family that factorize, fastgd.dask and the
masked kernels share.

A plan holds the observed entries of an (m, n) matrix row by row (CSR, int32 indices
where they fit), built once by ``observed`` from a dense A with NaN (or a mask), a
scipy.sparse matrix, or ``(rows, cols, values, shape)``, and passed to the kernels every
iteration. The functions without an underscore are this module's interface to the rest of
the package; ``fastgd.observed`` and ``fastgd.ObservedEntries`` are the public ones.
"""

from __future__ import annotations

import numbers
import re
import sys
from typing import TYPE_CHECKING

import numpy as np

from fastgd import _backend, _validation

if TYPE_CHECKING:
    from fastgd._typing import Any, ArrayLike, FloatArray, NDArray


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
    weights : ndarray of shape (nnz,) or None
        The entries' weights in the masked losses, if the plan was given some
        (``observed(A, weights=...)``).

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

    __slots__ = ("_ascending", "_col_ids", "_indices", "_indptr", "_row_ids", "_shape",
                 "_tiled", "_tiled_wanted", "_total_weight", "_values", "_weights")

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
        check_observed_values(values, lambda e: f"row {rows[e]}, column {indices[e]}",
                               "values")
        index_dtype = smallest_index_dtype(nnz, m, n)
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
        self._weights = None
        self._row_ids = self._col_ids = None
        self._total_weight = float(values.shape[0])
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

    @property
    def total_weight(self) -> float:
        """The entries' total weight (their number without weights), in float64."""
        return self._total_weight

    @property
    def weights(self) -> FloatArray | None:
        """The entries' weights in the plan's order, shape (nnz,), or None (read-only)."""
        return self._weights

    @property
    def row_ids(self) -> NDArray[Any] | None:
        """The id of every row, shape (m,), for a plan made by ``observed_from_ids``;
        None otherwise (read-only)."""
        return self._row_ids

    @property
    def col_ids(self) -> NDArray[Any] | None:
        """The id of every column, shape (n,), for a plan made by ``observed_from_ids``;
        None otherwise (read-only)."""
        return self._col_ids

    def _with_ids(self, row_ids, col_ids):
        """This plan (a shallow copy) with the read-only ids of its rows and columns."""
        plan = ObservedEntries._trusted(self._indptr, self._indices, self._values,
                                        self._shape, self._ascending)
        plan._weights, plan._total_weight = self._weights, self._total_weight
        plan._row_ids, plan._col_ids = row_ids, col_ids
        return plan

    def _with_weights(self, weights):
        """This plan's entries with the checked, read-only ``weights`` (nnz,)."""
        plan = ObservedEntries._trusted(self._indptr, self._indices, self._values,
                                        self._shape, self._ascending)
        plan._row_ids, plan._col_ids = self._row_ids, self._col_ids
        plan._weights = weights
        plan._total_weight = float(np.sum(weights, dtype=np.float64))
        return plan

    def _columns_ascend(self):
        return self._ascending

    def _entries_for_tiles(self, tile_cols, dtype):
        """(indices, values, tile_starts, weights) for the plan kernel taking the columns in
        tiles of tile_cols (0: no tiles), the values and weights (None without) in
        ``dtype``.

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
            return self._tiled[2], self._tiled[3], self._tiled[1], self._tiled[4]
        self._tiled_wanted = key
        weights = None if self._weights is None else self._weights.astype(dtype, copy=False)
        return self.indices, plan_values(self, dtype), None, weights

    def _in_tiles(self, tile_cols, dtype):
        """(tile_starts, indices, values, weights or None): the entries tile by tile, rows
        in order within a tile (see _entries_for_tiles); read-only."""
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
        if self._weights is not None:
            arrays += (self._weights[source].astype(dtype),)
        for array in arrays:
            array.flags.writeable = False
        return arrays + ((None,) if self._weights is None else ())

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
            f"index dtype={self.indices.dtype}"
            + (", weighted" if self._weights is not None else "") + ")"
        )


def _columns_ascend(indptr, indices):
    """Whether the columns of every row of a CSR structure strictly ascend."""
    row_starts = np.zeros(indices.shape[0] + 1, dtype=bool)
    row_starts[indptr] = True
    return bool(np.all((np.diff(indices) > 0) | row_starts[1:-1]))


def smallest_index_dtype(*sizes):
    return np.dtype(np.int32) if max(sizes, default=0) < 2**31 else np.dtype(np.int64)


def _first_nonfinite(values):
    return int(np.flatnonzero(~np.isfinite(values))[0])


def check_observed_values(values, describe, name="A"):
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


def as_dense(A, mask):
    """A as a float array and mask as C-contiguous uint8 or None. The masked entries of a
    numpy.ma.MaskedArray A are missing, as its NaN are (or as mask's False are)."""
    masked_out = None
    if _validation.is_masked_array(A):
        masked_out = np.ma.getmaskarray(A)
        A = A.data
    A = _validation.as_float_array(A, "A", 2, "(m, n)")
    if mask is not None:
        mask = _as_mask(mask, A.shape)
    if masked_out is not None:
        observed_entries = ~np.isnan(A) if mask is None else mask.view(bool)
        mask = (observed_entries & ~masked_out).view(np.uint8)
    return A, mask


def plan_from_dense(A, mask):
    m, n = A.shape
    A = _validation.as_contiguous(A, A.dtype)
    index_dtype = smallest_index_dtype(m * n, m, n)
    counts = np.empty(m, dtype=np.int64)
    kernels().count_observed_rows(A, mask, counts)
    indptr = np.zeros(m + 1, dtype=index_dtype)
    np.cumsum(counts, out=indptr[1:])
    nnz = int(indptr[-1])
    indices = np.empty(nnz, dtype=index_dtype)
    values = np.empty(nnz, dtype=A.dtype)
    kernels().fill_plan(A, mask, indptr, indices, values)
    if index_dtype == np.int64 and smallest_index_dtype(nnz, m, n) == np.int32:
        indptr, indices = indptr.astype(np.int32), indices.astype(np.int32)

    def describe(e):
        row = int(np.searchsorted(indptr, e, side="right")) - 1
        return f"row {row}, column {int(indices[e])}"

    check_observed_values(values, describe)
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
        keys, order = _sorted_with_order(rows * n + cols, m * n)
        repeated = np.flatnonzero(keys[1:] == keys[:-1])
        if repeated.size:
            _raise_repeated(rows, cols, order, repeated)
        rows, cols = np.divmod(keys, n)
    else:  # rows * n + cols would wrap
        order = np.lexsort((cols, rows))
        _check_distinct(rows, cols, order)
        rows, cols = rows[order], cols[order]
    values = np.ascontiguousarray(values[order])
    index_dtype = smallest_index_dtype(values.shape[0], m, n)
    indptr = np.zeros(m + 1, dtype=index_dtype)
    np.cumsum(np.bincount(rows, minlength=m), out=indptr[1:])
    indices = cols.astype(index_dtype)
    check_observed_values(values, lambda e: f"row {rows[e]}, column {cols[e]}")
    return _ascending_plan(indptr, indices, values, (m, n))


def _check_index_range(index, name, size, shape):
    """ValueError naming ``name`` unless every entry of ``index`` lies in [0, size)."""
    if index.size and (index.min() < 0 or index.max() >= size):
        bad = int(np.flatnonzero((index < 0) | (index >= size))[0])
        raise ValueError(f"{name} must lie in [0, {size}) for shape {shape}; got {index[bad]} "
                         f"at position {bad}")


def _sorted_with_order(keys, limit):
    """(the keys sorted, the stable order that sorts them) of non-negative int64 keys below
    ``limit``. Where each key leaves room for an entry's position in the low bits of an
    int64, the keys are sorted with their positions packed in (NumPy's sort, vectorised,
    is several times faster than a stable argsort of 5M keys); else by a stable argsort."""
    position_bits = max(1, (keys.shape[0] - 1).bit_length())
    if limit <= 1 << (63 - position_bits):
        packed = np.left_shift(keys, position_bits)
        packed |= np.arange(keys.shape[0], dtype=np.int64)
        packed.sort()
        return packed >> position_bits, packed & ((1 << position_bits) - 1)
    order = np.argsort(keys, kind="stable")
    return keys[order], order


def _check_distinct(rows, cols, order):
    """ValueError unless the (row, col) pairs are distinct; ``order`` sorts them by row,
    then column."""
    sorted_rows, sorted_cols = rows[order], cols[order]
    repeated = np.flatnonzero((sorted_rows[1:] == sorted_rows[:-1])
                              & (sorted_cols[1:] == sorted_cols[:-1]))
    if repeated.size:
        _raise_repeated(rows, cols, order, repeated)


def _raise_repeated(rows, cols, order, repeated):
    first = int(order[repeated[0]])
    raise ValueError(f"the observed entries must be distinct; (row {rows[first]}, column "
                     f"{cols[first]}) appears more than once")


def _ascending_plan(indptr, indices, values, shape):
    """An ObservedEntries the package built: its rows' columns ascend."""
    return ObservedEntries._trusted(indptr, indices, values, shape, True)


def _plan_from_sparse(matrix):
    coo = matrix.tocoo()
    return _plan_from_entries(coo.row, coo.col, coo.data, coo.shape)


def observed(A: Any, mask: ArrayLike | None = None, *,
             weights: ArrayLike | None = None) -> ObservedEntries:
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
    weights : array_like, optional
        A non-negative weight per observed entry, kept with the plan: every masked loss
        computed over the plan weights its entries' terms (a mean is over the total
        weight). An array shaped like A (its values at missing entries are ignored), or
        one value per observed entry in the plan's order, shape (nnz,). Checked and
        copied once, where ``weights=`` of ``masked_loss_grad`` is checked at every call.

    Returns
    -------
    ObservedEntries
        Values in A's float dtype (float32 stays float32; integers become float64).

    Raises
    ------
    ValueError
        A NaN or infinite observed value, duplicate (row, col) pairs, indices outside
        the shape, a mask of another shape, a mask together with a sparse A, or weights
        of another shape or not finite and >= 0 at an observed entry.
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
    >>> fastgd.observed(A, weights=[[1.0, 0.0, 2.0], [0.0, 0.5, 0.0]]).weights
    array([1. , 2. , 0.5])
    """
    plan = _observed(A, mask)
    if weights is None:
        return plan
    from fastgd import _losses

    weights = np.array(_losses.plan_weights(weights, plan, plan.values.dtype), copy=True)
    weights.flags.writeable = False
    return plan._with_weights(weights)


def _ids_and_positions(ids, name):
    """(the distinct ids, each entry's position among them) of a 1-D column of ids: sorted
    where they compare (numbers, strings), else in order of first appearance."""
    if hasattr(ids, "to_numpy"):  # a pandas Series or Index
        ids = ids.to_numpy()
    ids = np.asarray(ids)
    if ids.ndim != 1:
        raise ValueError(f"{name} must be a 1-D column of ids; got shape {ids.shape}")
    try:
        distinct, positions = np.unique(ids, return_inverse=True)
    except TypeError:  # ids of types that do not compare: keep the order they come in
        first_seen = {}
        positions = np.fromiter((first_seen.setdefault(i, len(first_seen)) for i in ids),
                                dtype=np.int64, count=ids.shape[0])
        distinct = np.empty(len(first_seen), dtype=object)
        distinct[:] = list(first_seen)
    if distinct.dtype.kind == "f" and np.isnan(distinct).any():
        raise ValueError(f"{name} must not hold NaN")
    distinct.flags.writeable = False
    return distinct, positions.reshape(-1)


def observed_from_ids(row_ids: ArrayLike, col_ids: ArrayLike, values: ArrayLike, *,
                      weights: ArrayLike | None = None) -> ObservedEntries:
    """A plan of observed entries from a ratings table: one (row id, column id, value)
    per entry, the ids any hashable values (user and item ids, names).

    Each distinct row id becomes a row of the plan and each distinct column id a column
    (sorted where the ids compare, else in order of first appearance); ``plan.row_ids``
    and ``plan.col_ids`` say which. A :class:`FactorizationResult` of ``factorize`` on
    the plan keeps them: its ``predict`` then takes ids, and predicts for ids it has not
    seen from what it knows (see :meth:`FactorizationResult.predict`). Also available as
    ``fastgd.observed.from_ids``.

    Parameters
    ----------
    row_ids, col_ids : array_like or pandas Series, shape (nnz,)
        The entries' row and column ids.
    values : array_like, shape (nnz,)
        The observed values.
    weights : array_like, shape (nnz,), optional
        A non-negative weight per entry, in the table's order.

    Returns
    -------
    ObservedEntries
        With ``row_ids`` and ``col_ids``.

    Raises
    ------
    ValueError
        Columns of different lengths, an id pair that appears twice, a NaN id, or a
        value or weight ``observed`` refuses.

    Examples
    --------
    >>> import fastgd
    >>> plan = fastgd.observed_from_ids(["ann", "bob", "ann"], [10, 20, 20],
    ...                                 [4.0, 3.0, 5.0])
    >>> plan.shape, plan.row_ids.tolist(), plan.col_ids.tolist()
    ((2, 2), ['ann', 'bob'], [10, 20])
    >>> plan.to_dense()
    array([[ 4.,  5.],
           [nan,  3.]])
    """
    distinct_rows, rows = _ids_and_positions(row_ids, "row_ids")
    distinct_cols, cols = _ids_and_positions(col_ids, "col_ids")
    values = _validation.as_float_array(values, "values", 1, "(nnz,)")
    if not rows.shape == cols.shape == values.shape:
        raise ValueError(f"row_ids, col_ids and values must have the same length; got "
                         f"{rows.shape[0]}, {cols.shape[0]} and {values.shape[0]}")
    shape = (distinct_rows.shape[0], distinct_cols.shape[0])
    try:
        plan = _plan_from_entries(rows, cols, values, shape)
    except ValueError as error:
        repeated = re.search(r"\(row (\d+), column (\d+)\) appears", str(error))
        if repeated is None:
            raise
        row, col = (int(i) for i in repeated.groups())
        pair = tuple(getattr(x, "item", lambda x=x: x)()
                     for x in (distinct_rows[row], distinct_cols[col]))
        raise ValueError(f"each (row id, column id) pair must appear once; {pair!r} appears "
                         "more than once") from None
    plan = plan._with_ids(distinct_rows, distinct_cols)
    if weights is None:
        return plan
    weights = _validation.as_float_array(weights, "weights", 1, "(nnz,)")
    if weights.shape != values.shape:
        raise ValueError(f"weights must have one value per entry ({values.shape[0]}); got "
                         f"shape {weights.shape}")
    return observed(plan, weights=weights[np.lexsort((cols, rows))])


observed.from_ids = observed_from_ids  # type: ignore[attr-defined]


def _observed(A, mask):
    if isinstance(A, ObservedEntries):
        if mask is not None:
            raise ValueError("mask cannot be combined with an ObservedEntries plan")
        return A
    if is_sparse(A):
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
    A, mask = as_dense(A, mask)
    return plan_from_dense(A, mask)


def is_sparse(value):
    # A sparse matrix exists only once scipy.sparse is imported: until then (most programs
    # never import it) a call does not pay its import.
    sparse = sys.modules.get("scipy.sparse")
    return sparse is not None and sparse.issparse(value)


def check_factors(W, H, shape, names=("W", "H")):
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


def check_finite_factor(array, name):
    if not kernels().all_finite(array):
        where = np.unravel_index(_first_nonfinite(array.ravel()), array.shape)
        raise ValueError(
            f"{name} must be finite; got {array[where]} at {name}[{where[0]}, {where[1]}]"
        )


def raise_if_observed_nonfinite(A, mask):
    """After a non-finite sum of squares: an observed NaN or inf in A is the caller's error
    (otherwise W @ H overflowed, and the result is honestly infinite)."""
    observed_entries = ~np.isnan(A) if mask is None else mask.view(bool)
    bad = np.flatnonzero((observed_entries & ~np.isfinite(A)).ravel())
    if bad.size:
        i, j = np.unravel_index(int(bad[0]), A.shape)
        raise ValueError(
            f"A must be finite at every observed entry; got {A[i, j]} at row {i}, column {j}"
        )


def plan_values(plan, dtype):
    return plan.values if plan.values.dtype == dtype else plan.values.astype(dtype)
