"""Type aliases of fastgd's public signatures (imported by type checkers only: every module
that uses them says ``from __future__ import annotations`` and imports this module under
``typing.TYPE_CHECKING``, so ``import fastgd`` never loads it)."""

from collections.abc import Callable, Sequence
from typing import Any, Literal, TypeAlias

import numpy as np
from numpy.typing import ArrayLike, NDArray

# float32 or float64 results: the input's float dtype.
FloatArray: TypeAlias = NDArray[np.floating[Any]]
# One array updated in place, or a list/tuple of them.
Arrays: TypeAlias = NDArray[np.floating[Any]] | Sequence[NDArray[np.floating[Any]]]
# Gradients and the like: arrays, or list/tuple of arrays.
ArraysLike: TypeAlias = ArrayLike | Sequence[ArrayLike]
# None, an int seed, or a NumPy generator.
RandomState: TypeAlias = int | np.random.Generator | np.random.RandomState | None
Loss: TypeAlias = Literal["sse", "mse", "rmse", "huber"]
Reduction: TypeAlias = Literal["mean", "sum"]
EpsMode: TypeAlias = Literal["outside", "inside", "accumulate"]
Optimizer: TypeAlias = Literal["adagrad", "gd", "adam", "rmsprop"]
Solver: TypeAlias = Literal["batch", "stochastic"]
Regularization: TypeAlias = Literal["per_rating", "factors"]
Accumulator: TypeAlias = Literal["vector", "coordinate"]
FiniteDifferences: TypeAlias = Literal["central", "forward", "backward"]
DistanceMethod: TypeAlias = Literal["auto", "direct", "expansion"]
MaskedMethod: TypeAlias = Literal["auto", "dense", "sparse"]
Metric: TypeAlias = Literal["sqeuclidean", "euclidean", "cosine", "nan_euclidean"]
CdistMetric: TypeAlias = Metric
# Row indices (argkmin, nearest).
IndexArray: TypeAlias = NDArray[np.intp]
Jac: TypeAlias = Callable[..., ArrayLike] | bool | Literal["2-point", "3-point"] | None

__all__ = [
    "Any", "ArrayLike", "Arrays", "ArraysLike", "Callable", "CdistMetric", "DistanceMethod",
    "EpsMode",
    "FiniteDifferences", "FloatArray", "IndexArray", "Jac", "Literal", "Loss", "MaskedMethod",
    "Metric", "NDArray", "Optimizer", "RandomState", "Reduction", "Sequence",
]
