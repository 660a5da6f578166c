"""The argkmin cases (the neighbours issue's shapes) and the peers users would pick
instead: faiss-cpu's exact IndexFlatL2, scikit-learn's brute-force ``kneighbors`` and
``pairwise_distances_argmin`` (k = 1), SciPy's ``cKDTree.query`` (few features), and the
whole matrix: ``fastgd.sqeuclidean`` + ``np.argpartition``. Indexes and trees are built
once, outside the timing, as a user builds them once for many queries."""

import os

import numpy as np

import fastgd
from fastgd import distances

KERNEL = "argkmin"
# name -> (queries n, points m, features d, dtype, k)
CASES = {
    "1000x20000x32 float32 k=10": (1000, 20000, 32, np.float32, 10),
    "1000x100000x32 float32 k=10": (1000, 100000, 32, np.float32, 10),
    "10000x10000x128 float32 k=10": (10000, 10000, 128, np.float32, 10),
    "nearest 100000x256x64 float64": (100000, 256, 64, np.float64, 1),
    "10000x10000x3 float64 k=10": (10000, 10000, 3, np.float64, 10),
    "500x5000x32 float32 k=10": (500, 5000, 32, np.float32, 10),
}
QUICK_CASES = ["500x5000x32 float32 k=10"]
OURS = ["fastgd"]
# The peers, in the table's order (peers() leaves out those not installed).
PEERS = ["faiss IndexFlatL2", "sklearn kneighbors", "sklearn pairwise_distances_argmin",
         "scipy cKDTree", "sqeuclidean + argpartition"]
# A k-d tree pays only in few dimensions.
KDTREE_MAX_FEATURES = 16


def applies(case, peer):
    """faiss computes in float32 only; pairwise_distances_argmin finds the nearest only;
    a k-d tree is a peer in few dimensions only."""
    _, _, d, dtype, k = CASES[case]
    if peer == "faiss IndexFlatL2":
        return dtype == np.float32
    if peer == "sklearn pairwise_distances_argmin":
        return k == 1
    if peer == "scipy cKDTree":
        return d <= KDTREE_MAX_FEATURES
    return True


def threaded(case):
    """Whether fastgd's call starts threads with ``n_threads=-1``."""
    n, m, d, _, _ = CASES[case]
    return n * m * d >= distances.PARALLEL_MIN_WORK


def make_data(n, m, d, dtype, seed=0):
    """(queries, points)."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, d)).astype(dtype),
            rng.standard_normal((m, d)).astype(dtype))


def sqeuclidean_argpartition(X, Y, k, n_threads):
    """What users write today: the whole n x m matrix, then the k smallest of each row,
    sorted."""
    D = fastgd.sqeuclidean(X, Y, n_threads=n_threads)
    if k == 1:
        return D.argmin(axis=1)[:, None]
    nearest = np.argpartition(D, k - 1, axis=1)[:, :k]
    order = np.argsort(np.take_along_axis(D, nearest, axis=1), axis=1, kind="stable")
    return np.take_along_axis(nearest, order, axis=1)


def peers(case, n_threads):
    """name -> zero-argument callable returning the indices of the k nearest rows (n x
    k, or n for the nearest); peers that are missing or do not apply are left out."""
    n, m, d, dtype, k = CASES[case]
    X, Y = make_data(n, m, d, dtype)
    all_threads = os.cpu_count() or 1
    if k == 1:
        result = {"fastgd": lambda: fastgd.nearest(X, Y, n_threads=n_threads)}
    else:
        result = {"fastgd": lambda: fastgd.argkmin(X, Y, k, return_distance=False,
                                                   n_threads=n_threads)}
    if applies(case, "faiss IndexFlatL2"):
        try:
            import faiss
        except ImportError:
            pass
        else:
            faiss.omp_set_num_threads(1 if n_threads == 1 else all_threads)
            index = faiss.IndexFlatL2(d)
            index.add(Y)
            result["faiss IndexFlatL2"] = lambda: index.search(X, k)[1]
    try:
        from sklearn.metrics import pairwise_distances_argmin
        from sklearn.neighbors import NearestNeighbors
    except ImportError:
        pass
    else:
        jobs = 1 if n_threads == 1 else -1
        brute = NearestNeighbors(n_neighbors=k, algorithm="brute", n_jobs=jobs).fit(Y)
        result["sklearn kneighbors"] = lambda: brute.kneighbors(X, return_distance=False)
        if applies(case, "sklearn pairwise_distances_argmin"):
            result["sklearn pairwise_distances_argmin"] = (
                lambda: pairwise_distances_argmin(X, Y))
    if applies(case, "scipy cKDTree"):
        from scipy.spatial import cKDTree

        tree = cKDTree(Y)
        workers = 1 if n_threads == 1 else -1
        result["scipy cKDTree"] = lambda: tree.query(X, k, workers=workers)[1]
    result["sqeuclidean + argpartition"] = lambda: sqeuclidean_argpartition(X, Y, k,
                                                                             n_threads)
    return result
