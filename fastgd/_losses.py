"""The masked losses by name, and the entries' weights: the rules every path that computes
a masked loss shares (masked_loss_grad's dense, plan and small paths, factorize's loops,
fastgd.dask, the estimator).

A loss is an entry loss, a function of one residual r with its parameter ("squared" r^2,
"huber" 0.5 r^2 within ``delta`` and ``delta (|r| - delta / 2)`` beyond), times the entry's
weight if the entries have weights, and a reduction over the observed entries: their sum,
their mean (over the total weight), or the root of the mean. The formulas live in
src_c/losses.h and its NumPy twin; this module names them and checks their settings.

To add a loss: its entry loss's code in fastgd/_codes.py's ENTRY_LOSSES, its case in
src_c/losses.h and in fastgd/_numpy/_masked.py's entry_loss_terms, and its name below.
"""

from __future__ import annotations

import math
import numbers
from typing import NamedTuple

import numpy as np

from fastgd import _codes, _validation
from fastgd._numpy._masked import loss_value_and_scale

# Public name -> (entry loss, reduction unless one is named). A reduction is named by the
# squared loss that uses it (fastgd._codes.LOSSES).
FORMS = {
    "sse": ("squared", "sse"),
    "mse": ("squared", "mse"),
    "rmse": ("squared", "rmse"),
    "huber": ("huber", "mse"),
}
LOSSES = tuple(FORMS)
# The reductions a caller may name for a loss whose reduction is not in its name.
REDUCTIONS = {"sum": "sse", "mean": "mse"}
DEFAULT_DELTA = 1.0
# Public name -> (reduction code, entry loss code), for the fast paths that skip resolve().
CODES = {name: (_codes.code_of(_codes.LOSSES, reduction),
                _codes.code_of(_codes.ENTRY_LOSSES, entry))
         for name, (entry, reduction) in FORMS.items()}
SQUARED = _codes.code_of(_codes.ENTRY_LOSSES, "squared")


class Loss(NamedTuple):
    """A loss resolved from its name and settings: what the kernels take."""

    name: str
    reduction: int  # a code of fastgd._codes.LOSSES
    entry: int  # a code of fastgd._codes.ENTRY_LOSSES
    delta: float

    @property
    def is_mean(self):
        """Whether the loss divides by the entries' total weight (undefined at 0)."""
        return self.reduction != _codes.code_of(_codes.LOSSES, "sse")

    @property
    def scale_is_constant(self):
        """Whether the gradients' scale is known before the loss's value (all but rmse)."""
        return self.reduction != _codes.code_of(_codes.LOSSES, "rmse")


def resolve(loss, delta=None, reduction=None):
    """The Loss named ``loss`` with ``delta`` (Huber's, default DEFAULT_DELTA) and the
    ``reduction`` ("sum" or "mean"; None: the loss's own)."""
    _validation.check_choice(loss, "loss", LOSSES)
    entry, own = FORMS[loss]
    if reduction is not None:
        _validation.check_choice(reduction, "reduction", tuple(REDUCTIONS))
        if entry == "squared" and REDUCTIONS[reduction] != own:
            raise ValueError(
                f"reduction={reduction!r} does not apply to loss={loss!r}, whose name says "
                "its reduction; use loss='sse' for the sum, 'mse' for the mean")
        own = REDUCTIONS[reduction]
    if entry == "huber":
        delta = DEFAULT_DELTA if delta is None else check_delta(delta)
    elif delta is not None:
        raise ValueError(f"delta applies to loss='huber' only; got delta={delta!r} with "
                         f"loss={loss!r}")
    else:
        delta = 0.0
    return Loss(loss, _codes.code_of(_codes.LOSSES, own),
                _codes.code_of(_codes.ENTRY_LOSSES, entry), delta)


def check_delta(delta):
    if isinstance(delta, bool) or not isinstance(delta, numbers.Real):
        raise TypeError(f"delta must be a real number; got {type(delta).__name__}")
    if not (math.isfinite(delta) and delta > 0):
        raise ValueError(f"delta must be finite and > 0; got {delta}")
    return float(delta)


def check_defined(loss, total_weight):
    """ValueError when ``loss`` is a mean over entries of no weight at all."""
    if loss.is_mean and not total_weight > 0:
        raise ValueError(
            f"A has no observed entry of positive weight (the observed entries' total "
            f"weight is {total_weight}), so loss={loss.name!r} (a mean over them) is "
            "undefined; use loss='sse'" + (" or reduction='sum'" if loss.name == "huber" else "")
        )


def value_and_scale(loss, total, total_weight):
    """The loss from the sum of its entry losses over entries of total weight
    ``total_weight``, and the factor that turns the gradient factors' sums into its
    gradient (the formula: fastgd._numpy._masked.loss_value_and_scale)."""
    check_defined(loss, total_weight)
    return loss_value_and_scale(loss.reduction, loss.entry, total, total_weight)


def summed(loss):
    """The keyword arguments of masked_loss_grad for the sum form of ``loss`` (its entry
    losses summed): the blocks of fastgd.dask return it, and the loss follows."""
    if loss.entry == SQUARED:
        return {"loss": "sse"}
    return {"loss": loss.name, "delta": loss.delta, "reduction": "sum"}


def summed_scale(loss):
    """The scale of the sum form's gradients (the entry loss's derivative factor)."""
    return value_and_scale(loss._replace(reduction=_codes.code_of(_codes.LOSSES, "sse")),
                           0.0, 0.0)[1]


def _check_entry_weights(values, describe):
    bad = ~(np.isfinite(values) & (values >= 0))
    if bad.any():
        e = int(np.flatnonzero(bad)[0])
        raise ValueError(f"weights must be finite and >= 0 at every observed entry; got "
                         f"{values[e]} at {describe(e)}")


def _as_weights(weights):
    array = np.asarray(weights)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"weights must be an array of real numbers; got dtype {array.dtype}")
    return array


def plan_weights(weights, plan, dtype):
    """The entries' weights in the plan's order, in ``dtype``, C-contiguous, checked:
    ``weights`` of shape (nnz,) in that order, or (m, n) like A."""
    array = _as_weights(weights)
    if array.shape == plan.shape and array.shape != (plan.nnz,):
        values = array[plan.rows, plan.cols]
    elif array.shape == (plan.nnz,):
        values = array
    else:
        raise ValueError(f"weights must have A's shape {plan.shape} or one value per observed "
                         f"entry, shape ({plan.nnz},); got shape {array.shape}")
    values = _validation.as_contiguous(values, dtype)

    def describe(e):
        return f"observed entry {e} (row {int(plan.rows[e])}, column {int(plan.cols[e])})"

    _check_entry_weights(values, describe)
    return values


def dense_weights(weights, A, mask, dtype):
    """(weights like A in ``dtype``, C-contiguous; the observed entries' total weight),
    checked at the observed entries (their values elsewhere are never read)."""
    array = _as_weights(weights)
    if array.shape != A.shape:
        raise ValueError(f"weights must have A's shape {A.shape}; got shape {array.shape}")
    array = _validation.as_contiguous(array, dtype)
    observed = ~np.isnan(A) if mask is None else mask.view(bool)
    values = array[observed]

    def describe(e):
        i, j = np.argwhere(observed)[e]
        return f"row {int(i)}, column {int(j)}"

    _check_entry_weights(values, describe)
    return array, total_weight(values)


def total_weight(values):
    """The entries' total weight, in float64."""
    return float(np.sum(values, dtype=np.float64))
