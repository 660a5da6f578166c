"""pytest-benchmark: fastgd.dask on a LocalCluster of 2 single-thread workers next to the
in-memory calls (and dask-ml when installed), at sizes that run in seconds. The issue's
full sizes: python bench/dask_targets.py.

    pytest bench/test_bench_dask.py --benchmark-only --benchmark-group-by=group
"""

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

import fastgd  # noqa: E402
import fastgd.dask  # noqa: E402


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None) as cluster, \
            distributed.Client(cluster) as dask_client:
        yield dask_client


@pytest.fixture(scope="module")
def points(client):
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((20000, 64)), rng.standard_normal((2000, 64))
    X_d = da.from_array(X, chunks=(2500, 64)).persist()
    Y_d = da.from_array(Y, chunks=(2000, 64)).persist()
    distributed.wait([X_d, Y_d])
    return X, Y, X_d, Y_d


@pytest.fixture(scope="module")
def ratings(client):
    m, n = 20000, 2000
    values = da.random.RandomState(0).random((m, n), chunks=(m // 2, n))
    keep = da.random.RandomState(1).random((m, n), chunks=(m // 2, n)) < 0.01
    A = da.where(keep, values * 4 + 1, np.nan).persist()
    rng = np.random.default_rng(0)
    return A, A.compute(), (rng.random((m, 16)) * 0.3, rng.random((16, n)) * 0.3)


def persisted(result):
    result = result.persist()
    distributed.wait(result)
    return result


@pytest.mark.parametrize("peer", ["fastgd in memory", "fastgd.dask", "dask-ml"])
def test_sqeuclidean_20000x64_vs_2000x64(benchmark, points, peer):
    X, Y, X_d, Y_d = points
    benchmark.group = "dask sqeuclidean 20000x64 vs 2000x64"
    if peer == "fastgd in memory":
        benchmark(fastgd.sqeuclidean, X, Y, n_threads=-1)
    elif peer == "fastgd.dask":
        benchmark(lambda: persisted(fastgd.dask.sqeuclidean(X_d, Y_d)))
    else:
        metrics = pytest.importorskip("dask_ml.metrics")
        benchmark(lambda: persisted(metrics.euclidean_distances(X_d, Y, squared=True)))


@pytest.mark.parametrize("peer", ["fastgd in memory", "fastgd.dask"])
def test_factorize_20000x2000_1pct_rank16_5_iterations(benchmark, ratings, peer):
    A_d, A, init = ratings
    benchmark.group = "dask factorize 20000x2000 1% rank 16, 5 iterations"
    options = {"init": init, "optimizer": "adagrad", "lr": 0.05, "loss": "mse", "n_iter": 5}
    if peer == "fastgd in memory":
        benchmark(fastgd.factorize, A, 16, n_threads=-1, **options)
    else:
        benchmark(fastgd.dask.factorize, A_d, 16, **options)
