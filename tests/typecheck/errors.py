"""Wrong calls that the annotations let a type checker flag: each line carries the error
mypy must report, and ``warn_unused_ignores`` fails the check if it stops reporting one."""

import numpy as np

import fastgd

X = np.ones((3, 2))
fastgd.sqeuclidean(X, method="fast")  # type: ignore[arg-type]
fastgd.sqeuclidean(X, n_threads="all")  # type: ignore[arg-type]
fastgd.argkmin(X, metric="cityblock")  # type: ignore[call-overload]
fastgd.cdist(X, X, "minkowski")  # type: ignore[arg-type]
fastgd.masked_loss_grad(X, X, X, loss="mae")  # type: ignore[arg-type]
fastgd.adagrad_update(X, X, X, eps_mode="sometimes")  # type: ignore[arg-type]
fastgd.sgd_update(X, X, momentum=0.9)  # type: ignore[call-arg]
fastgd.factorize(X, 2, optimizer="adamax")  # type: ignore[arg-type]
fastgd.adam_update(X, X, X, X, betas=0.9)  # type: ignore[arg-type]
fastgd.factorize(X, rank="2")  # type: ignore[arg-type]
fastgd.factorize(X, 2, solver="sgd")  # type: ignore[arg-type]
fastgd.minimize(lambda x: 0.0, X, jac="cs")  # type: ignore[arg-type]
fastgd.use_backend("gpu")  # type: ignore[arg-type]
loss: str = fastgd.masked_loss_grad(X, X[:, :1], X[:1])[0]  # type: ignore[assignment]
