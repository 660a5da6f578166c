"""The sqeuclidean cases (the foundation issue's shapes) and the peers they are compared
with: scipy's cdist, scikit-learn's euclidean_distances, the idiomatic NumPy expansion,
a numba loop, and the bare GEMM X @ Y.T as a yardstick."""

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
QUICK_CASES = ["1000x1000x3 float64", "2000x2000x64 float32"]
OURS = ["fastgd"]
# The peers, in the table's order (peers() leaves out those not installed).
PEERS = ["scipy.cdist", "sklearn.euclidean_distances", "numpy expansion", "numba",
         "gemm X@Y.T"]


def applies(case, peer):
    """Every peer takes part in every case."""
    return True


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

    X, Y = make_data(*CASES[case])
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
    return result
