"""Backend selection: get_backend, use_backend, FASTGD_BACKEND, FASTGD_REQUIRE_EXTENSION."""

import contextlib
import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import fastgd
from fastgd import _backend


def run_python(code, **environment):
    """Run code in a fresh interpreter (so import-time behaviour is seen) and return it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FASTGD_")}
    env.update(environment)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True, text=True, env=env, timeout=120, cwd=os.path.dirname(__file__),
    )


def test_compiled_backend_is_active_when_installed():
    # The tests run against an installed fastgd, whose extension must import.
    if os.environ.get("FASTGD_BACKEND", "").lower() == "numpy":
        assert fastgd.get_backend() == "numpy"
    else:
        assert fastgd.get_backend() == "compiled"


def test_use_backend_switches_and_restores():
    before = fastgd.get_backend()
    with fastgd.use_backend("numpy"):
        assert fastgd.get_backend() == "numpy"
        with fastgd.use_backend("compiled"):
            assert fastgd.get_backend() == "compiled"
        assert fastgd.get_backend() == "numpy"
    assert fastgd.get_backend() == before


def test_use_backend_restores_after_an_exception():
    before = fastgd.get_backend()
    with pytest.raises(RuntimeError), fastgd.use_backend("numpy"):
        raise RuntimeError("boom")
    assert fastgd.get_backend() == before


def test_use_backend_is_local_to_a_thread():
    seen = []
    with fastgd.use_backend("numpy"):
        thread = threading.Thread(target=lambda: seen.append(fastgd.get_backend()))
        thread.start()
        thread.join()
    assert seen == ["compiled" if os.environ.get("FASTGD_BACKEND") != "numpy" else "numpy"]


def test_use_backend_rejects_unknown_names():
    with pytest.raises(ValueError, match=r"backend must be one of .*got 'fortran'"):
        with fastgd.use_backend("fortran"):
            pass


def test_environment_forces_numpy_backend():
    result = run_python(
        "import fastgd; print(fastgd.get_backend())", FASTGD_BACKEND="numpy"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "numpy"
    assert "RuntimeWarning" not in result.stderr


def test_environment_rejects_unknown_backend():
    result = run_python("import fastgd", FASTGD_BACKEND="gpu")
    assert result.returncode != 0
    assert "FASTGD_BACKEND must be one of 'auto', 'compiled', 'numpy'; got 'gpu'" in result.stderr


HIDE_EXTENSION = """
import sys
sys.modules["fastgd._ext._pairwise"] = None  # as if the extension were not built
"""


def test_missing_extension_warns_once_and_falls_back():
    result = run_python(
        HIDE_EXTENSION
        + """
import warnings
import numpy as np
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import fastgd
    import fastgd.distances
print(fastgd.get_backend(), len([w for w in caught if "compiled extension" in str(w.message)]))
print(fastgd.sqeuclidean(np.array([[0.0, 0.0], [3.0, 4.0]]))[0, 1])
"""
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["numpy", "1", "25.0"]


def test_require_extension_turns_fallback_into_import_error():
    result = run_python(HIDE_EXTENSION + "import fastgd", FASTGD_REQUIRE_EXTENSION="1")
    assert result.returncode != 0
    assert "ImportError" in result.stderr
    assert "FASTGD_REQUIRE_EXTENSION=1" in result.stderr


def test_use_backend_compiled_without_extension_raises():
    result = run_python(
        HIDE_EXTENSION
        + """
import fastgd
try:
    with fastgd.use_backend("compiled"):
        pass
except ImportError as error:
    print("ImportError", error)
""",
        FASTGD_BACKEND="numpy",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ImportError the compiled backend is not available")


def test_both_backends_give_the_same_answer_on_a_small_case():
    X = np.array([[1.0, 2.0], [4.0, 6.0]])
    with fastgd.use_backend("numpy"):
        twin = fastgd.sqeuclidean(X)
    with fastgd.use_backend("compiled"):
        compiled = fastgd.sqeuclidean(X)
    np.testing.assert_array_equal(twin, compiled)
    np.testing.assert_array_equal(compiled, [[0.0, 25.0], [25.0, 0.0]])


def test_updates_take_the_twin_inside_use_backend(monkeypatch):
    """The updates' fast path skips get_backend(); a use_backend("numpy") block, in this
    thread or another, must still send them to the NumPy twin."""
    from fastgd import _backend

    calls = record_twin_calls(monkeypatch, "_updates", "adagrad_update")
    p, g, G = np.array([1.0, -2.0]), np.array([0.5, -1.0]), np.zeros(2)
    compiled_by_default = fastgd.get_backend() == "compiled"
    fastgd.adagrad_update(p, g, G, lr=0.1)
    assert len(calls) == (0 if compiled_by_default else 1)
    with fastgd.use_backend("numpy"):
        fastgd.adagrad_update(p, g, G, lr=0.1)
        assert _backend.updates_fast_path is None
        count = len(calls)
        fastgd.Adagrad([np.ones(3)], lr=0.1).step([np.ones(3)])  # the optimizer object too
        assert len(calls) == count + 1
    assert calls[-1] == threading.current_thread().name
    # The twin stepped like the kernel: two steps of lr * g / sqrt(G).
    np.testing.assert_allclose(p, [0.9 - 0.1 * 0.5 / np.sqrt(0.5), -1.9 + 0.1 / np.sqrt(2.0)])
    if compiled_by_default:
        assert _backend.updates_fast_path is _backend.ext._updates
        # Another thread's block turns the fast path off here too, and its end back on;
        # this thread's updates still take the compiled kernel meanwhile.
        with numpy_block_in_another_thread():
            assert _backend.updates_fast_path is None
            count = len(calls)
            fastgd.adagrad_update(p, g, G, lr=0.1)
            assert len(calls) == count
        assert _backend.updates_fast_path is _backend.ext._updates


def test_small_masked_calls_take_the_twin_inside_use_backend(monkeypatch):
    """Small masked_loss_grad calls skip get_backend() as the updates do; a
    use_backend("numpy") block, in this thread or another, must still send them to the
    NumPy twin (the general path's plan kernel)."""
    from fastgd import _backend

    calls = record_twin_calls(monkeypatch, "_masked", "plan_loss_grad")
    plan = fastgd.observed(np.array([[1.0, np.nan], [3.0, 4.0]]))
    W, H = np.array([[1.0], [2.0]]), np.array([[1.0, 0.5]])
    compiled_by_default = fastgd.get_backend() == "compiled"
    expected = fastgd.masked_loss_grad(plan, W, H, loss="sse")
    assert len(calls) == (0 if compiled_by_default else 1)
    with fastgd.use_backend("numpy"):
        assert _backend.masked_fast_path is None
        count = len(calls)
        twin_result = fastgd.masked_loss_grad(plan, W, H, loss="sse")
        assert len(calls) == count + 1
    # (1 - 1)^2 + (3 - 2)^2 + (4 - 1)^2, both ways.
    assert expected[0] == twin_result[0] == 10.0
    np.testing.assert_array_equal(expected[1], twin_result[1])
    if compiled_by_default:
        assert _backend.masked_fast_path is _backend.ext._masked
        with numpy_block_in_another_thread():
            assert _backend.masked_fast_path is None
            count = len(calls)
            fastgd.masked_loss_grad(plan, W, H)
            assert len(calls) == count
        assert _backend.masked_fast_path is _backend.ext._masked


def record_twin_calls(monkeypatch, module, name):
    """The list to which each call of the NumPy twin ``fastgd._numpy.<module>.<name>``
    adds the name of the thread that made it (the twin still computes)."""
    import importlib

    twins = importlib.import_module(f"fastgd._numpy.{module}")
    calls = []
    twin = getattr(twins, name)

    def recorded(*args):
        calls.append(threading.current_thread().name)
        return twin(*args)

    monkeypatch.setattr(twins, name, recorded)
    return calls


@contextlib.contextmanager
def numpy_block_in_another_thread():
    """Hold a use_backend("numpy") block open in another thread for the with block."""
    entered, release = threading.Event(), threading.Event()

    def hold_numpy_block():
        with fastgd.use_backend("numpy"):
            entered.set()
            release.wait(30)

    holder = threading.Thread(target=hold_numpy_block)
    holder.start()
    try:
        assert entered.wait(30)
        yield
    finally:
        release.set()
        holder.join(30)


def test_import_loads_the_compiled_modules_without_scipy():
    """import fastgd loads the compiled modules where their GEMM is NumPy's own OpenBLAS (a
    few milliseconds, so no kernel's first call pays them), and never SciPy."""
    result = run_python("""
import sys
import fastgd
from fastgd import _blas
print(sorted(name for name in sys.modules if name.startswith("fastgd._ext._")))
print([name for name in sys.modules if name.startswith(("scipy", "sklearn", "dask",
                                                        "matplotlib"))])
print(_blas.gemm_description())
""")
    assert result.returncode == 0, result.stderr
    loaded, heavy, gemm = result.stdout.splitlines()
    assert loaded == str(sorted(f"fastgd._ext.{name}" for name in _backend.EXTENSION_MODULES))
    assert heavy == "[]"
    assert gemm.startswith("NumPy's OpenBLAS")


def test_with_scipy_blas_import_loads_nothing_and_the_first_call_everything():
    """With FASTGD_BLAS=scipy the compiled modules would bring scipy.linalg: import fastgd
    stays cheap and loads neither; the first kernel call loads every family."""
    result = run_python("""
import sys
import fastgd
heavy = [name for name in sys.modules
         if name.startswith(("fastgd._ext.", "scipy", "sklearn", "dask", "matplotlib"))]
print(heavy)
import numpy as np
fastgd.sqeuclidean(np.ones((2, 2)))
print(sorted(name for name in sys.modules if name.startswith("fastgd._ext._")))
from fastgd import _backend, _blas
print(fastgd.get_backend(), _backend.simd_levels is not None, _backend.ext is not None,
      _blas.gemm_description().startswith("SciPy's"))
""", FASTGD_BLAS="scipy")
    assert result.returncode == 0, result.stderr
    heavy, loaded, state = result.stdout.splitlines()
    assert heavy == "[]"
    assert loaded == str(sorted(f"fastgd._ext.{name}" for name in _backend.EXTENSION_MODULES))
    assert state == "compiled True True True"


@pytest.mark.parametrize("environment", [{"FASTGD_BACKEND": "numpy"},
                                         {"FASTGD_BLAS": "scipy"}])
def test_use_backend_before_the_modules_load(environment):
    """Where import fastgd loads nothing, a use_backend block can come first: the fast
    paths of small calls stay off while a block is open, including blocks opened before
    the modules loaded, and after the blocks are on only where the compiled backend is
    the default."""
    result = run_python("""
import numpy as np
import fastgd
from fastgd import _backend
with fastgd.use_backend("numpy"):
    print(fastgd.get_backend(), _backend.loaded_extension() is None)
    p, g, s = np.ones(3), np.ones(3), np.zeros(3)
    fastgd.adagrad_update(p, g, s, lr=0.5)
    print(_backend.updates_fast_path is None, p.tolist())
with fastgd.use_backend("compiled"):
    print(fastgd.get_backend(), _backend.updates_fast_path is None)
print(_backend.updates_fast_path is None)
""", **environment)
    assert result.returncode == 0, result.stderr
    inside_numpy, fast_path_off, compiled, after = result.stdout.splitlines()
    assert inside_numpy == "numpy True"
    assert fast_path_off.startswith("True [0.5")  # the step taken, on no fast path
    assert compiled == "compiled True"
    # After the blocks: fast paths only where the compiled backend is the default.
    assert after == str(environment.get("FASTGD_BACKEND") == "numpy")


def test_first_use_from_many_threads_loads_once():
    """Threads that make their first calls together all get the compiled backend."""
    result = run_python("""
import threading
import numpy as np
import fastgd
from fastgd import _backend
loads = []
original = _backend._import_extension
def counted():
    loads.append(1)
    return original()
_backend._import_extension = counted
answers = []
def work():
    answers.append(float(fastgd.sqeuclidean(np.array([[0.0, 0.0], [3.0, 4.0]]))[0, 1]))
threads = [threading.Thread(target=work) for _ in range(8)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(len(loads), answers == [25.0] * 8, fastgd.get_backend())
""", FASTGD_BLAS="scipy")  # the lazy load (with NumPy's OpenBLAS, import fastgd loads)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1", "True", "compiled"]


def test_the_extension_is_built_with_the_codes_of_fastgd_codes():
    """fastgd/_codes.py is the one place of the codes: the extension reports those it was
    built with (from the header setup.py writes), and the loader refuses other ones."""
    from fastgd import _codes

    assert _backend.ext._build_info.codes() == {
        kind: list(range(len(names))) for kind, names in _codes.C_ENUMS.items()}
    header = _codes.c_header()
    assert "FASTGD_LOSS_RMSE = 2" in header and "FASTGD_LEVEL_AVX512 = 3" in header
    result = run_python("""
import fastgd._ext._build_info as build
from fastgd import _backend
build.codes = lambda: {"LOSS": [0, 1]}
try:
    _backend._import_extension()
except ImportError as error:
    print(error)
""")
    assert result.returncode == 0, result.stderr
    assert "built with other codes than fastgd/_codes.py" in result.stdout


@pytest.mark.parametrize("environment, loaded", [("compiled", True), ("auto", True),
                                                 ("numpy", False)])
def test_get_backend_loads_what_it_reports(environment, loaded):
    """get_backend() is the way to load the compiled modules before any kernel runs (e.g.
    before installing a signal handler): it loads them unless FASTGD_BACKEND=numpy."""
    result = run_python("""
import sys, fastgd
print(fastgd.get_backend(), "fastgd._ext._updates" in sys.modules)
""", FASTGD_BACKEND=environment)
    assert result.returncode == 0, result.stderr
    backend = "numpy" if environment == "numpy" else "compiled"
    assert result.stdout.split() == [backend, str(loaded)]


def test_no_kernels_first_call_imports_a_module():
    """The first calls pay no import (numpy.ma, for one, took 16 ms): what the kernels need
    is loaded by import fastgd, or by the user's own imports."""
    result = run_python("""
import sys
import numpy as np
import fastgd
rng = np.random.default_rng(0)
X, Y = rng.standard_normal((40, 70)), rng.standard_normal((30, 70))
A = rng.standard_normal((20, 30))
A[rng.random(A.shape) < 0.3] = np.nan
W, H = rng.standard_normal((20, 3)), rng.standard_normal((3, 30))
p, g, state = rng.standard_normal(50), rng.standard_normal(50), np.zeros(50)
before = set(sys.modules)
fastgd.sqeuclidean(X, Y)
fastgd.sqeuclidean(X[:, :5], Y[:, :5])
for metric in ("sqeuclidean", "euclidean", "cosine", "nan_euclidean"):
    fastgd.cdist(X, Y, metric)
fastgd.argkmin(X, Y, k=3)
fastgd.nearest(X, Y)
fastgd.masked_loss_grad(A, W, H)
fastgd.masked_loss_grad(A, W, H, method="dense")
fastgd.masked_residual(A, W, H)
fastgd.adagrad_update(p, g, state, lr=0.1)
fastgd.sgd_update(p, g, lr=0.1)
print(sorted(set(sys.modules) - before))
""")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_a_half_imported_numpy_ma_is_no_masked_array(monkeypatch):
    """While another thread imports numpy.ma (SciPy's import does), sys.modules holds it
    without its MaskedArray yet: the input checks then see plain arrays as plain arrays
    (they raised AttributeError on a first call made during that import)."""
    import types

    from fastgd import _validation

    monkeypatch.setitem(sys.modules, "numpy.ma", types.ModuleType("numpy.ma"))
    assert not _validation.is_masked_array(np.ones(2))
    assert fastgd.sqeuclidean(np.array([[0.0, 0.0], [3.0, 4.0]]))[0, 1] == 25.0
    monkeypatch.undo()
    assert _validation.is_masked_array(np.ma.masked_array([1.0, 2.0]))
