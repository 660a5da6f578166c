"""fastgd: compiled kernels for gradient-descent workloads.

Every kernel has a compiled implementation and a pure-NumPy twin with the same
semantics; ``get_backend()`` says which one runs, ``use_backend()`` switches.

Examples
--------
>>> import numpy as np
>>> import fastgd
>>> fastgd.sqeuclidean(np.array([[0.0, 0.0], [3.0, 4.0]]))[0, 1]
np.float64(25.0)
"""

from fastgd import _backend
from fastgd._backend import get_backend, use_backend
from fastgd._config import show_config
from fastgd._plan import observed_from_ids
from fastgd._version import __version__
from fastgd.distances import cdist, sqeuclidean
from fastgd.factorization import FactorizationResult, factorize
from fastgd.gradcheck import GradCheckReport, check_grad, numerical_gradient
from fastgd.masked import ObservedEntries, masked_loss_grad, masked_residual, observed
from fastgd.neighbors import argkmin, nearest
from fastgd.optimize import minimize, scipy_method
from fastgd.updates import (
    SGD,
    Adagrad,
    Adam,
    AdamW,
    RMSprop,
    adagrad_update,
    adam_update,
    rmsprop_update,
    sgd_update,
)

__all__ = [
    "SGD",
    "Adagrad",
    "Adam",
    "AdamW",
    "FactorizationResult",
    "GradCheckReport",
    "MatrixFactorization",
    "ObservedEntries",
    "RMSprop",
    "__version__",
    "adagrad_update",
    "adam_update",
    "argkmin",
    "cdist",
    "check_grad",
    "factorize",
    "get_backend",
    "masked_loss_grad",
    "masked_residual",
    "minimize",
    "nearest",
    "numerical_gradient",
    "observed",
    "observed_from_ids",
    "rmsprop_update",
    "scipy_method",
    "sgd_update",
    "show_config",
    "sqeuclidean",
    "use_backend",
]

# The compiled modules, now where that is cheap (without SciPy), else on first need.
_backend.load_when_cheap()


def __getattr__(name):
    # The estimator imports scikit-learn: loaded on first use, not at `import fastgd`.
    if name == "MatrixFactorization":
        from fastgd.estimator import MatrixFactorization

        return MatrixFactorization
    raise AttributeError(f"module 'fastgd' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | {"MatrixFactorization"})
