"""The masked losses' extension point, proven by Huber's loss and entry weights: on every
path (dense A, plan, the small-problem call, factorize's compiled and kernel loops,
fastgd.dask, the estimator), against an independent oracle, the NumPy twin, finite
differences, and at every SIMD level bit for bit."""

import numpy as np
import pytest
import scipy.sparse
from conftest import require_peer
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal
from test_dispatch import assert_levels_agree_bitwise, cpu_levels, run_at_each_level

import fastgd
from fastgd import _backend, masked
from fastgd._numpy import _masked as masked_twins

SETTINGS = {
    "huber": {"loss": "huber", "delta": 0.7},
    "huber-sum": {"loss": "huber", "delta": 1.5, "reduction": "sum"},
    "weighted-mse": {"loss": "mse", "weights": True},
    "weighted-sse": {"loss": "sse", "weights": True},
    "weighted-rmse": {"loss": "rmse", "weights": True},
    "weighted-huber": {"loss": "huber", "delta": 0.3, "weights": True},
}


def huber_oracle(A, W, H, loss="mse", delta=None, reduction=None, weights=None):
    """The loss and its gradients in float64 by the textbook formulas, one entry at a time
    (independent of the kernels and of their twins)."""
    A, W, H = (np.asarray(x, dtype=np.float64) for x in (A, W, H))
    observed = ~np.isnan(A)
    weights = np.ones(A.shape) if weights is None else np.asarray(weights, dtype=np.float64)
    weights = np.where(observed, weights, 0.0)
    R = np.where(observed, W @ H - np.where(observed, A, 0.0), 0.0)
    if loss == "huber":
        inside = np.abs(R) <= delta
        values = np.where(inside, 0.5 * R**2, delta * (np.abs(R) - 0.5 * delta))
        slopes = np.clip(R, -delta, delta)
        mean = reduction != "sum"
    else:
        values, slopes = R**2, 2 * R
        mean = loss != "sse"
    total, slope_sums = (weights * values).sum(), weights * slopes
    total_weight = weights.sum()
    if loss == "rmse":
        value = np.sqrt(total / total_weight)
        G = slope_sums / (2 * total_weight * value)
    elif mean:
        value, G = total / total_weight, slope_sums / total_weight
    else:
        value, G = total, slope_sums
    return value, G @ H.T, W.T @ G


def make_case(rng, m, n, k, density, dtype, outliers=0.1):
    A = rng.standard_normal((m, n))
    A[rng.random((m, n)) < outliers] *= 30  # residuals on both sides of delta
    A[rng.random((m, n)) >= density] = np.nan
    W = rng.standard_normal((m, k)) / max(1, k) ** 0.5
    H = rng.standard_normal((k, n)) / max(1, k) ** 0.5
    weights = rng.random((m, n)) * 2
    weights[np.isnan(A)] = np.nan  # never read
    return A.astype(dtype), W.astype(dtype), H.astype(dtype), weights.astype(dtype)


def call_settings(name, weights):
    kwargs = dict(SETTINGS[name])
    if kwargs.pop("weights", False):
        kwargs["weights"] = weights
    return kwargs


def tolerance(dtype):
    return 3e-4 if dtype == np.float32 else 1e-10


ZOO = [(1, 1, 1, 1.0), (7, 5, 3, 0.6), (6, 4, 9, 0.5), (40, 30, 4, 0.4),
       (130, 600, 5, 0.2), (70, 300, 32, 0.3)]


@pytest.mark.parametrize("case", ZOO, ids=lambda c: "-".join(map(str, c)))
@pytest.mark.parametrize("name", SETTINGS)
@pytest.mark.parametrize("path", ["dense", "sparse", "plan", "plan-weighted", "sparse-matrix"])
def test_every_path_against_the_oracle(backend, float_dtype, rng, case, name, path):
    A, W, H, weights = make_case(rng, *case, float_dtype)
    kwargs = call_settings(name, weights)
    observed = ~np.isnan(A)
    if path in ("dense", "sparse"):
        got = fastgd.masked_loss_grad(A, W, H, method=path, **kwargs)
    elif path == "plan":
        if "weights" in kwargs:  # one value per entry, in the plan's order
            kwargs["weights"] = weights[observed]
        got = fastgd.masked_loss_grad(fastgd.observed(A), W, H, **kwargs)
    elif path == "plan-weighted":
        plan = fastgd.observed(A, weights=kwargs.pop("weights", None))
        got = fastgd.masked_loss_grad(plan, W, H, **kwargs)
    else:
        rows, cols = np.nonzero(observed)
        matrix = scipy.sparse.csr_array((A[observed], (rows, cols)), shape=A.shape)
        got = fastgd.masked_loss_grad(matrix, W, H, **kwargs)
    expected = huber_oracle(A, W, H, **call_settings(name, weights))
    rtol = tolerance(float_dtype)
    assert isinstance(got[0], float)
    assert_allclose(got[0], expected[0], rtol=rtol)
    for array, exact in zip(got[1:], expected[1:], strict=True):
        assert array.dtype == float_dtype and array.flags.c_contiguous
        assert_allclose(array, exact, rtol=rtol, atol=rtol * max(1, np.abs(exact).max()))


@pytest.mark.parametrize("name", SETTINGS)
@pytest.mark.parametrize("use_plan", [False, True])
def test_gradients_pass_check_grad(backend, rng, name, use_plan):
    A, W, H, weights = make_case(rng, 9, 7, 3, 0.7, np.float64)
    kwargs = call_settings(name, weights)
    data = fastgd.observed(A, weights=kwargs.pop("weights", None)) if use_plan else A
    if not use_plan and "weights" in SETTINGS[name]:
        kwargs["weights"] = weights

    def loss(factors):
        return fastgd.masked_loss_grad(data, *factors, **kwargs)[0]

    def gradient(factors):
        return list(fastgd.masked_loss_grad(data, *factors, **kwargs)[1:])

    report = fastgd.check_grad(loss, gradient, [W, H])
    assert report.passed, report


@pytest.mark.parametrize("name", SETTINGS)
@pytest.mark.parametrize("case", ZOO, ids=lambda c: "-".join(map(str, c)))
def test_compiled_matches_the_numpy_twin(float_dtype, rng, name, case):
    A, W, H, weights = make_case(rng, *case, float_dtype)
    kwargs = call_settings(name, weights)
    results = {}
    for backend in ("compiled", "numpy"):
        with fastgd.use_backend(backend):
            results[backend] = [fastgd.masked_loss_grad(A, W, H, method=method, **kwargs)
                                for method in ("dense", "sparse")]
    rtol = tolerance(float_dtype)
    for got, expected in zip(results["compiled"], results["numpy"], strict=True):
        assert_allclose(got[0], expected[0], rtol=rtol)
        for a, b in zip(got[1:], expected[1:], strict=True):
            assert a.dtype == b.dtype
            assert_allclose(a, b, rtol=rtol, atol=rtol * max(1, np.abs(b).max(initial=0)))


# A named reduction takes the general path; every other setting, the small-problem call.
@pytest.mark.parametrize("name", [name for name in SETTINGS if "reduction" not in SETTINGS[name]])
@pytest.mark.parametrize("shape", [(1, 1, 1), (4, 3, 2), (9, 8, 3)])
def test_small_problem_calls_match_the_general_path(float_dtype, rng, name, shape):
    if _backend.masked_fast_path is None:
        pytest.skip("the small-problem call is the compiled backend's")
    A, W, H, weights = make_case(rng, *shape, 0.7, float_dtype)
    kwargs = call_settings(name, weights)
    fast = _backend.masked_fast_path
    with_plan = dict(kwargs)
    if "weights" in kwargs:
        with_plan["weights"] = weights[~np.isnan(A)]
    plan = fastgd.observed(A)
    code, entry = masked._losses.CODES[kwargs["loss"]]
    delta = kwargs.get("delta", 1.0)
    got_dense = fast.small_entry_loss_grad(A, W, H, code, 0.0, masked.SMALL_MAX_WORK, entry,
                                           delta, kwargs.get("weights"))
    got_plan = fast.small_plan_entry_loss_grad(plan.indptr, plan.indices, plan.values,
                                               *A.shape, W, H, code, 0.0,
                                               masked.SMALL_MAX_WORK, entry, delta,
                                               with_plan.get("weights"))
    assert got_dense is not None and got_plan is not None
    expected = fastgd.masked_loss_grad(A, W, H, method="dense", n_threads=1,
                                       **{**kwargs, "weights": kwargs.get("weights")})
    rtol = tolerance(float_dtype)
    for got in (got_dense, got_plan, fastgd.masked_loss_grad(A, W, H, **kwargs),
                fastgd.masked_loss_grad(plan, W, H, **with_plan)):
        assert_allclose(got[0], expected[0], rtol=rtol)
        for a, b in zip(got[1:], expected[1:], strict=True):
            assert a.dtype == float_dtype
            assert_allclose(a, b, rtol=rtol, atol=rtol)


def test_small_problem_call_leaves_bad_weights_to_the_general_path(rng):
    if _backend.masked_fast_path is None:
        pytest.skip("the small-problem call is the compiled backend's")
    A, W, H, weights = make_case(rng, 4, 3, 2, 1.0, np.float64)
    fast = _backend.masked_fast_path
    for bad in (-1.0, np.nan, np.inf):
        weights[1, 1] = bad
        assert fast.small_entry_loss_grad(A, W, H, 1, 0.0, 4096, 0, 0.0, weights) is None
        with pytest.raises(ValueError, match=r"weights must be finite and >= 0.*row 1, "
                                             r"column 1"):
            fastgd.masked_loss_grad(A, W, H, weights=weights)


# Ranks with and without a fixed-rank loop, and with a remainder of the lanes.
@pytest.mark.parametrize("k", [3, 16, 20, 32, 64])
@pytest.mark.parametrize("name", ["huber", "weighted-mse", "weighted-huber"])
@pytest.mark.skipif(_backend.ext is None, reason="needs the compiled extension")
def test_simd_levels_agree_bitwise(rng, float_dtype, k, name):
    m, n = 70, 530
    A, W, H, weights = make_case(rng, m, n, k, 0.4, float_dtype)
    kwargs = call_settings(name, weights)
    weighted_plan = fastgd.observed(A, weights=kwargs.get("weights"))
    plan_kwargs = {key: value for key, value in kwargs.items() if key != "weights"}
    kernel = masked.kernels().plan_loss_grad
    entry_weights = weighted_plan.weights

    def compute():
        results = []
        plan_result = fastgd.masked_loss_grad(weighted_plan, W, H, n_threads=1, **plan_kwargs)
        dense_result = fastgd.masked_loss_grad(A, W, H, method="dense", n_threads=1, **kwargs)
        results += [np.array(x) for x in (*plan_result, *dense_result)]
        # The plan kernel in column tiles (the plan's own layout and tile by tile): the
        # same bits as untiled.
        spec = masked._losses.resolve(kwargs["loss"], kwargs.get("delta"))
        for width in (0, 7, 64):
            dW, dH = np.empty((m, k), float_dtype), np.empty((k, n), float_dtype)
            total = kernel(weighted_plan.indptr, weighted_plan.indices, weighted_plan.values,
                           W, H, dW, dH, 1, 3, width, 1.0, None, spec.entry, spec.delta,
                           entry_weights)
            results += [np.array(total), dW, dH]
            if width:
                starts, indices, values, tiled_weights = weighted_plan._in_tiles(
                    width, float_dtype)
                dW, dH = np.empty((m, k), float_dtype), np.empty((k, n), float_dtype)
                total = kernel(weighted_plan.indptr, indices, values, W, H, dW, dH, 1, 3,
                               width, 1.0, starts, spec.entry, spec.delta, tiled_weights)
                results += [np.array(total), dW, dH]
        return results

    results = run_at_each_level(compute)
    assert_levels_agree_bitwise(results)
    top = results[cpu_levels()[-1]]
    for position in range(6, len(top), 3):  # every tiling: the untiled bits
        for got, expected in zip(top[position:position + 3], top[6:9], strict=True):
            assert_array_equal(got, expected)
    with fastgd.use_backend("numpy"):
        expected = fastgd.masked_loss_grad(A, W, H, method="dense", **kwargs)
    rtol = tolerance(float_dtype)
    for start in (0, 3):
        assert_allclose(top[start], expected[0], rtol=rtol)
        assert_allclose(top[start + 1], expected[1], rtol=rtol, atol=rtol)
        assert_allclose(top[start + 2], expected[2], rtol=rtol, atol=rtol)


def test_a_weighted_plan_in_tiles_gives_the_untiled_bits(monkeypatch, rng):
    """A weighted plan used again keeps its entries and weights tile by tile."""
    A, W, H, weights = make_case(rng, 50, 400, 16, 0.3, np.float64)
    plan = fastgd.observed(A, weights=weights)
    untiled = fastgd.masked_loss_grad(plan, W, H, loss="huber", n_threads=1)
    monkeypatch.setattr(masked, "plan_tile_cols", lambda plan, k, itemsize: 64)
    first = fastgd.masked_loss_grad(plan, W, H, loss="huber", n_threads=1)
    second = fastgd.masked_loss_grad(plan, W, H, loss="huber", n_threads=1)
    assert plan._tiled is not None and plan._tiled[4] is not None
    for got in (first, second):
        assert got[0] == untiled[0]
        assert_array_equal(got[1], untiled[1])
        assert_array_equal(got[2], untiled[2])


@settings(max_examples=40, deadline=None)
@given(m=st.integers(1, 12), n=st.integers(1, 12), k=st.integers(0, 5),
       seed=st.integers(0, 2**32 - 1), dtype=st.sampled_from([np.float32, np.float64]))
def test_property_limits_of_huber_and_weights(m, n, k, seed, dtype):
    """Huber with a delta beyond every residual is half the squared loss; unit weights
    change nothing; weights scale each entry's term."""
    rng = np.random.default_rng(seed)
    A, W, H, weights = make_case(rng, m, n, k, 0.8, dtype, outliers=0.0)
    if np.isnan(A).all():
        return
    rtol = tolerance(dtype)
    mse = fastgd.masked_loss_grad(A, W, H, loss="mse")
    huge = fastgd.masked_loss_grad(A, W, H, loss="huber", delta=1e6)
    unit = fastgd.masked_loss_grad(A, W, H, loss="mse", weights=np.ones((m, n), dtype))
    assert_allclose(huge[0], 0.5 * mse[0], rtol=rtol)
    assert_allclose(unit[0], mse[0], rtol=rtol)
    for a, b, c in zip(huge[1:], mse[1:], unit[1:], strict=True):
        assert_allclose(a, 0.5 * b, rtol=rtol, atol=rtol)
        assert_allclose(c, b, rtol=rtol, atol=rtol)
    doubled = fastgd.masked_loss_grad(A, W, H, loss="sse", weights=2 * weights)
    single = fastgd.masked_loss_grad(A, W, H, loss="sse", weights=weights)
    assert_allclose(doubled[0], 2 * single[0], rtol=rtol)


def test_entry_loss_terms_twin_formula():
    r = np.array([-3.0, -1.0, -0.5, 0.0, 0.5, 1.0, 3.0])
    values, factors = masked_twins.entry_loss_terms(masked_twins.HUBER, 1.0, r)
    assert_array_equal(values, [2.5, 0.5, 0.125, 0.0, 0.125, 0.5, 2.5])
    assert_array_equal(factors, [-1.0, -1.0, -0.5, 0.0, 0.5, 1.0, 1.0])
    values, factors = masked_twins.entry_loss_terms(masked_twins.SQUARED, 0.0, r,
                                                    np.full(7, 2.0))
    assert_array_equal(values, 2 * r**2)
    assert_array_equal(factors, 2 * r)


def test_bad_settings_raise_clear_errors(backend, rng):
    A, W, H, weights = make_case(rng, 5, 4, 2, 0.8, np.float64)
    call = fastgd.masked_loss_grad
    with pytest.raises(ValueError, match="delta must be finite and > 0; got 0"):
        call(A, W, H, loss="huber", delta=0.0)
    with pytest.raises(ValueError, match="delta must be finite and > 0; got nan"):
        call(A, W, H, loss="huber", delta=float("nan"))
    with pytest.raises(TypeError, match="delta must be a real number; got str"):
        call(A, W, H, loss="huber", delta="1")
    with pytest.raises(ValueError, match="delta applies to loss='huber' only"):
        call(A, W, H, loss="mse", delta=1.0)
    with pytest.raises(ValueError, match="reduction must be one of 'sum', 'mean'"):
        call(A, W, H, loss="huber", reduction="median")
    with pytest.raises(ValueError, match=r"reduction='mean' does not apply to loss='sse'"):
        call(A, W, H, loss="sse", reduction="mean")
    with pytest.raises(ValueError, match=r"loss must be one of .*'huber'"):
        call(A, W, H, loss="hubber")
    with pytest.raises(ValueError, match=r"weights must have A's shape \(5, 4\); got shape"):
        call(A, W, H, weights=np.ones((4, 5)), method="dense")
    plan = fastgd.observed(A)
    with pytest.raises(ValueError, match=rf"one value per observed entry, shape \({plan.nnz},\)"):
        call(plan, W, H, weights=np.ones(plan.nnz + 1))
    with pytest.raises(TypeError, match="weights must be an array of real numbers"):
        call(A, W, H, weights=np.ones((5, 4), dtype=complex))
    for method in ("dense", "sparse"):
        bad = weights.copy()
        bad[~np.isnan(A)] = 1.0
        row, col = np.argwhere(~np.isnan(A))[-1]
        bad[row, col] = -2.0
        with pytest.raises(ValueError, match=f"got -2.0 at .*row {row}, column {col}"):
            call(A, W, H, weights=bad, method=method)
    with pytest.raises(ValueError, match="weights were given twice"):
        call(fastgd.observed(A, weights=np.ones((5, 4))), W, H, weights=np.ones((5, 4)))
    zero = np.zeros((5, 4))
    for loss in ("mse", "huber"):
        with pytest.raises(ValueError, match=r"total weight is 0\.0"):
            call(A, W, H, loss=loss, weights=zero)
    assert call(A, W, H, loss="sse", weights=zero)[0] == 0.0
    assert call(A, W, H, loss="huber", reduction="sum", weights=zero)[0] == 0.0


def test_inputs_are_not_modified_and_plan_weights_are_read_only(backend, rng):
    A, W, H, weights = make_case(rng, 8, 6, 2, 0.7, np.float32)
    copies = [x.copy() for x in (A, W, H, weights)]
    fastgd.masked_loss_grad(A, W, H, loss="huber", weights=weights)
    plan = fastgd.observed(A, weights=weights)
    for got, kept in zip((A, W, H, weights), copies, strict=True):
        assert_array_equal(got, kept)
    assert plan.weights.dtype == np.float32 and not plan.weights.flags.writeable
    assert_array_equal(plan.weights, weights[~np.isnan(A)])
    assert plan.total_weight == pytest.approx(float(weights[~np.isnan(A)].sum()), rel=1e-6)
    assert "weighted" in repr(plan)
    assert fastgd.observed(plan).weights is plan.weights  # a plan is its own plan


def _robust_case(rng, dtype=np.float64):
    """A rank-3 matrix, 60% observed, 5% of the observed entries off by 20 to 40."""
    m, n, k = 60, 50, 3
    clean = rng.standard_normal((m, k)) @ rng.standard_normal((k, n))
    A = clean.copy()
    A[rng.random((m, n)) >= 0.6] = np.nan
    observed = np.argwhere(~np.isnan(A))
    bad = observed[rng.choice(len(observed), len(observed) // 20, replace=False)]
    A[bad[:, 0], bad[:, 1]] += rng.choice([-1, 1], len(bad)) * rng.uniform(20, 40, len(bad))
    return A.astype(dtype), clean, bad


@pytest.mark.parametrize("optimizer", ["adagrad", "adam"])
def test_huber_completes_a_matrix_with_outliers(backend, rng, optimizer):
    """Robust matrix completion: with 5% of the observed entries corrupted, the Huber fit
    recovers the clean matrix (every entry, the missing ones too) where the squared loss
    follows the outliers."""
    A, clean, _ = _robust_case(rng)
    lr = 0.3 if optimizer == "adagrad" else 0.03
    errors = {}
    for loss, extra in (("mse", {}), ("huber", {"delta": 0.1})):
        result = fastgd.factorize(A, 3, loss=loss, optimizer=optimizer, lr=lr, n_iter=4000,
                                  random_state=0, **extra)
        errors[loss] = np.sqrt(np.mean((result.reconstruct() - clean) ** 2))
    assert errors["huber"] < 0.05 < 5 < errors["mse"]


def test_weights_can_drop_the_outliers(backend, rng):
    A, clean, bad = _robust_case(rng)
    weights = np.ones(A.shape)
    weights[bad[:, 0], bad[:, 1]] = 0.0
    result = fastgd.factorize(A, 3, loss="mse", weights=weights, lr=0.3, n_iter=4000,
                              random_state=0)
    assert np.sqrt(np.mean((result.reconstruct() - clean) ** 2)) < 0.05


@pytest.mark.parametrize("name", SETTINGS)
def test_factorize_loops_agree(rng, name, monkeypatch):
    """factorize's compiled loop, its NumPy twin and the kernel loop (one masked_loss_grad
    per step) take the same steps."""
    from fastgd import factorization

    A, W, H, weights = make_case(rng, 12, 9, 3, 0.7, np.float64)
    kwargs = call_settings(name, weights)
    runs = {}
    for backend in ("compiled", "numpy"):
        with fastgd.use_backend(backend):
            runs[backend] = fastgd.factorize(A, 3, init=(W, H), n_iter=30, lr=0.05, **kwargs)
    monkeypatch.setattr(factorization, "SOLVER_LOOP_MAX_WORK", 0)
    runs["kernels"] = fastgd.factorize(A, 3, init=(W, H), n_iter=30, lr=0.05, **kwargs)
    expected = huber_oracle(A, W, H, **kwargs)[0]
    for run in runs.values():
        assert_allclose(run.loss_history[0], expected, rtol=1e-12)
        assert_allclose(run.loss_history, runs["compiled"].loss_history, rtol=1e-10)
        assert_allclose(run.W, runs["compiled"].W, rtol=1e-9, atol=1e-12)


def test_factorize_with_a_weighted_plan_and_adam(backend, rng):
    A, W, H, weights = make_case(rng, 10, 8, 2, 0.8, np.float32)
    plan = fastgd.observed(A, weights=weights)
    by_plan = fastgd.factorize(plan, 2, init=(W, H), n_iter=20, loss="huber",
                               optimizer="adam", lr=0.01)
    by_array = fastgd.factorize(A, 2, init=(W, H), n_iter=20, loss="huber",
                                optimizer="adam", lr=0.01, weights=weights)
    assert by_plan.W.dtype == np.float32
    assert_allclose(by_plan.loss_history, by_array.loss_history, rtol=1e-6)
    assert by_plan.loss_history[-1] < by_plan.loss_history[0]


def test_dask_huber_and_weights_match_in_memory(rng):
    da = require_peer("dask.array")
    import fastgd.dask

    A, W, H, weights = make_case(rng, 40, 30, 3, 0.6, np.float64)
    chunked, chunked_weights = da.from_array(A, chunks=(15, 11)), da.from_array(
        weights, chunks=(20, 10))
    for name in SETTINGS:
        kwargs = call_settings(name, weights)
        dask_kwargs = dict(kwargs)
        if "weights" in kwargs:
            dask_kwargs["weights"] = chunked_weights
        got = fastgd.dask.masked_loss_grad(chunked, W, H, **dask_kwargs)
        expected = fastgd.masked_loss_grad(A, W, H, **kwargs)
        assert_allclose(got[0], expected[0], rtol=1e-12)
        for a, b in zip(got[1:], expected[1:], strict=True):
            assert_allclose(a, b, rtol=1e-11, atol=1e-12)
        fitted = fastgd.dask.factorize(chunked, 3, init=(W, H), n_iter=15, lr=0.05,
                                       **dask_kwargs)
        in_memory = fastgd.factorize(A, 3, init=(W, H), n_iter=15, lr=0.05, **kwargs)
        assert_allclose(fitted.loss_history, in_memory.loss_history, rtol=1e-10)


def test_estimator_fits_huber_and_weights(rng):
    require_peer("sklearn")
    A, clean, bad = _robust_case(rng)
    robust = fastgd.MatrixFactorization(rank=3, loss="huber", delta=0.1, lr=0.3,
                                        n_iter=4000, random_state=0).fit(A)
    plain = fastgd.MatrixFactorization(rank=3, loss="mse", lr=0.3, n_iter=4000,
                                       random_state=0).fit(A)
    error = {name: np.sqrt(np.mean((model.inverse_transform(model.transform(A)) - clean) ** 2))
             for name, model in (("huber", robust), ("mse", plain))}
    assert error["huber"] < 0.05 < 5 < error["mse"]
    # transform's rows solve the same Huber loss as fit: at the fitted H they barely move.
    assert_allclose(robust.transform(A), robust.W_, atol=1e-8)
    weights = np.ones(A.shape)
    weights[bad[:, 0], bad[:, 1]] = 0.0
    weighted = fastgd.MatrixFactorization(rank=3, loss="mse", lr=0.3, n_iter=4000,
                                          random_state=0)
    W = weighted.fit_transform(A, weights=weights)
    assert np.sqrt(np.mean((W @ weighted.components_ - clean) ** 2)) < 0.05
    assert weighted.reconstruction_err_ == pytest.approx(
        fastgd.masked_loss_grad(A, W, weighted.components_, weights=weights)[0])
    observed = ~np.isnan(A)
    sparse = scipy.sparse.csr_array((A[observed], np.nonzero(observed)), shape=A.shape)
    from_sparse = fastgd.MatrixFactorization(rank=3, loss="huber", n_iter=200,
                                             random_state=0, nonneg=True, l2=1e-3)
    from_dense = fastgd.MatrixFactorization(rank=3, loss="huber", n_iter=200,
                                            random_state=0, nonneg=True, l2=1e-3)
    assert_allclose(from_sparse.fit_transform(sparse, weights=weights[observed]),
                    from_dense.fit_transform(A, weights=weights), rtol=1e-10, atol=1e-12)
