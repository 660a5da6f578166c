"""The Dask issue's targets, measured side by side on a LocalCluster of 2 single-thread
worker processes (loopback only):

    python bench/dask_targets.py            # the issue's sizes (needs about 12 GB)
    python bench/dask_targets.py --small    # a tenth of the rows, for a quick look

1. sqeuclidean of a 100000 x 64 dask array against a 5000 x 64 one: fastgd.dask (the
   result persisted on the workers) against the in-memory fastgd.sqeuclidean (all
   threads), and dask-ml's euclidean_distances(squared=True) if installed. Medians of
   interleaved rounds.
2. fastgd.dask.factorize on a 200000 x 2000 matrix with 1% observed, rank 16, two row
   chunks (one per worker): the median time per iteration against fastgd.factorize on
   the gathered matrix (all threads), from the callbacks' timestamps.
"""

import argparse
import time

import numpy as np


def interleaved(functions, rounds):
    times = {name: [] for name in functions}
    for _ in range(rounds):
        for name, function in functions.items():
            began = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - began)
    return {name: float(np.median(values)) for name, values in times.items()}


def distances_case(rows, rounds):
    import dask.array as da
    import distributed

    import fastgd
    import fastgd.dask

    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((rows, 64)), rng.standard_normal((5000, 64))
    X_d = da.from_array(X, chunks=(rows // 8, 64)).persist()
    Y_d = da.from_array(Y, chunks=(5000, 64)).persist()
    distributed.wait([X_d, Y_d])

    def persisted(result):
        result = result.persist()
        distributed.wait(result)

    functions = {
        "fastgd in memory": lambda: fastgd.sqeuclidean(X, Y, n_threads=-1),
        "fastgd.dask": lambda: persisted(fastgd.dask.sqeuclidean(X_d, Y_d)),
    }
    try:
        from dask_ml.metrics import euclidean_distances
    except ImportError:
        pass
    else:
        functions["dask-ml"] = lambda: persisted(euclidean_distances(X_d, Y, squared=True))
    medians = interleaved(functions, rounds)
    base = medians["fastgd.dask"]
    print(f"\nsqeuclidean {rows} x 64 against 5000 x 64 (medians of {rounds} rounds)")
    for name, seconds in medians.items():
        print(f"  {name:<18} {seconds:8.3f} s   fastgd.dask's time / this one's: "
              f"{base / seconds:5.2f}")


def factorize_case(rows, n_iter, repeats):
    import dask.array as da

    import fastgd
    import fastgd.dask

    m, n, rank = rows, 2000, 16
    values = da.random.RandomState(0).random((m, n), chunks=(m // 2, n))
    keep = da.random.RandomState(1).random((m, n), chunks=(m // 2, n)) < 0.01
    A = da.where(keep, values * 4 + 1, np.nan).persist()
    A_local = A.compute()
    rng = np.random.default_rng(0)
    init = (rng.random((m, rank)) * 0.3, rng.random((rank, n)) * 0.3)
    options = {"init": init, "optimizer": "adagrad", "lr": 0.05, "loss": "mse",
               "n_iter": n_iter}
    print(f"\nfactorize {m} x {n}, 1% observed, rank {rank}: median time per iteration")
    def stamper(stamps):
        return lambda *_: stamps.append(time.perf_counter())

    for _ in range(repeats):
        memory_stamps, dask_stamps = [], []
        in_memory = fastgd.factorize(A_local, rank, n_threads=-1, **options,
                                     callback=stamper(memory_stamps))
        on_dask = fastgd.dask.factorize(A, rank, **options, callback=stamper(dask_stamps))
        memory, dask_time = (float(np.median(np.diff(s))) for s in (memory_stamps, dask_stamps))
        agree = np.abs(on_dask.loss_history / in_memory.loss_history - 1).max()
        print(f"  in memory {memory * 1e3:6.1f} ms, fastgd.dask {dask_time * 1e3:6.1f} ms: "
              f"{dask_time / memory:4.2f}x (loss histories agree to {agree:.1e})")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="a tenth of the rows")
    arguments = parser.parse_args()
    import distributed

    import fastgd

    scale = 10 if arguments.small else 1
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None) as cluster, \
            distributed.Client(cluster):
        print(f"fastgd {fastgd.__version__}, LocalCluster of 2 single-thread workers")
        distances_case(100_000 // scale, rounds=5)
        factorize_case(200_000 // scale, n_iter=30, repeats=3)


if __name__ == "__main__":
    main()
