"""The recommender benchmark (fastgd.benchmarks.recommender): its synthetic ratings are
what it says, its peers learn the same model from the same ratings, and its tables and
curves report what was measured."""

import itertools
import math

import numpy as np
import pytest
from conftest import require_peer

import fastgd
from fastgd.benchmarks import recommender


def test_synthetic_ratings_are_distinct_skewed_and_noisy_as_said():
    rows, cols, values, shape = recommender.synthetic_ratings(2000, 500, 40_000,
                                                              random_state=1)
    assert shape == (2000, 500) and rows.shape == cols.shape == values.shape == (40_000,)
    assert rows.dtype == cols.dtype == np.int32
    assert np.unique(rows.astype(np.int64) * 500 + cols).shape[0] == 40_000
    # Power-law popularity: the most rated tenth of the items holds about half the
    # ratings (a uniform draw would give them a tenth).
    counts = np.sort(np.bincount(cols, minlength=500))[::-1]
    assert counts[:50].sum() > 0.4 * counts.sum()
    assert abs(values.mean() - 3.5) < 0.1
    again = recommender.synthetic_ratings(2000, 500, 40_000, random_state=1)
    assert all(np.array_equal(a, b) for a, b in zip(again[:3], (rows, cols, values),
                                                     strict=True))
    with pytest.raises(ValueError, match="n_ratings must be at most half"):
        recommender.synthetic_ratings(10, 10, 60)


def test_the_noise_floor_is_reached_by_the_truth_not_by_the_mean():
    # The RMSE of a perfect model is the noise: the recipe gets between it and the mean's.
    ratings = recommender.synthetic_ratings(500, 150, 20_000, noise=0.5, random_state=2)
    training, held_out = recommender.split(ratings, random_state=0)
    curve = recommender.fastgd_curve(training, held_out, 8, 15)
    best = min(rmse for _, rmse in curve)
    mean_rmse = math.sqrt(np.mean((held_out[2] - training[2].mean()) ** 2))
    assert 0.5 < best < 0.9 * mean_rmse
    assert all(b[0] > a[0] for a, b in itertools.pairwise(curve))  # times ascend


@pytest.mark.parametrize("peer", ["cornac", "surprise"])
def test_the_peers_learn_from_the_same_ratings(peer):
    require_peer({"cornac": "cornac", "surprise": "surprise"}[peer])
    ratings = recommender.synthetic_ratings(500, 200, 20_000, noise=0.5, random_state=3)
    training, held_out = recommender.split(ratings, random_state=0)
    scale = (-np.inf, np.inf)
    curve = recommender.peer_curve(peer, training, held_out, 8, 6, scale)
    assert len(curve) == 6
    mean_rmse = math.sqrt(np.mean((held_out[2] - training[2].mean()) ** 2))
    assert min(rmse for _, rmse in curve) < 0.95 * mean_rmse


def test_libmf_without_its_driver_is_not_installed(monkeypatch):
    monkeypatch.delenv("FASTGD_LIBMF_DRIVER", raising=False)
    ratings = recommender.synthetic_ratings(100, 50, 1000, random_state=0)
    training, held_out = recommender.split(ratings)
    assert recommender.peer_curve("libmf", training, held_out, 4, 2, (0.5, 5)) == (
        recommender.NOT_INSTALLED)


def test_the_table_and_the_summary():
    curves = {"fastgd": [(0.1, 0.95), (0.2, 0.85), (0.3, 0.86)], "cornac": [(0.2, 0.9)],
              "libmf": recommender.NOT_INSTALLED}
    assert recommender.summary(curves["fastgd"], 0.87) == (0.85, 0.2, 2, 0.2)
    table = recommender.format_table(curves, 0.87).splitlines()
    assert table[2] == "| fastgd | 0.8500 | 0.200 s | 2 | 0.200 s |"
    assert table[3] == "| cornac | 0.9000 | 0.200 s | 1 | never |"
    assert table[4] == "| libmf | not installed | | | |"


def test_the_one_pass_cases_run_every_installed_peer(monkeypatch):
    # fastgd bench's quick case, made small (its 100k ratings take the NumPy twin 40 s).
    monkeypatch.setitem(recommender.CASES, "small", ("synthetic", 2000))
    functions = recommender.peers("small", 1)
    assert {"fastgd stochastic", "fastgd SGD"} <= set(functions)
    result = functions["fastgd stochastic"]()
    assert isinstance(result, fastgd.FactorizationResult)
    assert result.n_iter == recommender.PASSES and result.W.dtype == np.float32
