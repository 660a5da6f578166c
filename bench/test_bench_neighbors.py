"""pytest-benchmark: the neighbors cases of fastgd.benchmarks, fastgd and each peer.

    pytest bench/test_bench_neighbors.py --benchmark-only --benchmark-group-by=group
"""

import pytest

from fastgd.benchmarks import case_peer_pairs
from fastgd.benchmarks import neighbors as cases

PAIRS = case_peer_pairs(cases)


@pytest.mark.parametrize(("case", "peer"), PAIRS, ids=[f"{c}-{p}" for c, p in PAIRS])
def test_argkmin(run_peer, case, peer):
    run_peer("neighbors", case, peer)
