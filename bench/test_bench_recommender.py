"""pytest-benchmark: one pass of the stochastic solver over ratings, fastgd and each peer
(cornac's MF, Surprise's SVD: one epoch each).

    pytest bench/test_bench_recommender.py --benchmark-only --benchmark-group-by=group

The time-to-held-out-RMSE curves (LIBMF among the peers) are
``python -m fastgd.benchmarks.recommender``.
"""

import pytest

from fastgd.benchmarks import case_peer_pairs
from fastgd.benchmarks import recommender as cases

PAIRS = case_peer_pairs(cases)


@pytest.mark.parametrize(("case", "peer"), PAIRS, ids=[f"{c}-{p}" for c, p in PAIRS])
def test_recommender(run_peer, case, peer):
    run_peer("recommender", case, peer)
