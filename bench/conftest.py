import contextlib
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))


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
