"""Pairwise squared Euclidean distances."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from fastgd import _backend, _caches, _codes, _threads, _validation

if TYPE_CHECKING:
    from fastgd._typing import Any, ArrayLike, CdistMetric, DistanceMethod, FloatArray, NDArray

METHODS = ("auto", "expansion", "direct")
# The pairwise kernel's metrics (src_c/metrics.h: a functor each, which the direct loops
# take; their NumPy twins: fastgd._numpy._pairwise.METRICS): name -> whether it also has
# the inner-product expansion (||x||^2 + ||y||^2 - 2 x.y by GEMM), else it runs the direct
# loops alone.
METRICS = {"sqeuclidean": {"expansion": True}}

# The tuning constants below were measured as docs/performance.md ("Tuning constants")
# records; change them only with a side-by-side measurement.

# method="auto" uses the direct differences below this many features, the GEMM expansion
# from it on (direct_max_features): by the level the pairwise loops run at and the dtype,
# DIRECT_MAX_FEATURES_OTHER where a level has no entry. At the AVX2 level the direct sums
# run in register blocks (src_c/pairwise_loops.h) against the expansion through BLAS.
DIRECT_MAX_FEATURES = {"avx2": {"float32": 20, "float64": 32}}
DIRECT_MAX_FEATURES_OTHER = 10
# By level: with fewer rows of Y than this (the output's columns: k-means' few centres)
# method="auto" takes the direct differences at every d. The expansion packs and norms
# each row of X for those few distances, and at the AVX2 level packs them by a plain loop.
DIRECT_BELOW_COLUMNS = {"avx2": 16}

# Outputs from this size on are allocated with their data on a cache line (the compiled
# backend's empty_aligned), so that the kernel's 64-byte vector stores never straddle two
# lines.
ALIGNED_MIN_BYTES = 1 << 16

# The direct method at the AVX-512 level writes an output of at least this fraction of
# the L3 cache by non-temporal stores (it would not stay in the cache, and a plain store
# reads each line before overwriting it); the expansion never does, nor the AVX2 level's
# blocks, for which they were slower.
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


def check_point_sets(X, Y, names=("X", "Y")):
    """(X, Y, same): two point sets as float arrays of one feature count; Y None (or X
    itself) is X, and ``same`` says so. ``names``: the arguments' names in messages."""
    X_given = X
    x_name, y_name = names
    X = _validation.as_float_array(X, x_name, 2, f"(n_samples_{x_name}, n_features)")
    if Y is None or Y is X_given:
        return X, X, True
    Y = _validation.as_float_array(Y, y_name, 2, f"(n_samples_{y_name}, n_features)")
    if Y.shape[1] != X.shape[1]:
        raise ValueError(f"{x_name} and {y_name} must have the same number of features "
                         f"(columns); got {x_name} of shape {X.shape} and {y_name} of "
                         f"shape {Y.shape}")
    return X, Y, False


def direct_max_features(dtype: Any, crossovers: dict[str, dict[str, int]] | None = None) -> int:
    """The number of features from which ``method="auto"`` takes the expansion, for the
    level the pairwise loops run at (the compiled backend's; NumPy's twin follows it, so
    that both backends choose alike) and ``dtype``: from ``crossovers`` (level -> dtype
    name -> features; DIRECT_MAX_FEATURES by default), else DIRECT_MAX_FEATURES_OTHER."""
    table = DIRECT_MAX_FEATURES if crossovers is None else crossovers
    return table.get(_pairwise_level(), {}).get(np.dtype(dtype).name,
                                                DIRECT_MAX_FEATURES_OTHER)


def _pairwise_level() -> str | None:
    """The SIMD level the compiled pairwise loops run at (None without them)."""
    return (_backend.simd_levels or {}).get("sqeuclidean")


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
        features; ``"auto"`` chooses by the number of features (and, on AVX2
        CPUs, takes the direct differences against fewer than 16 rows of Y).

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
    return _squared_distances(X, Y, symmetric, method, out, {"X": X_given, "Y": Y_given},
                              n_threads, "none")


def _squared_distances(X, Y, symmetric, method, out, given, n_threads, finish):
    """sqeuclidean's work on point sets from check_point_sets, each entry then finished
    as ``finish`` says (a name in _codes.DISTANCE_FINISHES: cdist's "euclidean" takes the
    root in the kernel's tiles, while they are in cache). ``given``: the caller's inputs by
    name, which ``out`` must not overlap."""
    n_threads = _threads.resolve_n_threads(n_threads)
    dtype = _validation.result_dtype(X, Y)
    n, m, d = X.shape[0], Y.shape[0], X.shape[1]
    if out is None:
        out = _empty_output((n, m), dtype)
    else:
        _validation.check_out(out, "out", (n, m), dtype, given)
    if n == 0 or m == 0:
        return out
    if d == 0:
        out.fill(0)
        return out

    X = _validation.as_contiguous_in_scratch(X, dtype, 0)
    Y = X if symmetric else _validation.as_contiguous_in_scratch(Y, dtype, 1)
    expansion = METRICS["sqeuclidean"]["expansion"] and (
        method == "expansion" or (method == "auto" and d >= direct_max_features(dtype)
                                  and m >= DIRECT_BELOW_COLUMNS.get(_pairwise_level(), 0)))
    work = n * m * d
    if work < PARALLEL_MIN_WORK:
        n_threads = 1
    stream = _pairwise_level() == "avx512" and (
        out.nbytes >= STREAM_ABOVE_L3 * _caches.cache_bytes(3, L3_BYTES_UNKNOWN))
    compute = kernels().sqeuclidean
    finish_code = _codes.code_of(_codes.DISTANCE_FINISHES, finish)
    if expansion and work >= PARALLEL_MIN_WORK:
        with _threads.single_threaded_blas():
            compute(X, Y, out, symmetric, expansion, n_threads, stream, finish_code)
    else:
        compute(X, Y, out, symmetric, expansion, n_threads, stream, finish_code)
    if symmetric:
        # The kernels set the diagonal to 0; a row with NaN or inf is NaN from itself.
        nonfinite_rows = np.flatnonzero(~np.isfinite(X).all(axis=1))
        out[nonfinite_rows, nonfinite_rows] = np.nan
    return out


# cdist's metrics: name -> what it is built from (the accuracy each keeps is in cdist's
# docstring). "nan_euclidean": GEMMs on the centred, zero-filled rows finished by the
# kernels' nan_euclidean_finish, the entries that may have cancelled recomputed directly;
# the others on sqeuclidean's kernel.
CDIST_METRICS = ("sqeuclidean", "euclidean", "cosine", "nan_euclidean")
# Differences computed at once by direct_pairs (nan_euclidean's suspects, the neighbour
# search's settling), at most.
DIRECT_PAIRS_ENTRIES = 1 << 20
# nan_euclidean's rows of XA per block: its GEMMs' outputs (norms, products, counts) of at
# most this many entries each, so that its finishing pass reads them from the cache and its
# scratch memory does not grow with the output.
NAN_EUCLIDEAN_BLOCK_ENTRIES = 1 << 18


def direct_pairs(X, Y, rows, cols, present=None):
    """Squared distances of the pairs (X[rows[p]], Y[cols[p]]) by direct differences in
    float64, about DIRECT_PAIRS_ENTRIES differences at a time. With ``present``, a pair
    (present_x, present_y) of boolean arrays shaped as X and Y, only the coordinates
    present in both rows count."""
    result = np.empty(rows.shape[0])
    step = max(1, DIRECT_PAIRS_ENTRIES // max(X.shape[1], 1))
    for start in range(0, rows.shape[0], step):
        r, c = rows[start:start + step], cols[start:start + step]
        # X[r] and Y[c] are fresh copies already: no second one for float64 inputs.
        difference = (X[r].astype(np.float64, copy=False)
                      - Y[c].astype(np.float64, copy=False))
        if present is not None:
            difference = np.where(present[0][r] & present[1][c], difference, 0.0)
        result[start:start + step] = np.einsum("pd,pd->p", difference, difference)
    return result


def check_metric(metric, supported):
    """``metric`` if it is one of ``supported``, else a ValueError that lists them."""
    if not isinstance(metric, str) or metric not in supported:
        raise ValueError(f"metric must be one of {', '.join(map(repr, supported))}; "
                         f"got {metric!r}")
    return metric


def unit_rows(X):
    """The rows of X divided by their Euclidean norms (computed in float64, rounded to X's
    dtype); a zero row becomes NaN, as SciPy's cosine distance is NaN for it."""
    X64 = X.astype(np.float64, copy=False)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        norms = np.sqrt(np.einsum("ij,ij->i", X64, X64))
        return (X64 / norms[:, None]).astype(X.dtype)


def cdist(XA: ArrayLike, XB: ArrayLike, metric: CdistMetric = "euclidean", *,
          out: NDArray[Any] | None = None, n_threads: int | None = None) -> FloatArray:
    """Distances between each pair of rows of two point sets, as ``scipy.spatial.distance.cdist``.

    Parameters
    ----------
    XA : array_like of shape (n_samples_A, n_features)
    XB : array_like of shape (n_samples_B, n_features)
    metric : {"euclidean", "sqeuclidean", "cosine", "nan_euclidean"}, default "euclidean"
        * ``"sqeuclidean"``: ``||u - v||^2`` (:func:`fastgd.sqeuclidean`);
        * ``"euclidean"``: its square root;
        * ``"cosine"``: ``1 - u.v / (||u|| ||v||)``, SciPy's definition (NaN where a
          vector is zero), computed as ``||u/||u|| - v/||v||||^2 / 2``, which does not
          cancel for nearly parallel vectors;
        * ``"nan_euclidean"``: scikit-learn's ``nan_euclidean_distances``: NaN coordinates
          are missing, ``sqrt(n_features / n_present * sum over the coordinates present
          in both of (u - v)^2)``, NaN where no coordinate is present in both.
    out : ndarray of shape (n_samples_A, n_samples_B), optional
        Where to write the result (as in :func:`fastgd.sqeuclidean`).
    n_threads : int, optional
        Threads of the distance kernel (as in :func:`fastgd.sqeuclidean`).

    Returns
    -------
    ndarray of shape (n_samples_A, n_samples_B)
        float32 if both inputs are float32 (SciPy returns float64), else float64.

    Raises
    ------
    TypeError
        Inputs of a non-real dtype.
    ValueError
        An unknown metric (the message lists the supported ones), inputs that are not 2-D
        or differ in their number of features, or an unsuitable ``out``.

    Notes
    -----
    Accuracy, with ``u`` the unit roundoff of the output dtype, ``D`` the exact distance and
    ``d`` the number of features (present ones for nan_euclidean): sqeuclidean within
    ``4 (d + 2) u D``; euclidean and nan_euclidean within ``(2 (d + 2) + 1) u D``; cosine
    within ``4 (d + 2) u D + (d + 4) u sqrt(2 D)``, absolute: the cost of rounding the
    unit vectors, far below the ``d u`` of the textbook ``1 - cos``. The zero vectors of
    cosine and the rows without a common coordinate of nan_euclidean give NaN, as SciPy
    and scikit-learn do (scikit-learn's nan_euclidean also sets the diagonal of ``X``
    against itself to 0; so does this, as the exact distance of a row to itself is 0).

    Examples
    --------
    >>> import numpy as np
    >>> import fastgd
    >>> X = np.array([[0.0, 0.0], [3.0, 4.0]])
    >>> fastgd.cdist(X, X)
    array([[0., 5.],
           [5., 0.]])
    >>> fastgd.cdist(np.array([[1.0, 0.0]]), np.array([[0.0, 2.0], [-3.0, 0.0]]), "cosine")
    array([[1., 2.]])
    >>> fastgd.cdist(np.array([[1.0, np.nan, 3.0]]), np.array([[0.0, 0.0, 1.0]]),
    ...              "nan_euclidean")
    array([[2.73861279]])
    """
    check_metric(metric, CDIST_METRICS)
    if metric == "nan_euclidean":
        return _nan_euclidean(XA, XB, out)
    given = {"XA": XA, "XB": XB}
    XA, XB, same = check_point_sets(XA, XB, ("XA", "XB"))
    if metric == "cosine":
        dtype = _validation.result_dtype(XA, XB)
        XA = unit_rows(XA.astype(dtype, copy=False))
        XB = XA if same else unit_rows(XB.astype(dtype, copy=False))
    finish = {"sqeuclidean": "none", "euclidean": "sqrt", "cosine": "half"}[metric]
    return _squared_distances(XA, XB, same, "auto", out, given, n_threads, finish)


def _nan_euclidean(XA, XB, out):
    """cdist's "nan_euclidean": the expansion on the centred rows with their NaN as 0, the
    entries where it may have cancelled recomputed by direct differences."""
    X_given, Y_given = XA, XB
    X, Y, same = check_point_sets(XA, XB, ("XA", "XB"))
    dtype = _validation.result_dtype(X, Y)
    n, m, d = X.shape[0], Y.shape[0], X.shape[1]
    if out is None:
        out = np.empty((n, m), dtype)
    else:
        _validation.check_out(out, "out", (n, m), dtype, {"XA": X_given, "XB": Y_given})
    if n == 0 or m == 0:
        return out
    X = X.astype(np.float64)
    Y = X if same else Y.astype(np.float64)
    present_x = ~np.isnan(X)
    present_y = present_x if same else ~np.isnan(Y)
    # The mean of each column's present coordinates (0 for a column with none, or where
    # it is not finite).
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        total = np.where(present_x, X, 0.0).sum(axis=0)
        count = present_x.sum(axis=0)
        if not same:
            total += np.where(present_y, Y, 0.0).sum(axis=0)
            count += present_y.sum(axis=0)
        shift = total / count
    shift[~np.isfinite(shift)] = 0.0
    Xc = np.where(present_x, X - shift, 0.0)
    Yc = Xc if same else np.where(present_y, Y - shift, 0.0)
    px, py = present_x.astype(np.float64), present_y.astype(np.float64)
    # The norms over the coordinates present in both, by one GEMM: [xc^2, px] . [py, yc^2].
    left = np.hstack([np.square(Xc), px])
    right = np.hstack([py, np.square(Yc)])
    # The counts are exact in float32 up to 2^24 features (sums of 0s and 1s).
    count_dtype = np.float32 if d < 1 << 24 else np.float64
    px_count, py_count = px.astype(count_dtype), py.astype(count_dtype)
    finish = kernels().nan_euclidean_finish
    block_rows = max(1, NAN_EUCLIDEAN_BLOCK_ENTRIES // m)
    suspects = np.empty(min(n, block_rows) * m, np.intp)
    for i0 in range(0, n, block_rows):
        i1 = min(n, i0 + block_rows)
        with np.errstate(invalid="ignore", over="ignore"):
            norms = left[i0:i1] @ right.T
            gram = Xc[i0:i1] @ Yc.T
        count = px_count[i0:i1] @ py_count.T
        found = finish(norms, gram, count, d, out[i0:i1], suspects)
        # The entries where the expansion may have cancelled, by direct differences.
        r, c = i0 + suspects[:found] // m, suspects[:found] % m
        with np.errstate(invalid="ignore", over="ignore"):
            squared = direct_pairs(X, Y, r, c, present=(present_x, present_y))
            out[r, c] = np.sqrt(squared * (d / count[r - i0, c].astype(np.float64)))
    return out
