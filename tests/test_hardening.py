"""Regression tests of the crashes, silent wrong results and resource faults found by
trying fastgd as a hostile user would (issue 28). A call that once crashed the process
runs in a child process, so that a regression fails one test instead of killing the run.
"""

import gc
import math
import os
import subprocess
import sys
import textwrap
import tracemalloc

import numpy as np
import pytest
import scipy.sparse
from conftest import require_peer
from numpy.testing import assert_array_equal

import fastgd
from fastgd import _backend, _threads

# A child process imports the same fastgd as this one, and never the source tree.
CHILD_ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(
    p for p in sys.path if p and os.path.isdir(os.path.join(p, "fastgd")))}


def run_child(code, timeout=120, env=None):
    """Run ``code`` in a fresh interpreter from a neutral directory: (returncode, output)."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
        timeout=timeout, cwd=os.path.dirname(os.path.abspath(os.sep)),
        env={**CHILD_ENV, **(env or {})})
    return result.returncode, result.stdout + result.stderr


@pytest.fixture(params=["default", "compiled", "numpy"])
def every_path(request):
    """The default call (the updates' compiled fast path where the compiled backend is the
    default: no use_backend block is open), then each backend's general path (an open
    use_backend block closes the fast paths)."""
    if request.param == "default":
        yield request.param
        return
    with fastgd.use_backend(request.param):
        assert _backend.updates_fast_path is None
        yield request.param


# ---------------------------------------------------------------------------------------
# 1. Adagrad with accums=None: a TypeError on every path (the fast path ran the Adagrad
# loop on a NULL accumulator).

@pytest.mark.parametrize("as_list", [False, True])
def test_adagrad_without_accumulators_is_a_type_error(every_path, as_list):
    p, g = np.ones(4), np.ones(4)
    args = ([p], [g]) if as_list else (p, g)
    with pytest.raises(TypeError, match="accums must be"):
        fastgd.adagrad_update(*args, None, lr=0.1)
    assert_array_equal(p, np.ones(4))


def test_adagrad_without_accumulators_does_not_crash_the_process():
    code, output = run_child("""
        import numpy as np, fastgd
        for args in [(np.ones(4), np.ones(4)), ([np.ones(4)], [np.ones(4)])]:
            try:
                fastgd.adagrad_update(*args, None, lr=0.1)
            except TypeError:
                pass
        print("survived")
    """)
    assert code == 0 and "survived" in output, output


# ---------------------------------------------------------------------------------------
# 2. ObservedEntries validates in its constructor and is immutable.

def plan_parts():
    """A valid (indptr, indices, values, shape) of a 3 x 4 matrix."""
    return (np.array([0, 2, 2, 3]), np.array([0, 3, 1]), np.array([1.0, 2.0, 3.0]), (3, 4))


BAD_PLANS = [
    ({"indices": np.array([0, 50_000_000, 1])}, ValueError, "indices must lie in"),
    ({"indices": np.array([0, -1, 1])}, ValueError, "indices must lie in"),
    ({"indptr": np.array([0, 2, 3])}, ValueError, "indptr must have shape"),
    ({"indptr": np.array([0, 3, 2, 3])}, ValueError, "never fall"),
    ({"indptr": np.array([1, 2, 2, 3])}, ValueError, "rise from 0"),
    ({"indptr": np.array([0, 2, 2, 2])}, ValueError, "rise from 0 to nnz"),
    ({"indptr": np.array([0, 2, 2, 50_000_000])}, ValueError, "rise from 0 to nnz"),
    ({"indices": np.array([0, 3])}, ValueError, "indices must have the length of values"),
    ({"indices": np.array([0.0, 3.0, 1.0])}, TypeError, "indices must hold integers"),
    ({"indptr": np.array([[0, 2, 2, 3]])}, ValueError, "indptr must be a 1-D"),
    ({"values": np.array([1.0, np.nan, 3.0])}, ValueError, "values must be finite"),
    ({"values": np.array([1.0, 2.0, 3.0], dtype=complex)}, TypeError, "values must hold"),
    ({"indices": np.array([3, 3, 1])}, ValueError, "distinct"),
    ({"shape": (3,)}, ValueError, "shape must be a pair"),
    ({"shape": (3, -4)}, ValueError, "shape must be a pair"),
]


@pytest.mark.parametrize(("change", "error", "match"), BAD_PLANS,
                         ids=[m for _, _, m in BAD_PLANS])
def test_observed_entries_refuses_a_malformed_plan(change, error, match):
    parts = dict(zip(("indptr", "indices", "values", "shape"), plan_parts(), strict=True))
    parts.update(change)
    with pytest.raises(error, match=match):
        fastgd.ObservedEntries(**parts)


def test_the_issue_plan_raises_instead_of_crashing():
    code, output = run_child("""
        import numpy as np, fastgd
        try:
            e = fastgd.ObservedEntries(np.array([0, 1], np.int32),
                                       np.array([50_000_000], np.int32), np.array([1.0]),
                                       (1, 2))
        except ValueError as error:
            print("refused:", error)
        else:
            W, H = np.ones((1, 1)), np.ones((1, 2))
            fastgd.masked_loss_grad(e, W, H)
            fastgd.masked_residual(e, W, H)
            fastgd.factorize(e, 1, n_iter=2)
    """)
    assert code == 0 and "refused: indices must lie in [0, 2)" in output, output


def test_observed_entries_is_immutable_and_owns_its_arrays(backend):
    indptr, indices, values, shape = plan_parts()
    plan = fastgd.ObservedEntries(indptr, indices, values, shape)
    # The caller's arrays are neither frozen nor shared: writing them later changes nothing.
    assert values.flags.writeable and indices.flags.writeable
    values[:] = 99.0
    indices[:] = 0
    assert_array_equal(plan.values, [1.0, 2.0, 3.0])
    assert_array_equal(plan.indices, [0, 3, 1])
    for name in ("indptr", "indices", "values", "shape"):
        with pytest.raises(AttributeError):
            setattr(plan, name, getattr(plan, name))
    for array in (plan.indptr, plan.indices, plan.values):
        assert not array.flags.writeable
        with pytest.raises(ValueError):
            array[0] = 1
    W, H = np.ones((3, 1)), np.ones((1, 4))
    assert_array_equal(fastgd.masked_residual(plan, W, H), [0.0, -1.0, -2.0])


def test_hand_built_plan_with_unsorted_columns_is_accepted(backend, rng):
    """Columns out of order within a row are a valid plan (the kernels take any order)."""
    A = np.where(rng.random((6, 9)) < 0.5, rng.standard_normal((6, 9)), np.nan)
    plan = fastgd.observed(A)
    order = np.concatenate([rng.permutation(np.arange(a, b)) for a, b in
                            zip(plan.indptr[:-1], plan.indptr[1:], strict=True)])
    shuffled = fastgd.ObservedEntries(plan.indptr, plan.indices[order], plan.values[order],
                                      plan.shape)
    W, H = rng.standard_normal((6, 2)), rng.standard_normal((2, 9))
    expected = fastgd.masked_loss_grad(plan, W, H, loss="sse")
    got = fastgd.masked_loss_grad(shuffled, W, H, loss="sse")
    assert got[0] == pytest.approx(expected[0], rel=1e-12)


# ---------------------------------------------------------------------------------------
# 3. The updates' fast path holds a reference to every array while the GIL is released.

def test_an_emptied_list_cannot_free_arrays_being_updated():
    code, output = run_child("""
        import threading, numpy as np, fastgd
        n = 1 << 21                # large enough that freeing the arrays unmaps them
        stop = threading.Event()
        lists = []

        def empty_the_lists():
            while not stop.is_set():
                for items in list(lists):
                    items.clear()
                probe = np.zeros(n)  # would reuse freed memory, or fault on it
                assert not probe.any(), "an update wrote into memory that was freed"

        thread = threading.Thread(target=empty_the_lists)
        thread.start()
        try:
            for _ in range(60):
                # Three arrays a list: held by nothing but the lists (a loop variable of the
                # call held the last one).
                params, grads, accums = ([np.ones(n) for _ in range(3)] for _ in range(3))
                lists[:] = [params, grads, accums]
                try:
                    fastgd.adagrad_update(params, grads, accums, lr=0.1, n_threads=1)
                except (ValueError, TypeError):
                    pass         # the lists were emptied before the call looked at them
        finally:
            stop.set()
            thread.join()
        print("survived")
    """, timeout=300)
    assert code == 0 and "survived" in output, output


# ---------------------------------------------------------------------------------------
# 4. Non-finite hyperparameters: the fast path refuses what the general path refuses.

@pytest.mark.parametrize("setting", ["lr_decay", "weight_decay", "lr", "eps"])
def test_adagrad_refuses_infinite_settings_on_every_path(every_path, setting):
    p, g, G = np.ones(3), np.ones(3), np.ones(3)
    with pytest.raises(ValueError, match=f"{setting} must be"):
        fastgd.adagrad_update(p, g, G, **{"lr": 0.1, setting: math.inf})
    assert_array_equal(p, np.ones(3))
    assert_array_equal(G, np.ones(3))


@pytest.mark.parametrize("setting", ["weight_decay", "lr", "momentum"])
def test_sgd_refuses_infinite_settings_on_every_path(every_path, setting):
    p, g, v = np.ones(3), np.ones(3), np.ones(3)
    with pytest.raises(ValueError, match=f"{setting} must be"):
        fastgd.sgd_update(p, g, v, **{"lr": 0.1, "momentum": 0.5, setting: math.inf})
    assert_array_equal(p, np.ones(3))


# ---------------------------------------------------------------------------------------
# 5. observed((rows, cols, values, shape)) where rows * n + cols would wrap around int64.

def test_observed_entries_of_a_huge_shape_keep_their_pairing(backend):
    m, n = 4, 1 << 62                      # m n = 2**64: a row-major key would wrap
    rows = np.array([3, 0, 2, 1, 3, 2])
    cols = np.array([5, n - 1, 0, n - 2, 0, n - 1])
    values = np.arange(1.0, 7.0)
    plan = fastgd.observed((rows, cols, values, (m, n)))
    expected = sorted(zip(rows.tolist(), cols.tolist(), values.tolist(), strict=True))
    got = list(zip(plan.rows.tolist(), plan.cols.tolist(), plan.values.tolist(), strict=True))
    assert got == expected
    with pytest.raises(ValueError, match="distinct"):
        fastgd.observed((np.array([1, 1]), np.array([n - 1, n - 1]), np.ones(2), (m, n)))


# ---------------------------------------------------------------------------------------
# 6. load_state_dict with the optimizer's own buffers in another order.

def test_adagrad_loads_its_own_buffers_swapped():
    params = [np.zeros(3), np.zeros(3)]
    opt = fastgd.Adagrad(params, lr=0.1)
    opt.step([np.full(3, 1.0), np.full(3, 2.0)])
    first, second = opt.accums[0].copy(), opt.accums[1].copy()
    opt.load_state_dict({"step": 1, "accums": [opt.accums[1], opt.accums[0]]})
    assert_array_equal(opt.accums[0], second)
    assert_array_equal(opt.accums[1], first)


def test_sgd_loads_its_own_buffers_swapped():
    params = [np.zeros(2), np.zeros(2)]
    opt = fastgd.SGD(params, lr=0.1, momentum=0.9)
    opt.step([np.full(2, 1.0), np.full(2, 3.0)])
    first, second = opt.velocities[0].copy(), opt.velocities[1].copy()
    opt.load_state_dict({"step": 1, "velocities": opt.velocities[::-1]})
    assert_array_equal(opt.velocities[0], second)
    assert_array_equal(opt.velocities[1], first)


# ---------------------------------------------------------------------------------------
# 7. out= may share no memory with any input, a sparse one's arrays included.

def test_out_may_not_alias_a_sparse_input(backend):
    S = scipy.sparse.csr_matrix(np.array([[1.0, 0.0], [0.0, 4.0]]))
    with pytest.raises(ValueError, match="out must not share memory with A"):
        fastgd.masked_residual(S, np.ones((2, 1)), np.ones((1, 2)), out=S.data)
    assert_array_equal(S.data, [1.0, 4.0])


def test_out_must_be_aligned(backend):
    out = misaligned(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="out must be aligned"):
        fastgd.sqeuclidean(np.ones((2, 3)), np.zeros((2, 3)), out=out)
    with pytest.raises(ValueError, match="out must be aligned"):
        fastgd.masked_residual(np.ones((2, 2)), np.ones((2, 1)), np.ones((1, 2)), out=out)


# ---------------------------------------------------------------------------------------
# 8. sqeuclidean(X): the diagonal of a row holding NaN or inf is NaN, as with Y = X.copy().

@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("method", ["direct", "expansion"])
def test_symmetric_diagonal_of_a_nonfinite_row_is_nan(backend, float_dtype, bad, method):
    X = np.arange(12.0).reshape(4, 3).astype(float_dtype)
    X[2, 1] = bad
    D = fastgd.sqeuclidean(X, method=method)
    D_copy = fastgd.sqeuclidean(X, X.copy(), method=method)
    assert np.isnan(D[2, 2]) and np.isnan(D_copy[2, 2])
    assert_array_equal(np.isnan(D), np.isnan(D_copy))
    assert_array_equal(np.diag(D)[[0, 1, 3]], 0)


def test_dask_symmetric_diagonal_of_a_nonfinite_row_is_nan():
    da = require_peer("dask.array")
    import fastgd.dask

    X = np.arange(40.0).reshape(10, 4)
    X[7, 0] = np.nan
    D = fastgd.dask.sqeuclidean(da.from_array(X, chunks=(3, 4))).compute()
    assert np.isnan(D[7, 7])
    assert_array_equal(np.isnan(D), np.isnan(fastgd.sqeuclidean(X, X.copy())))


# ---------------------------------------------------------------------------------------
# 11. The updates' fast path resolves n_threads=None at every call, as _threads does.

def test_fast_path_threads_follow_threadpoolctl_limits():
    threadpoolctl = require_peer("threadpoolctl")
    if _backend.ext is None:
        pytest.skip("the fast path is compiled")
    resolve = _backend.ext._updates.fast_path_threads
    assert resolve(None) == _threads.resolve_n_threads(None)
    with threadpoolctl.threadpool_limits(1, user_api="openmp"):
        assert resolve(None) == 1 == _threads.resolve_n_threads(None)
    assert resolve(None) == _threads.resolve_n_threads(None)
    assert resolve(-1) == _threads.resolve_n_threads(-1)
    assert resolve(3) == 3


# ---------------------------------------------------------------------------------------
# 12. factorize keeps its loss history in 8 bytes an iteration.

def test_loss_history_costs_eight_bytes_an_iteration(backend):
    A = np.array([[3.0, np.nan, 1.0], [1.0, 2.0, np.nan], [np.nan, 1.0, 4.0],
                  [2.0, np.nan, 3.0]])
    n_iter = 100_000 if backend == "compiled" else 20_000  # the twin steps in Python
    gc.collect()
    tracemalloc.start()
    try:
        result = fastgd.factorize(A, 2, n_iter=n_iter, random_state=0, lr=1e-3)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.loss_history.dtype == np.float64
    assert result.loss_history.shape == (n_iter + 1,)
    # The history (8 bytes), its growing buffer (at most 16) and transient chunk arrays:
    # a list of NumPy scalars took about 48 bytes an iteration.
    assert peak < 28 * n_iter, peak


# ---------------------------------------------------------------------------------------
# 14. Misaligned but C-contiguous inputs are copied before they reach the compiled loops.

def misaligned(array):
    """A C-contiguous, misaligned copy of ``array`` (its data one byte past alignment)."""
    buffer = np.zeros(array.nbytes + 1, dtype=np.uint8)
    view = buffer[1:].view(array.dtype).reshape(array.shape)
    view[...] = array
    assert not view.flags.aligned and view.flags.c_contiguous
    return view


def test_misaligned_inputs_give_the_aligned_results(backend, float_dtype, rng):
    X = rng.standard_normal((9, 5)).astype(float_dtype)
    Y = rng.standard_normal((7, 5)).astype(float_dtype)
    assert_array_equal(fastgd.sqeuclidean(misaligned(X), misaligned(Y)),
                       fastgd.sqeuclidean(X, Y))
    A = np.where(rng.random((9, 7)) < 0.6, rng.standard_normal((9, 7)), np.nan)
    A = A.astype(float_dtype)
    W = rng.standard_normal((9, 3)).astype(float_dtype)
    H = rng.standard_normal((3, 7)).astype(float_dtype)
    for method in ("dense", "sparse"):
        expected = fastgd.masked_loss_grad(A, W, H, method=method)
        got = fastgd.masked_loss_grad(misaligned(A), misaligned(W), misaligned(H),
                                      method=method)
        assert got[0] == expected[0]
        assert_array_equal(got[1], expected[1])
        assert_array_equal(got[2], expected[2])
    assert_array_equal(fastgd.masked_residual(misaligned(A), misaligned(W), misaligned(H)),
                       fastgd.masked_residual(A, W, H))
    p, G = np.ones(5, float_dtype), np.ones(5, float_dtype)
    g = rng.standard_normal(5).astype(float_dtype)
    p2, G2 = p.copy(), G.copy()
    fastgd.adagrad_update(p, misaligned(g), G, lr=0.1)
    fastgd.adagrad_update(p2, g, G2, lr=0.1)
    assert_array_equal(p, p2)
    with pytest.raises(ValueError, match="aligned"):
        fastgd.adagrad_update(misaligned(p), g, G, lr=0.1)


# ---------------------------------------------------------------------------------------
# 15. numpy.ma.MaskedArray: masked entries of A are missing; masked factors are refused.

def test_masked_array_entries_are_missing(backend, rng):
    data = rng.standard_normal((6, 5))
    hidden = rng.random((6, 5)) < 0.3
    hidden[0, 0] = True
    A_ma = np.ma.MaskedArray(data, mask=hidden)
    A_nan = np.where(hidden, np.nan, data)
    W, H = rng.standard_normal((6, 2)), rng.standard_normal((2, 5))
    expected = fastgd.masked_loss_grad(A_nan, W, H)
    got = fastgd.masked_loss_grad(A_ma, W, H)
    assert got[0] == pytest.approx(expected[0], rel=1e-13)
    assert fastgd.observed(A_ma).nnz == int((~hidden).sum())
    assert_array_equal(fastgd.masked_residual(A_ma, W, H), fastgd.masked_residual(A_nan, W, H))
    result_ma = fastgd.factorize(A_ma, 2, n_iter=5, random_state=0)
    result_nan = fastgd.factorize(A_nan, 2, n_iter=5, random_state=0)
    assert_array_equal(result_ma.loss_history, result_nan.loss_history)
    # With a mask as well, an entry is observed where mask says so and A is not masked.
    mask = rng.random((6, 5)) < 0.8
    got = fastgd.masked_loss_grad(A_ma, W, H, mask=mask)
    expected = fastgd.masked_loss_grad(data, W, H, mask=mask & ~hidden)
    assert got[0] == pytest.approx(expected[0], rel=1e-13)
    with pytest.raises(TypeError, match="W must not be a MaskedArray"):
        fastgd.masked_loss_grad(A_nan, np.ma.MaskedArray(W), H)
    with pytest.raises(TypeError, match="X must not be a MaskedArray"):
        fastgd.sqeuclidean(np.ma.MaskedArray(W))


# ---------------------------------------------------------------------------------------
# 16. Small ones: n_threads checked by the optimizers' constructors, an empty FASTGD_SIMD,
# check_grad on an empty x.

@pytest.mark.parametrize("optimizer", [fastgd.Adagrad, fastgd.SGD])
@pytest.mark.parametrize(("n_threads", "error"), [(0, ValueError), ("a", TypeError),
                                                  (1.5, TypeError), (True, TypeError),
                                                  (1 << 20, ValueError)])
def test_optimizers_check_n_threads_when_made(optimizer, n_threads, error):
    with pytest.raises(error, match="n_threads"):
        optimizer([np.ones(2)], lr=0.1, n_threads=n_threads)


@pytest.mark.parametrize("variable", ["FASTGD_SIMD", "FASTGD_BACKEND"])
def test_an_empty_environment_switch_is_unset(variable):
    code, output = run_child("""
        import fastgd
        print(fastgd.get_backend(), sorted(set(fastgd._backend.simd_levels or {})))
    """, env={variable: ""})
    assert code == 0, output


def test_check_grad_on_an_empty_x():
    report = fastgd.check_grad(lambda x: float((x ** 2).sum()), lambda x: 2 * x, np.zeros(0))
    assert report.passed and report.n_failed == 0
    assert "no elements" in report.worst


# ---------------------------------------------------------------------------------------
# 9. fork(): a child made after fastgd ran threads runs single-threaded instead of hanging.

FORK_CHILD = """
    import multiprocessing as mp, concurrent.futures as cf, warnings, numpy as np, fastgd

    def work(seed):
        rng = np.random.default_rng(seed)
        D = fastgd.sqeuclidean(rng.standard_normal((1500, 64)))
        A = np.where(rng.random((800, 800)) < 0.3, rng.standard_normal((800, 800)), np.nan)
        W, H = rng.standard_normal((800, 16)), rng.standard_normal((16, 800))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            sparse = fastgd.masked_loss_grad(A, W, H, n_threads=2)[0]
            dense = fastgd.masked_loss_grad(A, W, H, method="dense", n_threads=-1)[0]
            p = np.ones(1 << 20)
            fastgd.adagrad_update(p, p.copy(), np.zeros_like(p), lr=0.1, n_threads=2)
            fastgd.factorize(A, 8, n_iter=3, random_state=0, n_threads=2)
        return float(D.sum()), sparse, dense, float(p.sum()), len(caught)

    if __name__ == "__main__":
        parent = work(1)                     # the parent opens parallel regions first
        fork = mp.get_context("fork")
        with fork.Pool(2) as pool:
            children = pool.map(work, [1, 1])
        with cf.ProcessPoolExecutor(2, mp_context=fork) as executor:
            children += list(executor.map(work, [1, 1]))
        for child in children:
            assert np.allclose(child[:4], parent[:4], rtol=1e-12), (child, parent)
            assert child[4] <= 1, child  # one warning a process at most
        assert parent[4] == 0
        print("no hang", len(children))
"""


def test_forked_children_do_not_hang(tmp_path):
    if _backend.ext is None or not _backend.ext._build_info.openmp_enabled():
        pytest.skip("only an OpenMP build starts threads")
    script = tmp_path / "fork_child.py"
    script.write_text(textwrap.dedent(FORK_CHILD))
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                            timeout=240, cwd=tmp_path, env=CHILD_ENV)
    assert result.returncode == 0 and "no hang 4" in result.stdout, result.stderr


def test_forked_child_warns_once_and_runs_one_thread():
    if not hasattr(os, "fork"):
        pytest.skip("no fork() on this platform")
    code, output = run_child("""
        import os, warnings, numpy as np, fastgd
        from fastgd import _threads
        fastgd.sqeuclidean(np.ones((600, 32)), n_threads=2)
        pid = os.fork()
        if pid == 0:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                counts = {_threads.resolve_n_threads(n) for n in (None, 2, -1, 7)}
                fastgd.sqeuclidean(np.ones((600, 32)), n_threads=2)
            ok = counts == {1} and len(caught) == 1 and "fork" in str(caught[0].message)
            os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert _threads.resolve_n_threads(2) == 2   # the parent keeps its threads
        print("ok")
    """, timeout=120)
    assert code == 0 and "ok" in output, output


# ---------------------------------------------------------------------------------------
# Ctrl-C: long compiled loops run Python's signal handlers every 50 ms of their work, and
# an optimizer's step and its count are one compiled call.

# What is promised of the compiled backend (the NumPy twins run NumPy's own loops, and an
# optimizer's step and count are two Python statements there), also in CI's run of the
# suite on the NumPy backend.
COMPILED = {"FASTGD_BACKEND": "compiled"}

INTERRUPTED_CALLS = {
    "sqeuclidean": """
        X = rng.standard_normal((8000, 2000)); Y = rng.standard_normal((8000, 2000))
        call = lambda: fastgd.sqeuclidean(X, Y, method="expansion", n_threads=2)""",
    "sqeuclidean direct symmetric": """
        X = rng.standard_normal((8000, 1000))
        call = lambda: fastgd.sqeuclidean(X, method="direct", n_threads=1)""",
    "dense masked_loss_grad": """
        A = rng.standard_normal((8000, 8000))
        W = rng.standard_normal((8000, 2048)); H = rng.standard_normal((2048, 8000))
        call = lambda: fastgd.masked_loss_grad(A, W, H, method="dense", n_threads=2)""",
    "dense masked_residual": """
        A = rng.standard_normal((8000, 8000))
        W = rng.standard_normal((8000, 6000)); H = rng.standard_normal((6000, 8000))
        call = lambda: fastgd.masked_residual(A, W, H, n_threads=2)""",
    "plan masked_loss_grad": """
        m, per_row = 20000, 1500
        cols = np.add.outer(np.arange(m) % 500, np.arange(per_row) * 13).ravel()
        plan = fastgd.ObservedEntries(np.arange(m + 1) * per_row, cols,
                                      np.ones(m * per_row), (m, m))
        W = rng.standard_normal((m, 256)); H = rng.standard_normal((256, m))
        call = lambda: fastgd.masked_loss_grad(plan, W, H, n_threads=1)""",
    "factorize's compiled loop": """
        A = np.where(rng.random((200, 200)) < 0.5, rng.random((200, 200)), np.nan)
        plan = fastgd.observed(A)  # nnz k just under the compiled loop's bound
        call = lambda: fastgd.factorize(plan, 13, n_iter=65536, lr=1e-5)""",
}


@pytest.mark.skipif(_backend.ext is None, reason="a promise of the compiled backend")
@pytest.mark.parametrize("case", list(INTERRUPTED_CALLS))
def test_ctrl_c_interrupts_a_long_call_promptly(case):
    """SIGINT one second into a single compiled call that would run for many seconds:
    KeyboardInterrupt within about 0.1 s (the bound here is loose for busy machines)."""
    code, output = run_child(textwrap.dedent("""
        import os, signal, threading, time, numpy as np, fastgd
        rng = np.random.default_rng(0)
        """) + textwrap.dedent(INTERRUPTED_CALLS[case]) + textwrap.dedent("""
        sent = []
        def interrupt():
            time.sleep(1.0)
            sent.append(time.perf_counter())
            os.kill(os.getpid(), signal.SIGINT)
        threading.Thread(target=interrupt, daemon=True).start()
        try:
            call()
            print("finished before the signal")
        except KeyboardInterrupt:
            print(f"interrupted after {time.perf_counter() - sent[0]:.3f} s")
    """), timeout=600, env=COMPILED)
    assert code == 0 and "interrupted after" in output, output
    delay = float(output.split("interrupted after ")[1].split()[0])
    assert delay < 3.0, output


@pytest.mark.skipif(_backend.ext is None, reason="a promise of the compiled backend")
def test_ctrl_c_leaves_optimizer_steps_counted():
    """Interrupted at random moments, an optimizer has always counted exactly the steps it
    applied: with lr 1 and a gradient of ones, SGD's x is minus the steps and Adagrad's sum
    of squares is the steps."""
    code, output = run_child("""
        import random, signal, numpy as np, fastgd

        def interrupt(signum, frame):
            raise KeyboardInterrupt

        fastgd.get_backend()  # loads the compiled modules before the first signal
        signal.signal(signal.SIGALRM, interrupt)
        random.seed(0)
        mismatches = trials = 0
        g = np.ones(1000)
        for trial in range(200):
            for kind in ("sgd", "adagrad"):
                x = np.zeros(1000)
                opt = fastgd.SGD([x], lr=1.0) if kind == "sgd" else fastgd.Adagrad([x])
                try:
                    signal.setitimer(signal.ITIMER_REAL, random.uniform(1e-5, 3e-3))
                    while True:
                        opt.step([g])
                except KeyboardInterrupt:
                    pass
                applied = -x[0] if kind == "sgd" else opt.accums[0][0]
                mismatches += applied != opt.step_count
                trials += 1
        print(f"mismatches {mismatches} of {trials}")
    """, timeout=600, env=COMPILED)
    assert code == 0 and "mismatches 0 of 400" in output, output


# ---------------------------------------------------------------------------------------
# 10. Busy machines: libgomp loads with a short spin (GOMP_SPINCOUNT) unless the user chose
# how OpenMP threads wait; the variable is set for the load only.

def test_openmp_loads_with_a_short_spin_and_leaves_the_environment_alone():
    if _backend.ext is None or not _backend.ext._build_info.openmp_enabled():
        pytest.skip("only an OpenMP build starts threads")
    env = {key: value for key, value in CHILD_ENV.items()
           if key not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    result = subprocess.run(
        [sys.executable, "-c", "import os, fastgd; from fastgd import _backend; "
         "print('GOMP_SPINCOUNT' in os.environ, _backend.openmp_wait)"],
        capture_output=True, text=True, timeout=120, env=env, cwd=os.sep)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("False a short spin (GOMP_SPINCOUNT=1000)"), result.stdout
    code, output = run_child("""
        import os, fastgd
        from fastgd import _backend
        print(os.environ["GOMP_SPINCOUNT"], _backend.openmp_wait)
    """, env={"GOMP_SPINCOUNT": "123"})
    assert code == 0 and output.startswith("123 as the environment sets"), output


# ---------------------------------------------------------------------------------------
# Messages that name the argument (issue 32's list) and the extras' install hints.

@pytest.mark.parametrize(("call", "error", "match"), [
    (lambda: fastgd.factorize(np.ones((3, 2)), "2"), TypeError,
     "rank must be an int >= 1; got str"),
    (lambda: fastgd.factorize(np.ones((3, 2)), 1, lr=-1.0), ValueError,
     "lr must be > 0 and finite; got -1.0"),
    (lambda: fastgd.factorize(np.ones((3, 2)), 1, lr=0), ValueError, "lr must be > 0"),
    (lambda: fastgd.factorize(np.ones((3, 2)), 1, random_state="x"), TypeError,
     "random_state must be None, an int"),
    (lambda: fastgd.factorize(np.ones((3, 2)), 1, init=(np.ones((4, 1)), np.ones((1, 2)))),
     ValueError, r"init\[0\] \(W0\) must have shape"),
    (lambda: fastgd.sqeuclidean(scipy.sparse.csr_matrix(np.ones((2, 2)))), TypeError,
     r"X must be a dense array here; got a scipy.sparse csr_matrix: pass X.toarray\(\)"),
    (lambda: fastgd.sqeuclidean(np.array([[1.0, None]])), TypeError,
     r"to_numpy\(dtype=float, na_value=np.nan\)"),
    (lambda: fastgd.observed((np.array([0]), np.array([1]), np.array([2.0]))), ValueError,
     "the shape is missing"),
    (lambda: fastgd.Adagrad([np.ones(2)]).load_state_dict(
        {"step": 1, "accums": np.ones(2)}), ValueError,
     r"state\['accums'\] must be a list of 1 arrays, one per parameter; got ndarray"),
], ids=["rank str", "lr negative", "lr zero", "random_state", "init shape", "sparse X",
        "object dtype", "3-tuple", "state not a list"])
def test_messages_name_the_argument(call, error, match):
    with pytest.raises(error, match=match):
        call()


@pytest.mark.parametrize(("module", "code", "extra"), [
    ("sklearn", "fastgd.MatrixFactorization", "sklearn"),
    ("dask", "importlib.import_module('fastgd.dask')", "dask"),
])
def test_a_missing_extra_names_its_install_command(module, code, extra):
    status, output = run_child(f"""
        import importlib, sys
        sys.modules[{module!r}] = None   # as if it were not installed
        import fastgd
        try:
            {code}
        except ImportError as error:
            print("ImportError:", error)
    """)
    assert status == 0 and f'pip install "fastgd[{extra}]"' in output, output


def test_the_source_tree_says_it_shadows_the_installed_package(tmp_path):
    """A checkout's package without compiled modules: the warning says what happened and
    what to do, not how to silence it."""
    import shutil

    source = tmp_path / "checkout"
    shutil.copytree(os.path.dirname(fastgd.__file__), source / "fastgd",
                    ignore=shutil.ignore_patterns("*.so", "*.pyd", "__pycache__"))
    (source / "setup.py").write_text("# the checkout's build script\n")
    env = {key: value for key, value in os.environ.items()
           if key not in ("FASTGD_REQUIRE_EXTENSION", "FASTGD_BACKEND", "PYTHONPATH")}
    result = subprocess.run([sys.executable, "-W", "always", "-c", "import fastgd"],
                            capture_output=True, text=True, timeout=120, cwd=source, env=env)
    assert result.returncode == 0, result.stderr
    assert "is the source tree at" in result.stderr
    assert "shadows an installed fastgd" in result.stderr


def test_optimizers_have_a_useful_repr():
    opt = fastgd.Adagrad([np.ones(2), np.ones((3, 4))], lr=0.5)
    opt.step([np.ones(2), np.ones((3, 4))])
    text = repr(opt)
    assert text.startswith("Adagrad(params of shapes [(2,), (3, 4)], lr=0.5,")
    assert text.endswith("n_threads=None, step_count=1)")
    assert "momentum=0.9" in repr(fastgd.SGD([np.ones(2)], lr=0.1, momentum=0.9))
