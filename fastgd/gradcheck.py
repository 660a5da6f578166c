"""Finite-difference gradients, and a check of analytic gradients against them.

For any scalar function of an array or of a list/tuple of arrays (``[W, H]``). Unlike
scipy.optimize.check_grad, which returns one norm for one flat vector, the check
reports where the worst disagreement is and by how much, in the caller's own
structure, and can raise with ACTUAL/DESIRED labelled.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import TYPE_CHECKING

import numpy as np

from fastgd import _validation

if TYPE_CHECKING:
    from fastgd._typing import Any, ArraysLike, Callable, FiniteDifferences, RandomState

METHODS = ("central", "forward", "backward")

# Default rtol of check_grad by (dtype, method): central differences are accurate to
# about eps^(2/3) of the gradient, one-sided ones to about eps^(1/2).
DEFAULT_RTOL = {
    (np.dtype(np.float64), "central"): 1e-6,
    (np.dtype(np.float64), "one-sided"): 1e-4,
    (np.dtype(np.float32), "central"): 1e-2,
    (np.dtype(np.float32), "one-sided"): 5e-2,
}


def _as_structure(x):
    """(list of float arrays (copies), rebuild) for an array or a list/tuple of arrays."""
    if isinstance(x, (list, tuple)):
        if not x:
            raise ValueError("x must be an array or a non-empty list/tuple of arrays; got []")
        names = [f"x[{i}]" for i in range(len(x))]
        kind = type(x)
    else:
        names, kind, x = ["x"], None, [x]
    arrays = []
    for name, value in zip(names, x, strict=True):
        array = np.asarray(value)
        array = np.array(array, dtype=_validation.float_dtype_of(array, name), copy=True)
        arrays.append(array)

    def rebuild(items):
        return items[0] if kind is None else kind(items)

    return arrays, rebuild, names


def _scalar(value):
    if np.ndim(value) != 0:
        raise ValueError(f"fun must return a scalar; got an array of shape {np.shape(value)}")
    if np.iscomplexobj(value):
        raise TypeError(f"fun must return a real scalar; got {value!r}")
    return float(value)


def _step_array(step, shape, name):
    """A given step as float64 of the array's shape; TypeError for what is not real
    numbers (bools included), ValueError for a shape that does not broadcast."""
    values = np.asarray(step)
    if values.dtype.kind not in "iuf":
        raise TypeError(f"step must be a real number or an array of them (for {name}); got "
                        f"{type(step).__name__} of dtype {values.dtype}")
    try:
        return np.broadcast_to(values.astype(np.float64), shape).copy()
    except ValueError:
        raise ValueError(f"step must broadcast to {name}'s shape {shape}; got shape "
                         f"{values.shape}") from None


def _steps(array, step, method, name):
    """The step of every element of ``array``, rounded so that x + h is exact."""
    if step is None:
        power = 1 / 3 if method == "central" else 1 / 2
        base = float(np.finfo(array.dtype).eps) ** power
        h = base * np.maximum(1.0, np.abs(array.astype(np.float64)))
    else:
        h = _step_array(step, array.shape, name)
        if not (np.all(np.isfinite(h)) and np.all(h > 0)):
            raise ValueError(f"step must be positive and finite (for {name}); got {step!r}")
    # Representable steps: (x + h) - x, in the array's dtype.
    shifted = (array + h.astype(array.dtype)).astype(array.dtype)
    exact = shifted.astype(np.float64) - array.astype(np.float64)
    return np.where(exact > 0, exact, h)


def _split_steps(step, n_arrays):
    if step is None or isinstance(step, numbers.Real) or np.ndim(step) == 0 or n_arrays == 1:
        return [step] * n_arrays
    if len(step) != n_arrays:
        raise ValueError(
            f"step must be a number or one step per array of x ({n_arrays}); got {len(step)}"
        )
    return list(step)


def _difference_quotients(fun, arrays, rebuild, names, step, method, args, kwargs):
    """The finite-difference gradient of every array, and the number of calls of fun."""
    _validation.check_choice(method, "method", METHODS)
    point = rebuild(arrays)
    f0 = _scalar(fun(point, *args, **kwargs)) if method != "central" else None
    calls = 0 if f0 is None else 1
    gradients = []
    for array, name, array_step in zip(arrays, names, _split_steps(step, len(arrays)),
                                       strict=True):
        h = _steps(array, array_step, method, name)
        gradient = np.empty(array.shape, dtype=np.float64)
        flat, flat_h, flat_g = array.reshape(-1), h.reshape(-1), gradient.reshape(-1)
        for e in range(flat.shape[0]):
            original = flat[e]
            if method == "central":
                flat[e] = original + flat_h[e]
                upper = _scalar(fun(point, *args, **kwargs))
                flat[e] = original - flat_h[e]
                lower = _scalar(fun(point, *args, **kwargs))
                flat_g[e] = (upper - lower) / (2 * flat_h[e])
                calls += 2
            else:
                sign = 1.0 if method == "forward" else -1.0
                flat[e] = original + sign * flat_h[e]
                moved = _scalar(fun(point, *args, **kwargs))
                flat_g[e] = sign * (moved - f0) / flat_h[e]
                calls += 1
            flat[e] = original
        gradients.append(gradient.astype(array.dtype))
    return gradients, calls


def numerical_gradient(fun: Callable[..., Any], x: ArraysLike, *, step: Any = None,
                       method: FiniteDifferences = "central", args: tuple[Any, ...] = (),
                       kwargs: dict[str, Any] | None = None) -> Any:
    """The gradient of a scalar function by finite differences.

    Parameters
    ----------
    fun : callable
        ``fun(x, *args, **kwargs) -> float``. It receives ``x``'s structure (an array, or
        a list/tuple of arrays) holding perturbed copies; it must not modify them.
    x : array_like, or list or tuple of array_like
        The point, e.g. ``[W, H]``. Never modified.
    step : float, array_like or list, optional
        The absolute step of every element (a number, an array broadcastable to each
        array, or one of those per array). Default: ``eps ** (1/3) * max(1, |x|)`` for
        central differences, ``eps ** (1/2) * max(1, |x|)`` for one-sided ones, with
        ``eps`` the machine epsilon of the array's dtype; steps are rounded so that
        ``x + h`` is exactly representable.
    method : {"central", "forward", "backward"}
        Central differences cost two calls per element and are accurate to about
        ``eps ** (2/3)``; one-sided ones cost one call per element (plus one) and are
        accurate to about ``eps ** (1/2)``.
    args, kwargs
        Further arguments of ``fun``.

    Returns
    -------
    ndarray, or list or tuple of ndarray
        Shaped like ``x``, each array in its own float dtype.

    Examples
    --------
    >>> import numpy as np
    >>> import fastgd
    >>> g = fastgd.numerical_gradient(lambda v: np.sum(v ** 3), np.array([1.0, 2.0]))
    >>> np.allclose(g, [3.0, 12.0])
    True
    >>> gW, gH = fastgd.numerical_gradient(lambda p: float(np.sum(p[0] @ p[1])),
    ...                                   [np.ones((2, 1)), np.ones((1, 3))])
    >>> np.allclose(gW, 3.0), np.allclose(gH, 2.0)
    (True, True)
    """
    arrays, rebuild, names = _as_structure(x)
    gradients, _ = _difference_quotients(fun, arrays, rebuild, names, step, method, args,
                                         kwargs or {})
    return rebuild(gradients)


@dataclasses.dataclass(frozen=True)
class GradCheckReport:
    """What ``check_grad`` found. ``str(report)`` is a readable summary.

    Attributes
    ----------
    passed : bool
        Every element satisfies ``|analytic - numerical| <= atol + rtol * |numerical|``.
    max_abs_error, max_rel_error : float
        Over all elements (the relative error of an element is its absolute error over
        ``|numerical|``, inf where that is 0 and the error is not).
    worst : str
        Where the tolerance is most exceeded (or most nearly), e.g. ``"x[1][0, 2]"``.
    worst_analytic, worst_numerical : float
        The two values there.
    n_failed : int
        Elements outside the tolerance.
    rtol, atol : float
        The tolerances used.
    analytic, numerical : list of ndarray
        The gradients compared, one array per array of x.
    n_evaluations : int
        Calls of ``fun``.
    """

    passed: bool
    max_abs_error: float
    max_rel_error: float
    worst: str
    worst_analytic: float
    worst_numerical: float
    n_failed: int
    rtol: float
    atol: float
    analytic: list
    numerical: list
    n_evaluations: int

    def __str__(self):
        size = sum(a.size for a in self.numerical)
        verdict = "passed" if self.passed else f"FAILED: {self.n_failed} of {size} values"
        return (
            f"Gradient check {verdict} (rtol={self.rtol:g}, atol={self.atol:g})\n"
            f"Worst element {self.worst}:\n"
            f" ACTUAL (analytic gradient): {self.worst_analytic!r}\n"
            f" DESIRED (finite differences): {self.worst_numerical!r}\n"
            f"Max absolute error: {self.max_abs_error:.6g}\n"
            f"Max relative error: {self.max_rel_error:.6g}"
        )


def _element_name(names, position, flat_index, shape):
    if math.prod(shape) == 0:
        return f"{names[position]} (no elements to compare)"
    index = np.unravel_index(flat_index, shape) if shape else ()
    inner = ", ".join(str(int(i)) for i in index)
    return f"{names[position]}[{inner}]" if shape else names[position]


def _directional_derivatives(fun, arrays, rebuild, analytic, directions, seed, step, method,
                             args, kwargs):
    """(analytic, numerical) derivatives along `directions` random unit directions (one
    vector over all arrays of x), and the number of calls of fun."""
    _validation.check_choice(method, "method", METHODS)
    if isinstance(directions, bool) or not isinstance(directions, numbers.Integral) \
            or directions < 1:
        raise ValueError(f"directions must be None or a positive int; got {directions!r}")
    rng = np.random.default_rng(seed)
    dtype = min((a.dtype for a in arrays), key=lambda d: d.itemsize)
    power = 1 / 3 if method == "central" else 1 / 2
    scale = max((float(np.max(np.abs(a), initial=0)) for a in arrays), default=0.0)
    h = float(step) if step is not None else float(np.finfo(dtype).eps) ** power * max(
        1.0, scale)
    f0 = None if method == "central" else _scalar(fun(rebuild(arrays), *args, **kwargs))
    calls = 0 if f0 is None else 1
    exact, estimated = np.empty(directions), np.empty(directions)
    for d in range(directions):
        vectors = [rng.standard_normal(a.shape) for a in arrays]
        norm = np.sqrt(sum(float(np.sum(v * v)) for v in vectors)) or 1.0
        vectors = [v / norm for v in vectors]
        exact[d] = sum(float(np.sum(g * v)) for g, v in zip(analytic, vectors, strict=True))

        def value_at(t, vectors=vectors):
            moved = [(a + t * v).astype(a.dtype) for a, v in zip(arrays, vectors, strict=True)]
            return _scalar(fun(rebuild(moved), *args, **kwargs))

        if method == "central":
            estimated[d] = (value_at(h) - value_at(-h)) / (2 * h)
            calls += 2
        else:
            sign = 1.0 if method == "forward" else -1.0
            estimated[d] = sign * (value_at(sign * h) - f0) / h
            calls += 1
    return exact, estimated, calls


def check_grad(fun: Callable[..., Any], grad: Callable[..., Any], x: ArraysLike, *,
               rtol: float | None = None, atol: float | None = None, step: Any = None,
               method: FiniteDifferences = "central", directions: int | None = None,
               seed: RandomState = None, raise_on_failure: bool = False,
               args: tuple[Any, ...] = (),
               kwargs: dict[str, Any] | None = None) -> GradCheckReport:
    """Compare an analytic gradient with finite differences, element by element.

    Parameters
    ----------
    fun : callable
        ``fun(x, *args, **kwargs) -> float``.
    grad : callable, or array_like, or list or tuple of array_like
        ``grad(x, *args, **kwargs)`` returning arrays shaped like ``x``, or those arrays.
    x : array_like, or list or tuple of array_like
        The point, e.g. ``[W, H]``. Never modified.
    rtol : float, optional
        Relative tolerance, finite and >= 0; by default 1e-6 (float64) or 1e-2 (float32)
        for central differences, 1e-4 or 5e-2 for one-sided ones (the lowest precision in
        x counts).
    atol : float, optional
        Absolute tolerance, finite and >= 0; by default ``rtol`` times the largest
        gradient magnitude (so components far smaller than the gradient's scale are not
        held to rtol of themselves) plus the rounding noise of the difference quotients.
    step, method, args, kwargs
        As for :func:`numerical_gradient`.
    directions : int, optional
        Instead of every element (two calls of ``fun`` each), compare the derivatives
        along this many random unit directions over all of x (two calls each): the check
        that stays cheap for large x. The report then names the worst direction.
    seed : int or numpy.random.Generator, optional
        The random directions' seed.
    raise_on_failure : bool, default False
        Raise AssertionError, with ACTUAL (analytic) and DESIRED (finite differences)
        labelled, instead of returning a failed report.

    Returns
    -------
    GradCheckReport

    Examples
    --------
    >>> import numpy as np
    >>> import fastgd
    >>> A = np.array([[1.0, np.nan], [np.nan, 4.0]])
    >>> fun = lambda p: fastgd.masked_loss_grad(A, p[0], p[1])[0]
    >>> grad = lambda p: fastgd.masked_loss_grad(A, p[0], p[1])[1:]
    >>> report = fastgd.check_grad(fun, grad, [np.ones((2, 1)), np.ones((1, 2))])
    >>> report.passed, report.max_abs_error < 1e-8
    (True, True)
    >>> x = np.array([1.0, 2.0])
    >>> bad = fastgd.check_grad(lambda v: float(v @ v), np.array([2.0, 5.0]), x)
    >>> bad.passed, bad.worst, bad.worst_analytic
    (False, 'x[1]', 5.0)
    """
    kwargs = kwargs or {}
    # The tolerances are checked before fun is called at all.
    rtol = None if rtol is None else _validation.check_real(rtol, "rtol")
    atol = None if atol is None else _validation.check_real(atol, "atol")
    arrays, rebuild, names = _as_structure(x)
    analytic = grad(rebuild([a.copy() for a in arrays]), *args, **kwargs) if callable(
        grad) else grad
    analytic = [analytic] if len(arrays) == 1 and not isinstance(analytic, (list, tuple)) \
        else list(analytic)
    if len(analytic) != len(arrays):
        raise ValueError(f"grad must give {len(arrays)} arrays (one per array of x); "
                         f"got {len(analytic)}")
    analytic = [np.asarray(a, dtype=np.float64) for a in analytic]
    for name, a, array in zip(names, analytic, arrays, strict=True):
        if a.shape != array.shape:
            raise ValueError(f"the gradient of {name} must have shape {array.shape}; "
                             f"got {a.shape}")
    labels = names  # what the report's worst element is named after
    if directions is None:
        numerical, calls = _difference_quotients(fun, arrays, rebuild, names, step, method,
                                                 args, kwargs)
    else:
        along, numerical_along, calls = _directional_derivatives(
            fun, arrays, rebuild, analytic, directions, seed, step, method, args, kwargs)
        analytic, numerical, labels = [along], [numerical_along], ["direction"]
    numerical64 = [n.astype(np.float64) for n in numerical]
    dtype = min((a.dtype for a in arrays), key=lambda d: d.itemsize)
    kind = "central" if method == "central" else "one-sided"
    rtol = DEFAULT_RTOL[(dtype, kind)] if rtol is None else rtol
    if atol is None:
        scale = max((float(np.max(np.abs(g[np.isfinite(g)]), initial=0))
                     for g in analytic + numerical64), default=0.0)
        f_scale = abs(_scalar(fun(rebuild(arrays), *args, **kwargs)))
        calls += 1
        h = min((float(np.min(_steps(a, s, method, n), initial=np.inf))
                 for a, s, n in zip(arrays, _split_steps(step, len(arrays)), names,
                                    strict=True)), default=1.0)
        noise = 10 * float(np.finfo(dtype).eps) * max(f_scale, 1e-300) / h
        atol = rtol * scale + noise
    worst_ratio, worst, n_failed, max_abs, max_rel = -1.0, (0, 0), 0, 0.0, 0.0
    for position, (a, nm) in enumerate(zip(analytic, numerical64, strict=True)):
        if a.size == 0:
            continue
        error = np.abs(a - nm)
        error = np.where(np.isnan(error), np.inf, error)
        allowed = atol + rtol * np.abs(nm)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(allowed > 0, error / allowed, np.where(error > 0, np.inf, 0.0))
            relative = np.where(nm != 0, error / np.abs(nm), np.where(error > 0, np.inf, 0))
        n_failed += int(np.count_nonzero(~(error <= allowed)))
        max_abs = max(max_abs, float(error.max()))
        max_rel = max(max_rel, float(relative.max()))
        flat_worst = int(np.argmax(ratio))
        if ratio.reshape(-1)[flat_worst] > worst_ratio:
            worst_ratio, worst = float(ratio.reshape(-1)[flat_worst]), (position, flat_worst)
    position, flat_worst = worst
    report = GradCheckReport(
        passed=n_failed == 0,
        max_abs_error=max_abs,
        max_rel_error=max_rel,
        worst=_element_name(labels, position, flat_worst, numerical[position].shape),
        worst_analytic=float(analytic[position].reshape(-1)[flat_worst])
        if analytic[position].size else float("nan"),
        worst_numerical=float(numerical64[position].reshape(-1)[flat_worst])
        if numerical64[position].size else float("nan"),
        n_failed=n_failed,
        rtol=rtol,
        atol=atol,
        analytic=analytic,
        numerical=numerical,
        n_evaluations=calls,
    )
    if raise_on_failure and not report.passed:
        raise AssertionError(str(report))
    return report
