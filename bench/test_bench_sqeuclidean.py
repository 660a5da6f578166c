"""pytest-benchmark: fastgd.sqeuclidean and its peers, grouped per shape, dtype and threads.

    pytest bench --benchmark-only --benchmark-group-by=group
"""

import numpy as np
import pytest
from sqeuclidean_cases import DTYPES, PEER_NAMES, SHAPES, make_data, peers


@pytest.mark.parametrize("peer", PEER_NAMES)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda t: np.dtype(t).name)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_sqeuclidean(benchmark, threads, shape, dtype, peer):
    functions = peers(threads)
    if peer not in functions:
        pytest.skip(f"{peer} is not installed")
    X, Y = make_data(*shape, dtype)
    benchmark.group = f"sqeuclidean {'x'.join(map(str, shape))} {np.dtype(dtype).name} " + (
        "1 thread" if threads == 1 else "all threads"
    )
    benchmark.extra_info["peer"] = peer
    result = benchmark(functions[peer], X, Y)
    assert result.shape == (shape[0], shape[1])
