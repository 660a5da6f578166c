"""factorize's stochastic solver (solver="stochastic"): its compiled pass, loss sum and
block layout against the NumPy twin (bit for bit, every step, dtype, loss and level, on
any number of threads), single steps against the update written out by hand, the
objective's gradient near zero at convergence, biases, the two penalties, validation and
early stopping, and the errors."""

import math

import numpy as np
import pytest
from conftest import assert_same_bits, require_peer
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal
from test_dispatch import run_at_each_level

import fastgd
from fastgd import _backend, _stochastic, factorization
from fastgd._numpy import _stochastic as twin

STEPS = ("sgd", "adagrad", "adagrad_vector")


def ratings(rng, m=30, n=20, density=0.5, rank=3, dtype=np.float64):
    """A biased low-rank matrix plus noise, NaN where missing."""
    A = (3.0 + rng.standard_normal(m)[:, None] * 0.5 + rng.standard_normal(n) * 0.5
         + rng.standard_normal((m, rank)) @ rng.standard_normal((rank, n)) * 0.5
         + 0.1 * rng.standard_normal((m, n)))
    A[rng.random((m, n)) >= density] = np.nan
    return A.astype(dtype)


def problem(rng, step, dtype, m=13, n=9, k=5, biases=True, weights=False, grid=2):
    """The arguments of run_pass for a random problem, as arrays of their own."""
    A = ratings(rng, m, n, dtype=dtype)
    plan = fastgd.observed(A)
    entries = _stochastic.BlockedEntries(plan, grid, np.random.default_rng(1), np.dtype(dtype))
    per_row = {"sgd": 0, "adagrad": k, "adagrad_vector": 1}[step]
    arrays = {
        "W": (0.3 * rng.standard_normal((m, k))).astype(dtype),
        "HT": (0.3 * rng.standard_normal((n, k))).astype(dtype),
        "row_bias": (0.1 * rng.standard_normal(m if biases else 0)).astype(dtype),
        "col_bias": (0.1 * rng.standard_normal(n if biases else 0)).astype(dtype),
        "state_W": rng.random(m * per_row).astype(dtype),
        "state_HT": rng.random(n * per_row).astype(dtype),
        "state_row_bias": rng.random(m if per_row and biases else 0).astype(dtype),
        "state_col_bias": rng.random(n if per_row and biases else 0).astype(dtype),
        "reg_W": rng.random(m).astype(dtype) * 0.1,
        "reg_HT": rng.random(n).astype(dtype) * 0.1,
        "reg_row_bias": rng.random(m if biases else 0).astype(dtype) * 0.1,
        "reg_col_bias": rng.random(n if biases else 0).astype(dtype) * 0.1,
    }
    entry_weights = (rng.random(plan.nnz) * 2).astype(dtype) if weights else None
    return entries, arrays, entry_weights


def run_pass(module, entries, arrays, weights, step, lr=0.05, eps=1e-8, lower=-math.inf,
             entry_loss="squared", delta=1.0, mu=3.0, n_threads=1, uniform=(0.0, 0.0)):
    """A copy of ``arrays`` after one pass of ``module`` (compiled or twin), and the
    pass's running loss."""
    out = {name: a.copy() for name, a in arrays.items()}
    out["running loss"] = module.run_pass(
        entries.rows, entries.cols, entries.values, weights, entries.block_ptr, entries.grid,
        out["W"], out["HT"], out["row_bias"], out["col_bias"], out["state_W"],
        out["state_HT"], out["state_row_bias"], out["state_col_bias"], out["reg_W"],
        out["reg_HT"], out["reg_row_bias"], out["reg_col_bias"], lr, eps, lower,
        STEPS.index(step), ["squared", "huber"].index(entry_loss), delta, mu, n_threads,
        *uniform)
    return out


def compiled():
    _backend._load()
    return _backend.ext._stochastic


@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize("biases", [True, False], ids=["biases", "no biases"])
@pytest.mark.parametrize("form", ["squared", "huber", "weighted huber", "nonneg"])
def test_the_compiled_pass_is_its_twin_bit_for_bit(step, biases, form, float_dtype, rng):
    entries, arrays, weights = problem(rng, step, float_dtype, biases=biases,
                                       weights=form == "weighted huber")
    options = {"entry_loss": "squared" if form in ("squared", "nonneg") else "huber",
               "delta": 0.4, "lower": 0.0 if form == "nonneg" else -math.inf}
    expected = run_pass(twin, entries, arrays, weights, step, **options)
    for n_threads in (1, 2):
        got = run_pass(compiled(), entries, arrays, weights, step, n_threads=n_threads,
                       **options)
        for name in arrays:
            assert_same_bits(got[name], expected[name])
        assert got["running loss"] == expected["running loss"]
    assert not np.array_equal(expected["W"], arrays["W"])
    if form == "nonneg":
        assert expected["W"].min() >= 0 and expected["HT"].min() >= 0


@pytest.mark.parametrize("step", STEPS)
def test_one_coefficient_for_every_row(step, float_dtype, rng):
    # Empty coefficient arrays stand for one coefficient of every row: the same steps as
    # arrays filled with it.
    entries, arrays, _ = problem(rng, step, float_dtype)
    filled = dict(arrays)
    for name, value in (("reg_W", 0.07), ("reg_HT", 0.07), ("reg_row_bias", 0.02),
                        ("reg_col_bias", 0.02)):
        filled[name] = np.full(arrays[name].shape, value, dtype=float_dtype)
        arrays[name] = np.empty(0, dtype=float_dtype)
    expected = run_pass(twin, entries, filled, None, step)
    for module in (twin, compiled()):
        got = run_pass(module, entries, arrays, None, step, uniform=(0.07, 0.02))
        for name in ("W", "HT", "row_bias", "col_bias", "state_W", "running loss"):
            assert_same_bits(np.asarray(got[name]), np.asarray(expected[name]))


@settings(max_examples=40, deadline=None)
@given(m=st.integers(1, 12), n=st.integers(1, 12), k=st.integers(1, 19),
       grid=st.integers(1, 4), step=st.sampled_from(STEPS), seed=st.integers(0, 2**32 - 1),
       dtype=st.sampled_from([np.float32, np.float64]))
def test_any_shape_rank_and_grid_agree_with_the_twin(m, n, k, grid, step, seed, dtype):
    rng = np.random.default_rng(seed)
    grid = min(grid, m, n)
    entries, arrays, _ = problem(rng, step, dtype, m=m, n=n, k=k, grid=grid)
    expected = run_pass(twin, entries, arrays, None, step)
    got = run_pass(compiled(), entries, arrays, None, step, n_threads=2)
    for name in arrays:
        assert_same_bits(got[name], expected[name])
    loss = [module.loss_sum(entries.rows, entries.cols, entries.values, None, got["W"],
                            got["HT"], got["row_bias"], got["col_bias"], 0, 0.0, 3.0, 2)
            for module in (compiled(), twin)]
    assert loss[0] == loss[1]


@pytest.mark.parametrize("step", STEPS)
def test_every_level_gives_the_same_bits(step, float_dtype, rng):
    entries, arrays, weights = problem(rng, step, float_dtype, k=19, weights=True)
    kernels = compiled()

    def one_pass():
        out = run_pass(kernels, entries, arrays, weights, step, entry_loss="huber")
        loss = kernels.loss_sum(entries.rows, entries.cols, entries.values, weights,
                                out["W"], out["HT"], out["row_bias"], out["col_bias"], 1,
                                1.0, 3.0, 1)
        return [*out.values(), np.float64(loss)]

    results = run_at_each_level(one_pass)
    levels = list(results)
    for level in levels[1:]:
        for got, expected in zip(results[level], results[levels[0]], strict=True):
            assert_same_bits(got, expected)


def written_out_step(step, r, w, h, b, c, mu, lr, eps, l_factor, l_bias, G=None):
    """One entry's update as the docs state it, in float64: the gradients of
    0.5 r² + 0.5 l (|w|² + |h|²) + 0.5 l_bias (b² + c²) at the entry's starting point."""
    e = r - (mu + b + c + w @ h)
    grads = [l_factor * w - e * h, l_factor * h - e * w, l_bias * b - e, l_bias * c - e]
    params = [w, h, b, c]
    if step == "sgd":
        return [p - lr * g for p, g in zip(params, grads, strict=True)], None
    if step == "adagrad":
        G = [s + g * g for s, g in zip(G, grads, strict=True)]
        return [p - lr * g / (np.sqrt(s) + eps)
                for p, g, s in zip(params, grads, G, strict=True)], G
    # LIBMF's form: every parameter steps with its accumulator as it was, which then adds
    # the mean square of the gradient (the square for a bias).
    k = w.shape[0]
    rates = [lr / (np.sqrt(s) + eps) for s in G]
    G = [G[0] + grads[0] @ grads[0] / k, G[1] + grads[1] @ grads[1] / k,
         G[2] + grads[2] ** 2, G[3] + grads[3] ** 2]
    return [p - r * g for p, g, r in zip(params, grads, rates, strict=True)], G


@pytest.mark.parametrize("step", STEPS)
def test_one_entry_steps_as_the_docs_say(backend, step):
    rng = np.random.default_rng(5)
    k = 11
    w, h = rng.standard_normal(k), rng.standard_normal(k)
    b, c, mu, lr, eps, l_factor, l_bias = 0.2, -0.3, 3.5, 0.05, 1e-8, 0.07, 0.02
    G = ([rng.random(k), rng.random(k), 0.5, 0.25] if step == "adagrad"
         else [0.7, 0.9, 0.5, 0.25] if step == "adagrad_vector" else None)
    expected, expected_G = written_out_step(step, 4.0, w, h, b, c, mu, lr, eps, l_factor,
                                            l_bias, G)
    plan = fastgd.observed((np.array([0]), np.array([0]), np.array([4.0]), (1, 1)))
    entries = _stochastic.BlockedEntries(plan, 1, rng, np.dtype(np.float64))
    as_1d = np.atleast_1d
    states = ([as_1d(G[0]).copy(), as_1d(G[1]).copy(), as_1d(G[2]), as_1d(G[3])] if G
              else [np.empty(0)] * 4)
    W, HT, rb, cb = w[None].copy(), h[None].copy(), as_1d(b).copy(), as_1d(c).copy()
    running_loss = _stochastic.kernels().run_pass(
        entries.rows, entries.cols, entries.values, None, entries.block_ptr, 1, W, HT, rb,
        cb, *states, np.array([l_factor]), np.array([l_factor]), np.array([l_bias]),
        np.array([l_bias]), lr, eps, -math.inf, STEPS.index(step), 0, 0.0, mu, 1)
    assert running_loss == pytest.approx((4.0 - (mu + b + c + w @ h)) ** 2, rel=1e-14)
    for got, want in zip((W[0], HT[0], rb[0], cb[0]), expected, strict=True):
        assert_allclose(got, want, rtol=1e-13, atol=1e-15)
    if G:
        for got, want in zip(states, expected_G, strict=True):
            assert_allclose(got, np.ravel(want), rtol=1e-13)


def test_the_layout_puts_each_entry_in_its_block_and_keeps_them_all(backend, rng):
    A = ratings(rng, 40, 30, density=0.6)
    plan = fastgd.observed(A, weights=rng.random(A.shape))
    grid = 3
    layout_rng = np.random.default_rng(9)
    entries = _stochastic.BlockedEntries(plan, grid, layout_rng, np.dtype(np.float64))
    groups = np.random.default_rng(9)
    row_group = groups.permutation(40) * grid // 40
    col_group = groups.permutation(30) * grid // 30
    block = row_group[entries.rows] * grid + col_group[entries.cols]
    starts = np.repeat(np.arange(grid * grid), np.diff(entries.block_ptr))
    assert_array_equal(block, starts)
    original = sorted(zip(plan.rows, plan.cols, plan.values, plan.weights, strict=True))
    laid_out = sorted(zip(entries.rows, entries.cols, entries.values, entries.weights, strict=True))
    assert original == laid_out
    # Shuffled within blocks: the entries are not all in their plan order.
    order = entries.rows.astype(np.int64) * 30 + entries.cols
    assert any(np.any(np.diff(order[s:e]) < 0)
               for s, e in zip(entries.block_ptr[:-1], entries.block_ptr[1:], strict=True))


def test_the_compiled_layout_is_the_twins_on_any_number_of_threads(rng, float_dtype,
                                                                  monkeypatch):
    # Chunks of 64 entries, so that a few hundred entries take several threads.
    monkeypatch.setattr(_stochastic, "LAYOUT_CHUNK", 64)
    A = ratings(rng, 50, 35, density=0.5, dtype=float_dtype)
    plan = fastgd.observed(A, weights=rng.random(A.shape))
    layouts = []
    for name, n_threads in (("numpy", 1), ("compiled", 1), ("compiled", 2), ("compiled", 3)):
        with fastgd.use_backend(name):
            layouts.append(_stochastic.BlockedEntries(plan, 4, np.random.default_rng(3),
                                                      float_dtype, n_threads))
    for other in layouts[1:]:
        for attribute in ("rows", "cols", "values", "weights", "block_ptr"):
            assert_same_bits(getattr(other, attribute), getattr(layouts[0], attribute))


def full_gradient(A, W, H, b, c, mu, l2, l2_bias, per_rating):
    """The gradient of 0.5 SSE + penalty (the module docstring's), by NumPy formulas."""
    observed = ~np.isnan(A)
    E = np.where(observed, A - (mu + b[:, None] + c + W @ H), 0.0)
    row_counts, col_counts = observed.sum(1), observed.sum(0)
    scale_W = l2 * (row_counts if per_rating else 1)
    scale_H = l2 * (col_counts if per_rating else 1)
    scale_b = l2_bias * (row_counts if per_rating else 1)
    scale_c = l2_bias * (col_counts if per_rating else 1)
    return (-E @ H.T + scale_W[:, None] * W if per_rating else -E @ H.T + scale_W * W,
            -W.T @ E + (scale_H * H),
            -E.sum(1) + scale_b * b, -E.sum(0) + scale_c * c)


@pytest.mark.parametrize("regularization", ["per_rating", "factors"])
def test_adagrad_reaches_a_stationary_point_of_the_documented_objective(regularization):
    rng = np.random.default_rng(11)
    A = ratings(rng, 12, 10, density=0.6)
    kwargs = dict(solver="stochastic", biases=True, l2=0.1, l2_bias=0.05,
                  regularization=regularization, optimizer="adagrad", lr=0.05,
                  random_state=0)
    start = fastgd.factorize(A, 3, n_iter=0, **kwargs)
    result = fastgd.factorize(A, 3, n_iter=3000, **kwargs)
    per_rating = regularization == "per_rating"
    mu = np.nanmean(A)
    assert result.global_mean == pytest.approx(mu)
    before = full_gradient(A, start.W, start.H, start.row_bias, start.col_bias, mu, 0.1, 0.05,
                           per_rating)
    after = full_gradient(A, result.W, result.H, result.row_bias, result.col_bias, mu, 0.1,
                          0.05, per_rating)
    size = [np.linalg.norm(np.concatenate([np.ravel(g) for g in grads]))
            for grads in (before, after)]
    assert size[1] < 2e-3 * size[0]


def test_biases_fit_what_the_factors_cannot(backend):
    rng = np.random.default_rng(2)
    m, n = 60, 40
    row_bias, col_bias = rng.standard_normal(m), rng.standard_normal(n)
    A = 3.0 + row_bias[:, None] + col_bias
    A[rng.random((m, n)) > 0.5] = np.nan
    with_biases = fastgd.factorize(A, 1, solver="stochastic", biases=True, n_iter=60,
                                   l2=0.0, random_state=0, lr=0.1)
    without = fastgd.factorize(A, 1, solver="stochastic", n_iter=60, l2=0.0,
                               random_state=0, lr=0.1)
    assert with_biases.loss_history[-1] < 0.05 < 0.2 < without.loss_history[-1]
    assert with_biases.reconstruct().shape == (m, n)
    observed = ~np.isnan(A)
    rows, cols = np.nonzero(observed)
    assert_allclose(with_biases.predict(rows, cols), with_biases.reconstruct()[observed],
                    rtol=1e-12)


def test_results_do_not_depend_on_the_number_of_threads(rng, monkeypatch):
    monkeypatch.setattr(_stochastic, "PARALLEL_MIN_WORK", 0)
    A = ratings(rng, 200, 150, density=0.3, dtype=np.float32)
    results = [fastgd.factorize(A, 4, solver="stochastic", biases=True, n_iter=5, grid=4,
                                random_state=0, n_threads=t) for t in (1, 2, 3)]
    for other in results[1:]:
        assert_same_bits(other.W, results[0].W)
        assert_same_bits(other.row_bias, results[0].row_bias)
        assert_same_bits(other.loss_history, results[0].loss_history)


def test_dtypes_inputs_and_the_result(backend, rng, float_dtype):
    A = ratings(rng, dtype=float_dtype)
    before = A.copy()
    result = fastgd.factorize(A, 3, solver="stochastic", biases=True, n_iter=4,
                              random_state=0)
    assert_array_equal(A, before)
    for array in (result.W, result.H, result.row_bias, result.col_bias):
        assert array.dtype == float_dtype
    assert result.W.shape == (30, 3) and result.H.shape == (3, 20)
    assert result.loss_history.shape == (5,) and result.n_iter == 4
    # The defaults: l2 = 0.1 per rating, LIBMF's per-vector accumulators (from 1).
    assert result.penalty > 0
    assert result.optimizer_state["accum_W"].shape == (30,)
    assert result.optimizer_state["accum_W"].min() > 1
    # data_loss: the training RMSE of the result, exact; the history after the start:
    # each pass's running loss, close to it once the passes change little.
    observed = ~np.isnan(A)
    rmse = np.sqrt(np.mean((result.reconstruct()[observed] - A[observed]) ** 2))
    assert result.data_loss == pytest.approx(rmse, rel=1e-4)
    assert result.loss_history[-1] == pytest.approx(rmse, rel=0.2)
    start = fastgd.factorize(A, 3, solver="stochastic", biases=True, n_iter=0,
                             random_state=0)
    assert start.data_loss == result.loss_history[0]
    assert result.optimizer_state["accum_bias_H"].shape == (20,)
    coordinates = fastgd.factorize(A, 3, solver="stochastic", biases=True, n_iter=1,
                                   accumulator="coordinate", random_state=0)
    assert coordinates.optimizer_state["accum_W"].shape == (30, 3)
    same = fastgd.factorize(A, 3, solver="stochastic", biases=True, n_iter=4, random_state=0)
    assert_same_bits(same.W, result.W)


def test_the_penalty_is_reported_in_both_forms(rng):
    A = ratings(rng)
    observed = ~np.isnan(A)
    for form in ("per_rating", "factors"):
        r = fastgd.factorize(A, 3, solver="stochastic", biases=True, n_iter=3, l2=0.2,
                             l2_bias=0.1, regularization=form, random_state=0)
        rows, cols = (observed.sum(1), observed.sum(0)) if form == "per_rating" else (1, 1)
        expected = 0.5 * 0.2 * (np.sum(rows * (r.W**2).sum(1)) + np.sum(cols * (r.H**2).sum(0)))
        expected += 0.5 * 0.1 * (np.sum(rows * r.row_bias**2) + np.sum(cols * r.col_bias**2))
        assert r.penalty == pytest.approx(expected, rel=1e-10)


def test_validation_and_early_stopping_keep_the_best_biases(backend, rng):
    A = ratings(rng, 40, 30, density=0.7)
    result = fastgd.factorize(A, 8, solver="stochastic", biases=True, n_iter=200, l2=0.0,
                              lr=0.2, validation=0.3, early_stopping=True, patience=3,
                              random_state=0)
    assert result.message.startswith("the validation RMSE stopped")
    best = result.best_iteration
    assert result.validation_history[best] == min(result.validation_history)
    assert result.n_iter == best + 3
    # The returned model is the best iteration's: its RMSE over the same held-out entries.
    _training, held_out = factorization.held_out_split(A, None, None, 0.3,
                                                      np.random.default_rng(0))
    got = result.predict(held_out.rows, held_out.cols) - held_out.values
    assert math.sqrt(np.mean(got**2)) == pytest.approx(result.validation_history[best],
                                                       rel=1e-10)


def test_callback_tol_and_progress(rng):
    A = ratings(rng)
    seen = []

    def callback(iteration, loss, W, H):
        seen.append(iteration)
        assert not W.flags.writeable and not H.flags.writeable
        return iteration == 3

    result = fastgd.factorize(A, 2, solver="stochastic", n_iter=10, callback=callback,
                              random_state=0)
    assert seen == [1, 2, 3] and result.n_iter == 3
    assert result.message == "the callback asked to stop"
    converged = fastgd.factorize(A, 2, solver="stochastic", n_iter=5000, tol=1e-3,
                                 random_state=0)
    assert converged.converged and converged.n_iter < 5000


def test_a_diverging_run_stops_and_warns(rng):
    A = ratings(rng) * 1e3
    with pytest.warns(RuntimeWarning, match="lower lr") as caught:
        result = fastgd.factorize(A, 3, solver="stochastic", optimizer="gd", lr=10.0,
                                  n_iter=50, random_state=0)
    assert caught[0].filename == __file__  # the user's line
    assert not math.isfinite(result.loss_history[-1]) and result.n_iter < 50


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"biases": True, "solver": "batch"}, ValueError, "biases=True needs solver='stochastic'"),
    ({"regularization": "per_rating"}, ValueError, "needs solver='stochastic'"),
    ({"grid": 2}, ValueError, "grid=2 needs solver='stochastic'"),
    ({"solver": "minibatch"}, ValueError, "solver must be one of"),
    ({"solver": "stochastic", "optimizer": "adam"}, ValueError, "'adagrad' or 'gd'"),
    ({"solver": "stochastic", "optimizer": "gd", "momentum": 0.9}, ValueError,
     "no momentum"),
    ({"solver": "stochastic", "eps_mode": "inside"}, ValueError, "eps_mode"),
    ({"solver": "stochastic", "optimizer": "gd", "accumulator": "vector"}, ValueError,
     "accumulator applies to optimizer='adagrad'"),
    ({"solver": "stochastic", "accumulator": "row"}, ValueError, "accumulator must be"),
    ({"solver": "stochastic", "grid": 0}, ValueError, "grid must be an int >= 1"),
    ({"solver": "stochastic", "grid": 1.5}, TypeError, "grid must be an int"),
    ({"solver": "stochastic", "biases": "yes"}, TypeError, "biases"),
    ({"solver": "stochastic", "l2_bias": -1.0}, ValueError, "l2_bias must be"),
    ({"solver": "stochastic", "regularization": "l1"}, ValueError, "regularization"),
])
def test_errors_name_the_argument(rng, kwargs, error, match):
    with pytest.raises(error, match=match):
        fastgd.factorize(ratings(rng), 2, **kwargs)


def test_no_observed_entry(rng):
    A = np.full((4, 3), np.nan)
    with pytest.raises(ValueError, match="no observed entry"):
        fastgd.factorize(A, 2, solver="stochastic")
    result = fastgd.factorize(A, 2, solver="stochastic", loss="sse", biases=True, n_iter=2)
    assert result.loss_history.tolist() == [0.0, 0.0, 0.0] and result.global_mean == 0.0


def test_a_shape_beyond_int32_indices_is_refused():
    huge = fastgd.observed((np.array([0]), np.array([2**31]), np.array([1.0]), (1, 2**31 + 1)))
    with pytest.raises(ValueError, match=r"at most 2\*\*31 - 1 rows and columns"):
        fastgd.factorize(huge, 1, solver="stochastic", n_iter=1)


def test_biases_choose_the_stochastic_solver(rng):
    A = ratings(rng)
    chosen = fastgd.factorize(A, 2, biases=True, n_iter=2, random_state=0)
    named = fastgd.factorize(A, 2, solver="stochastic", biases=True, n_iter=2, random_state=0)
    assert_same_bits(chosen.W, named.W)
    assert fastgd.factorize(A, 2, n_iter=2, random_state=0).row_bias is None


def test_the_result_checks_its_biases():
    with pytest.raises(ValueError, match="row_bias and col_bias go together"):
        fastgd.FactorizationResult(np.ones((2, 1)), np.ones((1, 2)), [0.0], 0,
                                   row_bias=np.zeros(2))


def test_ids_plans_and_predictions_with_unknown_ids(backend):
    pd = require_peer("pandas")
    table = pd.DataFrame({"user": ["u3", "u1", "u2", "u1", "u3", "u2"],
                          "item": [30, 10, 10, 20, 20, 30],
                          "rating": [4.0, 5.0, 3.0, 4.5, 2.0, 3.5]})
    plan = fastgd.observed.from_ids(table.user, table.item, table.rating,
                                    weights=np.arange(1.0, 7.0))
    assert plan.row_ids.tolist() == ["u1", "u2", "u3"]
    assert plan.col_ids.tolist() == [10, 20, 30]
    dense = plan.to_dense()
    for user, item, rating, weight in zip(table.user, table.item, table.rating,
                                          range(1, 7), strict=True):
        r, c = plan.row_ids.tolist().index(user), plan.col_ids.tolist().index(item)
        assert dense[r, c] == rating
        assert plan.weights[np.flatnonzero((plan.rows == r) & (plan.cols == c))[0]] == weight
    result = fastgd.factorize(plan, 2, solver="stochastic", biases=True, n_iter=50,
                              random_state=0)
    by_position = result.reconstruct()
    got = result.predict(["u2", "u9", "u1", "u9"], [30, 10, 40, 40])
    assert got[0] == pytest.approx(by_position[1, 2], rel=1e-12)
    assert got[1] == pytest.approx(result.global_mean + result.col_bias[0], rel=1e-12)
    assert got[2] == pytest.approx(result.global_mean + result.row_bias[0], rel=1e-12)
    assert got[3] == pytest.approx(result.global_mean, rel=1e-12)
    plain = fastgd.factorize(plan, 2, solver="stochastic", n_iter=5, random_state=0)
    assert np.isnan(plain.predict(["u9"], [10])[0])
    assert plain.predict(["u1"], [10])[0] == pytest.approx(plain.reconstruct()[0, 0])


def test_ids_of_any_kind_and_their_errors():
    mixed = fastgd.observed_from_ids(np.array([1, "x", 1], dtype=object), [0, 0, 1],
                                     [1.0, 2.0, 3.0])
    assert mixed.row_ids.tolist() == [1, "x"]
    with pytest.raises(ValueError, match=r"\('a', 5\) appears more than once"):
        fastgd.observed_from_ids(["a", "b", "a"], [5, 5, 5], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="same length"):
        fastgd.observed_from_ids(["a", "b"], [5, 5, 5], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="row_ids must not hold NaN"):
        fastgd.observed_from_ids([1.0, np.nan], [5, 6], [1.0, 2.0])
    with pytest.raises(ValueError, match="weights must have one value per entry"):
        fastgd.observed_from_ids(["a", "b"], [5, 6], [1.0, 2.0], weights=[1.0])


def test_validation_plans_with_ids_are_matched_by_id():
    rng = np.random.default_rng(4)
    users = rng.integers(0, 40, 600)
    items = rng.integers(0, 30, 600)
    key = np.unique(users * 30 + items, return_index=True)[1]
    users, items = users[key], items[key]
    ratings = 3 + rng.standard_normal(users.shape[0])
    held = rng.random(users.shape[0]) < 0.2
    train = fastgd.observed_from_ids(users[~held] + 1000, items[~held], ratings[~held])
    test = fastgd.observed_from_ids(users[held] + 1000, items[held], ratings[held])
    result = fastgd.factorize(train, 2, solver="stochastic", biases=True, n_iter=3,
                              validation=test, random_state=0)
    known = np.isin(users[held] + 1000, train.row_ids) & np.isin(items[held], train.col_ids)
    predictions = result.predict(users[held][known] + 1000, items[held][known])
    rmse = np.sqrt(np.mean((predictions - ratings[held][known]) ** 2))
    assert result.validation_history[-1] == pytest.approx(rmse, rel=1e-10)


def test_every_form_of_A_gives_the_same_bits(rng, float_dtype):
    import scipy.sparse

    A = ratings(rng, 24, 17, density=0.5, dtype=float_dtype)
    observed = ~np.isnan(A)
    rows, cols = np.nonzero(observed)
    wide = np.full((24, 34), np.nan, dtype=float_dtype)
    wide[:, ::2] = A
    forms = {
        "NaN": A,
        "Fortran": np.asfortranarray(A),
        "strided view": wide[:, ::2],
        "mask": (np.where(observed, A, 7.0), observed),
        "csr": scipy.sparse.csr_array((A[observed], (rows, cols)), shape=A.shape),
        "coo": scipy.sparse.coo_matrix((A[observed], (rows, cols)), shape=A.shape),
        "plan": fastgd.observed(A),
        "entries": fastgd.observed((rows[::-1], cols[::-1], A[observed][::-1], A.shape)),
    }
    results = {}
    for name, form in forms.items():
        data, mask = form if isinstance(form, tuple) and name == "mask" else (form, None)
        results[name] = fastgd.factorize(data, 3, mask=mask, solver="stochastic", biases=True,
                                         n_iter=3, random_state=0)
    reference = results.pop("NaN")
    assert reference.W.dtype == float_dtype
    for result in results.values():
        for attribute in ("W", "H", "row_bias", "col_bias", "loss_history"):
            assert_same_bits(getattr(result, attribute), getattr(reference, attribute))
