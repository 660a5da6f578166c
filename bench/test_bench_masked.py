"""pytest-benchmark: the masked loss and gradients by fastgd and its peers, per case.

    pytest bench/test_bench_masked.py --benchmark-only --benchmark-group-by=group
"""

import pytest
from masked_cases import CASES, PEER_NAMES, peers


@pytest.mark.parametrize("peer", PEER_NAMES)
@pytest.mark.parametrize("case", list(CASES))
def test_masked_loss_grad(benchmark, threads, case, peer):
    if threads != 1:
        pytest.skip("the masked cases are measured on one thread")
    functions = peers(case)
    if peer not in functions:
        pytest.skip(f"{peer} is not installed or does not apply")
    benchmark.group = f"masked_loss_grad {case} 1 thread"
    benchmark.extra_info["peer"] = peer
    benchmark(functions[peer])
