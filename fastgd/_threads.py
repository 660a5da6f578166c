"""Thread counts, and BLAS held to one thread inside fastgd's parallel regions.

``n_threads`` follows scikit-learn: None means every CPU this process may use
unless OMP_NUM_THREADS says otherwise, -1 every CPU, -2 all but one, and so
on; 0 is an error.
"""

import contextlib
import functools
import numbers
import os


def available_cpus():
    """CPUs this process may run on (its affinity mask, else os.cpu_count())."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def default_n_threads():
    """Threads used for ``n_threads=None``."""
    from fastgd._backend import ext

    if ext is not None and ext._build_info.openmp_enabled():
        # omp_get_max_threads() honours OMP_NUM_THREADS; cap it by the affinity mask.
        requested = ext._build_info.openmp_max_threads()
        if "OMP_NUM_THREADS" in os.environ:
            return max(1, requested)
        return max(1, min(requested, available_cpus()))
    try:
        return max(1, int(os.environ["OMP_NUM_THREADS"].split(",")[0]))
    except (KeyError, ValueError):
        return available_cpus()


# The most threads a call may ask for: more is a mistake, not a request (OpenMP would try
# to start them all). The updates' compiled fast path is given the same bound.
MAX_THREADS = 1 << 16


def resolve_n_threads(n_threads):
    """The number of threads a kernel call uses, from its ``n_threads`` argument."""
    if n_threads is None:
        return default_n_threads()
    if isinstance(n_threads, bool) or not isinstance(n_threads, numbers.Integral):
        raise TypeError(f"n_threads must be an int or None; got {type(n_threads).__name__}")
    n_threads = int(n_threads)
    if n_threads == 0:
        raise ValueError(
            "n_threads must be None, a positive int, or a negative int (-1 = all CPUs); got 0"
        )
    if n_threads < 0:
        return max(1, available_cpus() + 1 + n_threads)
    if n_threads > MAX_THREADS:
        raise ValueError(f"n_threads must be at most {MAX_THREADS}; got {n_threads}")
    return n_threads


@functools.cache
def _blas_controller():
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    return ThreadpoolController()


def blas_info():
    """threadpoolctl's view of the BLAS libraries loaded, or None without threadpoolctl."""
    controller = _blas_controller()
    if controller is None:
        return None
    return [lib.info() for lib in controller.select(user_api="blas").lib_controllers]


@contextlib.contextmanager
def single_threaded_blas():
    """Hold every loaded BLAS to one thread (needs threadpoolctl; a no-op without it).

    Kernels that call BLAS on tiles from their own threads run inside this, so
    that OpenMP threads and BLAS threads do not oversubscribe the cores.
    """
    controller = _blas_controller()
    if controller is None:
        yield
        return
    with controller.limit(limits=1, user_api="blas"):
        yield
