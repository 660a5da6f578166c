"""pytest-benchmark: one Adagrad step by fastgd and its peers, grouped per case.

    pytest bench/test_bench_updates.py --benchmark-only --benchmark-group-by=group
"""

import pytest
from updates_cases import CASES, PEER_NAMES, peers


@pytest.mark.parametrize("peer", PEER_NAMES)
@pytest.mark.parametrize("case", list(CASES))
def test_adagrad_step(benchmark, case, peer):
    functions = peers(CASES[case])
    if peer not in functions:
        pytest.skip(f"{peer} is not installed or does not apply")
    benchmark.group = f"adagrad {case} 1 thread"
    benchmark.extra_info["peer"] = peer
    benchmark(functions[peer])
