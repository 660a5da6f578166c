"""pytest-benchmark: the metrics cases of fastgd.benchmarks, fastgd and each peer.

    pytest bench/test_bench_metrics.py --benchmark-only --benchmark-group-by=group
"""

import pytest

from fastgd.benchmarks import case_peer_pairs
from fastgd.benchmarks import metrics as cases

PAIRS = case_peer_pairs(cases)


@pytest.mark.parametrize(("case", "peer"), PAIRS, ids=[f"{c}-{p}" for c, p in PAIRS])
def test_cdist(run_peer, case, peer):
    run_peer("metrics", case, peer)
