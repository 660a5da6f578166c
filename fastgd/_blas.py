"""Which BLAS the compiled kernels' GEMM calls (src_c/blas_gemm.h).

The kernels multiply their tiles with a BLAS's Fortran-interface ``sgemm``/``dgemm``,
taken from a library the process holds already:

- NumPy's bundled OpenBLAS (NumPy's wheels for Linux, macOS and Windows carry one, with
  64-bit integers), loaded with NumPy itself, so finding it costs microseconds, and its
  thread count is held at one inside fastgd's parallel regions by OpenBLAS's own calls
  (``held_to_one_thread``);
- otherwise SciPy's ``scipy.linalg.cython_blas`` (32-bit integers), which costs the import
  of ``scipy.linalg``: about 0.2 s, and its own OpenBLAS (held through threadpoolctl).

``FASTGD_BLAS=numpy`` or ``FASTGD_BLAS=scipy`` asks for one of them (``auto``, the
default, takes the first one found); it is read when the compiled modules load.
"""

from __future__ import annotations

import ctypes
import glob
import os
import threading
from typing import NamedTuple

import numpy as np

BLAS_CHOICES = ("auto", "numpy", "scipy")

# NumPy's bundled OpenBLAS: the file name, its sgemm and dgemm, and its calls that read and
# set its thread count; newest layout first. NumPy >= 2.0 wheels carry scipy-openblas64
# (symbols prefixed "scipy_"), NumPy 1.x wheels OpenBLAS built with the "64_" suffix only.
# Both have 64-bit integers.
NUMPY_OPENBLAS = (
    ("*scipy_openblas64_*", "scipy_sgemm_64_", "scipy_dgemm_64_",
     "scipy_openblas_get_num_threads64_", "scipy_openblas_set_num_threads64_"),
    ("*openblas64_*", "sgemm_64_", "dgemm_64_",
     "openblas_get_num_threads64_", "openblas_set_num_threads64_"),
)


class Gemm(NamedTuple):
    """A BLAS's sgemm and dgemm (addresses), the bytes of its integers, in words, the file
    (NumPy's OpenBLAS) and what holds it at one thread (None for SciPy's)."""

    sgemm: int
    dgemm: int
    integer_bytes: int
    description: str
    path: str | None
    held_to_one_thread: _HeldToOneThread | None


_chosen: Gemm | None = None


def _choice_from_environment():
    value = os.environ.get("FASTGD_BLAS", "").strip().lower() or "auto"
    if value not in BLAS_CHOICES:
        raise ValueError(
            f"FASTGD_BLAS must be one of {', '.join(map(repr, BLAS_CHOICES))}; got {value!r}")
    return value


def _numpy_library_dirs():
    numpy_dir = os.path.dirname(np.__file__)
    # Linux and Windows wheels (auditwheel, delvewheel) put it beside the package, macOS
    # wheels (delocate) inside it.
    return [os.path.join(os.path.dirname(numpy_dir), "numpy.libs"),
            os.path.join(numpy_dir, ".dylibs")]


class _HeldToOneThread:
    """A context manager that holds one OpenBLAS at one thread while any holder is inside.

    The count lets holders from several Python threads overlap: the first one in saves the
    count and sets one thread, the last one out restores it.
    """

    def __init__(self, get_threads, set_threads):
        self._get_threads, self._set_threads = get_threads, set_threads
        self._lock = threading.Lock()
        self._holders = 0
        self._saved = 1

    def __enter__(self):
        with self._lock:
            if self._holders == 0:
                self._saved = self._get_threads()
                if self._saved != 1:
                    self._set_threads(1)
            self._holders += 1

    def __exit__(self, *exc_info):
        with self._lock:
            self._holders -= 1
            if self._holders == 0 and self._saved != 1:
                self._set_threads(self._saved)


def _numpy_openblas():
    """NumPy's OpenBLAS as a Gemm, or None if NumPy carries none."""
    # RTLD_NOLOAD: take the library only if NumPy has loaded it (never load a second copy).
    mode = getattr(os, "RTLD_NOLOAD", 0) | getattr(os, "RTLD_NOW", 0)
    for directory in _numpy_library_dirs():
        for pattern, sgemm_name, dgemm_name, get_name, set_name in NUMPY_OPENBLAS:
            for path in sorted(glob.glob(os.path.join(directory, pattern))):
                try:
                    library = ctypes.CDLL(path, mode=mode)
                    sgemm, dgemm = getattr(library, sgemm_name), getattr(library, dgemm_name)
                    get_threads, set_threads = getattr(library, get_name), getattr(library,
                                                                                   set_name)
                except (OSError, AttributeError):
                    continue
                get_threads.restype, get_threads.argtypes = ctypes.c_int, []
                set_threads.restype, set_threads.argtypes = None, [ctypes.c_int]
                return Gemm(ctypes.cast(sgemm, ctypes.c_void_p).value,
                            ctypes.cast(dgemm, ctypes.c_void_p).value, 8,
                            f"NumPy's OpenBLAS ({dgemm_name}, 64-bit integers) in {path}",
                            path, _HeldToOneThread(get_threads, set_threads))
    return None


def _capsule_address(capsule):
    name_of = ctypes.pythonapi.PyCapsule_GetName
    name_of.restype, name_of.argtypes = ctypes.c_char_p, [ctypes.py_object]
    pointer_of = ctypes.pythonapi.PyCapsule_GetPointer
    pointer_of.restype, pointer_of.argtypes = ctypes.c_void_p, [ctypes.py_object,
                                                                ctypes.c_char_p]
    return pointer_of(capsule, name_of(capsule))


def _scipy_cython_blas():
    """scipy.linalg.cython_blas's sgemm and dgemm as a Gemm."""
    from scipy.linalg import cython_blas

    functions = cython_blas.__pyx_capi__
    return Gemm(_capsule_address(functions["sgemm"]), _capsule_address(functions["dgemm"]), 4,
                "SciPy's scipy.linalg.cython_blas (sgemm, dgemm, 32-bit integers)", None, None)


def _numpy_openblas_if_allowed():
    """NumPy's OpenBLAS as the chosen Gemm, where FASTGD_BLAS allows it and NumPy carries
    one; else None."""
    global _chosen
    if _chosen is None and _choice_from_environment() != "scipy":
        _chosen = _numpy_openblas()
    return _chosen if _chosen is not None and _chosen.path is not None else None


def gemm_functions():
    """The kernels' GEMM (a Gemm), chosen once per process; the compiled modules call this
    when they load."""
    global _chosen
    if _numpy_openblas_if_allowed() is None and _chosen is None:
        if _choice_from_environment() == "numpy":
            raise ImportError(
                "FASTGD_BLAS=numpy asks for NumPy's bundled OpenBLAS, which this NumPy "
                f"(version {np.__version__}, in {os.path.dirname(np.__file__)}) does not carry")
        _chosen = _scipy_cython_blas()
    return _chosen


def held_to_one_thread():
    """A context manager holding the kernels' BLAS at one thread, or None when the kernels
    call SciPy's BLAS (fastgd._threads then holds it through threadpoolctl)."""
    return gemm_functions().held_to_one_thread


def cheap_to_load():
    """Whether the kernels' GEMM comes without importing SciPy (NumPy's OpenBLAS is there
    and FASTGD_BLAS does not ask for SciPy's): fastgd._backend then loads the compiled
    modules at ``import fastgd``."""
    return _numpy_openblas_if_allowed() is not None


def gemm_description():
    """Which BLAS the kernels' GEMM calls, in words (for show_config)."""
    return gemm_functions().description
