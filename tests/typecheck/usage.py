"""Calls of fastgd's public API as users write them: mypy must accept every line (CI runs
``mypy`` with the settings in pyproject.toml; this file is not a test module)."""

import numpy as np
import scipy.optimize
from numpy.typing import NDArray

import fastgd

X = np.random.default_rng(0).random((5, 3))
D: NDArray[np.floating] = fastgd.sqeuclidean(X)
D = fastgd.sqeuclidean(X.astype(np.float32), [[0.0, 0.0, 0.0]], n_threads=1, method="direct")
near_d, near_i = fastgd.argkmin(X, k=2)
only_i: NDArray[np.intp] = fastgd.argkmin(X, X[:2], k=1, return_distance=False, n_threads=1)
cosine_d, cosine_i = fastgd.argkmin(X, k=1, metric="cosine")
between: NDArray[np.floating] = fastgd.cdist(X, X[:2], "nan_euclidean", n_threads=1)
assignment: NDArray[np.intp] = fastgd.nearest(X, X[:2])

A = np.array([[5.0, np.nan, 1.0], [np.nan, 2.0, np.nan]])
W, H = np.ones((2, 1)), np.ones((1, 3))
plan: fastgd.ObservedEntries = fastgd.observed(A)
nnz: int = plan.nnz
loss, dW, dH = fastgd.masked_loss_grad(plan, W, H, loss="rmse", l2=0.1)
value: float = loss
residual: NDArray[np.floating] = fastgd.masked_residual(A, W, H, n_threads=-1)

accums = [np.zeros_like(W), np.zeros_like(H)]
fastgd.adagrad_update([W, H], [dW, dH], accums, lr=0.1, eps_mode="accumulate")
fastgd.sgd_update(W, dW, lr=0.01, momentum=0.9, velocities=np.zeros_like(W))
optimizer = fastgd.Adagrad([W, H], lr=0.5, lower_bound=0.0)
optimizer.step([dW, dH])
steps: int = optimizer.step_count
state = optimizer.state_dict()
optimizer.load_state_dict(state)
rates: list[NDArray[np.floating]] = optimizer.effective_lr()
fastgd.SGD([W], lr=0.1, nesterov=True, momentum=0.5).step([dW])
moments = [np.zeros_like(W)], [np.zeros_like(W)]
fastgd.adam_update([W], [dW], *moments, lr=1e-3, betas=(0.9, 0.99), amsgrad=False, step=3)
fastgd.rmsprop_update(W, dW, np.zeros_like(W), lr=1e-2, alpha=0.9, centered=False)
adam = fastgd.AdamW([W, H], lr=1e-3, weight_decay=0.01)
adam.step([dW, dH])
adam_state: dict = adam.state_dict()
fastgd.RMSprop([W], momentum=0.9).step([dW])

result: fastgd.FactorizationResult = fastgd.factorize(
    A, 1, optimizer="gd", lr=0.01, n_iter=10, nonneg=True, random_state=0,
    callback=lambda iteration, loss, W, H: iteration > 5)
completed: NDArray[np.floating] = result.reconstruct()
predicted = result.predict([0, 1], [1, 0])
data_term: float = result.data_loss
held_out = np.array([[np.nan, 1.0, np.nan], [np.nan, np.nan, np.nan]])
robust = fastgd.factorize(A, 1, loss="huber", delta=0.5, reduction="sum", n_iter=5,
                          weights=np.ones((2, 3)), validation=held_out, early_stopping=True)
best: int | None = robust.best_iteration
ratings = fastgd.observed_from_ids(["ann", "bob", "ann"], [10, 20, 20], [4.0, 3.0, 5.0])
user_ids = ratings.row_ids
stochastic = fastgd.factorize(ratings, 2, solver="stochastic", biases=True, l2=0.05,
                              regularization="per_rating", accumulator="vector", n_iter=5)
mean: float | None = stochastic.global_mean
by_id = stochastic.predict(["ann", "cy"], [10, 20])
weighted_plan = fastgd.observed(A, weights=np.ones((2, 3)))
huber, dW_h, dH_h = fastgd.masked_loss_grad(weighted_plan, np.ones((2, 1)), np.ones((1, 3)),
                                            loss="huber", delta=1.0)

res = fastgd.minimize(lambda x: float(np.sum(x ** 2)), np.ones(2), jac="2-point",
                      method="adagrad", options={"lr": 0.5})
res = scipy.optimize.minimize(scipy.optimize.rosen, [1.0, 2.0],
                              method=fastgd.scipy_method("gd", momentum=0.9))
report: fastgd.GradCheckReport = fastgd.check_grad(
    lambda p: float(np.sum(p ** 2)), lambda p: 2 * p, np.ones(3))
passed: bool = report.passed
gradient = fastgd.numerical_gradient(lambda p: float(np.sum(p ** 2)), np.ones(3),
                                     method="forward")

backend: str = fastgd.get_backend()
with fastgd.use_backend("numpy"):
    fastgd.show_config()
