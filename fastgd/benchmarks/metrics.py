"""The cdist cases (the metrics of the neighbours issue) and their peers: SciPy's cdist for
"euclidean" and "cosine", scikit-learn's nan_euclidean_distances for "nan_euclidean"
(20% of the coordinates missing), and fastgd.sqeuclidean on the same points as a
yardstick (its ratio is what the metric costs beyond the squared distances)."""

import numpy as np

import fastgd
from fastgd import distances

KERNEL = "cdist"
# name -> (n, m, d, dtype, metric)
CASES = {
    f"{n}x{m}x{d} {np.dtype(dtype).name} {metric}": (n, m, d, dtype, metric)
    for n, m, d in [(2000, 2000, 64)]
    for dtype in (np.float64, np.float32)
    for metric in ("euclidean", "cosine", "nan_euclidean")
}
QUICK_CASES = ["2000x2000x64 float64 euclidean"]
OURS = ["fastgd"]
# The peers, in the table's order (peers() leaves out those not installed).
PEERS = ["scipy.cdist", "sklearn.nan_euclidean_distances", "fastgd.sqeuclidean"]
MISSING_FRACTION = 0.2


def applies(case, peer):
    """SciPy's cdist has no nan_euclidean; scikit-learn's function is that metric only."""
    metric = CASES[case][4]
    if peer == "scipy.cdist":
        return metric != "nan_euclidean"
    if peer == "sklearn.nan_euclidean_distances":
        return metric == "nan_euclidean"
    return True


def threaded(case):
    """Whether fastgd's call starts threads with ``n_threads=-1``."""
    n, m, d, _, _ = CASES[case]
    return n * m * d >= distances.PARALLEL_MIN_WORK


def make_data(n, m, d, dtype, metric, seed=0):
    """(XA, XB), with MISSING_FRACTION of the coordinates NaN for nan_euclidean."""
    rng = np.random.default_rng(seed)
    XA = rng.standard_normal((n, d)).astype(dtype)
    XB = rng.standard_normal((m, d)).astype(dtype)
    if metric == "nan_euclidean":
        XA[rng.random(XA.shape) < MISSING_FRACTION] = np.nan
        XB[rng.random(XB.shape) < MISSING_FRACTION] = np.nan
    return XA, XB


def peers(case, n_threads):
    """name -> zero-argument callable returning the distances; peers that are missing or
    do not apply are left out."""
    n, m, d, dtype, metric = CASES[case]
    XA, XB = make_data(n, m, d, dtype, metric)
    result = {"fastgd": lambda: fastgd.cdist(XA, XB, metric, n_threads=n_threads)}
    if applies(case, "scipy.cdist"):
        from scipy.spatial.distance import cdist

        result["scipy.cdist"] = lambda: cdist(XA, XB, metric)
    if applies(case, "sklearn.nan_euclidean_distances"):
        try:
            from sklearn.metrics.pairwise import nan_euclidean_distances
        except ImportError:
            pass
        else:
            result["sklearn.nan_euclidean_distances"] = (
                lambda: nan_euclidean_distances(XA, XB))
    clean = [np.nan_to_num(X) for X in (XA, XB)]
    result["fastgd.sqeuclidean"] = lambda: fastgd.sqeuclidean(*clean, n_threads=n_threads)
    return result
