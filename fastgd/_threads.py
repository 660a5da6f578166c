"""Thread counts, and BLAS held to one thread inside fastgd's parallel regions.

``n_threads`` follows scikit-learn: None means every CPU this process may use
unless OMP_NUM_THREADS says otherwise, -1 every CPU, -2 all but one, and so
on; 0 is an error.
"""

import contextlib
import numbers
import os
import sys
import warnings

from fastgd import _blas


def available_cpus():
    """CPUs this process may run on (its affinity mask, else os.cpu_count())."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def _default_cap():
    """The most threads ``n_threads=None`` takes: the affinity mask, unless OMP_NUM_THREADS
    asks for a count itself."""
    return MAX_THREADS if "OMP_NUM_THREADS" in os.environ else available_cpus()


def default_n_threads():
    """Threads used for ``n_threads=None``."""
    from fastgd._backend import ext  # loads the compiled modules on first use

    if in_forked_child:
        return 1
    if ext is not None and ext._build_info.openmp_enabled():
        # omp_get_max_threads() honours OMP_NUM_THREADS and threadpoolctl's limits.
        return max(1, min(ext._build_info.openmp_max_threads(), _default_cap()))
    try:
        return max(1, int(os.environ["OMP_NUM_THREADS"].split(",")[0]))
    except (KeyError, ValueError):
        return available_cpus()


# The most threads a call may ask for: more is a mistake, not a request (OpenMP would try
# to start them all). The updates' compiled fast path is given the same bound.
MAX_THREADS = 1 << 16


def check_n_threads(n_threads):
    """``n_threads`` checked (None, or a non-zero int of at most MAX_THREADS), unresolved:
    for the objects that keep it for later calls."""
    if n_threads is None:
        return None
    if isinstance(n_threads, bool) or not isinstance(n_threads, numbers.Integral):
        raise TypeError(f"n_threads must be an int or None; got {type(n_threads).__name__}")
    n_threads = int(n_threads)
    if n_threads == 0:
        raise ValueError(
            "n_threads must be None, a positive int, or a negative int (-1 = all CPUs); got 0"
        )
    if n_threads > MAX_THREADS:
        raise ValueError(f"n_threads must be at most {MAX_THREADS}; got {n_threads}")
    return n_threads


def resolve_n_threads(n_threads):
    """The number of threads a kernel call uses, from its ``n_threads`` argument."""
    n_threads = check_n_threads(n_threads)
    if in_forked_child:
        _warn_single_threaded_child()
        return 1
    if n_threads is None:
        return default_n_threads()
    if n_threads < 0:
        return max(1, available_cpus() + 1 + n_threads)
    return n_threads


# GNU libgomp is not fork-safe: a child made by fork() after the parent ran a parallel
# region hangs in its first own parallel region of more than one thread. Every call in such
# a child therefore runs on one thread (resolve_n_threads, and the updates' fast path
# through share_thread_counts); libgomp runs a one-thread region in the calling thread.
in_forked_child = False


def share_thread_counts():
    """Give the updates' compiled fast path the counts resolve_n_threads uses (once it is
    loaded: fastgd._backend calls this when it loads the compiled modules)."""
    from fastgd._backend import loaded_extension

    ext = loaded_extension()
    if ext is None:
        return
    if in_forked_child:
        ext._updates.set_thread_counts(1, 1, 1)
    else:
        ext._updates.set_thread_counts(_default_cap(), available_cpus(), MAX_THREADS)


_child_warned = False


def _warn_single_threaded_child():
    global _child_warned
    if not _child_warned:
        _child_warned = True
        warnings.warn(
            "fastgd runs on one thread in this process: it was made by fork(), and the "
            "OpenMP runtime cannot start threads after a fork. Use the 'spawn' or "
            "'forkserver' start method (multiprocessing, concurrent.futures) for threads.",
            RuntimeWarning, stacklevel=4)


def _after_fork_in_child():
    global in_forked_child
    in_forked_child = True
    share_thread_counts()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


# threadpoolctl's controller (for show_config, and to hold SciPy's BLAS where the kernels
# call it), and the number of modules loaded when it scanned the process's libraries: a
# module imported since (faiss and torch bring BLAS libraries of their own) makes the next
# use scan again, so that every loaded BLAS is held.
_controller = {"modules": -1, "controller": None}


def _blas_controller():
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    loaded = len(sys.modules)
    if _controller["modules"] != loaded:
        _controller["controller"] = ThreadpoolController()
        _controller["modules"] = loaded
    return _controller["controller"]


def prepare_blas_control():
    """Make threadpoolctl's controller now, where single_threaded_blas needs it (it scans
    the loaded libraries, which takes milliseconds): fastgd._backend does it when the
    compiled modules load, so that no kernel's first call pays it."""
    if _blas.held_to_one_thread() is None:
        _blas_controller()


def blas_info():
    """threadpoolctl's view of the BLAS libraries loaded, or None without threadpoolctl."""
    controller = _blas_controller()
    if controller is None:
        return None
    return [lib.info() for lib in controller.select(user_api="blas").lib_controllers]


def single_threaded_blas():
    """A context manager holding the BLAS the kernels call to one thread.

    Kernels that call BLAS on tiles from their own threads run inside this, so
    that OpenMP threads and BLAS threads do not oversubscribe the cores. NumPy's OpenBLAS
    (the kernels' usual BLAS, fastgd._blas) is held by its own calls, which cost a
    microsecond; SciPy's, by threadpoolctl (a no-op without it).
    """
    held = _blas.held_to_one_thread()
    return held if held is not None else _every_blas_single_threaded()


@contextlib.contextmanager
def _every_blas_single_threaded():
    controller = _blas_controller()
    if controller is None:
        yield
        return
    with controller.limit(limits=1, user_api="blas"):
        yield
