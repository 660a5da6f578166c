"""Pairwise squared Euclidean distances."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from fastgd import _backend, _caches, _threads, _validation

if TYPE_CHECKING:
    from fastgd._typing import Any, ArrayLike, DistanceMethod, FloatArray, NDArray

METHODS = ("auto", "expansion", "direct")
# The pairwise kernel's metrics (src_c/metrics.h: a functor each, which the direct loops
# take; their NumPy twins: fastgd._numpy._pairwise.METRICS): name -> whether it also has
# the inner-product expansion (||x||^2 + ||y||^2 - 2 x.y by GEMM), else it runs the direct
# loops alone.
METRICS = {"sqeuclidean": {"expansion": True}}

# The tuning constants below were measured as docs/performance.md ("Tuning constants")
# records; change them only with a side-by-side measurement.

# method="auto" uses the direct differences below this many features, the GEMM expansion
# from it on.
DIRECT_MAX_FEATURES = 10

# Outputs from this size on are allocated with their data on a cache line (the compiled
# backend's empty_aligned), so that the kernel's 64-byte vector stores never straddle two
# lines.
ALIGNED_MIN_BYTES = 1 << 16

# The direct method at the AVX-512 level writes an output of at least this fraction of
# the L3 cache by non-temporal stores (it would not stay in the cache, and a plain store
# reads each line before overwriting it); the expansion never does.
STREAM_ABOVE_L3 = 0.5
L3_BYTES_UNKNOWN = 32 << 20

# Below this many multiply-adds (n * m * d) no parallel region is opened and
# BLAS threads are left alone: their cost would dwarf the work.
PARALLEL_MIN_WORK = 1 << 21


def kernels():
    """The pairwise distances of the active backend: ``fastgd._ext._pairwise`` (compiled from
    ``src_c/_pairwise.pyx``), or its NumPy twin ``fastgd._numpy._pairwise``, which has the same
    functions with the same signatures and semantics."""
    if _backend.get_backend() == "compiled":
        from fastgd._ext import _pairwise
    else:
        from fastgd._numpy import _pairwise
    return _pairwise

def _empty_output(shape, dtype):
    """np.empty, with the data on a cache line when the compiled kernel will fill it and
    it is large enough for that to matter."""
    if (_backend.get_backend() == "compiled"
            and shape[0] * shape[1] * np.dtype(dtype).itemsize >= ALIGNED_MIN_BYTES):
        return _backend.ext._memory.empty_aligned(shape, dtype)
    return np.empty(shape, dtype=dtype)


def check_point_sets(X, Y):
    """(X, Y, same): two point sets as float arrays of one feature count; Y None (or X
    itself) is X, and ``same`` says so."""
    X_given = X
    X = _validation.as_float_array(X, "X", 2, "(n_samples_X, n_features)")
    if Y is None or Y is X_given:
        return X, X, True
    Y = _validation.as_float_array(Y, "Y", 2, "(n_samples_Y, n_features)")
    if Y.shape[1] != X.shape[1]:
        raise ValueError(f"X and Y must have the same number of features (columns); "
                         f"got X of shape {X.shape} and Y of shape {Y.shape}")
    return X, Y, False


def sqeuclidean(X: ArrayLike, Y: ArrayLike | None = None, *, out: NDArray[Any] | None = None,
                n_threads: int | None = None,
                method: DistanceMethod = "auto") -> FloatArray:
    """Pairwise squared Euclidean distances, ``D[i, j] = ||X[i] - Y[j]||^2``.

    Accurate where the textbook expansion ``||x||^2 + ||y||^2 - 2 x.y`` is not:
    the data are centred by a common shift, and every entry where the expansion
    could cancel (near-duplicate rows, a large common offset) is recomputed by
    direct differences. Every entry is within ``4 (d + 2) u D`` of the exact
    value (``u`` the unit roundoff of the output dtype), never negative, and
    exactly 0 only where the two rows are equal; with ``Y=None`` the result is
    exactly symmetric with an exactly zero diagonal (NaN on the diagonal for a row
    holding NaN or inf, as the direct formula gives).

    Parameters
    ----------
    X : array_like of shape (n_samples_X, n_features)
    Y : array_like of shape (n_samples_Y, n_features), optional
        Defaults to ``X`` (then only one triangle is computed, and mirrored).
    out : ndarray of shape (n_samples_X, n_samples_Y), optional
        Where to write the result: C-contiguous, writeable, of the result dtype,
        sharing no memory with ``X`` or ``Y``.
    n_threads : int, optional
        OpenMP threads: None for all available CPUs (or OMP_NUM_THREADS), -1 for
        all CPUs, a positive count, 0 is an error. Small problems use one thread.
    method : {"auto", "expansion", "direct"}
        ``"expansion"``: a BLAS GEMM on centred tiles with a fused, clamped
        epilogue; ``"direct"``: summed squared differences, best for few
        features; ``"auto"`` chooses by the number of features.

    Returns
    -------
    ndarray of shape (n_samples_X, n_samples_Y)
        float32 if every input is float32 (computed in float64, rounded once),
        else float64. ``out`` when given.

    Raises
    ------
    TypeError
        An input of a complex, object, string or other non-real dtype, or an
        ``out`` of the wrong dtype.
    ValueError
        Inputs that are not 2-D, a feature count that differs between X and Y,
        an unsuitable ``out``, or an unknown ``method``.

    See Also
    --------
    scipy.spatial.distance.cdist : with ``metric="sqeuclidean"``, the direct reference.

    Notes
    -----
    NaN and inf propagate as in the direct formula: a pair whose difference has
    a NaN (or inf - inf) is NaN, a pair with one infinite coordinate is inf.

    Examples
    --------
    >>> import numpy as np
    >>> import fastgd
    >>> X = np.array([[0.0, 0.0], [3.0, 4.0]])
    >>> fastgd.sqeuclidean(X)
    array([[ 0., 25.],
           [25.,  0.]])
    >>> Y = np.array([[1e8, 1e8]])           # a large common offset ...
    >>> fastgd.sqeuclidean(Y + 1.0, Y)       # ... does not cancel the answer
    array([[2.]])
    """
    X_given, Y_given = X, Y
    X, Y, symmetric = check_point_sets(X, Y)
    _validation.check_choice(method, "method", METHODS)
    n_threads = _threads.resolve_n_threads(n_threads)
    dtype = _validation.result_dtype(X, Y)
    n, m, d = X.shape[0], Y.shape[0], X.shape[1]
    if out is None:
        out = _empty_output((n, m), dtype)
    else:
        _validation.check_out(out, "out", (n, m), dtype, {"X": X_given, "Y": Y_given})
    if n == 0 or m == 0:
        return out
    if d == 0:
        out.fill(0)
        return out

    X = _validation.as_contiguous(X, dtype)
    Y = X if symmetric else _validation.as_contiguous(Y, dtype)
    expansion = METRICS["sqeuclidean"]["expansion"] and (
        method == "expansion" or (method == "auto" and d >= DIRECT_MAX_FEATURES))
    work = n * m * d
    if work < PARALLEL_MIN_WORK:
        n_threads = 1
    stream = out.nbytes >= STREAM_ABOVE_L3 * _caches.cache_bytes(3, L3_BYTES_UNKNOWN)
    compute = kernels().sqeuclidean
    if expansion and work >= PARALLEL_MIN_WORK:
        with _threads.single_threaded_blas():
            compute(X, Y, out, symmetric, expansion, n_threads, stream)
    else:
        compute(X, Y, out, symmetric, expansion, n_threads, stream)
    if symmetric:
        # The kernels set the diagonal to 0; a row with NaN or inf is NaN from itself.
        nonfinite_rows = np.flatnonzero(~np.isfinite(X).all(axis=1))
        out[nonfinite_rows, nonfinite_rows] = np.nan
    return out
