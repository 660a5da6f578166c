"""pytest-benchmark over the cases of fastgd.benchmarks (the ones `fastgd bench` runs),
one group per kernel, case and thread setting, so that

    pytest bench --benchmark-only --benchmark-group-by=group

prints fastgd and its peers side by side."""

import contextlib
import functools

import pytest

from fastgd import benchmarks


@pytest.fixture(params=[1, -1], ids=["1thread", "allthreads"])
def threads(request):
    """1 thread: fastgd with n_threads=1 and every BLAS held to one thread (for the peers
    too); all threads: fastgd with n_threads=-1 and BLAS as configured."""
    if request.param == 1:
        threadpoolctl = pytest.importorskip("threadpoolctl")
        context = threadpoolctl.threadpool_limits(limits=1)
    else:
        context = contextlib.nullcontext()
    with context:
        yield request.param


@functools.lru_cache(maxsize=2)
def cached_peers(kernel, case, n_threads):
    """The callables of one case, built once for all the peers of the case."""
    return benchmarks.case_module(kernel).peers(case, n_threads)


@pytest.fixture
def run_peer(benchmark, threads):
    """Benchmark one peer of one case of a kernel family, in its group."""

    def run(kernel, case, peer):
        functions = cached_peers(kernel, case, threads)
        if peer not in functions:
            pytest.skip(f"{peer} is not installed")
        benchmark.group = f"{kernel} {case} {'1 thread' if threads == 1 else 'all threads'}"
        benchmark.extra_info["peer"] = peer
        return benchmark(functions[peer])

    return run
