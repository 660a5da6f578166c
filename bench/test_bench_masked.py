"""pytest-benchmark: the masked loss and gradients by fastgd and its peers, per case, one
thread (BLAS held to one thread for every peer).

    pytest bench/test_bench_masked.py --benchmark-only --benchmark-group-by=group
"""

import pytest
from masked_cases import CASES, PEER_NAMES, applies, peers

PAIRS = [(case, peer) for case in CASES for peer in PEER_NAMES if applies(case, peer)]


@pytest.mark.parametrize(("case", "peer"), PAIRS, ids=[f"{c}-{p}" for c, p in PAIRS])
def test_masked_loss_grad(benchmark, case, peer):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    functions = peers(case)
    if peer not in functions:
        pytest.skip(f"{peer} is not installed")
    benchmark.group = f"masked_loss_grad {case} 1 thread"
    benchmark.extra_info["peer"] = peer
    with threadpoolctl.threadpool_limits(limits=1):
        benchmark(functions[peer])
