"""Gradient descent on any loss: ``fastgd.minimize``, also usable inside SciPy.

The loss may come with its gradient (``jac=True`` or a callable) or without one, in which
case central finite differences (:func:`numerical_gradient`) supply it. Each step is a
fused in-place update (:func:`adagrad_update` or :func:`sgd_update`), projected onto
the bounds when they are given. ``scipy_method`` wraps it as a custom method of
``scipy.optimize.minimize``.
"""

from __future__ import annotations

import inspect
import math
from typing import TYPE_CHECKING

import numpy as np

from fastgd import _validation, factorization, updates
from fastgd.gradcheck import numerical_gradient

if TYPE_CHECKING:
    from scipy.optimize import OptimizeResult

    from fastgd._typing import Any, ArrayLike, Callable, EpsMode, Jac, Optimizer

METHODS = factorization.OPTIMIZERS  # "adagrad", "gd", "adam", "rmsprop"
# jac's finite-difference schemes, named as in scipy.optimize.minimize; None is central.
FINITE_DIFFERENCES = {None: "central", "3-point": "central", "2-point": "forward"}
# The settings that options= may hold (SciPy's way of passing a method's settings).
OPTIONS = ("lr", "maxiter", "tol", "momentum", "nesterov", "eps", "eps_mode")

STATUS_SUCCESS, STATUS_MAXITER, STATUS_NONFINITE, STATUS_CALLBACK = 0, 1, 2, 99
MESSAGES = {
    STATUS_SUCCESS: "Optimization terminated successfully: the (projected) gradient's "
                    "largest entry is at most tol.",
    STATUS_MAXITER: "Maximum number of iterations has been exceeded.",
    STATUS_NONFINITE: "The loss or its gradient is not finite: lower lr.",
    STATUS_CALLBACK: "`callback` raised `StopIteration`.",
}


class _CountedFunction:
    """fun with its calls counted; it receives a copy of x, shaped like x0."""

    def __init__(self, fun, args, shape):
        self.fun, self.args, self.shape, self.calls = fun, args, shape, 0

    def __call__(self, x):
        self.calls += 1
        return self.fun(x.reshape(self.shape).copy(), *self.args)


def _as_gradient(value, size, dtype, source):
    grad = np.asarray(value)
    if grad.dtype.kind not in "biuf":
        raise TypeError(f"the gradient from {source} must hold real numbers; got dtype "
                        f"{grad.dtype}")
    if grad.size != size:
        raise ValueError(f"the gradient from {source} must have x0's {size} entries; got "
                         f"shape {grad.shape}")
    return np.ascontiguousarray(grad, dtype=dtype).reshape(-1)


def _scalar(value):
    try:
        return float(np.asarray(value).item())
    except (TypeError, ValueError):
        raise ValueError(f"fun must return a scalar loss; got {value!r}") from None


def _gradient_source(fun, jac, args, shape, dtype):
    """A function x -> (loss, gradient), and the counted fun (for nfev)."""
    size = int(np.prod(shape))
    if jac is True:
        counted = _CountedFunction(fun, args, shape)

        def evaluate(x):
            try:
                value, grad = counted(x)
            except (TypeError, ValueError):
                raise ValueError("with jac=True, fun must return (loss, gradient)") from None
            return _scalar(value), _as_gradient(grad, size, dtype, "fun")
        return evaluate, counted
    counted = _CountedFunction(fun, args, shape)
    if callable(jac):
        gradient = _CountedFunction(jac, args, shape)
        return (lambda x: (_scalar(counted(x)),
                           _as_gradient(gradient(x), size, dtype, "jac"))), counted
    if jac is False:
        jac = None
    if not (jac is None or isinstance(jac, str)) or jac not in FINITE_DIFFERENCES:
        raise ValueError(f"jac must be None, True, a callable, '2-point' or '3-point'; "
                         f"got {jac!r}")
    differences = FINITE_DIFFERENCES[jac]

    def evaluate(x):
        value = _scalar(counted(x))
        grad = numerical_gradient(lambda flat: _scalar(counted(flat)), x, method=differences)
        return value, grad
    return evaluate, counted


def _bounds_arrays(bounds, size, dtype):
    """(lower, upper) arrays of x's size from a scipy Bounds or (min, max) pairs."""
    if bounds is None:
        return None
    if hasattr(bounds, "lb") and hasattr(bounds, "ub"):
        lower = np.broadcast_to(np.asarray(bounds.lb, dtype=np.float64), (size,))
        upper = np.broadcast_to(np.asarray(bounds.ub, dtype=np.float64), (size,))
    else:
        pairs = list(bounds)
        if len(pairs) != size:
            raise ValueError(f"bounds must hold one (min, max) pair per entry of x0 "
                             f"({size}); got {len(pairs)}")
        try:
            lower = np.array([-np.inf if lo is None else lo for lo, _ in pairs], dtype=float)
            upper = np.array([np.inf if hi is None else hi for _, hi in pairs], dtype=float)
        except (TypeError, ValueError):
            raise ValueError("bounds must be a scipy.optimize.Bounds or a sequence of "
                             "(min, max) pairs, None for no bound") from None
    if np.isnan(lower).any() or np.isnan(upper).any() or (lower > upper).any():
        raise ValueError("bounds must satisfy min <= max, without NaN")
    return lower.astype(dtype), upper.astype(dtype)


def _projected(grad, x, bounds):
    """The gradient without the entries that push against an active bound."""
    if bounds is None:
        return grad
    lower, upper = bounds
    return np.where(((x <= lower) & (grad > 0)) | ((x >= upper) & (grad < 0)), 0, grad)


def _callback_caller(callback):
    if callback is None:
        return None
    if not callable(callback):
        raise TypeError(f"callback must be callable or None; got {type(callback).__name__}")
    try:
        parameters = set(inspect.signature(callback).parameters)
    except (TypeError, ValueError):
        parameters = set()
    if parameters == {"intermediate_result"}:
        return lambda x, value: callback(intermediate_result=_result_for(x, value))
    return lambda x, value: callback(x)


def _result_for(x, value):
    from scipy.optimize import OptimizeResult

    return OptimizeResult(x=x, fun=value)


def minimize(fun: Callable[..., Any], x0: ArrayLike, *, args: tuple[Any, ...] = (),
             jac: Jac = None, method: Optimizer = "adagrad", lr: float = 0.1,
             maxiter: int = 1000, tol: float = 1e-6, callback: Callable[..., Any] | None = None,
             bounds: Any = None, momentum: float = 0.0, nesterov: bool = False,
             eps: float = 1e-8, eps_mode: EpsMode = "outside",
             options: dict[str, Any] | None = None) -> OptimizeResult:
    """Minimise a scalar function by gradient descent (Adagrad, momentum, Nesterov).

    Each iteration evaluates the loss and its gradient, stops when the largest entry of
    the gradient (projected onto the bounds) is at most ``tol``, and otherwise takes a
    fused in-place step, clipped to the bounds.

    Parameters
    ----------
    fun : callable
        ``fun(x, *args) -> float``, or ``-> (float, gradient)`` with ``jac=True``. It
        receives a copy of x shaped like ``x0``.
    x0 : array_like
        The starting point, of any shape; float32 stays float32, anything else real
        computes in float64.
    args : tuple
        Further arguments of ``fun`` and ``jac``.
    jac : callable, True, None, "3-point" or "2-point"
        ``jac(x, *args) -> gradient``; True when ``fun`` returns the gradient too; None or
        ``"3-point"`` for central finite differences (:func:`numerical_gradient`,
        ``2 * x0.size`` further calls of ``fun`` per iteration); ``"2-point"`` for forward
        differences (``x0.size + 1`` calls, less accurate), as in SciPy.
    method : {"adagrad", "gd", "adam", "rmsprop"}
        Adagrad, gradient descent with optional momentum and Nesterov's update, Adam or
        RMSprop (the names of :func:`factorize`'s optimizers; torch.optim's semantics).
    lr : float
        The learning rate (> 0).
    maxiter : int
        The maximum number of steps.
    tol : float
        Stop when ``max |projected gradient| <= tol``.
    callback : callable, optional
        After every step, ``callback(xk)``, or ``callback(intermediate_result)`` (an
        ``OptimizeResult`` with ``x`` and ``fun``) when that is its one parameter, as in
        SciPy; raising ``StopIteration`` stops the run.
    bounds : scipy.optimize.Bounds or sequence of (min, max) pairs, optional
        One pair per entry of ``x0`` (in C order); None for no bound. Steps are
        projected onto the box (projected gradient descent).
    momentum : float
        For "gd" and "rmsprop": PyTorch's momentum.
    nesterov : bool
        For "gd" with momentum.
    eps, eps_mode
        Adagrad's eps and where it enters (see :func:`adagrad_update`).
    options : dict, optional
        The settings above by name (``lr``, ``maxiter``, ``tol``, ``momentum``,
        ``nesterov``, ``eps``, ``eps_mode``), as ``scipy.optimize.minimize`` passes them;
        they override the keyword arguments.

    Returns
    -------
    scipy.optimize.OptimizeResult
        ``x`` (shaped like ``x0``), ``fun``, ``jac`` (at ``x``), ``nit`` (steps taken),
        ``nfev`` (calls of ``fun``, finite differences included), ``njev`` (gradients
        evaluated), ``success``, ``status`` (0 converged, 1 maxiter, 2 a non-finite loss
        or gradient, 99 stopped by the callback) and ``message``.

    Raises
    ------
    ValueError, TypeError
        A bad setting, bounds of the wrong length, or a gradient of the wrong size.

    See Also
    --------
    scipy_method : the same as a method of ``scipy.optimize.minimize``.

    Examples
    --------
    >>> import numpy as np
    >>> import fastgd
    >>> res = fastgd.minimize(lambda x: np.sum((x - 3.0) ** 2), np.zeros(2), method="gd",
    ...                       lr=0.5, jac=lambda x: 2 * (x - 3.0))
    >>> res.x, res.nit, bool(res.success)
    (array([3., 3.]), 1, True)

    Without a gradient, finite differences supply it; with bounds, steps are projected:

    >>> res = fastgd.minimize(lambda x: np.sum((x - 3.0) ** 2), np.zeros(2), lr=0.5,
    ...                       bounds=[(None, 1.0), (0, None)], maxiter=5000)
    >>> res.x.round(6), res.message.startswith("Optimization terminated")
    (array([1., 3.]), True)

    SciPy's spellings work too: settings in ``options``, forward differences by name:

    >>> res = fastgd.minimize(lambda x: np.sum((x - 3.0) ** 2), np.zeros(2), jac="2-point",
    ...                       options={"lr": 0.5, "maxiter": 5000, "tol": 1e-5})
    >>> res.x.round(3), bool(res.success)
    (array([3., 3.]), True)
    """
    from scipy.optimize import OptimizeResult

    if options is not None:
        if not isinstance(options, dict):
            raise TypeError(f"options must be a dict or None; got {type(options).__name__}")
        unknown = sorted(set(options) - set(OPTIONS))
        if unknown:
            raise ValueError(f"options may hold {', '.join(OPTIONS)}; got unknown "
                             f"{', '.join(map(repr, unknown))}")
        settings = {"lr": lr, "maxiter": maxiter, "tol": tol, "momentum": momentum,
                    "nesterov": nesterov, "eps": eps, "eps_mode": eps_mode, **options}
        lr, maxiter, tol = settings["lr"], settings["maxiter"], settings["tol"]
        momentum, nesterov = settings["momentum"], settings["nesterov"]
        eps, eps_mode = settings["eps"], settings["eps_mode"]
    _validation.check_choice(method, "method", METHODS)
    _validation.check_choice(eps_mode, "eps_mode", tuple(updates.EPS_MODES))
    lr = _validation.check_real(lr, "lr")
    if lr == 0:
        raise ValueError("lr must be > 0; got 0.0")
    maxiter = _validation.check_int(maxiter, "maxiter", 0)
    tol = _validation.check_real(tol, "tol")
    eps = _validation.check_real(eps, "eps")
    momentum, nesterov = factorization.check_momentum(method, momentum, nesterov, "method")
    if not callable(fun):
        raise TypeError(f"fun must be callable; got {type(fun).__name__}")
    if not isinstance(args, tuple):
        args = (args,)
    start = _validation.as_float_array(np.asarray(x0), "x0", np.ndim(x0), "of any shape")
    shape, dtype = start.shape, start.dtype
    x = np.array(start, dtype=dtype, order="C").reshape(-1)  # a copy: x0 is not modified
    box = _bounds_arrays(bounds, x.size, dtype)
    if box is not None:
        np.clip(x, *box, out=x)
    evaluate, counted = _gradient_source(fun, jac, args, shape, dtype)
    report = _callback_caller(callback)
    optimizer = factorization.make_optimizer(
        [x], {"optimizer": method, "lr": lr, "eps": eps, "eps_mode": eps_mode,
              "momentum": momentum, "nesterov": nesterov, "nonneg": False}, None)
    nit = njev = 0
    while True:
        value, grad = evaluate(x)
        njev += 1
        largest = np.abs(_projected(grad, x, box)).max(initial=0.0)  # NaN if grad has NaN
        if not (math.isfinite(value) and math.isfinite(largest)):
            status = STATUS_NONFINITE
            break
        if largest <= tol:
            status = STATUS_SUCCESS
            break
        if nit == maxiter:
            status = STATUS_MAXITER
            break
        optimizer.step([grad])
        if box is not None:
            np.clip(x, *box, out=x)
        nit += 1
        if report is not None:
            try:
                report(x.reshape(shape).copy(), value)
            except StopIteration:
                value, grad = evaluate(x)
                njev += 1
                status = STATUS_CALLBACK
                break
    return OptimizeResult(
        x=x.reshape(shape), fun=value, jac=grad.reshape(shape), nit=nit, nfev=counted.calls,
        njev=njev, success=status == STATUS_SUCCESS, status=status, message=MESSAGES[status],
    )


def scipy_method(method: Optimizer = "adagrad", **defaults: Any) -> Callable[..., OptimizeResult]:
    """fastgd's gradient descent as a custom method of ``scipy.optimize.minimize``.

    Parameters
    ----------
    method : {"adagrad", "gd", "adam", "rmsprop"}
    **defaults
        Settings of :func:`minimize` (``lr``, ``momentum``, ...); ``options`` given to
        scipy override them. scipy's ``tol`` becomes fastgd's ``tol``.

    Returns
    -------
    callable
        To pass as ``method=``. Constraints are refused (bounds are supported); a Hessian
        is not used.

    Examples
    --------
    >>> import numpy as np
    >>> import scipy.optimize
    >>> import fastgd
    >>> res = scipy.optimize.minimize(
    ...     scipy.optimize.rosen, np.array([-1.2, 1.0]), jac=scipy.optimize.rosen_der,
    ...     method=fastgd.scipy_method("gd", momentum=0.9),
    ...     options={"lr": 1e-3, "maxiter": 100000, "tol": 1e-8})
    >>> res.x.round(4), bool(res.success)
    (array([1., 1.]), True)
    """
    _validation.check_choice(method, "method", METHODS)

    def fastgd_minimize(fun, x0, args=(), jac=None, hess=None, hessp=None, bounds=None,
                        constraints=(), callback=None, **options):
        if constraints:
            raise ValueError("fastgd's gradient descent supports bounds, not constraints")
        return minimize(fun, x0, args=args, jac=jac, method=method, bounds=bounds,
                        callback=callback, **{**defaults, **options})

    fastgd_minimize.__name__ = f"fastgd_{method}"
    return fastgd_minimize
