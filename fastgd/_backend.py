"""Which implementation runs: the compiled extension or its NumPy twin.

The extension is imported once, here: at ``import fastgd`` where that is cheap (its GEMM is
NumPy's OpenBLAS, fastgd._blas), else when a kernel (or get_backend, show_config) first
needs it. If it is missing, a warning says why and every kernel
runs its NumPy twin from ``fastgd._numpy``; with ``FASTGD_REQUIRE_EXTENSION=1`` a missing
extension is an ImportError instead.
``FASTGD_BACKEND=numpy`` forces the twin; ``use_backend`` switches for a block.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import importlib.util
import os
import threading
import types
import warnings
from collections.abc import Iterator
from typing import Literal

from fastgd import _blas, _codes

BACKENDS = ("compiled", "numpy")
EXTENSION_MODULES = ("_build_info", "_masked", "_memory", "_pairwise", "_solvers", "_stochastic",
                     "_updates")


# GNU libgomp's threads spin for up to 300000 iterations at every barrier before they
# sleep. Where other processes hold the cores, that spinning keeps the awaited threads off
# them; a short spin keeps the idle machine's speed and gives the cores back (the
# measurements: docs/guide/backends.md, "Threads, fork, Ctrl-C, busy machines"; fastgd
# bench --busy).
# libgomp reads GOMP_SPINCOUNT once, when it loads with the extension: it is set for that
# moment only (never for child processes), and only where the user set neither it nor
# OMP_WAIT_POLICY.
OPENMP_SPIN_COUNT = "1000"


def _libgomp_loaded():
    try:
        with open("/proc/self/maps") as maps:
            return "libgomp" in maps.read()
    except OSError:
        return False


@contextlib.contextmanager
def _short_openmp_spin():
    global openmp_wait
    if "GOMP_SPINCOUNT" in os.environ or "OMP_WAIT_POLICY" in os.environ:
        openmp_wait = "as the environment sets (GOMP_SPINCOUNT or OMP_WAIT_POLICY)"
        yield
        return
    if _libgomp_loaded():
        openmp_wait = "libgomp's default (it was loaded before fastgd)"
        yield
        return
    openmp_wait = f"a short spin (GOMP_SPINCOUNT={OPENMP_SPIN_COUNT}), then sleep"
    os.environ["GOMP_SPINCOUNT"] = OPENMP_SPIN_COUNT
    try:
        yield
    finally:
        os.environ.pop("GOMP_SPINCOUNT", None)


def _import_extension():
    modules = {}
    with _short_openmp_spin():
        for name in EXTENSION_MODULES:
            modules[name] = importlib.import_module(f"fastgd._ext.{name}")
    built_with = modules["_build_info"].codes()
    expected = {kind: list(range(len(names))) for kind, names in _codes.C_ENUMS.items()}
    if built_with != expected:
        raise ImportError(
            "fastgd's compiled extension was built with other codes than fastgd/_codes.py "
            f"holds ({built_with} against {expected}): rebuild it (pip install ., or "
            "python setup.py build_ext --inplace)")
    return types.SimpleNamespace(**modules)


def cpu_info():
    """The CPU's features that matter to the kernels, the highest SIMD level it supports
    (by name) and whether this build dispatches at all; None without the extension."""
    if _load() is None:
        return None
    info = ext._build_info.cpu_info()
    return {**info, "level": SIMD_LEVELS[info["level"]]}


def _backend_from_environment():
    value = os.environ.get("FASTGD_BACKEND", "").strip().lower()
    if value in ("", "auto"):
        return None
    if value not in BACKENDS:
        raise ValueError(
            f"FASTGD_BACKEND must be one of 'auto', 'compiled', 'numpy'; got {value!r}"
        )
    return value


_ENVIRONMENT_BACKEND = _backend_from_environment()
_REQUIRED = (os.environ.get("FASTGD_REQUIRE_EXTENSION", "0") == "1"
             or _ENVIRONMENT_BACKEND == "compiled")


def _missing_extension_error(error):
    return ImportError(
        "fastgd's compiled extension could not be imported "
        f"({type(error).__name__}: {error}), and FASTGD_REQUIRE_EXTENSION=1 or "
        "FASTGD_BACKEND=compiled asks for it. Install fastgd with pip (`pip install .`) "
        "and run from a directory where the source tree does not shadow the installed package."
    )


def _warn_fallback(error, stacklevel):
    if _ENVIRONMENT_BACKEND == "numpy":
        return
    package = os.path.dirname(os.path.abspath(__file__))
    if os.path.exists(os.path.join(os.path.dirname(package), "setup.py")):
        # The checkout itself is on sys.path (its directory is the current one).
        why = (f"this fastgd is the source tree at {package}, which holds no compiled "
               "modules and shadows an installed fastgd: run from another directory "
               "after `pip install .`, or build in place with "
               "`python setup.py build_ext --inplace`")
    else:
        why = "Set FASTGD_BACKEND=numpy to silence this warning"
    warnings.warn(
        f"fastgd's compiled extension is not available ({error}); using the NumPy backend, "
        f"which is correct but slower. {why}.",
        RuntimeWarning,
        stacklevel=stacklevel,
    )


def _find_extension():
    """Whether every compiled module is there to import, without importing one (where
    their GEMM is SciPy's, importing them costs more than NumPy's whole import)."""
    for name in EXTENSION_MODULES:
        if importlib.util.find_spec(f"fastgd._ext.{name}") is None:
            return ModuleNotFoundError(f"No module named 'fastgd._ext.{name}'")
    return None


# The compiled modules are imported by load_when_cheap() at `import fastgd`, or else on
# first need (the first kernel call, get_backend(), show_config()). Until then the module
# attributes below that depend on them (ext, extension_error, simd_levels, update_division
# and the two fast paths) are absent, and the module's __getattr__ loads them on first
# access.
_LAZY_ATTRIBUTES = ("ext", "extension_error", "simd_levels", "update_division",
                    "updates_fast_path", "masked_fast_path", "openmp_wait")
_load_lock = threading.RLock()
_loaded = False

_missing = _find_extension()
if _missing is not None:
    if _REQUIRED:
        raise _missing_extension_error(_missing) from _missing
    _warn_fallback(_missing, stacklevel=3)


def _load():
    """Import the compiled modules once (or settle on the NumPy twins); returns ext."""
    global _loaded, ext, extension_error, openmp_wait
    if _loaded:
        return ext
    with _load_lock:
        if _loaded:
            return ext
        openmp_wait = None  # how the OpenMP threads wait, for show_config
        if _missing is not None:
            ext, extension_error = None, _missing
        else:
            try:
                ext, extension_error = _import_extension(), None
            except ImportError as error:
                if _REQUIRED:
                    raise _missing_extension_error(error) from error
                ext, extension_error = None, error
                _warn_fallback(error, stacklevel=4)
        _select_simd(_simd_level_asked)
        _refresh_fast_paths()
        from fastgd import _caches, _threads

        _loaded = True
        # The updates' fast path is given the thread counts resolve_n_threads uses.
        _threads.share_thread_counts()
        if ext is not None:
            # What the kernels' first calls would pay otherwise: reading the cache sizes
            # their tiles follow, making the controller that holds BLAS in their parallel
            # regions, and starting OpenMP's threads.
            _caches.cache_bytes(2, 0)
            _threads.prepare_blas_control()
            ext._build_info.start_openmp_threads(_threads.default_n_threads())
    return ext


def load_when_cheap():
    """Load the compiled modules now (``import fastgd`` calls this) when that costs a few
    milliseconds: their GEMM comes from NumPy's OpenBLAS (fastgd._blas), so SciPy is not
    imported. Then no kernel's first call pays the load. Otherwise (SciPy's BLAS, or the
    NumPy backend asked for) they load on first need, as get_backend() documents."""
    if _missing is None and _ENVIRONMENT_BACKEND != "numpy" and _blas.cheap_to_load():
        _load()


def loaded_extension():
    """ext if the compiled modules are loaded, else None: without loading them."""
    return ext if _loaded else None


def __getattr__(name):
    if name in _LAZY_ATTRIBUTES:
        _load()
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


SIMD_LEVELS = _codes.SIMD_LEVELS
# The kernel families whose hot loops are compiled per instruction-set level, and the
# extension module of each.
DISPATCHED_KERNELS = {
    # factorize's compiled loop steps with the update loops at the level _updates holds.
    "sqeuclidean": "_pairwise", "masked": "_masked", "updates": "_updates", "factorize": "_updates",
    "stochastic": "_stochastic",
}


def select_simd(highest):
    """Run every dispatched kernel at the best level this CPU supports, at most
    ``highest`` (one of SIMD_LEVELS). Every level gives the results the kernel promises
    (bitwise the same for the updates, the masked kernels and the direct distances).
    Returns the level each kernel family now runs at; None without the extension."""
    if highest not in SIMD_LEVELS:
        raise ValueError(f"the SIMD level must be one of {', '.join(SIMD_LEVELS)}; got {highest!r}")
    with _load_lock:
        _load()
        return _select_simd(highest)


def _select_simd(highest):
    global simd_levels, _simd_level_asked
    _simd_level_asked = highest
    if ext is None:
        simd_levels = None
        return None
    asked = _codes.code_of(SIMD_LEVELS, highest)
    chosen = {module: SIMD_LEVELS[getattr(ext, module).select_simd(asked)]
              for module in set(DISPATCHED_KERNELS.values())}
    simd_levels = {kernel: chosen[module] for kernel, module in DISPATCHED_KERNELS.items()}
    _select_update_division(_update_division_asked)
    return dict(simd_levels)


# How the float64 Adagrad loops take their square roots at the avx512 level: all from the
# divider, or two of every three vectors' from the FMA units (src_c/fma_sqrt.h), which
# gives the same bits; "auto" splits them where the divider is the bottleneck (Intel).
UPDATE_DIVISIONS = ("auto", "divider", "divider+fma")


def select_update_division(method):
    """Choose how the Adagrad updates (and factorize's steps) take float64 square roots
    (one of UPDATE_DIVISIONS); the same bits every way. Returns the method
    now used ("divider" wherever the loops run below avx512); None without the extension."""
    if method not in UPDATE_DIVISIONS:
        raise ValueError(
            f"the division must be one of {', '.join(UPDATE_DIVISIONS)}; got {method!r}")
    with _load_lock:
        _load()
        return _select_update_division(method)


def _select_update_division(method):
    global update_division, _update_division_asked
    _update_division_asked = method
    if ext is None:
        update_division = None
        return None
    update_division = ext._updates.select_division(method)
    return update_division


def _simd_from_environment():
    value = os.environ.get("FASTGD_SIMD", "").strip().lower() or SIMD_LEVELS[-1]
    if value not in SIMD_LEVELS:
        raise ValueError(f"FASTGD_SIMD must be one of {', '.join(SIMD_LEVELS)}; got {value!r}")
    return value


_update_division_asked = "auto"
_simd_level_asked = _simd_from_environment()

_override = contextvars.ContextVar("fastgd_backend", default=None)

# The fast paths of small calls (fastgd.updates' fused updates, fastgd.masked's small
# problems) call these compiled modules without asking get_backend(), which costs as much as
# a whole small call: each is its module of ext while the compiled backend is the default
# and no use_backend() block is open in any thread, None otherwise (the callers then ask
# get_backend() as every other kernel does).
_open_overrides = 0  # changed under _load_lock


def _refresh_fast_paths():
    global updates_fast_path, masked_fast_path
    compiled_by_default = ext is not None and _ENVIRONMENT_BACKEND != "numpy"
    open_to_fast_paths = compiled_by_default and _open_overrides == 0
    updates_fast_path = ext._updates if open_to_fast_paths else None
    masked_fast_path = ext._masked if open_to_fast_paths else None



def get_backend() -> Literal["compiled", "numpy"]:
    """The backend that kernels called now will use.

    Returns
    -------
    str
        ``"compiled"`` or ``"numpy"``.

    See Also
    --------
    use_backend : switch the backend for a block of code.

    Examples
    --------
    >>> import fastgd
    >>> fastgd.get_backend() in ("compiled", "numpy")
    True
    """
    chosen = _override.get()
    if chosen is not None:
        return chosen
    if _ENVIRONMENT_BACKEND == "numpy":
        return _ENVIRONMENT_BACKEND
    # Loads the compiled modules on first use (FASTGD_BACKEND=compiled: an ImportError if
    # they cannot be loaded).
    if _load() is None:
        return "numpy"
    return "compiled"


def backend_reason():
    """One line saying why the active backend is active (for show_config)."""
    if _override.get() is not None:
        return "chosen by fastgd.use_backend()"
    if _ENVIRONMENT_BACKEND is not None:
        return f"forced by FASTGD_BACKEND={_ENVIRONMENT_BACKEND}"
    if _load() is None:
        return f"fallback: the compiled extension could not be imported ({extension_error})"
    return "the compiled extension is available"


@contextlib.contextmanager
def use_backend(name: Literal["compiled", "numpy"]) -> Iterator[None]:
    """Run the kernels of a block on the given backend.

    Parameters
    ----------
    name : {"compiled", "numpy"}
        ``"numpy"`` runs the pure-NumPy twins; ``"compiled"`` the extension
        (ImportError if it is not available).

    Examples
    --------
    >>> import numpy as np
    >>> import fastgd
    >>> X = np.array([[0.0, 0.0], [3.0, 4.0]])
    >>> with fastgd.use_backend("numpy"):
    ...     print(fastgd.get_backend(), fastgd.sqeuclidean(X)[0, 1])
    numpy 25.0
    """
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}; got {name!r}")
    if name == "compiled" and _load() is None:
        raise ImportError(f"the compiled backend is not available: {extension_error}")
    global _open_overrides
    # Under the load's lock: modules not loaded yet get their fast paths from the count
    # when they load (with FASTGD_BACKEND=numpy, or SciPy's BLAS, nothing loads at import).
    with _load_lock:
        _open_overrides += 1
        if _loaded:
            _refresh_fast_paths()
    token = _override.set(name)
    try:
        yield
    finally:
        _override.reset(token)
        with _load_lock:
            _open_overrides -= 1
            if _loaded:
                _refresh_fast_paths()
