"""numerical_gradient and check_grad on functions whose gradients are known exactly."""

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

import fastgd


def cubic(x):
    return float(np.sum(x ** 3) + np.prod(x[:2]))


def cubic_gradient(x):
    g = 3 * x ** 2
    g[0] += x[1]
    g[1] += x[0]
    return g


@pytest.mark.parametrize(("method", "rtol"), [("central", 1e-9), ("forward", 1e-6),
                                              ("backward", 1e-6)])
def test_numerical_gradient_accuracy_float64(method, rtol):
    x = np.array([0.5, -1.5, 2.0, 10.0, -1e-3])
    g = fastgd.numerical_gradient(cubic, x, method=method)
    exact = cubic_gradient(x)
    assert g.dtype == np.float64
    # Rounding in f limits the small components: atol relative to the gradient's scale.
    assert_allclose(g, exact, rtol=rtol, atol=rtol * np.abs(exact).max())


def test_numerical_gradient_keeps_float32_and_structure():
    W = np.array([[1.0, 2.0]], dtype=np.float32)
    H = np.array([[0.5], [-1.0]], dtype=np.float32)

    def fun(p):
        return float((p[0] @ p[1]).sum() ** 2)

    for point in ([W, H], (W, H)):
        gW, gH = result = fastgd.numerical_gradient(fun, point)
        assert type(result) is type(point)
        assert gW.dtype == np.float32 and gH.dtype == np.float32
        value = float((W @ H).sum())  # -1.5
        assert_allclose(gW, 2 * value * H.T, rtol=1e-2)
        assert_allclose(gH, 2 * value * W.T, rtol=1e-2)


def test_numerical_gradient_does_not_modify_x_and_passes_args():
    x = np.array([[1.0, 2.0], [3.0, 4.0]])
    copy = x.copy()
    g = fastgd.numerical_gradient(lambda v, a, b=0: float(a * np.sum(v) + b), x, args=(3.0,),
                                  kwargs={"b": 1.0})
    assert_array_equal(x, copy)
    assert_allclose(g, np.full((2, 2), 3.0), rtol=1e-9)


def test_explicit_steps():
    x = np.array([1.0, 2.0])
    g = fastgd.numerical_gradient(lambda v: float(np.sum(v ** 2)), x, step=0.5)
    assert_allclose(g, 2 * x, rtol=1e-12)  # central differences are exact on quadratics
    g = fastgd.numerical_gradient(lambda v: float(np.sum(v ** 2)), x, step=[0.5, 0.25],
                                  method="forward")
    assert_allclose(g, 2 * x + [0.5, 0.25], rtol=1e-12)


def test_numerical_gradient_bad_arguments():
    x = np.ones(3)
    with pytest.raises(ValueError, match="fun must return a scalar; got an array of shape"):
        fastgd.numerical_gradient(lambda v: v, x)
    with pytest.raises(ValueError, match="method must be one of"):
        fastgd.numerical_gradient(cubic, x, method="complex")
    with pytest.raises(ValueError, match="step must be positive and finite"):
        fastgd.numerical_gradient(cubic, x, step=0.0)
    with pytest.raises(TypeError, match=r"step must be a real number .*got bool"):
        fastgd.numerical_gradient(cubic, x, step=True)
    with pytest.raises(TypeError, match=r"step must be a real number .*got str"):
        fastgd.numerical_gradient(cubic, x, step="1e-3")
    with pytest.raises(ValueError, match=r"step must broadcast to x's shape \(3,\); got "
                                         r"shape \(2,\)"):
        fastgd.numerical_gradient(cubic, x, step=[1e-3, 1e-3])
    with pytest.raises(TypeError, match=r"x\[1\] must hold real numbers"):
        fastgd.numerical_gradient(lambda p: 0.0, [x, x.astype(complex)])
    with pytest.raises(ValueError, match="non-empty"):
        fastgd.numerical_gradient(lambda p: 0.0, [])


def test_check_grad_passes_a_right_gradient():
    x = np.array([0.5, -1.5, 2.0])
    report = fastgd.check_grad(cubic, cubic_gradient, x)
    assert report.passed and report.n_failed == 0
    assert report.max_abs_error < 1e-7 and report.max_rel_error < 1e-8
    assert report.n_evaluations == 2 * x.size + 1
    assert "passed" in str(report)
    for method in ("forward", "backward"):
        report = fastgd.check_grad(cubic, cubic_gradient, x, method=method)
        assert report.passed and report.rtol == 1e-4 and report.n_evaluations == x.size + 2


def test_check_grad_locates_a_wrong_component():
    W, H = np.ones((2, 3)), np.ones((3, 2))

    def fun(p):
        return float(np.sum(p[0] @ p[1]))

    def wrong(p):
        gW = np.full((2, 3), 2.0)
        gH = np.full((3, 2), 2.0)
        gH[2, 1] = 2.5
        return gW, gH

    report = fastgd.check_grad(fun, wrong, [W, H])
    assert not report.passed and report.n_failed == 1
    assert report.worst == "x[1][2, 1]"
    assert report.worst_analytic == 2.5
    assert report.worst_numerical == pytest.approx(2.0, rel=1e-8)
    assert report.max_abs_error == pytest.approx(0.5, rel=1e-8)
    with pytest.raises(AssertionError, match=r"(?s)FAILED: 1 of 12 values.*x\[1\]\[2, 1\].*"
                       r"ACTUAL \(analytic gradient\): 2\.5.*DESIRED \(finite differences\)"):
        fastgd.check_grad(fun, wrong, [W, H], raise_on_failure=True)


def test_check_grad_takes_arrays_and_checks_their_shapes():
    x = np.array([1.0, 2.0])
    assert fastgd.check_grad(lambda v: float(v @ v), 2 * x, x).passed
    with pytest.raises(ValueError, match=r"the gradient of x must have shape \(2,\)"):
        fastgd.check_grad(lambda v: float(v @ v), np.ones(3), x)
    with pytest.raises(ValueError, match="grad must give 2 arrays"):
        fastgd.check_grad(lambda p: 0.0, [np.ones(2)], [x, x])


@pytest.mark.parametrize("tolerances, error, match", [
    ({"rtol": -1e-6}, ValueError, "rtol must be >= 0.0 and finite; got -1e-06"),
    ({"rtol": float("nan")}, ValueError, "rtol must be >= 0.0 and finite; got nan"),
    ({"rtol": True}, TypeError, "rtol must be a real number; got bool"),
    ({"atol": -1.0}, ValueError, "atol must be >= 0.0 and finite; got -1.0"),
    ({"atol": "0.1"}, TypeError, "atol must be a real number; got str"),
])
def test_check_grad_refuses_meaningless_tolerances(tolerances, error, match):
    """A negative or NaN tolerance fails every check whatever the gradient; it is a
    mistake to say so, not a failed check."""
    x = np.array([1.0, 2.0])
    with pytest.raises(error, match=match):
        fastgd.check_grad(lambda v: float(v @ v), 2 * x, x, **tolerances)


def test_check_grad_flags_nan_gradients_and_respects_tolerances():
    x = np.array([1.0, 2.0])
    assert not fastgd.check_grad(lambda v: float(v @ v), np.array([2.0, np.nan]), x).passed
    slightly_off = 2 * x * (1 + 1e-4)
    assert not fastgd.check_grad(lambda v: float(v @ v), slightly_off, x).passed
    assert fastgd.check_grad(lambda v: float(v @ v), slightly_off, x, rtol=1e-3).passed


def test_check_grad_along_random_directions():
    W, H = np.linspace(-1, 1, 600).reshape(30, 20), np.linspace(0, 2, 800).reshape(20, 40)

    def fun(p):
        return float(np.sum((p[0] @ p[1]) ** 2))

    def grad(p):
        P = p[0] @ p[1]
        return [2 * P @ p[1].T, 2 * p[0].T @ P]

    report = fastgd.check_grad(fun, grad, [W, H], directions=6, seed=3)
    assert report.passed and report.n_evaluations == 2 * 6 + 1
    assert report.analytic[0].shape == (6,) and report.worst.startswith("direction[")

    def slightly_wrong(p):
        gW, gH = grad(p)
        return [gW * 1.001, gH]

    report = fastgd.check_grad(fun, slightly_wrong, [W, H], directions=6, seed=3)
    assert not report.passed
    assert 5e-4 < report.max_rel_error < 2e-3
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="directions must be None or a positive int"):
            fastgd.check_grad(fun, grad, [W, H], directions=bad)
