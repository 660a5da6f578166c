"""Matrix completion of ratings, time to a held-out RMSE: ``factorize(solver="stochastic")``
against the recommender libraries a user would pick instead.

Two problems: a synthetic MovieLens-like one (:func:`synthetic_ratings`: power-law
popularity of users and items, a low-rank truth plus biases plus noise; its size is a
parameter), and MovieLens "latest-small" when a copy is at hand (its license forbids
shipping it: the path is given, never bundled). Each method trains on the training
ratings and reports, after every pass, the elapsed time and the RMSE of its predictions
(clipped to the rating scale) on the held-out ratings: :func:`curves`.

The peers, each shown as "not installed" when missing: LIBMF (its C++ sources from the
PyPI ``libmf`` sdist, built by ``bench/peers/build_libmf.py`` with the flags of LIBMF's own
Makefile, SSE/AVX and OpenMP, and run through a small driver whose path is
``FASTGD_LIBMF_DRIVER``; its options passed explicitly), Surprise's ``SVD`` (biased SGD)
and cornac's ``MF``. Run ``python -m fastgd.benchmarks.recommender --help``.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import tempfile
import time

import numpy as np

import fastgd

NOT_INSTALLED = "not installed"

# fastgd bench's cases: one pass over the training ratings (the time per pass, against the
# peers' one epoch, each from its own prepared data), rank 32. A MovieLens case joins
# them when FASTGD_MOVIELENS holds the path of its ratings.csv.
KERNEL = "recommender"
CASES = {
    "synthetic 100k ratings, rank 32: 10 passes": ("synthetic", 100_000),
    "synthetic 1M ratings, rank 32: 10 passes": ("synthetic", 1_000_000),
}
if os.path.exists(os.environ.get("FASTGD_MOVIELENS", "")):
    CASES["MovieLens latest-small, rank 32: 10 passes"] = ("movielens", None)
QUICK_CASES = ["synthetic 100k ratings, rank 32: 10 passes"]
OURS = ["fastgd stochastic", "fastgd SGD"]
PEERS = ["cornac MF", "Surprise SVD"]
PASS_RANK = 32
PASSES = 10


def applies(case, peer):
    return True


def threaded(case):
    return CASES[case][1] is None or CASES[case][1] * PASS_RANK >= (1 << 18)


def _case_ratings(case):
    kind, size = CASES[case]
    if kind == "movielens":
        return load_movielens(os.environ["FASTGD_MOVIELENS"])
    users = max(100, size // 100)
    return synthetic_ratings(users, max(50, size // 500), size, random_state=0)


def peers(case, n_threads):
    """name -> zero-argument callable: one pass (epoch) of each method, from its own data
    structure built beforehand; missing peers left out."""
    rows, cols, values, shape = _case_ratings(case)
    # float32, as cornac computes (and LIBMF).
    plan = fastgd.observed((rows, cols, values.astype(np.float32), shape))
    # The default step (LIBMF's Adagrad), and plain SGD: the peers' step.
    result = {"fastgd stochastic": lambda: fastgd.factorize(
        plan, PASS_RANK, solver="stochastic", biases=True, n_iter=PASSES, random_state=0,
        n_threads=n_threads),
        "fastgd SGD": lambda: fastgd.factorize(
        plan, PASS_RANK, solver="stochastic", biases=True, optimizer="gd", lr=0.01,
        l2=0.02, n_iter=PASSES, random_state=0, n_threads=n_threads)}
    try:
        from cornac.data import Dataset
        from cornac.models import MF
    except ImportError:
        pass
    else:
        dataset = Dataset.from_uir(list(zip(rows.tolist(), cols.tolist(), values.tolist(),
                                            strict=True)), seed=0)
        result["cornac MF"] = lambda: MF(k=PASS_RANK, max_iter=PASSES, use_bias=True, seed=0,
                                         num_threads=max(n_threads, 0)).fit(dataset)
    try:
        import pandas as pd
        from surprise import SVD, Reader
        from surprise import Dataset as SurpriseDataset
    except ImportError:
        pass
    else:
        frame = pd.DataFrame({"u": rows, "i": cols, "r": values})
        reader = Reader(rating_scale=(float(values.min()), float(values.max())))
        trainset = SurpriseDataset.load_from_df(frame, reader).build_full_trainset()
        result["Surprise SVD"] = lambda: SVD(n_factors=PASS_RANK, n_epochs=PASSES,
                                             random_state=0).fit(trainset)
    return result


def synthetic_ratings(n_users=50_000, n_items=10_000, n_ratings=5_000_000, rank=10,
                      noise=0.74, random_state=0):
    """A MovieLens-like ratings matrix: (rows, cols, values, shape).

    Users and items are drawn with power-law popularity (Pareto weights, as real ratings
    concentrate on few items and users), each (user, item) pair at most once; a rating is
    ``3.5 + user bias + item bias + W[u] . H[i] + noise`` with the biases N(0, 0.5²), the
    rank-``rank`` term of variance 0.5 and Gaussian noise of standard deviation ``noise``
    (the floor of the held-out RMSE; with the default sizes the estimation error of the
    many users with few ratings adds to it, and the best held-out RMSEs land near 0.81).

    Examples
    --------
    >>> from fastgd.benchmarks.recommender import synthetic_ratings
    >>> rows, cols, values, shape = synthetic_ratings(200, 100, 2000, random_state=0)
    >>> rows.shape, shape, len(set(zip(rows.tolist(), cols.tolist())))
    ((2000,), (200, 100), 2000)
    """
    rng = np.random.default_rng(random_state)
    user_weights = rng.pareto(1.5, n_users) + 1.0
    item_weights = rng.pareto(1.0, n_items) + 1.0
    cdf_users = np.cumsum(user_weights / user_weights.sum())
    cdf_items = np.cumsum(item_weights / item_weights.sum())
    if n_ratings > n_users * n_items // 2:
        raise ValueError(f"n_ratings must be at most half of n_users * n_items; got "
                         f"{n_ratings}")
    keys = np.empty(0, dtype=np.int64)
    while keys.shape[0] < n_ratings:
        draw = 2 * (n_ratings - keys.shape[0]) + 1000
        rows = np.minimum(np.searchsorted(cdf_users, rng.random(draw)), n_users - 1)
        cols = np.minimum(np.searchsorted(cdf_items, rng.random(draw)), n_items - 1)
        keys = np.unique(np.concatenate([keys, rows.astype(np.int64) * n_items + cols]))
    keys = rng.permutation(keys)[:n_ratings]
    rows, cols = keys // n_items, keys % n_items
    scale = (0.5 / rank) ** 0.25
    W = scale * rng.standard_normal((n_users, rank))
    H = scale * rng.standard_normal((n_items, rank))
    values = (3.5 + 0.5 * rng.standard_normal(n_users)[rows]
              + 0.5 * rng.standard_normal(n_items)[cols]
              + np.einsum("ij,ij->i", W[rows], H[cols])
              + noise * rng.standard_normal(n_ratings))
    return rows.astype(np.int32), cols.astype(np.int32), values, (n_users, n_items)


def load_movielens(path):
    """(rows, cols, values, shape) of MovieLens' ``ratings.csv`` (userId, movieId, rating,
    timestamp), ids mapped to 0..n-1."""
    data = np.loadtxt(path, delimiter=",", skiprows=1, usecols=(0, 1, 2))
    users, rows = np.unique(data[:, 0], return_inverse=True)
    items, cols = np.unique(data[:, 1], return_inverse=True)
    return rows.astype(np.int32), cols.astype(np.int32), data[:, 2], (users.size, items.size)


def split(ratings, fraction=0.2, random_state=42):
    """(training, held-out) ratings, each (rows, cols, values, shape): a random
    ``fraction`` of the ratings held out."""
    rows, cols, values, shape = ratings
    held = np.random.default_rng(random_state).random(rows.shape[0]) < fraction
    return ((rows[~held], cols[~held], values[~held], shape),
            (rows[held], cols[held], values[held], shape))


# The documented recipe (docs/guide/recommender.md): used as is, never tuned on test data.
RECIPE = {"solver": "stochastic", "biases": True}


def fastgd_curve(training, held_out, rank, n_iter, n_threads=1, dtype=np.float64,
                 **settings):
    """[(seconds, held-out RMSE)] after every pass of the recipe (without its early
    stopping: the held-out ratings are only measured), the RMSE unclipped as LIBMF's."""
    rows, cols, values, shape = training
    held_plan = fastgd.observed(held_out)
    times = []
    # From the plan, as LIBMF's time starts from its entries in its own format (reading
    # them from a file); plan_seconds says what building the plan from arrays takes.
    plan = fastgd.observed((rows, cols, values.astype(dtype), shape))
    start = time.perf_counter()
    fastgd_settings = {**RECIPE, **settings}
    result = fastgd.factorize(plan, rank, n_iter=n_iter, random_state=0, n_threads=n_threads,
                              validation=held_plan,
                              callback=lambda *_: times.append(time.perf_counter() - start),
                              **fastgd_settings)
    return list(zip(times, result.validation_history[1:].tolist(), strict=True))


def plan_seconds(training, dtype=np.float64):
    """The time to build the plan of the training ratings from their arrays."""
    rows, cols, values, shape = training
    start = time.perf_counter()
    fastgd.observed((rows, cols, values.astype(dtype), shape))
    return time.perf_counter() - start


def recipe_result(training, held_out, rank, scale, n_threads=1, **settings):
    """(seconds, held-out RMSE of the clipped predictions, passes) of the documented
    recipe as is: early stopping on 5% of the training ratings, never the held-out."""
    rows, cols, values, shape = training
    start = time.perf_counter()
    plan = fastgd.observed((rows, cols, values, shape))
    result = fastgd.factorize(plan, rank, n_iter=200, random_state=0, n_threads=n_threads,
                              validation=0.05, early_stopping=True, patience=3,
                              **{**RECIPE, **settings})
    seconds = time.perf_counter() - start
    t_rows, t_cols, t_values, _ = held_out
    predictions = np.clip(result.predict(t_rows, t_cols), *scale)
    return seconds, math.sqrt(np.mean((predictions - t_values) ** 2)), result.n_iter


def peer_curve(name, training, held_out, rank, n_iter, scale, n_threads=1, **options):
    """[(seconds, held-out RMSE)] of a peer, or NOT_INSTALLED."""
    runner = {"libmf": _libmf_curve, "surprise": _surprise_curve, "cornac": _cornac_curve}
    return runner[name](training, held_out, rank, n_iter, scale, n_threads, **options)


def _libmf_curve(training, held_out, rank, n_iter, scale, n_threads, eta=0.1, l2=0.1,
                 nr_bins=20):
    driver = os.environ.get("FASTGD_LIBMF_DRIVER")
    if not driver or not os.path.exists(driver):
        return NOT_INSTALLED
    node = np.dtype([("u", "<i4"), ("v", "<i4"), ("r", "<f4")])
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for name, (rows, cols, values, shape) in (("tr", training), ("va", held_out)):
            entries = np.empty(rows.shape[0], node)
            entries["u"], entries["v"], entries["r"] = rows, cols, values
            path = os.path.join(tmp, f"{name}.bin")
            with open(path, "wb") as handle:
                np.array(shape, "<i4").tofile(handle)
                np.array([rows.shape[0]], "<i8").tofile(handle)
                entries.tofile(handle)
            paths.append(path)
        command = [driver, *paths, str(rank), str(n_threads), str(n_iter), str(eta),
                   str(l2), str(nr_bins)]
        curve = []
        with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as process:
            start = time.perf_counter()
            for line in process.stdout:
                fields = line.split()
                if len(fields) >= 3 and fields[0].isdigit():
                    # LIBMF's va_rmse is unclipped; its predictions of 0.5..5 data rarely
                    # leave the scale.
                    curve.append((time.perf_counter() - start, float(fields[2])))
    return curve


def _rmse(predictions, values, scale):
    return math.sqrt(np.mean((np.clip(predictions, *scale) - values) ** 2))


def _surprise_curve(training, held_out, rank, n_iter, scale, n_threads, lr=0.005, l2=0.02):
    """Surprise's SVD (biased SGD), refitted from scratch for 1, 2, ... epochs (it has no
    callback): the time of each fit, and its held-out RMSE."""
    try:
        import pandas as pd
        from surprise import SVD, Dataset, Reader
    except ImportError:
        return NOT_INSTALLED
    rows, cols, values, _ = training
    frame = pd.DataFrame({"u": rows, "i": cols, "r": values})
    low, high = (float(values.min()), float(values.max())) if np.isinf(scale).any() else scale
    trainset = Dataset.load_from_df(frame, Reader(rating_scale=(low, high))).build_full_trainset()
    t_rows, t_cols, t_values, _ = held_out
    curve = []
    for epochs in range(1, n_iter + 1):
        model = SVD(n_factors=rank, n_epochs=epochs, lr_all=lr, reg_all=l2, random_state=0)
        start = time.perf_counter()
        model.fit(trainset)
        seconds = time.perf_counter() - start
        predictions = [model.predict(u, i, clip=False).est
                       for u, i in zip(t_rows.tolist(), t_cols.tolist(), strict=True)]
        curve.append((seconds, _rmse(np.array(predictions), t_values, scale)))
    return curve


def _cornac_curve(training, held_out, rank, n_iter, scale, n_threads, lr=0.01, l2=0.02):
    """cornac's MF (SGD with biases), refitted from scratch for 1, 2, ... epochs."""
    try:
        from cornac.data import Dataset
        from cornac.models import MF
    except ImportError:
        return NOT_INSTALLED
    rows, cols, values, _ = training
    dataset = Dataset.from_uir(list(zip(rows.tolist(), cols.tolist(), values.tolist(),
                                        strict=True)), seed=0)
    t_rows, t_cols, t_values, _ = held_out
    user_index, item_index = dataset.uid_map, dataset.iid_map
    known = np.array([u in user_index and i in item_index
                      for u, i in zip(t_rows.tolist(), t_cols.tolist(), strict=True)])
    users = np.array([user_index.get(u, 0) for u in t_rows.tolist()])
    items = np.array([item_index.get(i, 0) for i in t_cols.tolist()])
    curve = []
    for epochs in range(1, n_iter + 1):
        model = MF(k=rank, max_iter=epochs, learning_rate=lr, lambda_reg=l2, use_bias=True,
                   num_threads=n_threads, seed=0)
        start = time.perf_counter()
        model.fit(dataset)
        seconds = time.perf_counter() - start
        # cornac's prediction for a pair it has not seen: the global mean (and its bias).
        predictions = np.full(t_values.shape, dataset.global_mean)
        predictions[known] = [model.score(u, i) for u, i in zip(users[known], items[known],
                                                                 strict=True)]
        curve.append((seconds, _rmse(predictions, t_values, scale)))
    return curve


def summary(curve, threshold):
    """(best RMSE, seconds to it, its pass, seconds to ``threshold`` or None) of a curve."""
    best = min(range(len(curve)), key=lambda j: curve[j][1])
    reached = next((seconds for seconds, rmse in curve if rmse <= threshold), None)
    return curve[best][1], curve[best][0], best + 1, reached


def compare(training, held_out, rank, n_iter, scale, threshold, n_threads=1,
            peers=("libmf", "cornac", "surprise"), settings=None, peer_settings=None):
    """{method: curve or NOT_INSTALLED}: fastgd's recipe (with ``settings`` over it) and the
    peers (each with its ``peer_settings``), from the same split."""
    settings = settings or {}
    peer_settings = peer_settings or {}
    curves = {"fastgd": fastgd_curve(training, held_out, rank, n_iter, n_threads,
                                     np.float32, **settings)}
    for name in peers:
        curves[name] = peer_curve(name, training, held_out, rank, n_iter, scale, n_threads,
                                  **peer_settings.get(name, {}))
    return curves


def format_table(curves, threshold):
    """A Markdown table of curves: best held-out RMSE, time to it, time to ``threshold``."""
    lines = [f"| method | best held-out RMSE | time to best | passes | time to {threshold} |",
             "|---|---|---|---|---|"]
    for name, curve in curves.items():
        if curve == NOT_INSTALLED or not curve:
            lines.append(f"| {name} | {NOT_INSTALLED} | | | |")
            continue
        best, seconds, passes, reached = summary(curve, threshold)
        lines.append(f"| {name} | {best:.4f} | {seconds:.3f} s | {passes} | "
                     + ("never" if reached is None else f"{reached:.3f} s") + " |")
    return "\n".join(lines)


def plot(curves, path, threshold):
    """Save the time-to-RMSE curves (needs matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("plots need matplotlib: pip install 'fastgd[plot]'") from None
    figure, axes = plt.subplots(figsize=(6, 4))
    for name, curve in curves.items():
        if curve != NOT_INSTALLED and curve:
            axes.plot(*zip(*curve, strict=True), marker=".", label=name)
    axes.axhline(threshold, color="grey", linestyle=":")
    axes.set_xlabel("seconds")
    axes.set_ylabel("held-out RMSE")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--movielens", help="path of MovieLens' ratings.csv (never shipped)")
    parser.add_argument("--n-ratings", type=int, default=5_000_000,
                        help="the synthetic problem's size (default 5M)")
    parser.add_argument("--rank", type=int, default=32)
    parser.add_argument("--n-iter", type=int, default=30, help="passes (epochs)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--peers", default="libmf,cornac,surprise")
    parser.add_argument("--plot", help="save the curves to this image file")
    arguments = parser.parse_args(argv)
    if arguments.movielens:
        ratings, scale, threshold = load_movielens(arguments.movielens), (0.5, 5.0), 0.87
    else:
        ratings = synthetic_ratings(n_ratings=arguments.n_ratings)
        scale, threshold = (-np.inf, np.inf), 0.83
    training, held_out = split(ratings)
    peers = [name for name in arguments.peers.split(",") if name]
    curves = compare(training, held_out, arguments.rank, arguments.n_iter, scale, threshold,
                     arguments.threads, peers)
    print(format_table(curves, threshold))
    seconds, rmse, passes = recipe_result(training, held_out, arguments.rank, scale,
                                          arguments.threads)
    print(f"\nthe recipe as is (early stopping on 5% of the training ratings): held-out "
          f"RMSE {rmse:.4f} in {seconds:.3f} s, {passes} passes; building the plan: "
          f"{plan_seconds(training):.3f} s")
    if arguments.plot:
        plot(curves, arguments.plot, threshold)


if __name__ == "__main__":
    main()
