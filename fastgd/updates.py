"""Fused in-place optimizer updates, and optimizer objects that hold their state.

``adagrad_update`` and ``sgd_update`` do the whole update of one array, or of a list
of arrays, in one compiled pass at memory bandwidth, where NumPy needs four or five
passes with temporaries. Every array of every list is validated before any is
modified: an update is applied to all of them or to none.
"""

from __future__ import annotations

import collections.abc
import math
import numbers
from typing import TYPE_CHECKING

import numpy as np

from fastgd import _backend, _codes, _threads, _validation

if TYPE_CHECKING:
    from fastgd._typing import Any, Arrays, ArraysLike, EpsMode, FloatArray

EPS_MODES = {name: code for code, name in enumerate(_codes.EPS_MODES)}

# Below this many elements in all (over the whole list) no parallel region is opened.
PARALLEL_MIN_ELEMENTS = 1 << 16

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def kernels():
    """The fused updates of the active backend: ``fastgd._ext._updates`` (compiled from
    ``src_c/_updates.pyx``), or its NumPy twin ``fastgd._numpy._updates``, which has the same
    functions with the same signatures and semantics."""
    if _backend.get_backend() == "compiled":
        from fastgd._ext import _updates
    else:
        from fastgd._numpy import _updates
    return _updates

def _as_list(value, name):
    if isinstance(value, np.ndarray):
        return [value], True
    if isinstance(value, (list, tuple)):
        return list(value), False
    raise TypeError(f"{name} must be an ndarray or a list/tuple of ndarrays; "
                    f"got {type(value).__name__}")


def _check_updated_array(array, name, dtype=None, shape=None):
    """An array updated in place: an ndarray of float32/float64, C-contiguous, aligned,
    native byte order, writeable (and of the given dtype and shape)."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray (it is updated in place); "
                        f"got {type(array).__name__}")
    if array.dtype not in _FLOATS:
        raise TypeError(f"{name} must have dtype float32 or float64; got {array.dtype}")
    if dtype is not None and array.dtype != dtype:
        raise TypeError(f"{name} must have the dtype of its parameter, {dtype}; "
                        f"got {array.dtype}")
    if shape is not None and array.shape != shape:
        raise ValueError(f"{name} must have the shape of its parameter, {shape}; "
                         f"got {array.shape}")
    if not (array.flags.c_contiguous and array.flags.aligned):
        raise ValueError(f"{name} must be C-contiguous and aligned (it is updated in place); "
                         f"got strides {array.strides}")
    if not array.flags.writeable:
        raise ValueError(f"{name} must be writeable (it is updated in place)")
    return array


def _as_grad(value, name, param):
    """A gradient: any array_like of the parameter's shape and dtype (a C-contiguous copy
    is made when needed; gradients are only read)."""
    grad = np.asarray(value)
    if grad.dtype != param.dtype:
        raise TypeError(f"{name} must have the dtype of its parameter, {param.dtype}; "
                        f"got {grad.dtype}")
    if grad.shape != param.shape:
        raise ValueError(f"{name} must have the shape of its parameter, {param.shape}; "
                         f"got {grad.shape}")
    return _validation.as_contiguous(grad, grad.dtype)


def _check_no_aliasing(written, read):
    """No array updated in place may share memory with another array of the call.

    ``written`` and ``read`` are lists of (name, C-contiguous ndarray). Byte ranges
    are sorted and swept once: O(n log n) for long lists. The compiled check answers
    first where it is loaded (a microsecond); this sweep names the arrays that overlap.
    """
    ext = _backend.loaded_extension()
    if ext is not None and not ext._updates.overlapping(
            [array for _, array in written], [array for _, array in read]):
        return
    intervals = []
    for role, arrays in ((True, written), (False, read)):
        for name, array in arrays:
            if array.nbytes:
                start = array.__array_interface__["data"][0]
                intervals.append((start, start + array.nbytes, role, name))
    intervals.sort(key=lambda interval: interval[0])
    furthest_any = furthest_written = None  # (end, name) reaching furthest so far
    for start, end, is_written, name in intervals:
        other = furthest_any if is_written else furthest_written
        if other is not None and start < other[0]:
            raise ValueError(f"{name} shares memory with {other[1]}: an array updated in "
                             "place must not appear twice nor overlap another argument")
        if furthest_any is None or end > furthest_any[0]:
            furthest_any = (end, name)
        if is_written and (furthest_written is None or end > furthest_written[0]):
            furthest_written = (end, name)


def _validated_lists(params, grads, states, state_name, states_required=False):
    """params, grads, states (None allowed unless ``states_required``) as checked lists;
    raises before any update."""
    if states is None and states_required:
        raise TypeError(_missing_state_message(state_name))
    params, grads, (states,) = _validated_with_states(params, grads, [(state_name, states)])
    return params, grads, states


def _missing_state_message(state_name):
    return (f"{state_name} must be an ndarray or a list/tuple of ndarrays (the state "
            "updated in place, one per parameter); got None")


def _validated_with_states(params, grads, named_states):
    """params, grads and each state of ``named_states`` ((name, ndarray or list, or None
    for a state not used)) as checked lists, None for the unused states; raises before
    any update."""
    params, single = _as_list(params, "params")
    grads, _ = _as_list(grads, "grads") if not single else ([grads], True)
    if len(grads) != len(params):
        raise ValueError(f"grads must hold one array per parameter ({len(params)}); "
                         f"got {len(grads)}")
    state_lists = []
    for state_name, states in named_states:
        if states is not None:
            states, _ = _as_list(states, state_name) if not single else ([states], True)
            if len(states) != len(params):
                raise ValueError(f"{state_name} must hold one array per parameter "
                                 f"({len(params)}); got {len(states)}")
        state_lists.append(states)

    def label(name, k):
        return name if single else f"{name}[{k}]"

    checked_grads = []
    written = []
    for k, param in enumerate(params):
        _check_updated_array(param, label("params", k))
        checked_grads.append(_as_grad(grads[k], label("grads", k), param))
        written.append((label("params", k), param))
    for (state_name, _), states in zip(named_states, state_lists, strict=True):
        if states is not None:
            for k, param in enumerate(params):
                _check_updated_array(states[k], label(state_name, k), param.dtype,
                                     param.shape)
                written.append((label(state_name, k), states[k]))
    _check_no_aliasing(written, [(label("grads", k), g) for k, g in enumerate(checked_grads)])
    return params, checked_grads, state_lists


def _lower_bound(value):
    if value is None:
        return -math.inf
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or math.isnan(value):
        raise ValueError(f"lower_bound must be None or a real number; got {value!r}")
    return float(value)


def _step(value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"step must be an integer >= 1 (the 1-based step count); got {value!r}")
    return int(value)


# The fast paths (_updates.adagrad_fast, sgd_fast, adam_fast, rmsprop_fast) run the
# common case of an update entirely in C; they resolve n_threads as _threads does, from
# the counts that _threads.share_thread_counts gives them when the compiled modules load.


def adagrad_update(params: Arrays, grads: ArraysLike, accums: Arrays, *, lr: float = 0.01,
                   eps: float = 1e-10, eps_mode: EpsMode = "outside", step: int = 1,
                   lr_decay: float = 0.0, weight_decay: float = 0.0, maximize: bool = False,
                   lower_bound: float | None = None, n_threads: int | None = None) -> None:
    """One Adagrad step, in place, fused into a single pass per array.

    With ``g`` the gradient (negated when ``maximize``, plus ``weight_decay * p``) and
    ``clr = lr / (1 + (step - 1) * lr_decay)``, as in ``torch.optim.Adagrad``:

    - ``eps_mode="outside"`` (PyTorch, TensorFlow's ApplyAdagradV2, Duchi et al.):
      ``G += g**2; p -= clr * g / (sqrt(G) + eps)``
    - ``"inside"`` (optax ``scale_by_rss``, Keras 3):
      ``G += g**2; p -= clr * g / sqrt(G + eps)``, no step where ``G == 0``
    - ``"accumulate"`` (the autograd Adagrad tutorial):
      ``G += g**2 + eps; p -= clr * g / sqrt(G)``

    and then ``p = max(p, lower_bound)`` when a lower bound is given (projected
    Adagrad; a NaN parameter stays NaN).

    Parameters
    ----------
    params : ndarray or list/tuple of ndarrays
        Updated in place: float32 or float64, C-contiguous, writeable.
    grads : array_like or list/tuple of array_likes
        One per parameter, of its shape and dtype. Not modified.
    accums : ndarray or list/tuple of ndarrays
        The sums of squared gradients ``G``, one per parameter, of its shape and
        dtype; updated in place.
    lr, eps, lr_decay, weight_decay : float
        Non-negative.
    eps_mode : {"outside", "inside", "accumulate"}
    step : int
        The 1-based number of this step (for ``lr_decay``).
    maximize : bool
    lower_bound : float, optional
    n_threads : int, optional
        OpenMP threads over all elements of the list; small updates use one.

    Raises
    ------
    TypeError
        A parameter or state that is not an ndarray of float32/float64, a gradient of
        another dtype, or a hyperparameter of the wrong type.
    ValueError
        Mismatched lengths or shapes, a parameter or state that is not writeable and
        C-contiguous, arrays that alias, or a hyperparameter out of range. Nothing is
        modified when anything is wrong.

    Examples
    --------
    >>> import numpy as np
    >>> import fastgd
    >>> p = np.array([1.0, -2.0])
    >>> G = np.zeros(2)
    >>> fastgd.adagrad_update(p, np.array([0.5, -1.0]), G, lr=0.1)
    >>> p, G
    (array([ 0.9, -1.9]), array([0.25, 1.  ]))
    """
    fast_path = _backend.updates_fast_path
    if fast_path is not None and fast_path.adagrad_fast(
            params, grads, accums, lr, eps, eps_mode, step, lr_decay, weight_decay, maximize,
            lower_bound, n_threads, PARALLEL_MIN_ELEMENTS):
        return
    _adagrad_general(params, grads, accums, lr, eps, eps_mode, step, lr_decay, weight_decay,
                     maximize, lower_bound, n_threads)


def _adagrad_general(params, grads, accums, lr, eps, eps_mode, step, lr_decay, weight_decay,
                     maximize, lower_bound, n_threads, counter=None):
    """adagrad_update's general path: every check, then the kernel (which counts the step
    in ``counter``, an optimizer's, when given)."""
    lr = _validation.check_real(lr, "lr")
    eps = _validation.check_real(eps, "eps")
    lr_decay = _validation.check_real(lr_decay, "lr_decay")
    weight_decay = _validation.check_real(weight_decay, "weight_decay")
    _validation.check_choice(eps_mode, "eps_mode", tuple(EPS_MODES))
    step = _step(step)
    maximize = _validation.check_flag(maximize, "maximize")
    bound = _lower_bound(lower_bound)
    n_threads = _threads.resolve_n_threads(n_threads)
    params, grads, accums = _validated_lists(params, grads, accums, "accums",
                                             states_required=True)
    rate = lr / (1.0 + (step - 1) * lr_decay)
    kernel = kernels().adagrad_update
    kernel(params, grads, accums, rate, eps, EPS_MODES[eps_mode], weight_decay, maximize,
           bound, n_threads, PARALLEL_MIN_ELEMENTS, counter)


def sgd_update(params: Arrays, grads: ArraysLike, velocities: Arrays | None = None, *,
               lr: float, momentum: float = 0.0, nesterov: bool = False,
               dampening: float = 0.0, weight_decay: float = 0.0, maximize: bool = False,
               lower_bound: float | None = None, n_threads: int | None = None) -> None:
    """One SGD step, in place, with PyTorch's momentum and Nesterov semantics.

    With ``g`` the gradient (negated when ``maximize``, plus ``weight_decay * p``):
    without momentum ``p -= lr * g``; with it, the buffer ``v = momentum * v + (1 -
    dampening) * g`` and ``p -= lr * v``, or ``p -= lr * (g + momentum * v)`` with
    ``nesterov``. Then ``p = max(p, lower_bound)`` when a bound is given (projected
    gradient descent). ``torch.optim.SGD`` starts the buffer at the first gradient;
    the ``fastgd.SGD`` object does too, while this function always applies the
    formula to the ``velocities`` it is given.

    Parameters
    ----------
    params : ndarray or list/tuple of ndarrays
        Updated in place: float32 or float64, C-contiguous, writeable.
    grads : array_like or list/tuple of array_likes
        One per parameter, of its shape and dtype. Not modified.
    velocities : ndarray or list/tuple of ndarrays, optional
        Momentum buffers, updated in place; required when ``momentum != 0``.
    lr : float
    momentum, dampening, weight_decay : float
        Non-negative; ``dampening`` at most 1.
    nesterov, maximize : bool
    lower_bound : float, optional
    n_threads : int, optional

    Raises
    ------
    TypeError, ValueError
        As for :func:`adagrad_update`; also ``nesterov`` without momentum or with
        dampening, and momentum without velocities.

    Examples
    --------
    >>> import numpy as np
    >>> import fastgd
    >>> p = np.array([0.5, -0.25])
    >>> fastgd.sgd_update(p, np.array([1.0, -1.0]), lr=0.5, lower_bound=0.0)
    >>> p
    array([0.  , 0.25])
    """
    fast_path = _backend.updates_fast_path
    if fast_path is not None and fast_path.sgd_fast(
            params, grads, velocities, lr, momentum, nesterov, dampening, weight_decay,
            maximize, lower_bound, n_threads, PARALLEL_MIN_ELEMENTS):
        return
    _sgd_general(params, grads, velocities, lr, momentum, nesterov, dampening, weight_decay,
                 maximize, lower_bound, n_threads)


def _sgd_general(params, grads, velocities, lr, momentum, nesterov, dampening, weight_decay,
                 maximize, lower_bound, n_threads, counter=None):
    """sgd_update's general path (see _adagrad_general)."""
    lr = _validation.check_real(lr, "lr")
    momentum = _validation.check_real(momentum, "momentum")
    dampening = _validation.check_real(dampening, "dampening", maximum=1.0)
    weight_decay = _validation.check_real(weight_decay, "weight_decay")
    nesterov = _validation.check_flag(nesterov, "nesterov")
    maximize = _validation.check_flag(maximize, "maximize")
    bound = _lower_bound(lower_bound)
    if nesterov and (momentum <= 0 or dampening != 0):
        raise ValueError("nesterov requires momentum > 0 and dampening == 0; "
                         f"got momentum={momentum}, dampening={dampening}")
    if momentum != 0 and velocities is None:
        raise ValueError("momentum != 0 needs velocities (one momentum buffer per parameter)")
    n_threads = _threads.resolve_n_threads(n_threads)
    params, grads, velocities = _validated_lists(params, grads, velocities, "velocities")
    kernel = kernels().sgd_update
    kernel(params, grads, velocities if momentum != 0 else None, lr, momentum, dampening,
           nesterov, weight_decay, maximize, bound, n_threads, PARALLEL_MIN_ELEMENTS, counter)


def _adagrad_rates(accums, clr, eps, eps_mode):
    """Adagrad's per-entry rates from its sums of squares (see Adagrad.effective_lr)."""
    rates = []
    for accum in accums:
        t = accum.dtype.type
        with np.errstate(divide="ignore"):
            if eps_mode == "outside":
                rate = t(clr) / (np.sqrt(accum) + t(eps))
            elif eps_mode == "inside":
                rate = np.where(accum > 0, t(clr) / np.sqrt(accum + t(eps)), t(0))
            else:
                rate = t(clr) / np.sqrt(accum)
        rates.append(rate)
    return rates


class _Optimizer:
    """State shared by the optimizer objects: the parameters, validated once."""

    def __init__(self, params, n_threads):
        params, _ = _as_list(params, "params")
        for k, param in enumerate(params):
            _check_updated_array(param, f"params[{k}]")
        _check_no_aliasing([(f"params[{k}]", p) for k, p in enumerate(params)], [])
        self.params = params
        self.n_threads = _threads.check_n_threads(n_threads)
        # The steps taken, counted by the compiled call that applies each update (so a
        # KeyboardInterrupt never leaves an update applied and not counted).
        self._steps = np.zeros(1, dtype=np.int64)

    @property
    def step_count(self) -> int:
        """The number of steps applied."""
        return int(self._steps[0])

    def __repr__(self):
        shapes = ", ".join(str(p.shape) for p in self.params[:3])
        more = f", ... ({len(self.params)} arrays)" if len(self.params) > 3 else ""
        settings = ", ".join(f"{key}={value!r}" for key, value in self.settings.items())
        return (f"{type(self).__name__}(params of shapes [{shapes}{more}], {settings}, "
                f"n_threads={self.n_threads!r}, step_count={self.step_count})")

    @step_count.setter
    def step_count(self, value: int) -> None:
        self._steps[0] = value

    def _checked_state(self, state, buffers_name):
        """The step count and settings of ``state``, a dict from state_dict() that holds
        the buffers ``state[buffers_name]`` (the caller checks them)."""
        if not isinstance(state, collections.abc.Mapping):
            raise TypeError(f"state must be a dict from state_dict(); got {type(state).__name__}")
        for key in ("step", buffers_name):
            if key not in state:
                raise ValueError(f"state has no {key!r}; it must come from state_dict()")
        step = state["step"]
        if isinstance(step, bool) or not isinstance(step, numbers.Integral) or step < 0:
            raise ValueError(f"state['step'] must be an integer >= 0; got {step!r}")
        saved = state.get("settings", {})
        if not isinstance(saved, collections.abc.Mapping):
            raise TypeError(f"state['settings'] must be a dict; got {type(saved).__name__}")
        unknown = sorted(set(saved) - set(self.settings))
        if unknown:
            raise ValueError(f"state['settings'] has unknown keys {unknown}; this optimizer's "
                             f"are {sorted(self.settings)}")
        return int(step), self._checked_settings(**{**self.settings, **saved})

    def _checked_buffers(self, arrays, name):
        """Copies of the saved buffers ``arrays``, checked against the parameters: copies,
        so that restoring them is right even when they are this optimizer's own buffers
        in another order."""
        if not isinstance(arrays, (list, tuple)) or len(arrays) != len(self.params):
            got = (f"a list of {len(arrays)}" if isinstance(arrays, (list, tuple))
                   else f"{type(arrays).__name__}")
            raise ValueError(f"state[{name!r}] must be a list of {len(self.params)} arrays, "
                             f"one per parameter; got {got}")
        copies = []
        for k, (array, param) in enumerate(zip(arrays, self.params, strict=True)):
            array = np.array(array, copy=True)
            if array.shape != param.shape or array.dtype != param.dtype:
                raise ValueError(f"{name}[{k}] must have shape {param.shape} and dtype "
                                 f"{param.dtype}; got {array.shape} and {array.dtype}")
            copies.append(array)
        return copies


class Adagrad(_Optimizer):
    """Adagrad over a list of arrays, holding its sums of squared gradients.

    Parameters
    ----------
    params : ndarray or list of ndarrays
        The parameters, updated in place by :meth:`step`.
    lr, lr_decay, weight_decay, eps : float
        As in :func:`adagrad_update` (``torch.optim.Adagrad``'s defaults).
    initial_accumulator_value : float
        The starting value of every sum of squares.
    eps_mode : {"outside", "inside", "accumulate"}
    lower_bound : float, optional
        Project the parameters onto ``>= lower_bound`` after every step.
    maximize : bool
    n_threads : int, optional

    Examples
    --------
    >>> import numpy as np
    >>> import fastgd
    >>> W = np.ones((2, 2))
    >>> opt = fastgd.Adagrad([W], lr=0.5)
    >>> opt.step([np.full((2, 2), 2.0)])
    >>> W
    array([[0.5, 0.5],
           [0.5, 0.5]])
    >>> opt.effective_lr()[0]
    array([[0.25, 0.25],
           [0.25, 0.25]])
    """

    def __init__(self, params: Arrays, lr: float = 0.01, lr_decay: float = 0.0,
                 weight_decay: float = 0.0, initial_accumulator_value: float = 0.0,
                 eps: float = 1e-10, eps_mode: EpsMode = "outside",
                 lower_bound: float | None = None, maximize: bool = False,
                 n_threads: int | None = None) -> None:
        super().__init__(params, n_threads)
        self.settings = self._checked_settings(lr, lr_decay, weight_decay, eps, eps_mode,
                                               lower_bound, maximize)
        start = _validation.check_real(initial_accumulator_value, "initial_accumulator_value")
        self.accums = [np.full_like(p, start) for p in self.params]

    @staticmethod
    def _checked_settings(lr, lr_decay, weight_decay, eps, eps_mode, lower_bound, maximize):
        _validation.check_choice(eps_mode, "eps_mode", tuple(EPS_MODES))
        return {
            "lr": _validation.check_real(lr, "lr"),
            "lr_decay": _validation.check_real(lr_decay, "lr_decay"),
            "weight_decay": _validation.check_real(weight_decay, "weight_decay"),
            "eps": _validation.check_real(eps, "eps"),
            "eps_mode": eps_mode,
            "lower_bound": None if lower_bound is None else _lower_bound(lower_bound),
            "maximize": _validation.check_flag(maximize, "maximize"),
        }

    def step(self, grads: ArraysLike) -> None:
        """Apply one update with the gradients ``grads`` (one per parameter)."""
        s = self.settings
        # The compiled fast path straight away (as adagrad_update would take it, without
        # its call and keywords: a third of the cost of a small step); the rest, and every
        # error, through adagrad_update.
        fast_path = _backend.updates_fast_path
        # step=None: the fast path takes the step after the counted ones from the counter.
        if fast_path is None or not fast_path.adagrad_fast(
                self.params, grads, self.accums, s["lr"], s["eps"], s["eps_mode"], None,
                s["lr_decay"], s["weight_decay"], s["maximize"], s["lower_bound"],
                self.n_threads, PARALLEL_MIN_ELEMENTS, self._steps):
            _adagrad_general(self.params, grads, self.accums, s["lr"], s["eps"],
                             s["eps_mode"], self.step_count + 1, s["lr_decay"],
                             s["weight_decay"], s["maximize"], s["lower_bound"],
                             self.n_threads, self._steps)

    def effective_lr(self) -> list[FloatArray]:
        """The per-entry rate of the last step: ``clr / (sqrt(G) + eps)`` for "outside",
        ``clr / sqrt(G + eps)`` (0 where G is 0) for "inside", ``clr / sqrt(G)`` for
        "accumulate"; one array per parameter."""
        s = self.settings
        clr = s["lr"] / (1.0 + max(self.step_count - 1, 0) * s["lr_decay"])
        return _adagrad_rates(self.accums, clr, s["eps"], s["eps_mode"])

    def state_dict(self) -> dict[str, Any]:
        """A copy of the state: step count, sums of squares and settings."""
        return {"step": self.step_count, "accums": [a.copy() for a in self.accums],
                "settings": dict(self.settings)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state from :meth:`state_dict` (the sums are copied in place); all of
        it is checked before any of it is restored."""
        step, settings = self._checked_state(state, "accums")
        saved_accums = self._checked_buffers(state["accums"], "accums")
        for accum, saved in zip(self.accums, saved_accums, strict=True):
            accum[...] = saved
        self.step_count, self.settings = step, settings


class SGD(_Optimizer):
    """Gradient descent with PyTorch's SGD semantics: momentum, dampening, Nesterov.

    The momentum buffer starts at the first gradient, as in ``torch.optim.SGD``.

    Parameters
    ----------
    params : ndarray or list of ndarrays
        The parameters, updated in place by :meth:`step`.
    lr : float
    momentum, dampening, weight_decay : float
    nesterov, maximize : bool
    lower_bound : float, optional
        Project onto ``>= lower_bound`` after every step (projected gradient descent).
    n_threads : int, optional

    Examples
    --------
    >>> import numpy as np
    >>> import fastgd
    >>> x = np.array([1.0])
    >>> opt = fastgd.SGD([x], lr=0.1, momentum=0.9)
    >>> for _ in range(2):
    ...     opt.step([2 * x])         # the gradient of x**2
    >>> x
    array([0.46])
    """

    def __init__(self, params: Arrays, lr: float, momentum: float = 0.0,
                 dampening: float = 0.0, weight_decay: float = 0.0, nesterov: bool = False,
                 maximize: bool = False, lower_bound: float | None = None,
                 n_threads: int | None = None) -> None:
        super().__init__(params, n_threads)
        self.settings = self._checked_settings(lr, momentum, dampening, weight_decay, nesterov,
                                               maximize, lower_bound)
        self.velocities = ([np.zeros_like(p) for p in self.params]
                           if self.settings["momentum"] != 0 else None)

    @staticmethod
    def _checked_settings(lr, momentum, dampening, weight_decay, nesterov, maximize,
                          lower_bound):
        settings = {
            "lr": _validation.check_real(lr, "lr"),
            "momentum": _validation.check_real(momentum, "momentum"),
            "dampening": _validation.check_real(dampening, "dampening", maximum=1.0),
            "weight_decay": _validation.check_real(weight_decay, "weight_decay"),
            "nesterov": _validation.check_flag(nesterov, "nesterov"),
            "maximize": _validation.check_flag(maximize, "maximize"),
            "lower_bound": None if lower_bound is None else _lower_bound(lower_bound),
        }
        if settings["nesterov"] and (settings["momentum"] <= 0 or settings["dampening"] != 0):
            raise ValueError("nesterov requires momentum > 0 and dampening == 0")
        return settings

    def step(self, grads: ArraysLike) -> None:
        """Apply one update with the gradients ``grads`` (one per parameter)."""
        s = self.settings
        # The compiled fast path straight away, as in Adagrad.step; given the counter, it
        # leaves the first step undamped itself.
        fast_path = _backend.updates_fast_path
        if fast_path is None or not fast_path.sgd_fast(
                self.params, grads, self.velocities, s["lr"], s["momentum"], s["nesterov"],
                s["dampening"], s["weight_decay"], s["maximize"], s["lower_bound"],
                self.n_threads, PARALLEL_MIN_ELEMENTS, self._steps):
            dampening = s["dampening"]
            if self.step_count == 0 and self.velocities is not None:
                # torch.optim.SGD: the first buffer is the gradient itself, v = 0 m + 1 g.
                dampening = 0.0
            _sgd_general(self.params, grads, self.velocities, s["lr"], s["momentum"],
                         s["nesterov"], dampening, s["weight_decay"], s["maximize"],
                         s["lower_bound"], self.n_threads, self._steps)

    def state_dict(self) -> dict[str, Any]:
        """A copy of the state: step count, momentum buffers and settings."""
        velocities = None if self.velocities is None else [v.copy() for v in self.velocities]
        return {"step": self.step_count, "velocities": velocities,
                "settings": dict(self.settings)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state from :meth:`state_dict` (the buffers are copied in place); all of
        it is checked before any of it is restored. Its settings cannot turn momentum on or
        off (that needs a new SGD)."""
        step, settings = self._checked_state(state, "velocities")
        if (settings["momentum"] != 0) != (self.velocities is not None):
            raise ValueError("state['settings'] cannot turn momentum on or off (momentum "
                             f"{self.settings['momentum']} here, {settings['momentum']} in "
                             "the state); make a new SGD")
        if self.velocities is not None:
            saved_velocities = self._checked_buffers(state["velocities"], "velocities")
            for velocity, saved in zip(self.velocities, saved_velocities, strict=True):
                velocity[...] = saved
        self.step_count, self.settings = step, settings


def _betas(value):
    """Adam's (beta1, beta2): two reals in [0, 1)."""
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise TypeError(f"betas must be a pair (beta1, beta2); got {value!r}")
    checked = []
    for name, beta in zip(("betas[0]", "betas[1]"), value, strict=True):
        beta = _validation.check_real(beta, name)
        if not beta < 1.0:
            raise ValueError(f"{name} must be in [0, 1); got {beta}")
        checked.append(beta)
    return tuple(checked)


def _below_one(value, name):
    value = _validation.check_real(value, name)
    if not value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1]; got {value}")
    return value


def adam_update(params: Arrays, grads: ArraysLike, exp_avgs: Arrays, exp_avg_sqs: Arrays,
                max_exp_avg_sqs: Arrays | None = None, *, lr: float = 1e-3,
                betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                weight_decay: float = 0.0, decoupled_weight_decay: bool = False,
                amsgrad: bool = False, maximize: bool = False, step: int = 1,
                lower_bound: float | None = None, n_threads: int | None = None) -> None:
    """One Adam (or AdamW) step, in place, fused into a single pass per array.

    As ``torch.optim.Adam`` (``torch.optim.AdamW`` with ``decoupled_weight_decay``), with
    ``g`` the gradient (negated when ``maximize``) and ``t = step``:

    - weight decay: ``g += weight_decay * p`` (Adam), or ``p *= 1 - lr * weight_decay``
      (AdamW: decoupled);
    - ``m = beta1 m + (1 - beta1) g``, ``v = beta2 v + (1 - beta2) g**2``, and with
      ``amsgrad`` the running maximum of ``v`` stands for ``v``;
    - ``p -= lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)``;

    then ``p = max(p, lower_bound)`` when a lower bound is given (a NaN stays NaN).

    Parameters
    ----------
    params : ndarray or list/tuple of ndarrays
        Updated in place: float32 or float64, C-contiguous, writeable.
    grads : array_like or list/tuple of array_likes
        One per parameter, of its shape and dtype. Not modified.
    exp_avgs, exp_avg_sqs : ndarray or list/tuple of ndarrays
        The first and second moments ``m`` and ``v``, one per parameter, of its shape and
        dtype (zeros before the first step); updated in place.
    max_exp_avg_sqs : ndarray or list/tuple of ndarrays, optional
        With ``amsgrad``: the running maxima of ``v``; updated in place.
    lr, eps, weight_decay : float
        Non-negative.
    betas : (float, float)
        Each in [0, 1).
    decoupled_weight_decay, amsgrad, maximize : bool
    step : int
        The 1-based number of this step (for the bias corrections).
    lower_bound : float, optional
    n_threads : int, optional
        OpenMP threads over all elements of the list; small updates use one.

    Raises
    ------
    TypeError, ValueError
        As :func:`adagrad_update`; nothing is modified when anything is wrong.

    See Also
    --------
    Adam, AdamW : the optimizer objects that hold the moments and count the steps.

    Examples
    --------
    >>> import numpy as np
    >>> import fastgd
    >>> p, m, v = np.array([1.0, -2.0]), np.zeros(2), np.zeros(2)
    >>> fastgd.adam_update(p, np.array([0.5, -1.0]), m, v, lr=0.1)
    >>> p.round(6)
    array([ 0.9, -1.9])
    """
    fast_path = _backend.updates_fast_path
    if fast_path is not None and fast_path.adam_fast(
            params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, lr, betas, eps,
            weight_decay, decoupled_weight_decay, amsgrad, maximize, step, lower_bound,
            n_threads, PARALLEL_MIN_ELEMENTS):
        return
    _adam_general(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, lr, betas, eps,
                  weight_decay, decoupled_weight_decay, amsgrad, maximize, step, lower_bound,
                  n_threads)


def _adam_general(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, lr, betas, eps,
                  weight_decay, decoupled, amsgrad, maximize, step, lower_bound, n_threads,
                  counter=None):
    """adam_update's checks, then the kernel (which counts the step in ``counter``)."""
    lr = _validation.check_real(lr, "lr")
    beta1, beta2 = _betas(betas)
    eps = _validation.check_real(eps, "eps")
    weight_decay = _validation.check_real(weight_decay, "weight_decay")
    decoupled = _validation.check_flag(decoupled, "decoupled_weight_decay")
    amsgrad = _validation.check_flag(amsgrad, "amsgrad")
    maximize = _validation.check_flag(maximize, "maximize")
    step = _step(step)
    bound = _lower_bound(lower_bound)
    n_threads = _threads.resolve_n_threads(n_threads)
    for name, states in (("exp_avgs", exp_avgs), ("exp_avg_sqs", exp_avg_sqs)):
        if states is None:
            raise TypeError(_missing_state_message(name))
    if amsgrad and max_exp_avg_sqs is None:
        raise TypeError(_missing_state_message("max_exp_avg_sqs") + " (amsgrad=True)")
    params, grads, (exp_avgs, exp_avg_sqs, max_exp_avg_sqs) = _validated_with_states(
        params, grads, [("exp_avgs", exp_avgs), ("exp_avg_sqs", exp_avg_sqs),
                        ("max_exp_avg_sqs", max_exp_avg_sqs if amsgrad else None)])
    kernels().adam_update(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, lr, beta1,
                          beta2, eps, weight_decay, decoupled, amsgrad, maximize, step, bound,
                          n_threads, PARALLEL_MIN_ELEMENTS, counter)


def rmsprop_update(params: Arrays, grads: ArraysLike, square_avgs: Arrays,
                   momentum_buffers: Arrays | None = None, grad_avgs: Arrays | None = None, *,
                   lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                   weight_decay: float = 0.0, momentum: float = 0.0, centered: bool = False,
                   maximize: bool = False, lower_bound: float | None = None,
                   n_threads: int | None = None) -> None:
    """One RMSprop step, in place, fused into a single pass per array.

    As ``torch.optim.RMSprop``, with ``g`` the gradient (negated when ``maximize``, plus
    ``weight_decay * p``): ``v = alpha v + (1 - alpha) g**2``; centered, ``a = alpha a +
    (1 - alpha) g`` and ``d = sqrt(v - a**2) + eps``, else ``d = sqrt(v) + eps``; with
    momentum ``b = momentum b + g / d`` and ``p -= lr b``, else ``p -= lr g / d``; then
    ``p = max(p, lower_bound)`` when a lower bound is given.

    Parameters
    ----------
    params : ndarray or list/tuple of ndarrays
        Updated in place: float32 or float64, C-contiguous, writeable.
    grads : array_like or list/tuple of array_likes
        One per parameter. Not modified.
    square_avgs : ndarray or list/tuple of ndarrays
        ``v``, one per parameter (zeros before the first step); updated in place.
    momentum_buffers : ndarray or list/tuple of ndarrays, optional
        ``b``, needed when ``momentum > 0``; updated in place.
    grad_avgs : ndarray or list/tuple of ndarrays, optional
        ``a``, needed when ``centered``; updated in place.
    lr, eps, weight_decay, momentum : float
        Non-negative.
    alpha : float
        In [0, 1].
    centered, maximize : bool
    lower_bound : float, optional
    n_threads : int, optional

    Raises
    ------
    TypeError, ValueError
        As :func:`adagrad_update`; nothing is modified when anything is wrong.

    See Also
    --------
    RMSprop : the optimizer object that holds its state.

    Examples
    --------
    >>> import numpy as np
    >>> import fastgd
    >>> p, v = np.array([1.0, -2.0]), np.zeros(2)
    >>> fastgd.rmsprop_update(p, np.array([0.5, -1.0]), v, lr=0.01, alpha=0.75)
    >>> p.round(6)
    array([ 0.98, -1.98])
    """
    fast_path = _backend.updates_fast_path
    if fast_path is not None and fast_path.rmsprop_fast(
            params, grads, square_avgs, momentum_buffers, grad_avgs, lr, alpha, eps,
            weight_decay, momentum, centered, maximize, lower_bound, n_threads,
            PARALLEL_MIN_ELEMENTS):
        return
    _rmsprop_general(params, grads, square_avgs, momentum_buffers, grad_avgs, lr, alpha, eps,
                     weight_decay, momentum, centered, maximize, lower_bound, n_threads)


def _rmsprop_general(params, grads, square_avgs, momentum_buffers, grad_avgs, lr, alpha, eps,
                     weight_decay, momentum, centered, maximize, lower_bound, n_threads,
                     counter=None):
    """rmsprop_update's checks, then the kernel (which counts the step in ``counter``)."""
    lr = _validation.check_real(lr, "lr")
    alpha = _below_one(alpha, "alpha")
    eps = _validation.check_real(eps, "eps")
    weight_decay = _validation.check_real(weight_decay, "weight_decay")
    momentum = _validation.check_real(momentum, "momentum")
    centered = _validation.check_flag(centered, "centered")
    maximize = _validation.check_flag(maximize, "maximize")
    bound = _lower_bound(lower_bound)
    n_threads = _threads.resolve_n_threads(n_threads)
    if square_avgs is None:
        raise TypeError(_missing_state_message("square_avgs"))
    if momentum > 0 and momentum_buffers is None:
        raise TypeError(_missing_state_message("momentum_buffers") + " (momentum > 0)")
    if centered and grad_avgs is None:
        raise TypeError(_missing_state_message("grad_avgs") + " (centered=True)")
    params, grads, (square_avgs, momentum_buffers, grad_avgs) = _validated_with_states(
        params, grads, [("square_avgs", square_avgs),
                        ("momentum_buffers", momentum_buffers if momentum > 0 else None),
                        ("grad_avgs", grad_avgs if centered else None)])
    kernels().rmsprop_update(params, grads, square_avgs, momentum_buffers, grad_avgs, lr,
                             alpha, eps, weight_decay, momentum, centered, maximize, bound,
                             n_threads, PARALLEL_MIN_ELEMENTS, counter)


class _StatesOptimizer(_Optimizer):
    """An optimizer whose state is several lists of buffers, named by _BUFFERS (a list is
    None when its option is off)."""

    _BUFFERS: tuple[str, ...] = ()

    def state_dict(self) -> dict[str, Any]:
        """A copy of the state: step count, buffers and settings."""
        state = {"step": self.step_count, "settings": dict(self.settings)}
        for name in self._BUFFERS:
            buffers = getattr(self, name)
            state[name] = None if buffers is None else [b.copy() for b in buffers]
        return state

    def _restore_buffers(self, state):
        """Copy the saved buffers into this optimizer's, every one checked before any is
        copied."""
        restored = []
        for name in self._BUFFERS:
            buffers = getattr(self, name)
            if buffers is not None:
                if name not in state:
                    raise ValueError(f"state has no {name!r}; it must come from state_dict()")
                restored.append((buffers, self._checked_buffers(state[name], name)))
        for buffers, saved in restored:
            for buffer, values in zip(buffers, saved, strict=True):
                buffer[...] = values


class Adam(_StatesOptimizer):
    """Adam over a list of arrays, holding its moments (``torch.optim.Adam``'s semantics).

    Parameters
    ----------
    params : ndarray or list of ndarrays
        The parameters, updated in place by :meth:`step`.
    lr, eps, weight_decay : float
    betas : (float, float)
    amsgrad : bool
    maximize : bool
    decoupled_weight_decay : bool
        AdamW's weight decay (see :class:`AdamW`).
    lower_bound : float, optional
        Project the parameters onto ``>= lower_bound`` after every step.
    n_threads : int, optional

    Examples
    --------
    >>> import numpy as np
    >>> import fastgd
    >>> x = np.array([3.0, -1.0])
    >>> opt = fastgd.Adam([x], lr=0.1)
    >>> for _ in range(200):
    ...     opt.step([2 * x])            # the gradient of ||x||^2
    >>> bool(np.abs(x).max() < 0.05), opt.step_count
    (True, 200)
    """

    _BUFFERS = ("exp_avgs", "exp_avg_sqs", "max_exp_avg_sqs")

    def __init__(self, params: Arrays, lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, amsgrad: bool = False, *, maximize: bool = False,
                 decoupled_weight_decay: bool = False, lower_bound: float | None = None,
                 n_threads: int | None = None) -> None:
        super().__init__(params, n_threads)
        self.settings = self._checked_settings(lr, betas, eps, weight_decay, amsgrad,
                                               maximize, decoupled_weight_decay, lower_bound)
        self.exp_avgs = [np.zeros_like(p) for p in self.params]
        self.exp_avg_sqs = [np.zeros_like(p) for p in self.params]
        self.max_exp_avg_sqs = [np.zeros_like(p) for p in self.params] if amsgrad else None

    @staticmethod
    def _checked_settings(lr, betas, eps, weight_decay, amsgrad, maximize,
                          decoupled_weight_decay, lower_bound):
        return {
            "lr": _validation.check_real(lr, "lr"),
            "betas": _betas(betas),
            "eps": _validation.check_real(eps, "eps"),
            "weight_decay": _validation.check_real(weight_decay, "weight_decay"),
            "amsgrad": _validation.check_flag(amsgrad, "amsgrad"),
            "maximize": _validation.check_flag(maximize, "maximize"),
            "decoupled_weight_decay": _validation.check_flag(decoupled_weight_decay,
                                                             "decoupled_weight_decay"),
            "lower_bound": None if lower_bound is None else _lower_bound(lower_bound),
        }

    def step(self, grads: ArraysLike) -> None:
        """Apply one update with the gradients ``grads`` (one per parameter)."""
        s = self.settings
        fast_path = _backend.updates_fast_path
        # step=None: the fast path takes the step after the counted ones from the counter.
        if fast_path is None or not fast_path.adam_fast(
                self.params, grads, self.exp_avgs, self.exp_avg_sqs, self.max_exp_avg_sqs,
                s["lr"], s["betas"], s["eps"], s["weight_decay"],
                s["decoupled_weight_decay"], s["amsgrad"], s["maximize"], None,
                s["lower_bound"], self.n_threads, PARALLEL_MIN_ELEMENTS, self._steps):
            _adam_general(self.params, grads, self.exp_avgs, self.exp_avg_sqs,
                          self.max_exp_avg_sqs, s["lr"], s["betas"], s["eps"],
                          s["weight_decay"], s["decoupled_weight_decay"], s["amsgrad"],
                          s["maximize"], self.step_count + 1, s["lower_bound"],
                          self.n_threads, self._steps)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state from :meth:`state_dict` (the moments are copied in place); all
        of it is checked before any of it is restored. Its settings cannot turn amsgrad on
        or off (that needs a new optimizer)."""
        step, settings = self._checked_state(state, "exp_avgs")
        if settings["amsgrad"] != self.settings["amsgrad"]:
            raise ValueError("state['settings'] cannot turn amsgrad on or off; make a new "
                             f"{type(self).__name__}")
        self._restore_buffers(state)
        self.step_count, self.settings = step, settings


class AdamW(Adam):
    """Adam with decoupled weight decay (``torch.optim.AdamW``'s semantics and defaults):
    ``Adam(..., decoupled_weight_decay=True)`` with ``weight_decay=0.01``.

    Examples
    --------
    >>> import numpy as np
    >>> import fastgd
    >>> x = np.ones(3)
    >>> opt = fastgd.AdamW([x], lr=0.1, weight_decay=0.5)
    >>> opt.step([np.zeros(3)])     # no gradient: only the decay, x *= 1 - lr * wd
    >>> x
    array([0.95, 0.95, 0.95])
    """

    def __init__(self, params: Arrays, lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False, *,
                 maximize: bool = False, lower_bound: float | None = None,
                 n_threads: int | None = None) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize,
                         decoupled_weight_decay=True, lower_bound=lower_bound,
                         n_threads=n_threads)


class RMSprop(_StatesOptimizer):
    """RMSprop over a list of arrays, holding its state (``torch.optim.RMSprop``'s
    semantics and defaults).

    Parameters
    ----------
    params : ndarray or list of ndarrays
        The parameters, updated in place by :meth:`step`.
    lr, alpha, eps, weight_decay, momentum : float
    centered, maximize : bool
    lower_bound : float, optional
    n_threads : int, optional

    Examples
    --------
    >>> import numpy as np
    >>> import fastgd
    >>> x = np.array([3.0, -1.0])
    >>> opt = fastgd.RMSprop([x], lr=0.05, momentum=0.5)
    >>> for _ in range(300):
    ...     opt.step([2 * x])
    >>> bool(np.abs(x).max() < 0.05)
    True
    """

    _BUFFERS = ("square_avgs", "momentum_buffers", "grad_avgs")

    def __init__(self, params: Arrays, lr: float = 1e-2, alpha: float = 0.99,
                 eps: float = 1e-8, weight_decay: float = 0.0, momentum: float = 0.0,
                 centered: bool = False, *, maximize: bool = False,
                 lower_bound: float | None = None, n_threads: int | None = None) -> None:
        super().__init__(params, n_threads)
        self.settings = self._checked_settings(lr, alpha, eps, weight_decay, momentum,
                                               centered, maximize, lower_bound)
        self.square_avgs = [np.zeros_like(p) for p in self.params]
        self.momentum_buffers = ([np.zeros_like(p) for p in self.params]
                                 if self.settings["momentum"] > 0 else None)
        self.grad_avgs = [np.zeros_like(p) for p in self.params] if centered else None

    @staticmethod
    def _checked_settings(lr, alpha, eps, weight_decay, momentum, centered, maximize,
                          lower_bound):
        return {
            "lr": _validation.check_real(lr, "lr"),
            "alpha": _below_one(alpha, "alpha"),
            "eps": _validation.check_real(eps, "eps"),
            "weight_decay": _validation.check_real(weight_decay, "weight_decay"),
            "momentum": _validation.check_real(momentum, "momentum"),
            "centered": _validation.check_flag(centered, "centered"),
            "maximize": _validation.check_flag(maximize, "maximize"),
            "lower_bound": None if lower_bound is None else _lower_bound(lower_bound),
        }

    def step(self, grads: ArraysLike) -> None:
        """Apply one update with the gradients ``grads`` (one per parameter)."""
        s = self.settings
        fast_path = _backend.updates_fast_path
        if fast_path is None or not fast_path.rmsprop_fast(
                self.params, grads, self.square_avgs, self.momentum_buffers, self.grad_avgs,
                s["lr"], s["alpha"], s["eps"], s["weight_decay"], s["momentum"],
                s["centered"], s["maximize"], s["lower_bound"], self.n_threads,
                PARALLEL_MIN_ELEMENTS, self._steps):
            _rmsprop_general(self.params, grads, self.square_avgs, self.momentum_buffers,
                             self.grad_avgs, s["lr"], s["alpha"], s["eps"],
                             s["weight_decay"], s["momentum"], s["centered"], s["maximize"],
                             s["lower_bound"], self.n_threads, self._steps)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state from :meth:`state_dict` (the buffers are copied in place); all
        of it is checked before any of it is restored. Its settings cannot turn momentum or
        centering on or off (that needs a new RMSprop)."""
        step, settings = self._checked_state(state, "square_avgs")
        if ((settings["momentum"] > 0) != (self.momentum_buffers is not None)
                or settings["centered"] != self.settings["centered"]):
            raise ValueError("state['settings'] cannot turn momentum or centered on or off; "
                             "make a new RMSprop")
        self._restore_buffers(state)
        self.step_count, self.settings = step, settings
