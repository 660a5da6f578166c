"""The BLAS whose sgemm/dgemm the kernels call (fastgd/_blas.py, src_c/blas_gemm.h): NumPy's
bundled OpenBLAS where NumPy carries one, else SciPy's cython_blas; both give the kernels'
results, and the one in use is held to one thread inside fastgd's parallel regions."""

import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
from conftest import require_peer

import fastgd
from fastgd import _blas

pytestmark = pytest.mark.skipif(fastgd.get_backend() != "compiled",
                                reason="the compiled kernels' BLAS")


def run_python(code, **environment):
    env = {k: v for k, v in os.environ.items() if not k.startswith("FASTGD_")}
    env.update(environment)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, env=env, timeout=300, cwd=os.path.dirname(__file__))


# Kernels whose every path here goes through the GEMM: expansion distances (both dtypes),
# cosine through cdist, argkmin's expansion, and the masked dense path's tiles.
GEMM_CALLS = """
import numpy as np
import fastgd
rng = np.random.default_rng(7)
X = rng.standard_normal((300, 70)) * 3.0 + 10.0
Y = rng.standard_normal((200, 70))
A = rng.standard_normal((260, 180))
A[rng.random(A.shape) < 0.3] = np.nan
W, H = rng.standard_normal((260, 9)), rng.standard_normal((9, 180))
loss, dW, dH = fastgd.masked_loss_grad(A, W, H, method="dense")
distances, indices = fastgd.argkmin(X, Y, k=4)
results = dict(
    d64=fastgd.sqeuclidean(X, Y, method="expansion"),
    d32=fastgd.sqeuclidean(X.astype(np.float32), Y.astype(np.float32), method="expansion"),
    cosine=fastgd.cdist(X, Y, "cosine"), loss=np.array(loss), dW=dW, dH=dH,
    distances=distances, indices=indices)
"""


def gemm_results(blas, tmp_path):
    out = tmp_path / f"{blas}.npz"
    result = run_python(GEMM_CALLS + f"""
from fastgd import _blas
assert _blas.gemm_functions().integer_bytes == {8 if blas == 'numpy' else 4}
np.savez({str(out)!r}, **results)
""", FASTGD_BLAS=blas)
    assert result.returncode == 0, result.stderr
    return dict(np.load(out))


def test_the_default_is_numpys_openblas_found_without_loading_a_library():
    gemm = _blas.gemm_functions()
    assert gemm.description.startswith("NumPy's OpenBLAS")
    assert gemm.integer_bytes == 8 and gemm.sgemm and gemm.dgemm
    numpy_dir = os.path.dirname(os.path.realpath(np.__file__))
    assert os.path.realpath(gemm.path).startswith(os.path.dirname(numpy_dir))
    with open("/proc/self/maps") as maps:  # the file NumPy loaded, not a second copy
        assert gemm.path in maps.read()
    assert _blas.cheap_to_load()
    assert "GEMM:     NumPy's OpenBLAS" in _show_config_text()


def _show_config_text():
    import io

    buffer = io.StringIO()
    fastgd.show_config(file=buffer)
    return buffer.getvalue()


def test_numpys_and_scipys_blas_give_the_kernels_the_same_results(tmp_path):
    """The kernels' results through NumPy's OpenBLAS (64-bit integers) and SciPy's
    cython_blas (32-bit integers) agree to the rounding of two BLAS builds."""
    with_numpy, with_scipy = gemm_results("numpy", tmp_path), gemm_results("scipy", tmp_path)
    assert with_numpy.keys() == with_scipy.keys()
    for name in with_numpy:
        if name == "indices":
            np.testing.assert_array_equal(with_numpy[name], with_scipy[name])
        else:
            rtol = 1e-5 if with_numpy[name].dtype == np.float32 else 1e-12
            np.testing.assert_allclose(with_numpy[name], with_scipy[name], rtol=rtol,
                                       atol=rtol * np.abs(with_numpy[name]).max(),
                                       err_msg=name)
    # and right: the NumPy twins give the same in this process
    namespace = {}
    with fastgd.use_backend("numpy"):
        exec(GEMM_CALLS, namespace)
    twins = namespace["results"]
    np.testing.assert_array_equal(with_numpy["indices"], twins["indices"])
    for name in ("d64", "cosine", "loss", "dW", "dH", "distances"):
        np.testing.assert_allclose(with_numpy[name], twins[name], rtol=1e-9,
                                   atol=1e-9 * np.abs(twins[name]).max(), err_msg=name)


def test_fastgd_blas_is_checked_at_import():
    result = run_python("import fastgd", FASTGD_BLAS="mkl")
    assert result.returncode != 0
    assert "ValueError: FASTGD_BLAS must be one of 'auto', 'numpy', 'scipy'; got 'mkl'" in (
        result.stderr)


def test_scipys_blas_is_held_to_one_thread_through_threadpoolctl():
    require_peer("threadpoolctl")
    result = run_python("""
import numpy as np
import threadpoolctl
import fastgd
from fastgd import _threads
fastgd.sqeuclidean(np.ones((3, 3)))  # loads the compiled modules, and SciPy's BLAS
def counts():
    return {lib["filepath"]: lib["num_threads"] for lib in threadpoolctl.threadpool_info()
            if lib["user_api"] == "blas"}
with threadpoolctl.threadpool_limits(2, user_api="blas"):
    with _threads.single_threaded_blas():
        inside = counts()
    after = counts()
scipys = [path for path in inside if "scipy" in path and "openblas64" not in path]
print(bool(scipys), all(inside[path] == 1 for path in inside), set(after.values()))
""", FASTGD_BLAS="scipy")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "True", "{2}"]


def test_holders_from_several_threads_restore_the_count_when_the_last_leaves():
    threadpoolctl = require_peer("threadpoolctl")
    held = _blas.held_to_one_thread()
    path = _blas.gemm_functions().path

    def kernels_blas_threads():
        return next(lib["num_threads"] for lib in threadpoolctl.threadpool_info()
                    if lib["filepath"] and os.path.samefile(lib["filepath"], path))

    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
    seen = {}

    def second():
        first_in.wait(30)
        with held:
            second_in.set()
            first_out.wait(30)
            seen["after the first left"] = kernels_blas_threads()

    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        worker = threading.Thread(target=second)
        worker.start()
        with held:
            first_in.set()
            second_in.wait(30)
            seen["both inside"] = kernels_blas_threads()
        first_out.set()
        worker.join(30)
        seen["both left"] = kernels_blas_threads()
    assert seen == {"both inside": 1, "after the first left": 1, "both left": 2}
