"""How the compiled kernels were built, and the OpenMP runtime they see."""

from codes cimport (
    ENTRY_HUBER,
    ENTRY_SQUARED,
    EPS_ACCUMULATE,
    EPS_INSIDE,
    EPS_OUTSIDE,
    FINISH_HALF,
    FINISH_NONE,
    FINISH_SQRT,
    LEVEL_AVX2,
    LEVEL_AVX512,
    LEVEL_BASELINE,
    LEVEL_SCALAR,
    LOSS_MSE,
    LOSS_RMSE,
    LOSS_SSE,
    OPTIMIZER_ADAGRAD,
    OPTIMIZER_GD,
    STATUS_CONVERGED,
    STATUS_MAX_ITER,
    STATUS_NONFINITE,
    STEP_ADAGRAD,
    STEP_ADAGRAD_VECTOR,
    STEP_SGD,
)
from cython.parallel cimport parallel

cdef extern from *:
    """
    #include "openmp_runtime.h"
    #ifndef FASTGD_BUILD_COMPILER
    #define FASTGD_BUILD_COMPILER "unknown"
    #endif
    #ifndef FASTGD_BUILD_CFLAGS
    #define FASTGD_BUILD_CFLAGS "unknown"
    #endif
    #ifndef FASTGD_BUILD_CYTHON
    #define FASTGD_BUILD_CYTHON "unknown"
    #endif
    #ifndef FASTGD_BUILD_NUMPY
    #define FASTGD_BUILD_NUMPY "unknown"
    #endif
    #ifndef FASTGD_BUILD_PLATFORM
    #define FASTGD_BUILD_PLATFORM "unknown"
    #endif
    """
    const int FASTGD_HAVE_OPENMP
    const char* FASTGD_BUILD_COMPILER
    const char* FASTGD_BUILD_CFLAGS
    const char* FASTGD_BUILD_CYTHON
    const char* FASTGD_BUILD_NUMPY
    const char* FASTGD_BUILD_PLATFORM
    int fastgd_omp_max_threads() noexcept nogil


def openmp_enabled():
    """True when the extension was compiled with OpenMP."""
    return bool(FASTGD_HAVE_OPENMP)


def openmp_max_threads():
    """omp_get_max_threads(): honours OMP_NUM_THREADS; 1 without OpenMP."""
    return fastgd_omp_max_threads()


def start_openmp_threads(int n_threads):
    """Run an empty parallel region of ``n_threads`` threads, so that OpenMP starts its
    worker threads now rather than in a kernel's first parallel region. Nothing for fewer
    than 2 threads or without OpenMP."""
    if n_threads < 2 or not FASTGD_HAVE_OPENMP:
        return
    with nogil, parallel(num_threads=n_threads):
        pass


def build_info():
    """A dict describing the build: compiler, flags, Cython, NumPy, platform."""
    return {
        "compiler": FASTGD_BUILD_COMPILER.decode(),
        "cflags": FASTGD_BUILD_CFLAGS.decode(),
        "cython": FASTGD_BUILD_CYTHON.decode(),
        "numpy": FASTGD_BUILD_NUMPY.decode(),
        "platform": FASTGD_BUILD_PLATFORM.decode(),
        "openmp": bool(FASTGD_HAVE_OPENMP),
    }


cdef extern from "cpu_dispatch.h":
    const int FASTGD_X86_DISPATCH
    const int FASTGD_N_CPU_FEATURES
    const char* const fastgd_cpu_feature_names[]
    unsigned fastgd_cpu_feature_bits() noexcept nogil
    int fastgd_cpu_level() noexcept nogil


def codes():
    """The codes this extension was built with, by kind, in code order (as
    fastgd._codes.C_ENUMS, from which setup.py wrote them): the loader compares them."""
    return {
        "LEVEL": [LEVEL_SCALAR, LEVEL_BASELINE, LEVEL_AVX2, LEVEL_AVX512],
        "LOSS": [LOSS_SSE, LOSS_MSE, LOSS_RMSE],
        "ENTRY": [ENTRY_SQUARED, ENTRY_HUBER],
        "OPTIMIZER": [OPTIMIZER_ADAGRAD, OPTIMIZER_GD],
        "EPS": [EPS_OUTSIDE, EPS_INSIDE, EPS_ACCUMULATE],
        "STATUS": [STATUS_MAX_ITER, STATUS_CONVERGED, STATUS_NONFINITE],
        "STEP": [STEP_SGD, STEP_ADAGRAD, STEP_ADAGRAD_VECTOR],
        "FINISH": [FINISH_NONE, FINISH_SQRT, FINISH_HALF],
    }


def cpu_info():
    """The CPU's features that matter to the kernels, the highest instruction-set level
    it supports (what the kernels dispatch to unless FASTGD_SIMD caps it), and whether
    this build dispatches at all: a build for another architecture or compiler, or with
    FASTGD_NO_DISPATCH, has the baseline loops only and reads no features."""
    cdef unsigned bits = fastgd_cpu_feature_bits()
    return {
        "features": [fastgd_cpu_feature_names[i].decode()
                     for i in range(FASTGD_N_CPU_FEATURES) if bits >> i & 1],
        "level": fastgd_cpu_level(),
        "dispatch": bool(FASTGD_X86_DISPATCH),
    }
