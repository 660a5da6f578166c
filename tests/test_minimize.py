"""fastgd.minimize on problems whose minimum is known, with analytic and numerical
gradients, directly and through scipy.optimize.minimize."""

import numpy as np
import pytest
import scipy.optimize

import fastgd


def quadratic(seed=0, n=6):
    """A convex quadratic 0.5 x'Qx - b'x with its minimiser and the largest curvature."""
    rng = np.random.default_rng(seed)
    M = rng.standard_normal((n, n))
    Q = M @ M.T + n * np.eye(n)
    b = rng.standard_normal(n)
    return Q, b, np.linalg.solve(Q, b), np.linalg.eigvalsh(Q).max()


@pytest.mark.parametrize("method, options", [
    ("gd", {}),
    ("gd", {"momentum": 0.5}),
    ("gd", {"momentum": 0.5, "nesterov": True}),
    ("adagrad", {"lr": 1.0}),
])
def test_convex_quadratic_reaches_its_minimum(backend, method, options):
    Q, b, x_star, curvature = quadratic()
    options = {"lr": 1.0 / curvature, **options}

    def value_and_grad(x):
        return 0.5 * x @ Q @ x - b @ x, Q @ x - b

    res = fastgd.minimize(value_and_grad, np.zeros(6), jac=True, method=method,
                          maxiter=50000, tol=1e-10, **options)
    assert res.success and res.status == 0
    np.testing.assert_allclose(res.x, x_star, atol=1e-8)
    assert np.abs(res.jac).max() <= 1e-10
    assert res.fun == pytest.approx(value_and_grad(x_star)[0], abs=1e-14)
    # jac=True: one call of fun per evaluation, which also gives the gradient.
    assert res.nfev == res.njev == res.nit + 1


@pytest.mark.parametrize("gradient", ["analytic", "numerical"])
@pytest.mark.parametrize("method, options", [
    ("gd", {"lr": 2e-3, "momentum": 0.9}),
    ("gd", {"lr": 1e-3, "momentum": 0.9, "nesterov": True}),
    ("adagrad", {"lr": 0.5}),
])
def test_rosenbrock_reaches_its_minimum(backend, gradient, method, options):
    x0 = np.array([-1.2, 1.0])
    jac = scipy.optimize.rosen_der if gradient == "analytic" else None
    res = fastgd.minimize(scipy.optimize.rosen, x0, jac=jac, method=method, maxiter=100000,
                          tol=1e-6, **options)
    assert res.success, res.message
    np.testing.assert_allclose(res.x, [1.0, 1.0], atol=1e-5)
    assert res.fun < 1e-10
    if gradient == "analytic":
        assert res.nfev == res.njev == res.nit + 1
    else:
        # Central differences: 2 calls per entry, plus the value, per evaluation.
        assert res.nfev == res.njev * (1 + 2 * x0.size)
    np.testing.assert_array_equal(x0, [-1.2, 1.0])


def test_counts_with_a_separate_jac(backend):
    calls = {"fun": 0, "jac": 0}

    def fun(x):
        calls["fun"] += 1
        return float(np.sum(x ** 2))

    def jac(x):
        calls["jac"] += 1
        return 2 * x

    res = fastgd.minimize(fun, np.ones(3), jac=jac, method="gd", lr=0.1, maxiter=7, tol=0)
    assert res.status == 1 and not res.success and res.nit == 7
    assert res.nfev == calls["fun"] == 8 and res.njev == calls["jac"] == 8
    np.testing.assert_allclose(res.x, np.full(3, 0.8 ** 7))


def test_any_shape_and_dtype(backend):
    target = np.arange(6.0).reshape(2, 3)
    seen = []

    def fun(x):
        seen.append(x.shape)
        return np.sum((x - target) ** 2), 2 * (x - target)

    res = fastgd.minimize(fun, np.zeros((2, 3), dtype=np.float32), jac=True, method="gd",
                          lr=0.25, tol=1e-5)
    assert res.x.shape == res.jac.shape == (2, 3) and res.x.dtype == np.float32
    assert set(seen) == {(2, 3)}
    np.testing.assert_allclose(res.x, target, atol=1e-5)
    integer_start = fastgd.minimize(fun, np.zeros((2, 3), dtype=int), jac=True, method="gd",
                                    lr=0.25)
    assert integer_start.x.dtype == np.float64


def test_bounds_project_every_step(backend):
    def fun(x):
        return np.sum((x - 3.0) ** 2), 2 * (x - 3.0)

    for bounds in ([(None, 1.0), (0.0, None), (-1.0, 5.0)],
                   scipy.optimize.Bounds([-np.inf, 0.0, -1.0], [1.0, np.inf, 5.0])):
        res = fastgd.minimize(fun, np.zeros(3), jac=True, bounds=bounds, lr=0.5,
                              maxiter=20000, tol=1e-9)
        assert res.success
        np.testing.assert_allclose(res.x, [1.0, 3.0, 3.0], atol=1e-8)
    with pytest.raises(ValueError, match="one \\(min, max\\) pair per entry"):
        fastgd.minimize(fun, np.zeros(3), jac=True, bounds=[(0, 1)])
    with pytest.raises(ValueError, match="min <= max"):
        fastgd.minimize(fun, np.zeros(1), jac=True, bounds=[(2, 1)])


def test_callback_styles_and_stop(backend):
    xs = []
    fastgd.minimize(lambda x: np.sum(x ** 2), np.ones(2), jac=lambda x: 2 * x, method="gd",
                    lr=0.1, maxiter=3, tol=0, callback=xs.append)
    assert len(xs) == 3
    np.testing.assert_allclose(xs[-1], np.full(2, 0.8 ** 3))

    def stop_after_two(intermediate_result):
        assert set(intermediate_result) >= {"x", "fun"}
        if len(xs) >= 5:
            raise StopIteration
        xs.append(intermediate_result.x)

    res = fastgd.minimize(lambda x: np.sum(x ** 2), np.ones(2), jac=lambda x: 2 * x,
                          method="gd", lr=0.1, maxiter=100, tol=0, callback=stop_after_two)
    assert res.status == 99 and not res.success and res.nit == 3
    assert res.fun == pytest.approx(np.sum(res.x ** 2))


def test_divergence_is_reported(backend):
    with np.errstate(over="ignore", invalid="ignore"):
        res = fastgd.minimize(lambda x: np.sum(x ** 4), np.ones(2), jac=lambda x: 4 * x ** 3,
                              method="gd", lr=10.0, maxiter=100)
    assert res.status == 2 and not res.success and "not finite" in res.message


def test_through_scipy_minimize(backend):
    Q, b, x_star, curvature = quadratic(seed=3)
    for jac in (True, "callable"):
        if jac is True:
            def fun(x, Q, b):
                return 0.5 * x @ Q @ x - b @ x, Q @ x - b
            kwargs = {"jac": True}
        else:
            def fun(x, Q, b):
                return 0.5 * x @ Q @ x - b @ x
            kwargs = {"jac": lambda x, Q, b: Q @ x - b}
        res = scipy.optimize.minimize(fun, np.zeros(6), args=(Q, b),
                                      method=fastgd.scipy_method("gd", momentum=0.5),
                                      options={"lr": 1.0 / curvature, "maxiter": 50000},
                                      tol=1e-10, **kwargs)
        assert res.success
        np.testing.assert_allclose(res.x, x_star, atol=1e-8)
    res = scipy.optimize.minimize(scipy.optimize.rosen, [-1.2, 1.0],
                                  method=fastgd.scipy_method("adagrad", lr=0.5),
                                  options={"maxiter": 100000, "tol": 1e-6},
                                  bounds=[(-2, 2), (-2, 2)])
    assert res.success
    np.testing.assert_allclose(res.x, [1.0, 1.0], atol=1e-5)
    with pytest.raises(ValueError, match="not constraints"):
        scipy.optimize.minimize(scipy.optimize.rosen, [0.0, 0.0],
                                method=fastgd.scipy_method("gd"),
                                constraints=[{"type": "eq", "fun": lambda x: x[0]}])


@pytest.mark.parametrize("kwargs, error, match", [
    ({"method": "bfgs"}, ValueError, "method must be one of"),
    ({"lr": 0.0}, ValueError, "lr must be > 0"),
    ({"maxiter": -1}, ValueError, "maxiter must be an int >= 0"),
    ({"tol": -1.0}, ValueError, "tol must be"),
    ({"momentum": 0.9}, ValueError, "momentum applies to method='gd' or 'rmsprop'"),
    ({"method": "rmsprop", "momentum": 0.9, "nesterov": True}, ValueError,
     "nesterov applies to method='gd'"),
    ({"method": "gd", "nesterov": True}, ValueError, "nesterov=True needs momentum"),
    ({"jac": "cs"}, ValueError, "jac must be None, True, a callable"),
    ({"jac": lambda x: np.ones(5)}, ValueError, "gradient from jac must have x0's 2"),
    ({"jac": lambda x: np.ones(2, dtype=complex)}, TypeError, "must hold real numbers"),
    ({"callback": 5}, TypeError, "callback must be callable"),
    ({"x0": np.array(["a", "b"])}, TypeError, "x0 must hold real numbers"),
])
def test_bad_arguments_raise_clear_errors(backend, kwargs, error, match):
    arguments = {"fun": lambda x: float(np.sum(x ** 2)), "x0": np.ones(2), **kwargs}
    with pytest.raises(error, match=match):
        fastgd.minimize(**arguments)
    with pytest.raises(TypeError, match="fun must be callable"):
        fastgd.minimize(3, np.ones(2))
    with pytest.raises(ValueError, match="fun must return a scalar"):
        fastgd.minimize(lambda x: x, np.ones(2))


@pytest.mark.parametrize("jac, calls_per_evaluation", [("3-point", 1 + 2 * 2),
                                                        ("2-point", 1 + 1 + 2)])
def test_named_finite_differences_as_in_scipy(backend, jac, calls_per_evaluation):
    """jac="3-point" is central differences (jac=None's scheme), "2-point" forward ones
    (one call per entry plus the point, besides the value), as scipy.optimize names them."""
    res = fastgd.minimize(scipy.optimize.rosen, np.array([-1.2, 1.0]), jac=jac,
                          method="adagrad", lr=0.5, maxiter=100000, tol=1e-5)
    assert res.success, res.message
    np.testing.assert_allclose(res.x, [1.0, 1.0], atol=1e-3 if jac == "2-point" else 1e-4)
    assert res.nfev == res.njev * calls_per_evaluation
    central = fastgd.minimize(scipy.optimize.rosen, np.array([-1.2, 1.0]), jac=None,
                              method="adagrad", lr=0.5, maxiter=50, tol=0)
    named = fastgd.minimize(scipy.optimize.rosen, np.array([-1.2, 1.0]), jac="3-point",
                            method="adagrad", lr=0.5, maxiter=50, tol=0)
    np.testing.assert_array_equal(central.x, named.x)


def test_options_as_scipy_passes_them(backend):
    """options= holds the settings by name and overrides the keywords."""
    fun = lambda x: float(np.sum((x - 3.0) ** 2))  # noqa: E731
    jac = lambda x: 2 * (x - 3.0)  # noqa: E731
    by_keywords = fastgd.minimize(fun, np.zeros(2), jac=jac, method="gd", lr=0.1,
                                  momentum=0.5, maxiter=7, tol=0)
    by_options = fastgd.minimize(fun, np.zeros(2), jac=jac, method="gd", lr=0.9,
                                 options={"lr": 0.1, "momentum": 0.5, "maxiter": 7, "tol": 0})
    np.testing.assert_array_equal(by_options.x, by_keywords.x)
    assert by_options.nit == 7


@pytest.mark.parametrize("kwargs, error, words", [
    ({"options": {"learning_rate": 0.1}}, ValueError, "unknown 'learning_rate'"),
    ({"options": [("lr", 0.1)]}, TypeError, "options must be a dict"),
    ({"options": {"lr": -1.0}}, ValueError, "lr"),
    ({"jac": "cs"}, ValueError, "'2-point' or '3-point'; got 'cs'"),
    ({"jac": np.ones(2)}, ValueError, "jac must be"),
])
def test_bad_options_and_jac_are_named(kwargs, error, words):
    with pytest.raises(error, match=words):
        fastgd.minimize(lambda x: float(np.sum(x ** 2)), np.ones(2), **kwargs)


@pytest.mark.parametrize("method, options", [
    ("adam", {"lr": 0.05}),
    ("rmsprop", {"lr": 0.01}),
    ("rmsprop", {"lr": 0.005, "momentum": 0.5}),
], ids=["adam", "rmsprop", "rmsprop momentum"])
def test_adam_and_rmsprop_reach_the_minimum(backend, method, options):
    """Adam's and RMSprop's steps shrink only as the gradient does: they reach tol."""
    Q, b, x_star, _ = quadratic()

    def value_and_grad(x):
        return 0.5 * x @ Q @ x - b @ x, Q @ x - b

    res = fastgd.minimize(value_and_grad, np.zeros(6), jac=True, method=method,
                          maxiter=200000, tol=1e-6, **options)
    assert res.success, res.message
    np.testing.assert_allclose(res.x, x_star, atol=1e-5)
    via_scipy = scipy.optimize.minimize(value_and_grad, np.zeros(6), jac=True,
                                        method=fastgd.scipy_method(method, **options),
                                        options={"maxiter": 200000, "tol": 1e-6})
    np.testing.assert_array_equal(via_scipy.x, res.x)
