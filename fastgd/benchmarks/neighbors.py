"""The argkmin cases (the neighbours issue's shapes) and the peers users would pick
instead: faiss-cpu's exact IndexFlatL2 (and, for cosine, IndexFlatIP over unit rows),
scikit-learn's brute-force ``kneighbors`` and ``pairwise_distances_argmin`` (k = 1),
SciPy's ``cKDTree.query`` (few features), and the whole matrix: ``fastgd.sqeuclidean``
(``fastgd.cdist`` for cosine) + ``np.argpartition``. Indexes and trees are built once,
outside the timing, as a user builds them once for many queries."""

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
    "cosine 1000x100000x32 float32 k=10": (1000, 100000, 32, np.float32, 10),
    "cosine 500x5000x32 float32 k=10": (500, 5000, 32, np.float32, 10),
}
QUICK_CASES = ["500x5000x32 float32 k=10"]
OURS = ["fastgd"]
# The peers, in the table's order (peers() leaves out those not installed).
PEERS = ["faiss IndexFlatL2", "faiss IndexFlatIP", "sklearn kneighbors",
         "sklearn pairwise_distances_argmin", "scipy cKDTree", "sqeuclidean + argpartition",
         "cdist + argpartition"]
# A k-d tree pays only in few dimensions.
KDTREE_MAX_FEATURES = 16


def metric(case):
    """The case's metric: its name's first word where that is a metric, else
    sqeuclidean."""
    first = case.split()[0]
    return first if first in distances.CDIST_METRICS else "sqeuclidean"


def applies(case, peer):
    """faiss computes in float32 only, IndexFlatL2 squared distances, IndexFlatIP inner
    products (cosine's order over unit rows); pairwise_distances_argmin finds the nearest
    only; a k-d tree is a peer in few dimensions only; the whole matrix is
    ``fastgd.sqeuclidean``'s for squared distances, ``fastgd.cdist``'s for the others."""
    _, _, d, dtype, k = CASES[case]
    squared = metric(case) == "sqeuclidean"
    if peer == "faiss IndexFlatL2":
        return dtype == np.float32 and squared
    if peer == "faiss IndexFlatIP":
        return dtype == np.float32 and metric(case) == "cosine"
    if peer == "sklearn pairwise_distances_argmin":
        return k == 1
    if peer == "scipy cKDTree":
        return d <= KDTREE_MAX_FEATURES and squared
    if peer == "sqeuclidean + argpartition":
        return squared
    if peer == "cdist + argpartition":
        return not squared
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


def whole_matrix_argpartition(X, Y, k, metric, n_threads):
    """What users write today: the whole n x m matrix, then the k smallest of each row,
    sorted."""
    if metric == "sqeuclidean":
        D = fastgd.sqeuclidean(X, Y, n_threads=n_threads)
    else:
        D = fastgd.cdist(X, Y, metric, n_threads=n_threads)
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
    case_metric = metric(case)
    if k == 1 and case_metric == "sqeuclidean":
        result = {"fastgd": lambda: fastgd.nearest(X, Y, n_threads=n_threads)}
    else:
        result = {"fastgd": lambda: fastgd.argkmin(X, Y, k, metric=case_metric,
                                                   return_distance=False,
                                                   n_threads=n_threads)}
    result.update(_faiss_peers(case, X, Y, k, n_threads))
    try:
        from sklearn.metrics import pairwise_distances_argmin
        from sklearn.neighbors import NearestNeighbors
    except ImportError:
        pass
    else:
        jobs = 1 if n_threads == 1 else -1
        brute = NearestNeighbors(n_neighbors=k, algorithm="brute", metric=case_metric,
                                 n_jobs=jobs).fit(Y)
        result["sklearn kneighbors"] = lambda: brute.kneighbors(X, return_distance=False)
        if applies(case, "sklearn pairwise_distances_argmin"):
            result["sklearn pairwise_distances_argmin"] = (
                lambda: pairwise_distances_argmin(X, Y))
    if applies(case, "scipy cKDTree"):
        from scipy.spatial import cKDTree

        tree = cKDTree(Y)
        workers = 1 if n_threads == 1 else -1
        result["scipy cKDTree"] = lambda: tree.query(X, k, workers=workers)[1]
    whole = "sqeuclidean + argpartition" if case_metric == "sqeuclidean" else (
        "cdist + argpartition")
    result[whole] = lambda: whole_matrix_argpartition(X, Y, k, case_metric, n_threads)
    return result


def _faiss_peers(case, X, Y, k, n_threads):
    """faiss's exact indexes that apply to the case, if faiss is installed. For cosine,
    the index holds Y's unit rows and each search normalises a copy of the queries, as
    faiss's users do (faiss.normalize_L2), inside the timing as fastgd's call does it."""
    if not (applies(case, "faiss IndexFlatL2") or applies(case, "faiss IndexFlatIP")):
        return {}
    try:
        import faiss
    except ImportError:
        return {}
    faiss.omp_set_num_threads(1 if n_threads == 1 else os.cpu_count() or 1)
    d = X.shape[1]
    if applies(case, "faiss IndexFlatL2"):
        index = faiss.IndexFlatL2(d)
        index.add(Y)
        return {"faiss IndexFlatL2": lambda: index.search(X, k)[1]}
    index = faiss.IndexFlatIP(d)
    units = Y.copy()
    faiss.normalize_L2(units)
    index.add(units)

    def search_unit_rows():
        queries = X.copy()
        faiss.normalize_L2(queries)
        return index.search(queries, k)[1]

    return {"faiss IndexFlatIP": search_unit_rows}
