"""pytest-benchmark: the Adam cases of fastgd.benchmarks, fastgd and each peer.

    pytest bench/test_bench_adam.py --benchmark-only --benchmark-group-by=group
"""

import pytest

from fastgd.benchmarks import adam as cases
from fastgd.benchmarks import case_peer_pairs

PAIRS = case_peer_pairs(cases)


@pytest.mark.parametrize(("case", "peer"), PAIRS, ids=[f"{c}-{p}" for c, p in PAIRS])
def test_adam(run_peer, case, peer):
    run_peer("adam", case, peer)
