"""fastgd.factorize against an independent NumPy loop written here, on the tutorials'
matrix and on synthetic low-rank data; both of its iteration loops (compiled, and the
threaded kernels called from Python) on both backends."""

import math

import numpy as np
import pytest
import scipy.sparse
from conftest import require_peer
from hypothesis import given, settings
from hypothesis import strategies as st

import fastgd
from fastgd import factorization

# The tutorials' ratings matrix (4 x 3) with A[0, 0] missing, float32 as they build it.
TUTORIAL_A = np.array([[3, 4, 5, 2], [4, 4, 3, 3], [5, 5, 4, 3]], dtype=np.float32).T
TUTORIAL_A[0, 0] = np.nan
TUTORIAL_RECOVERED = np.array([[5, 4, 5], [4, 4, 5], [5, 3, 4], [2, 3, 3]], dtype=float)


def tutorial_adagrad_init():
    """The Adagrad tutorial's deliberately poor start: H first, then W, from seed 0."""
    rs = np.random.RandomState(0)
    H0 = -5 * np.abs(rs.randn(2, 3))
    W0 = np.abs(rs.randn(4, 2))
    return W0, H0


def reference_factorize(A, W0, H0, *, optimizer, lr, n_iter, eps=1e-8, eps_mode="outside",
                        momentum=0.0, nesterov=False, nonneg=False, loss="rmse", l2=0.0):
    """The loss history of full-batch gradient descent on the masked loss, in plain NumPy:
    both gradients at the same point, then the step, then the projection."""
    observed = ~np.isnan(A)
    count = observed.sum()
    data = np.where(observed, A, 0).astype(np.float64)
    W, H = W0.astype(np.float64), H0.astype(np.float64)
    state = [np.zeros_like(W), np.zeros_like(H)]

    def loss_and_grads(W, H):
        R = np.where(observed, W @ H - data, 0.0)
        sse = np.sum(R ** 2)
        if loss == "sse":
            value, scale = sse, 2.0
        elif loss == "mse":
            value, scale = sse / count, 2.0 / count
        else:
            value = np.sqrt(sse / count)
            scale = 1.0 / (count * value)
        value += 0.5 * l2 * (np.sum(W ** 2) + np.sum(H ** 2))
        return value, scale * R @ H.T + l2 * W, scale * W.T @ R + l2 * H

    history = []
    for _ in range(n_iter):
        value, dW, dH = loss_and_grads(W, H)
        history.append(value)
        new = []
        for param, grad, s in zip((W, H), (dW, dH), state, strict=True):
            if optimizer == "adagrad":
                if eps_mode == "accumulate":
                    s += eps + grad ** 2
                    param = param - lr / np.sqrt(s) * grad
                elif eps_mode == "outside":
                    s += grad ** 2
                    param = param - lr * grad / (np.sqrt(s) + eps)
                else:
                    s += grad ** 2
                    param = param - lr * grad / np.sqrt(s + eps)
            elif momentum:
                s *= momentum
                s += grad
                param = param - lr * (grad + momentum * s if nesterov else s)
            else:
                param = param - lr * grad
            if nonneg:
                param[param < 0] = 0
            new.append(param)
        W, H = new
    history.append(loss_and_grads(W, H)[0])
    return np.array(history), W, H


@pytest.fixture(params=["compiled loop", "kernel loop"])
def loop(request, monkeypatch):
    """Each test runs through both iteration loops of factorize."""
    if request.param == "kernel loop":
        monkeypatch.setattr(factorization, "SOLVER_LOOP_MAX_WORK", -1)
    return request.param


SETTINGS = {
    "gd": {"optimizer": "gd", "lr": 0.01},
    "gd+nonneg": {"optimizer": "gd", "lr": 0.01, "nonneg": True},
    "gd+momentum": {"optimizer": "gd", "lr": 0.005, "momentum": 0.9},
    "gd+nesterov": {"optimizer": "gd", "lr": 0.005, "momentum": 0.9, "nesterov": True},
    "adagrad outside": {"optimizer": "adagrad", "lr": 0.1, "eps_mode": "outside"},
    "adagrad inside": {"optimizer": "adagrad", "lr": 0.1, "eps_mode": "inside"},
    "adagrad accumulate": {"optimizer": "adagrad", "lr": 0.1, "eps_mode": "accumulate"},
    "projected adagrad": {"optimizer": "adagrad", "lr": 0.05, "nonneg": True},
}


@pytest.mark.parametrize("name", list(SETTINGS))
@pytest.mark.parametrize("loss", ["rmse", "mse", "sse"])
def test_tutorial_matrix_against_reference_loop(backend, loop, name, loss):
    settings = SETTINGS[name]
    W0 = np.abs(np.random.RandomState(1).randn(4, 2))
    H0 = np.abs(np.random.RandomState(2).randn(2, 3))
    if loss == "sse":
        settings = {**settings, "lr": settings["lr"] / 10}
    # The poor start oscillates under Adagrad at lr 0.1: rounding differences grow ~1e12
    # fold between steps 200 and 500, so the tight comparison covers the first 150.
    n_iter = 150 if settings["optimizer"] == "adagrad" else 1000
    expected, W_ref, H_ref = reference_factorize(TUTORIAL_A, W0, H0, n_iter=n_iter,
                                                 loss=loss, **settings)
    result = fastgd.factorize(TUTORIAL_A, 2, init=(W0, H0), n_iter=n_iter, loss=loss,
                              **settings)
    assert result.W.dtype == np.float64  # float32 A, float64 init
    assert result.loss_history.shape == (n_iter + 1,)
    assert result.n_iter == n_iter and not result.converged
    np.testing.assert_allclose(result.loss_history, expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(result.W, W_ref, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(result.H, H_ref, rtol=1e-9, atol=1e-12)
    if settings.get("nonneg"):
        assert (result.W >= 0).all() and (result.H >= 0).all()


def test_tutorial_adagrad_from_a_poor_start(backend, loop):
    """The Adagrad tutorial: H0 = -5|N(0, 1)|, lr 0.1, eps 1e-8 added to the sum of
    squares, 2000 steps; its initial cost and its recovered matrix."""
    W0, H0 = tutorial_adagrad_init()
    settings = {"optimizer": "adagrad", "lr": 0.1, "eps": 1e-8, "eps_mode": "accumulate"}
    result = fastgd.factorize(TUTORIAL_A, 2, init=(W0, H0), n_iter=2000, **settings)
    assert result.loss_history[0] == pytest.approx(11.651268820608442, rel=1e-12)
    expected, _, _ = reference_factorize(TUTORIAL_A, W0, H0, n_iter=150, **settings)
    np.testing.assert_allclose(result.loss_history[:151], expected, rtol=1e-10)
    np.testing.assert_array_equal(result.reconstruct().round(), TUTORIAL_RECOVERED)
    assert result.loss_history[-1] < 0.09  # the rank-2 optimum is about 0.0866
    rates_W, rates_H = result.effective_lr()
    np.testing.assert_allclose(rates_W, 0.1 / np.sqrt(result.optimizer_state["accum_W"]))
    assert rates_H.shape == (2, 3)


def test_tutorial_projected_gradient_descent(backend, loop):
    """The projected-gradient tutorial: lr 0.01, 10000 steps from |N(0, 1)| factors; it
    prints a cost of 0.08655 from step 9000 on and the recovered matrix."""
    rs = np.random.RandomState(0)
    H0, W0 = np.abs(rs.randn(2, 3)), np.abs(rs.randn(4, 2))
    result = fastgd.factorize(TUTORIAL_A, 2, init=(W0, H0), optimizer="gd", lr=0.01,
                              n_iter=10000, nonneg=True)
    assert result.loss_history[-1] == pytest.approx(0.0865532, abs=2e-6)
    assert (result.W >= 0).all() and (result.H >= 0).all()
    np.testing.assert_array_equal(result.reconstruct().round(), TUTORIAL_RECOVERED)


def test_low_rank_completion_reaches_the_noise_level(backend, loop):
    rng = np.random.default_rng(5)
    m, n, rank, sigma = 300, 200, 5, 0.01
    truth = rng.standard_normal((m, rank)) @ rng.standard_normal((rank, n)) / math.sqrt(rank)
    noisy = truth + sigma * rng.standard_normal((m, n))
    train = rng.random((m, n)) < 0.3
    A = np.where(train, noisy, np.nan)
    result = fastgd.factorize(A, rank, random_state=0, optimizer="gd", lr=0.5,
                              momentum=0.9, loss="mse", n_iter=3000, tol=1e-12)
    held_out = ~train
    rmse = np.sqrt(np.mean((result.reconstruct()[held_out] - noisy[held_out]) ** 2))
    assert rmse <= 2 * sigma


def test_the_two_loops_agree(backend, float_dtype, rng, monkeypatch):
    A = rng.standard_normal((60, 40)).astype(float_dtype)
    A[rng.random(A.shape) < 0.6] = np.nan
    options = {"random_state": 3, "n_iter": 40, "lr": 0.05, "nonneg": True, "l2": 0.01}
    compiled = fastgd.factorize(A, 4, **options)
    monkeypatch.setattr(factorization, "SOLVER_LOOP_MAX_WORK", -1)
    kernels = fastgd.factorize(A, 4, **options)
    assert compiled.W.dtype == kernels.W.dtype == float_dtype
    rtol = 1e-4 if float_dtype == np.float32 else 1e-10
    np.testing.assert_allclose(compiled.loss_history, kernels.loss_history, rtol=rtol)
    np.testing.assert_allclose(compiled.W, kernels.W, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(compiled.H, kernels.H, rtol=rtol, atol=rtol)
    for key in compiled.optimizer_state:
        np.testing.assert_allclose(compiled.optimizer_state[key],
                                   kernels.optimizer_state[key], rtol=rtol, atol=rtol)


def test_compiled_loop_matches_its_numpy_twin(float_dtype, rng):
    A = rng.standard_normal((12, 9)).astype(float_dtype)
    A[rng.random(A.shape) < 0.5] = np.nan
    results = []
    for backend in ("compiled", "numpy"):
        with fastgd.use_backend(backend):
            results.append(fastgd.factorize(A, 3, random_state=1, n_iter=30,
                                            optimizer="gd", lr=0.02, momentum=0.5))
    rtol = 1e-5 if float_dtype == np.float32 else 1e-12
    np.testing.assert_allclose(results[0].loss_history, results[1].loss_history, rtol=rtol)
    np.testing.assert_allclose(results[0].W, results[1].W, rtol=rtol, atol=rtol)


def test_every_form_of_A_gives_the_same_run(backend, loop, rng):
    values = rng.random((20, 15)) + 1
    is_observed = rng.random(values.shape) < 0.5
    with_nan = np.where(is_observed, values, np.nan)
    rows, cols = np.nonzero(is_observed)
    forms = {
        "nan": {"A": with_nan},
        "mask": {"A": np.where(is_observed, values, np.inf), "mask": is_observed},
        "csr": {"A": scipy.sparse.csr_array((values[rows, cols], (rows, cols)),
                                            shape=values.shape)},
        "plan": {"A": fastgd.observed(with_nan)},
        "fortran": {"A": np.asfortranarray(with_nan)},
    }
    runs = {name: fastgd.factorize(rank=3, random_state=7, n_iter=25, **form)
            for name, form in forms.items()}
    for name, run in runs.items():
        np.testing.assert_allclose(run.loss_history, runs["nan"].loss_history, rtol=1e-12,
                                   err_msg=name)


def test_dense_observed_problem_on_the_blas_path(backend, rng, monkeypatch):
    """A large, densely observed A iterates on the dense kernels (no plan)."""
    monkeypatch.setattr(factorization, "SOLVER_LOOP_MAX_WORK", 10)
    A = rng.random((30, 20))
    A[0, 0] = np.nan
    data = factorization._ObservedData(A, None, 2)
    assert data.plan is None and data.n_observed == 599
    dense = fastgd.factorize(A, 2, random_state=0, n_iter=20)
    monkeypatch.setattr(factorization, "SOLVER_LOOP_MAX_WORK", 10**9)
    small = fastgd.factorize(A, 2, random_state=0, n_iter=20)
    np.testing.assert_allclose(dense.loss_history, small.loss_history, rtol=1e-10)


def test_callback_sees_every_iteration_and_can_stop(backend, loop):
    seen = []

    def callback(iteration, loss, W, H):
        seen.append((iteration, loss))
        assert not W.flags.writeable and not H.flags.writeable
        assert W.shape == (4, 2) and H.shape == (2, 3)
        return iteration == 7

    result = fastgd.factorize(TUTORIAL_A, 2, random_state=0, n_iter=50, callback=callback)
    assert [i for i, _ in seen] == list(range(1, 8))
    assert result.n_iter == 7 and not result.converged
    assert result.message == "the callback asked to stop"
    np.testing.assert_array_equal([loss for _, loss in seen], result.loss_history[1:])
    # The run up to the stop is bitwise the run without a callback.
    plain = fastgd.factorize(TUTORIAL_A, 2, random_state=0, n_iter=7)
    np.testing.assert_array_equal(plain.loss_history, result.loss_history)
    np.testing.assert_array_equal(plain.W, result.W)


def test_n_iter_is_a_bound_not_a_size(backend, monkeypatch):
    """The compiled loop's calls take at most ITERATIONS_PER_CALL iterations each, with the
    same bits as one call; so n_iter far beyond memory is a bound that tol stops well
    before (it was an allocation of n_iter + 1 losses up front, and a NumPy error)."""
    one_call = fastgd.factorize(TUTORIAL_A, 2, random_state=0, n_iter=50)
    monkeypatch.setattr(factorization, "ITERATIONS_PER_CALL", 7)
    in_calls = fastgd.factorize(TUTORIAL_A, 2, random_state=0, n_iter=50)
    assert in_calls.n_iter == 50 and len(in_calls.loss_history) == 51
    np.testing.assert_array_equal(one_call.loss_history, in_calls.loss_history)
    np.testing.assert_array_equal(one_call.W, in_calls.W)
    np.testing.assert_array_equal(one_call.H, in_calls.H)
    monkeypatch.undo()
    bounded = fastgd.factorize(TUTORIAL_A, 2, random_state=0, n_iter=2**70, tol=1e-3)
    assert bounded.converged and 1 < bounded.n_iter < 10**5
    exact = fastgd.factorize(TUTORIAL_A, 2, random_state=0, n_iter=bounded.n_iter, tol=1e-3)
    np.testing.assert_array_equal(bounded.loss_history, exact.loss_history)


def test_progress_bar_does_not_change_the_run(backend):
    require_peer("tqdm")
    plain = fastgd.factorize(TUTORIAL_A, 2, random_state=0, n_iter=300)
    shown = fastgd.factorize(TUTORIAL_A, 2, random_state=0, n_iter=300, progress=True)
    np.testing.assert_array_equal(plain.loss_history, shown.loss_history)


def test_tol_stops_at_convergence(backend, loop):
    result = fastgd.factorize(TUTORIAL_A, 2, random_state=0, optimizer="gd", lr=0.01,
                              n_iter=100000, tol=1e-9, nonneg=True)
    assert result.converged and result.n_iter < 100000
    last, before = result.loss_history[-1], result.loss_history[-2]
    assert abs(last - before) <= 1e-9 * before
    steps = np.abs(np.diff(result.loss_history[:-1])) / result.loss_history[:-2]
    assert (steps > 1e-9).all()
    assert len(result.loss_history) == result.n_iter + 1


def test_divergence_stops_with_a_warning(backend, loop):
    with pytest.warns(RuntimeWarning, match="lower lr"):
        result = fastgd.factorize(TUTORIAL_A, 2, random_state=0, optimizer="gd", lr=1e3,
                                  loss="sse", n_iter=1000)
    assert result.n_iter < 1000 and not np.isfinite(result.loss_history[-1])
    assert np.isfinite(result.loss_history[:-1]).all()


def test_float32_stays_float32_and_init_is_not_modified(backend, loop, rng):
    A = np.where(rng.random((8, 6)) < 0.7, rng.random((8, 6)), np.nan).astype(np.float32)
    W0 = rng.random((8, 2)).astype(np.float32)
    H0 = rng.random((2, 6)).astype(np.float32)
    copies = (A.copy(), W0.copy(), H0.copy())
    result = fastgd.factorize(A, 2, init=(W0, H0), n_iter=20)
    assert result.W.dtype == result.H.dtype == np.float32
    for before, after in zip(copies, (A, W0, H0), strict=True):
        np.testing.assert_array_equal(before, after)
    assert result.reconstruct().dtype == np.float32


def test_random_init_is_reproducible_and_scaled(backend):
    A = np.full((50, 40), 9.0)
    a = fastgd.factorize(A, 3, random_state=np.random.default_rng(4), n_iter=0)
    b = fastgd.factorize(A, 3, random_state=4, n_iter=0)
    c = fastgd.factorize(A, 3, random_state=np.random.RandomState(4), n_iter=0)
    np.testing.assert_array_equal(a.W, b.W)
    assert (a.W > 0).all() and (c.H > 0).all()
    assert a.loss_history.shape == (1,) and a.n_iter == 0
    # W @ H has the data's magnitude: E|z|^2 = 2/pi per term, rank terms.
    assert 0.3 * 9 < a.reconstruct().mean() < 3 * 9


def test_predict_and_reconstruct(backend):
    result = fastgd.factorize(TUTORIAL_A, 2, random_state=0, n_iter=10)
    full = result.reconstruct()
    np.testing.assert_allclose(result.predict([0, 3, -1], [0, 2, 1]),
                               [full[0, 0], full[3, 2], full[3, 1]])
    np.testing.assert_allclose(result.predict([[0]], [[1]]), [[full[0, 1]]])
    with pytest.raises(ValueError, match="rows must lie in"):
        result.predict([4], [0])
    with pytest.raises(TypeError, match="cols must hold integers"):
        result.predict([0], [0.5])
    with pytest.raises(ValueError, match="one shape"):
        result.predict([0, 1], [0])
    assert "FactorizationResult" in repr(result)


def test_optimizer_state_per_optimizer(backend, loop):
    gd = fastgd.factorize(TUTORIAL_A, 2, random_state=0, optimizer="gd", lr=0.01, n_iter=5)
    assert gd.optimizer_state == {}
    with pytest.raises(ValueError, match="adagrad"):
        gd.effective_lr()
    heavy = fastgd.factorize(TUTORIAL_A, 2, random_state=0, optimizer="gd", lr=0.01,
                             momentum=0.5, n_iter=5)
    assert heavy.optimizer_state["velocity_W"].shape == (4, 2)
    assert heavy.optimizer_state["velocity_H"].shape == (2, 3)


def test_no_observed_entry(backend):
    empty = np.full((3, 2), np.nan)
    with pytest.raises(ValueError, match="no observed entry"):
        fastgd.factorize(empty, 1, random_state=0)
    result = fastgd.factorize(empty, 1, random_state=0, loss="sse", l2=0.1, n_iter=5)
    assert result.loss_history[-1] < result.loss_history[0]


@pytest.mark.parametrize("kwargs, error, match", [
    ({"rank": 0}, ValueError, "rank must be an int >= 1"),
    ({"rank": 2.0}, TypeError, "rank must be an int >= 1; got float"),
    ({"optimizer": "adamax"}, ValueError, "optimizer must be one of"),
    ({"lr": 0}, ValueError, "lr must be > 0"),
    ({"lr": -1.0}, ValueError, "lr must be"),
    ({"lr": "fast"}, TypeError, "lr must be a real number"),
    ({"n_iter": -1}, ValueError, "n_iter must be an int >= 0"),
    ({"eps_mode": "both"}, ValueError, "eps_mode must be one of"),
    ({"momentum": 0.9}, ValueError, "momentum applies to optimizer='gd' or 'rmsprop'"),
    ({"optimizer": "rmsprop", "momentum": 0.9, "nesterov": True}, ValueError,
     "nesterov applies to optimizer='gd'"),
    ({"optimizer": "gd", "nesterov": True}, ValueError, "nesterov=True needs momentum"),
    ({"loss": "mae"}, ValueError, "loss must be one of"),
    ({"l2": -1.0}, ValueError, "l2 must be"),
    ({"tol": -1.0}, ValueError, "tol must be"),
    ({"nonneg": "yes"}, TypeError, "nonneg must be a bool"),
    ({"callback": 3}, TypeError, "callback must be callable"),
    ({"n_threads": 0}, ValueError, "n_threads"),
    ({"init": "warm"}, ValueError, "init must be None or a pair"),
    ({"init": (np.ones((4, 3)), np.ones((3, 3)))}, ValueError, "init must have rank 2"),
    ({"init": (np.ones((5, 2)), np.ones((2, 3)))}, ValueError,
     r"init\[0\] \(W0\) must have shape"),
    ({"init": (np.full((4, 2), np.nan), np.ones((2, 3)))}, ValueError, "W0.* must be finite"),
    ({"A": np.ones((4, 3), dtype=complex)}, TypeError, "A must hold real numbers"),
    ({"A": np.ones(3)}, ValueError, "A must be a 2-D array"),
    ({"A": np.array([[1.0, np.inf]])}, ValueError, "A must be finite at every observed"),
])
def test_bad_arguments_raise_clear_errors(backend, kwargs, error, match):
    arguments = {"A": TUTORIAL_A, "rank": 2, **kwargs}
    if arguments["A"].shape != (4, 3):
        arguments["rank"] = 1
    with pytest.raises(error, match=match):
        fastgd.factorize(**arguments)


def test_same_final_loss_as_the_projected_gradient_tutorials_autograd_code():
    """The benchmarks' peer, the tutorial's own autograd loop, ends where fastgd does."""
    require_peer("autograd")
    from fastgd import demo
    from fastgd.benchmarks import factorize as cases

    A = np.array(demo.TUTORIAL_MATRIX)
    W0, H0 = demo.projected_gd_start()
    W, H, cost = cases.autograd_projected_gd(A, W0, H0, 0.01, 10000)
    result = fastgd.factorize(A, 2, init=(W0, H0), **demo.PROJECTED_GD)
    assert abs(result.loss_history[-1] - cost) <= 1e-9
    np.testing.assert_allclose(result.reconstruct(), W @ H, atol=1e-6)
    # The benchmarks' plain NumPy loop is the same algorithm too.
    W_np, H_np = cases.numpy_loop(A, W0, H0, 10000, **demo.PROJECTED_GD)
    np.testing.assert_allclose(W_np @ H_np, W @ H, atol=1e-6)


@pytest.mark.parametrize("lr, n_steps, tolerance", [
    (0.05, 2000, 1e-9),   # no oscillation: the whole run agrees
    (0.1, 450, 1e-12),    # the tutorial's lr, up to where its oscillation amplifies rounding
    (0.1, 2000, 1e-4),    # ... about 1e12-fold between steps 450 and 480: the end agrees less
])
def test_adagrad_tutorial_against_its_autograd_code(lr, n_steps, tolerance):
    require_peer("autograd")
    from fastgd import demo
    from fastgd.benchmarks import factorize as cases

    A = np.array(demo.TUTORIAL_MATRIX)
    W0, H0 = demo.adagrad_start()
    W, H, cost = cases.autograd_adagrad(A, W0, H0, lr, 1e-8, n_steps)
    result = fastgd.factorize(A, 2, init=(W0, H0), **{**demo.ADAGRAD, "lr": lr,
                                                       "n_iter": n_steps})
    assert abs(result.loss_history[-1] - cost) <= tolerance
    if n_steps == 2000 and lr == 0.1:
        np.testing.assert_array_equal((W @ H).round(), result.reconstruct().round())
        W_np, H_np = cases.numpy_loop(A, W0, H0, n_steps, **demo.ADAGRAD)
        np.testing.assert_array_equal((W_np @ H_np).round(), TUTORIAL_RECOVERED)


def test_adagrad_tutorials_end_moves_more_than_1e_9_under_one_ulp_of_its_start():
    """Why the lr 0.1 run is compared loosely at step 2000: the tutorial's own autograd
    code, started one ulp away in a single entry, ends about 1e-6 to 1e-5 away from
    itself, and fastgd ends within that spread."""
    require_peer("autograd")
    from fastgd import demo
    from fastgd.benchmarks import factorize as cases

    A = np.array(demo.TUTORIAL_MATRIX)
    W0, H0 = demo.adagrad_start()
    _, _, cost = cases.autograd_adagrad(A, W0, H0, 0.1, 1e-8, 2000)
    W1, H1 = W0.copy(), H0.copy()
    W1[0, 0] = np.nextafter(W1[0, 0], np.inf)
    H1[1, 2] = np.nextafter(H1[1, 2], -np.inf)
    spread = [abs(cases.autograd_adagrad(A, W, H, 0.1, 1e-8, 2000)[2] - cost)
              for W, H in ((W1, H0), (W0, H1))]
    assert min(spread) > 1e-8
    result = fastgd.factorize(A, 2, init=(W0, H0), **demo.ADAGRAD)
    assert abs(result.loss_history[-1] - cost) <= 10 * max(spread)


@settings(max_examples=40, deadline=None)
@given(m=st.integers(1, 6), n=st.integers(1, 6), rank=st.integers(1, 3),
       seed=st.integers(0, 2**32 - 1), loss=st.sampled_from(["sse", "mse", "rmse"]),
       optimizer=st.sampled_from(["gd", "adagrad"]), nonneg=st.booleans(),
       dtype=st.sampled_from([np.float32, np.float64]))
def test_property_compiled_loop_follows_the_reference(m, n, rank, seed, loss, optimizer,
                                                      nonneg, dtype):
    """Any small problem: the compiled loop, its NumPy twin and the reference loop of this
    file agree step by step (float32 to its precision)."""
    rng = np.random.default_rng(seed)
    A = (rng.standard_normal((m, n)) + 2).astype(dtype)
    A[rng.random((m, n)) < 0.3] = np.nan
    A.flat[rng.integers(m * n)] = 1.5  # at least one observed entry
    W0 = (rng.random((m, rank)) + 0.1).astype(dtype)
    H0 = (rng.random((rank, n)) + 0.1).astype(dtype)
    options = {"optimizer": optimizer, "lr": 0.01, "nonneg": nonneg, "loss": loss}
    expected, _, _ = reference_factorize(A, W0, H0, n_iter=20, **options)
    rtol = 2e-4 if dtype == np.float32 else 1e-9
    for backend in ("compiled", "numpy"):
        with fastgd.use_backend(backend):
            result = fastgd.factorize(A, rank, init=(W0, H0), n_iter=20, **options)
        assert result.W.dtype == dtype
        np.testing.assert_allclose(result.loss_history, expected, rtol=rtol, atol=rtol)


@pytest.mark.parametrize("shape", [(0, 3), (3, 0), (0, 0)])
def test_empty_matrices(backend, shape):
    result = fastgd.factorize(np.ones(shape), 2, loss="sse", random_state=0, n_iter=3)
    assert result.W.shape == (shape[0], 2) and result.H.shape == (2, shape[1])
    np.testing.assert_array_equal(result.loss_history, np.zeros(4))
    assert result.reconstruct().shape == shape


def test_one_by_one_and_views(backend):
    one = fastgd.factorize(np.array([[3.0]]), 1, random_state=0, loss="mse", n_iter=500)
    assert one.reconstruct()[0, 0] == pytest.approx(3.0, abs=1e-3)
    base = np.arange(60.0).reshape(6, 10) / 10 + 1e3  # a large common offset
    base[0, 0] = np.nan
    view = base[:, ::2]
    copied = np.ascontiguousarray(view)
    a = fastgd.factorize(view, 2, random_state=0, n_iter=30, loss="mse", lr=0.5)
    b = fastgd.factorize(copied, 2, random_state=0, n_iter=30, loss="mse", lr=0.5)
    np.testing.assert_array_equal(a.loss_history, b.loss_history)
    assert a.loss_history[-1] < a.loss_history[0]


@pytest.mark.parametrize("loss", ["sse", "mse", "rmse"])
def test_data_term_and_penalty_are_reported_apart(backend, loop, loss, rng):
    """loss_history is the objective; data_loss is the loss over the observed entries at
    the final factors (what the NumPy oracle computes), penalty the l2 term."""
    A = np.where(rng.random((30, 20)) < 0.6, rng.random((30, 20)) + 1, np.nan)
    l2 = 0.05
    result = fastgd.factorize(A, 3, loss=loss, l2=l2, n_iter=50, lr=0.05, random_state=0)
    observed = ~np.isnan(A)
    residual = (result.W @ result.H - A)[observed]
    sse = float(residual @ residual)
    expected = {"sse": sse, "mse": sse / residual.size,
                "rmse": math.sqrt(sse / residual.size)}[loss]
    assert result.data_loss == pytest.approx(expected, rel=1e-10)
    penalty = 0.5 * l2 * (np.sum(result.W ** 2) + np.sum(result.H ** 2))
    assert result.penalty == pytest.approx(penalty, rel=1e-12)
    assert result.data_loss + result.penalty == pytest.approx(result.loss_history[-1],
                                                              rel=1e-14)
    plain = fastgd.factorize(A, 3, loss=loss, n_iter=5, random_state=0)
    assert plain.penalty == 0.0 and plain.data_loss == plain.loss_history[-1]


def test_factors_collapsed_by_l2_are_warned_about(backend, loop, rng):
    """l2 = 0.02 is mild for a sum of squares, but with the mean over the observed entries
    it shrinks the factors to ~0: a warning names l2 and the loss, at the caller's line."""
    A = np.where(rng.random((60, 40)) < 0.5, rng.integers(1, 6, (60, 40)), np.nan)
    with pytest.warns(RuntimeWarning, match=r"collapsed towards 0.*l2=2.*loss='mse'") as caught:
        collapsed = fastgd.factorize(A, 4, loss="mse", l2=2.0, n_iter=2000, lr=0.1,
                                     random_state=0)
    assert caught[0].filename == __file__
    assert np.abs(collapsed.reconstruct()).max() < 1e-3 * np.nanmean(np.abs(A))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fastgd.factorize(A, 4, loss="sse", l2=0.02, n_iter=200, lr=0.1, random_state=0)


def test_a_result_can_be_made_by_hand():
    W, H = np.ones((3, 2)), np.full((2, 4), 0.5)
    result = fastgd.FactorizationResult(W, H, [2.0, 1.0], 1, converged=True, message="done")
    np.testing.assert_array_equal(result.reconstruct(), np.ones((3, 4)))
    assert result.converged and result.message == "done" and result.optimizer_state == {}
    assert result.loss_history.dtype == np.float64 and math.isnan(result.data_loss)
    with pytest.raises(ValueError, match="effective_lr needs"):
        result.effective_lr()


@pytest.mark.parametrize("optimizer, settings, torch_settings", [
    ("adam", {"lr": 0.05}, {}),
    ("rmsprop", {"lr": 0.01}, {}),
    ("rmsprop", {"lr": 0.01, "momentum": 0.5}, {"momentum": 0.5}),
], ids=["adam", "rmsprop", "rmsprop momentum"])
@pytest.mark.parametrize("loss", ["mse", "rmse"])
def test_adam_and_rmsprop_follow_torch(backend, rng, optimizer, settings, torch_settings,
                                       loss):
    """factorize with Adam or RMSprop takes the steps torch.optim takes on the same masked
    loss, autograd's gradients included: the loss histories agree to rounding."""
    torch = require_peer("torch")
    A = np.where(rng.random((12, 9)) < 0.6, rng.standard_normal((12, 9)), np.nan)
    W0, H0 = rng.standard_normal((12, 3)), rng.standard_normal((3, 9))
    result = fastgd.factorize(A, 3, init=(W0, H0), optimizer=optimizer, loss=loss,
                              n_iter=30, **settings)
    observed = torch.tensor(~np.isnan(A))
    target = torch.tensor(np.nan_to_num(A))
    W, H = (torch.tensor(x.copy(), requires_grad=True) for x in (W0, H0))
    torch_class = {"adam": torch.optim.Adam, "rmsprop": torch.optim.RMSprop}[optimizer]
    torch_optimizer = torch_class([W, H], lr=settings["lr"], eps=1e-8, foreach=False,
                                  **torch_settings)
    history = []
    for _ in range(31):
        torch_optimizer.zero_grad()
        residual = (W @ H - target)[observed]
        value = (residual ** 2).mean()
        if loss == "rmse":
            value = value.sqrt()
        history.append(float(value))
        value.backward()
        torch_optimizer.step()
    np.testing.assert_allclose(result.loss_history, history, rtol=1e-10)
    assert result.n_iter == 30 and len(result.loss_history) == 31


@pytest.mark.parametrize("optimizer", ["adam", "rmsprop"])
def test_adam_and_rmsprop_complete_the_tutorial_matrix(backend, optimizer):
    A = np.array([[np.nan, 4, 5], [4, 4, 5], [5, 3, 4], [2, 3, 3]])
    result = fastgd.factorize(A, 2, optimizer=optimizer, lr=0.01, n_iter=3000, nonneg=True,
                              random_state=0)
    # The best rank-2 non-negative fit has an RMSE of about 0.0866 (the tutorials' end).
    assert result.loss_history[-1] < 0.1
    np.testing.assert_array_equal(result.reconstruct().round()[0], [5, 4, 5])
    assert (result.W >= 0).all() and (result.H >= 0).all()
    names = {"adam": {"exp_avg_W", "exp_avg_H", "exp_avg_sq_W", "exp_avg_sq_H"},
             "rmsprop": {"square_avg_W", "square_avg_H"}}[optimizer]
    assert set(result.optimizer_state) == names
    assert result.optimizer_state[sorted(names)[0]].shape in ((4, 2), (2, 3))
