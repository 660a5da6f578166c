"""pytest-benchmark: one Adagrad step by fastgd and its peers, grouped per case.

    pytest bench/test_bench_updates.py --benchmark-only --benchmark-group-by=group
"""

import pytest
from updates_cases import CASES, PEER_NAMES, peers

# The bandwidth floor streams one array: it has no multi-array case.
PAIRS = [(case, peer) for case in CASES for peer in PEER_NAMES
         if peer != "bandwidth floor" or len(CASES[case]) == 1]


@pytest.mark.parametrize(("case", "peer"), PAIRS, ids=[f"{c}-{p}" for c, p in PAIRS])
def test_adagrad_step(benchmark, case, peer):
    functions = peers(CASES[case])
    if peer not in functions:
        pytest.skip(f"{peer} is not installed")
    benchmark.group = f"adagrad {case} 1 thread"
    benchmark.extra_info["peer"] = peer
    benchmark(functions[peer])
