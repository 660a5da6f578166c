"""The sqeuclidean cases (the foundation issue's shapes) and the peers they are compared
with: scipy's cdist, scikit-learn's euclidean_distances, the idiomatic NumPy expansion,
a numba loop, and the bare GEMM X @ Y.T as a yardstick.

The layout cases give fastgd the same values laid out as users' arrays often are: a
column slice of a wider array (scikit-learn's digits: 1797 rows, their row stride 520
bytes, against 10 k-means centres) or Fortran order. Their yardstick, "fastgd C order",
is fastgd's call on C-contiguous copies, so its column is the C-ordered time over the
layout's (the neighbours issue's "within 1.2x": at least 0.83)."""

import numpy as np

import fastgd
from fastgd import distances
from fastgd.benchmarks import numba_loops

KERNEL = "sqeuclidean"
# name -> (n, m, d, dtype)
CASES = {
    f"{n}x{m}x{d} {np.dtype(dtype).name}": (n, m, d, dtype)
    for n, m, d in [(1000, 1000, 3), (2000, 2000, 64), (4000, 4000, 256), (500, 20000, 32)]
    for dtype in (np.float64, np.float32)
}
# name -> (n, m, d, dtype, the inputs' layout: see lay_out)
LAYOUT_CASES = {
    "1797x10x64 float64 column slice": (1797, 10, 64, np.float64, "column slice"),
    "2000x2000x64 float64 column slice": (2000, 2000, 64, np.float64, "column slice"),
    "2000x2000x64 float64 Fortran": (2000, 2000, 64, np.float64, "Fortran"),
    "2000x2000x64 float32 Fortran": (2000, 2000, 64, np.float32, "Fortran"),
}
CASES.update({name: case[:4] for name, case in LAYOUT_CASES.items()})
QUICK_CASES = ["1000x1000x3 float64", "2000x2000x64 float32"]
OURS = ["fastgd"]
# The peers, in the table's order (peers() leaves out those not installed).
PEERS = ["scipy.cdist", "sklearn.euclidean_distances", "numpy expansion", "numba",
         "gemm X@Y.T", "fastgd C order"]


def applies(case, peer):
    """Every peer takes part in every case; the C-ordered yardstick in the layout cases
    only."""
    if peer == "fastgd C order":
        return case in LAYOUT_CASES
    return True


def lay_out(case, X, Y):
    """X and Y with the same values in the case's layout: X a column slice (Y, the
    centres, C-ordered) or both in Fortran order; as they are in the other cases."""
    layout = LAYOUT_CASES[case][4] if case in LAYOUT_CASES else None
    if layout == "column slice":
        wider = np.empty((X.shape[0], X.shape[1] + 1), X.dtype)
        wider[:, :-1] = X
        return wider[:, :-1], Y
    if layout == "Fortran":
        return np.asfortranarray(X), np.asfortranarray(Y)
    return X, Y


def threaded(case):
    """Whether fastgd's call starts threads with ``n_threads=-1`` (enough work for them)."""
    n, m, d, _ = CASES[case]
    return n * m * d >= distances.PARALLEL_MIN_WORK


def make_data(n, m, d, dtype, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)).astype(dtype), rng.standard_normal((m, d)).astype(dtype)


def numpy_expansion(X, Y):
    """The idiomatic NumPy expansion (the fastest answer in the seed Q&A)."""
    return np.einsum("ij,ij->i", X, X)[:, None] + np.einsum("ij,ij->i", Y, Y) - 2 * X @ Y.T


def peers(case, n_threads):
    """name -> zero-argument callable returning the distances; peers that are not
    installed are left out."""
    from scipy.spatial.distance import cdist

    X_c, Y_c = make_data(*CASES[case])
    X, Y = lay_out(case, X_c, Y_c)
    result = {
        "fastgd": lambda: fastgd.sqeuclidean(X, Y, n_threads=n_threads),
        "scipy.cdist": lambda: cdist(X, Y, "sqeuclidean"),
    }
    try:
        from sklearn.metrics.pairwise import euclidean_distances
    except ImportError:
        pass
    else:
        result["sklearn.euclidean_distances"] = lambda: euclidean_distances(X, Y, squared=True)
    result["numpy expansion"] = lambda: numpy_expansion(X, Y)
    jitted = numba_loops.loops()
    if jitted is not None:
        jitted.use_threads(n_threads)
        out = np.empty((X.shape[0], Y.shape[0]), X.dtype)
        result["numba"] = numba_loops.warmed(lambda: jitted.sqeuclidean(X, Y, out))
    result["gemm X@Y.T"] = lambda: X @ Y.T
    if applies(case, "fastgd C order"):
        result["fastgd C order"] = lambda: fastgd.sqeuclidean(X_c, Y_c, n_threads=n_threads)
    return result
