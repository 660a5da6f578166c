"""The sqeuclidean benchmark cases and the peers they are compared with.

Shared by the pytest-benchmark file and the interleaved ratio table.
"""

import numpy as np
from scipy.spatial.distance import cdist

import fastgd

# (n, m, d) from the foundation issue.
SHAPES = [(1000, 1000, 3), (2000, 2000, 64), (4000, 4000, 256), (500, 20000, 32)]
DTYPES = [np.float64, np.float32]
PEER_NAMES = [
    "fastgd", "scipy.cdist", "sklearn.euclidean_distances", "numpy.expansion", "gemm X@Y.T",
]


def make_data(n, m, d, dtype, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)).astype(dtype), rng.standard_normal((m, d)).astype(dtype)


def numpy_expansion(X, Y):
    """The idiomatic NumPy expansion (the fastest answer in the seed Q&A)."""
    return np.einsum("ij,ij->i", X, X)[:, None] + np.einsum("ij,ij->i", Y, Y) - 2 * X @ Y.T


def peers(n_threads):
    """name -> callable(X, Y); peers that are not installed are left out."""
    result = {
        "fastgd": lambda X, Y: fastgd.sqeuclidean(X, Y, n_threads=n_threads),
        "scipy.cdist": lambda X, Y: cdist(X, Y, "sqeuclidean"),
    }
    try:
        from sklearn.metrics.pairwise import euclidean_distances
    except ImportError:
        pass
    else:
        result["sklearn.euclidean_distances"] = lambda X, Y: euclidean_distances(
            X, Y, squared=True
        )
    result["numpy.expansion"] = numpy_expansion
    result["gemm X@Y.T"] = lambda X, Y: X @ Y.T
    return result
