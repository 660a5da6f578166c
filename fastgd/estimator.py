"""``fastgd.MatrixFactorization``: matrix factorisation with missing values as a
scikit-learn estimator.

``fit`` learns ``components_`` (H) by :func:`fastgd.factorize`, with NaN as missing;
``transform`` then gives every row its W for those components (and its bias, with
``biases``) by an exact solve of the W-block of the same objective, row by row (ridge
least squares, or non-negative least squares with ``nonneg``), so that rows do not
influence each other. This module
imports scikit-learn, so ``import fastgd`` loads it only when ``MatrixFactorization``
is first used.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

try:
    from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.utils.validation import check_array, check_is_fitted, validate_data
except ImportError as error:
    raise ImportError(f"fastgd.MatrixFactorization needs scikit-learn ({error}): "
                      'pip install "fastgd[sklearn]"') from error

from fastgd import _losses, _plan, _validation, factorization, masked

# transform solves this many rows at a time (their gram matrices, rank x rank each).
ROW_CHUNK = 4096
# With loss="huber", a row's w is found by iteratively reweighted least squares: at most
# this many weighted solves, stopping when w changes by at most HUBER_RTOL relatively.
HUBER_MAX_SOLVES = 100
HUBER_RTOL = 1e-10


def _user_stacklevel():
    """The stacklevel, for a warning issued by this function's caller, of the first frame
    outside fastgd and scikit-learn (which wraps fit_transform): the user's line."""
    import os
    import sys

    libraries = tuple(os.path.dirname(module.__file__) + os.sep
                      for module in (sys.modules["fastgd"], sys.modules["sklearn"]))
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(libraries):
        frame, level = frame.f_back, level + 1
    return level


def _is_sparse(X):
    return hasattr(X, "tocoo")  # validate_data gives a scipy.sparse CSR or an ndarray


def _entry_weights(X, weights):
    """The entries' weights, checked, as a float64 array or sparse matrix like X (0 where X
    has no entry); None without weights."""
    if weights is None:
        return None
    if _is_sparse(X):
        import scipy.sparse

        plan = _plan.observed(X)
        values = _losses.plan_weights(weights, plan, np.float64)
        return scipy.sparse.csr_array((values, plan.indices, plan.indptr), shape=X.shape)
    weights = _losses.dense_weights(weights, X, None, np.float64)[0]
    return np.where(np.isnan(X), 0.0, weights)


def _weight_block(weights, start, rows):
    """Rows [start, start + rows) of _entry_weights' result, dense."""
    part = weights[start:start + rows]
    return part.toarray() if _is_sparse(part) else part


def _plan_weights(X, weights):
    """_entry_weights' result as factorize takes it: like X, or a sparse X's values."""
    if weights is None or not _is_sparse(weights):
        return weights
    return _plan.observed(weights).values


def _row_blocks(X):
    """(start, block) for blocks of ROW_CHUNK rows of X, each a dense float64 array with
    NaN where X has no entry (a sparse X's unstored entries)."""
    for start in range(0, X.shape[0], ROW_CHUNK):
        part = X[start:start + ROW_CHUNK]
        if _is_sparse(part):
            entries = part.tocoo()
            block = np.full(part.shape, np.nan)
            block[entries.row, entries.col] = entries.data
        else:
            block = np.asarray(part, dtype=np.float64)
        yield start, block


class MatrixFactorization(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Low-rank matrix factorisation ``X ≈ W @ H`` that treats NaN as missing.

    Fits by gradient descent on the observed entries (:func:`fastgd.factorize`: Adagrad
    or momentum gradient descent, optionally projected onto ``W, H >= 0``), so it
    completes a ratings matrix, or runs NMF on data with gaps, where
    ``sklearn.decomposition.NMF`` refuses NaN.

    With ``biases=True`` the model is ``X[i, j] ≈ mu + b[i] + c[j] + (W @ H)[i, j]``
    (fitted by the stochastic solver, the one for ratings data): ``transform`` gives each
    row ``[w, b]``, its factors and its bias in one row of ``rank + 1`` values.

    Parameters
    ----------
    rank : int, optional
        The number of components; default ``min(n_samples, n_features)``.
    solver : {"batch", "stochastic"}, optional
        As in :func:`fastgd.factorize`: full-gradient steps, or passes over the observed
        entries in a shuffled order (default: "stochastic" with ``biases``, else
        "batch").
    biases : bool, default False
        Learn a global mean ``global_mean_``, a bias per feature ``feature_bias_`` and
        a bias per sample (the last column of ``transform``'s result) with the factors
        (``solver="stochastic"``).
    optimizer : {"adagrad", "gd", "adam", "rmsprop"}
    lr : float
    n_iter : int
        The maximum number of iterations of ``fit``.
    eps : float
    eps_mode : {"outside", "inside", "accumulate"}
    momentum : float
    nesterov : bool
    nonneg : bool
        Non-negative W and H (projected steps in ``fit``, non-negative least squares
        in ``transform``).
    loss : {"rmse", "mse", "sse", "huber"}
        As in :func:`fastgd.factorize`; with "huber", ``transform`` solves each row's
        w for Huber's loss too (iteratively reweighted least squares).
    l2 : float, optional
        The factors' penalty weight: of ``0.5 * (||W||² + ||H||²)`` with the batch
        solver (default 0), in the form ``regularization`` says with the stochastic one
        (default 0.1 per rating), as in :func:`fastgd.factorize`.
    regularization : {"per_rating", "factors"}, optional
        With ``solver="stochastic"``: as in :func:`fastgd.factorize` (default
        "per_rating": each observed entry penalises its row's and column's factors,
        as Surprise, cornac and LIBMF do).
    l2_bias : float, optional
        With ``biases``: the biases' penalty weight (default ``l2``).
    delta : float, optional
        Huber's threshold (only with ``loss="huber"``; default 1).
    reduction : {"mean", "sum"}, optional
        The reduction of "huber" (default the mean).
    tol : float, optional
        Stop ``fit`` when the relative change of the loss is at most ``tol``.
    validation : float or held-out entries, optional
        As in :func:`fastgd.factorize`: a fraction of X's observed entries to hold out
        (by ``random_state``), or held-out entries of X's shape; their RMSE after every
        iteration of ``fit`` is ``validation_history_``.
    early_stopping : bool, default False
        With ``validation``: stop ``fit`` once the validation RMSE has not improved for
        ``patience`` iterations, keeping the components of its best iteration.
    patience : int, default 10
    random_state : int, numpy.random.Generator or RandomState, optional
        The random initialisation of ``fit`` (positive for the batch solver, centred
        for the stochastic one, as in :func:`fastgd.factorize`), and the stochastic
        solver's order of the entries.
    init : pair (W0, H0), optional
        ``fit``'s starting point instead (W0 of shape (n_samples, rank); copied).
    callback : callable, optional
        ``callback(iteration, loss, W, H)`` after every iteration of ``fit``, as in
        :func:`fastgd.factorize` (returning True stops it).
    n_threads : int, optional
        Threads of the kernels of a large problem.
    verbose : int
        0 prints nothing; 1 prints the loss ten times during ``fit``; 2 or more after
        every iteration.

    Attributes
    ----------
    components_ : ndarray of shape (rank, n_features)
        H.
    W_ : ndarray of shape (n_samples, rank), or (n_samples, rank + 1) with ``biases``
        The training rows' factors (and biases): ``transform`` of the training data.
    global_mean_ : float or None
        With ``biases``: ``mu``, the mean of the observed training entries.
    feature_bias_ : ndarray of shape (n_features,) or None
        With ``biases``: the features' (columns') biases ``c``.
    loss_curve_ : ndarray of shape (``n_iter_ + 1``,)
        The loss of ``fit``'s gradient descent, from the initial point on.
    n_iter_ : int
    validation_history_ : ndarray or None
        With ``validation``: the held-out entries' RMSE during ``fit``.
    best_iteration_ : int or None
        With ``validation``: the iteration of the lowest validation RMSE.
    reconstruction_err_ : float
        The loss at ``(W_, components_)`` (the batch solver's, penalty included), or
        with the stochastic solver the data term alone as ``loss`` measures it (the
        training RMSE by default), as in ``loss_curve_``.
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        When X has string column names.

    Notes
    -----
    X may be a dense array, NaN where missing, or a scipy.sparse matrix or array, whose
    stored entries (explicit zeros included) are the observed ones, as in
    :func:`fastgd.factorize`. ``transform`` and ``score`` solve rows in blocks, so a
    sparse X is never made dense as a whole.

    Examples
    --------
    >>> import numpy as np
    >>> from fastgd import MatrixFactorization
    >>> X = np.array([[np.nan, 4, 5], [4, 4, 5], [5, 3, 4], [2, 3, 3]])
    >>> model = MatrixFactorization(rank=2, nonneg=True, random_state=0, n_iter=3000)
    >>> W = model.fit_transform(X)
    >>> model.inverse_transform(W).round()
    array([[5., 4., 5.],
           [4., 4., 5.],
           [5., 3., 4.],
           [2., 3., 3.]])

    Ratings with biases, fitted by the stochastic solver; a new user's row is then
    completed from the two ratings it has:

    >>> ratings = np.array([[5, 4, np.nan, 1], [4, np.nan, 5, 1], [1, 1, np.nan, 5],
    ...                     [np.nan, 1, 2, 4]])
    >>> model = MatrixFactorization(rank=2, biases=True, n_iter=200, random_state=0)
    >>> model.fit(ratings).transform(ratings).shape  # w and the row's bias
    (4, 3)
    >>> new_user = np.array([[5, np.nan, np.nan, 1]])
    >>> bool(model.inverse_transform(model.transform(new_user))[0, 2] > 3)
    True
    """

    def __init__(self, rank: int | None = None, *, solver: str | None = None,
                 biases: bool = False, optimizer: str = "adagrad", lr: float = 0.1,
                 n_iter: int = 1000, eps: float = 1e-8, eps_mode: str = "outside",
                 momentum: float = 0.0, nesterov: bool = False, nonneg: bool = False,
                 loss: str = "rmse", l2: float | None = None,
                 regularization: str | None = None, l2_bias: float | None = None,
                 delta: float | None = None,
                 reduction: str | None = None, tol: float | None = None,
                 validation: Any = None, early_stopping: bool = False, patience: int = 10,
                 random_state: Any = None, init: Any = None, callback: Any = None,
                 n_threads: int | None = None, verbose: int = 0) -> None:
        self.rank = rank
        self.solver = solver
        self.biases = biases
        self.optimizer = optimizer
        self.lr = lr
        self.n_iter = n_iter
        self.eps = eps
        self.eps_mode = eps_mode
        self.momentum = momentum
        self.nesterov = nesterov
        self.nonneg = nonneg
        self.loss = loss
        self.l2 = l2
        self.regularization = regularization
        self.l2_bias = l2_bias
        self.delta = delta
        self.reduction = reduction
        self.tol = tol
        self.validation = validation
        self.early_stopping = early_stopping
        self.patience = patience
        self.random_state = random_state
        self.init = init
        self.callback = callback
        self.n_threads = n_threads
        self.verbose = verbose

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.input_tags.sparse = True
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags

    def _validated(self, X, reset):
        return validate_data(self, X, reset=reset, dtype=[np.float64, np.float32],
                             ensure_all_finite="allow-nan", accept_sparse="csr")

    def _callback(self):
        """factorize's callback: the user's ``callback`` after the report ``verbose``
        asks for; None for neither."""
        report, user = self._progress(), self.callback
        if user is not None and not callable(user):
            raise TypeError(f"callback must be callable or None; got {type(user).__name__}")
        if report is None or user is None:
            return report or user

        def both(iteration, loss, W, H):
            report(iteration, loss, W, H)
            return user(iteration, loss, W, H)
        return both

    def _progress(self):
        """factorize's callback that prints the loss as ``verbose`` asks; None for 0."""
        verbose = _validation.check_int(self.verbose, "verbose", 0)
        if verbose == 0:
            return None
        every = 1 if verbose >= 2 else max(1, self.n_iter // 10)

        def report(iteration, loss, W, H):
            if iteration % every == 0 or iteration == self.n_iter:
                print(f"[MatrixFactorization] iteration {iteration}: loss {loss:.6g}")
            return False
        return report

    def fit(self, X: Any, y: Any = None, weights: Any = None) -> MatrixFactorization:
        """Learn ``components_`` (and ``W_``) from X, NaN meaning missing.

        Parameters
        ----------
        X : array_like of shape (n_samples, n_features)
        y : ignored
        weights : array_like, optional
            A non-negative weight per observed entry of X, shaped like X (or, for a
            sparse X, one per stored entry in CSR order), as in :func:`fastgd.factorize`;
            ``W_`` is solved with them too.

        Returns
        -------
        self
        """
        self._fit(X, weights)
        return self

    def fit_transform(self, X: Any, y: Any = None, weights: Any = None) -> np.ndarray:
        """Fit, and return ``W_``: the factors of X's rows for the learned components.

        Parameters
        ----------
        X : array_like of shape (n_samples, n_features)
        y : ignored
        weights : array_like, optional
            As in ``fit``.

        Returns
        -------
        ndarray of shape (n_samples, rank)
        """
        return self._fit(X, weights)

    def _fit(self, X, weights):
        """fit_transform's work; its warnings point at the caller of fit or fit_transform."""
        X = self._validated(X, reset=True)
        self._loss = _losses.resolve(self.loss, self.delta, self.reduction)
        weights = _entry_weights(X, weights)
        rank = min(X.shape) if self.rank is None else self.rank
        callback = self._callback()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = factorization.factorize(
                X, rank, random_state=self.random_state, init=self.init,
                solver=self.solver, biases=self.biases, optimizer=self.optimizer,
                lr=self.lr, n_iter=self.n_iter, eps=self.eps, eps_mode=self.eps_mode,
                momentum=self.momentum, nesterov=self.nesterov, nonneg=self.nonneg,
                loss=self.loss, l2=self.l2, regularization=self.regularization,
                l2_bias=self.l2_bias, delta=self.delta, reduction=self.reduction,
                weights=_plan_weights(X, weights), tol=self.tol, validation=self.validation,
                early_stopping=self.early_stopping, patience=self.patience,
                n_threads=self.n_threads, callback=callback)
        stacklevel = _user_stacklevel()
        for warning in caught:
            warnings.warn(warning.message, warning.category, stacklevel=stacklevel)
        if self.tol is not None and result.message == factorization.STATUS_MESSAGES[
                factorization.STATUS_MAX_ITER]:
            warnings.warn(f"MatrixFactorization did not converge to tol={self.tol} in "
                          f"n_iter={self.n_iter} iterations; raise n_iter or tol",
                          ConvergenceWarning, stacklevel=stacklevel)
        # factorize's settings, validated and with their defaults resolved.
        self._settings = result._settings
        self.components_ = result.H
        self.global_mean_ = result.global_mean
        self.feature_bias_ = result.col_bias
        self.loss_curve_ = result.loss_history
        self.n_iter_ = result.n_iter
        self.validation_history_ = result.validation_history
        self.best_iteration_ = result.best_iteration
        self._ridge = (self._ridge_weight(X, result, weights)
                       if self._settings["solver"] == "batch" else None)
        self.W_ = self._solve_rows(X, weights)
        self.reconstruction_err_ = self._reconstruction_err(X, weights)
        return self.W_

    def _ridge_weight(self, X, result, weights):
        """The batch solver's weight of ||w||² in the least-squares problem of one row,
        ``0.5 * sum of c r^2 + 0.5 * ridge * ||w||²`` (c: the entries' weights, and
        Huber's reweighting), that has the gradient of the fitted loss in W: l2 over the
        loss's gradient scale (with "rmse", at the fitted loss)."""
        l2 = self._settings["l2"]
        if l2 == 0:
            return 0.0
        plan = _plan.observed(X, weights=_plan_weights(X, weights))
        total = masked.masked_loss_grad(plan, result.W, result.H,
                                        **_losses.summed(self._loss))[0]
        scale = _losses.value_and_scale(self._loss, total, plan.total_weight)[1]
        return l2 / scale if scale > 0 else 0.0

    def _row_ridge(self, counts):
        """The ridge weights of rows with ``counts`` observed entries, one per unknown
        (w, then b with biases), shape (rows, unknowns): the penalty of one row's problem
        ``0.5 * sum of c r^2 + 0.5 * sum of ridge u²`` as the fitted objective has it (the
        stochastic solver's objective is ``0.5 * sum of c r^2`` plus its penalty, per
        observed entry with "per_rating")."""
        s, rank = self._settings, self.components_.shape[0]
        if s["solver"] == "batch":
            return np.full((counts.shape[0], rank), self._ridge)
        diagonal = np.array([s["l2"]] * rank + [s["l2_bias"]] * (self.global_mean_ is not None))
        if s["regularization"] == "per_rating":
            return counts[:, None] * diagonal
        return np.tile(diagonal, (counts.shape[0], 1))

    def _solve_rows(self, X, weights=None):
        """Each row's w (and bias) minimising its part of the fitted objective, with
        ``w >= 0`` when nonneg, independently of the other rows: a weighted ridge
        least-squares solve, repeated with Huber's reweighting for "huber"."""
        design = self.components_.astype(np.float64)
        offset = 0.0
        if self.global_mean_ is not None:
            # The row's bias is one more unknown, with a column of ones; the mean and the
            # features' biases move to the data side.
            design = np.vstack([design, np.ones((1, design.shape[1]))])
            offset = self.global_mean_ + self.feature_bias_.astype(np.float64)
        W = np.empty((X.shape[0], design.shape[0]))
        solve = self._nonneg_rows if self.nonneg else self._ridge_rows
        huber = self._loss.entry != _losses.SQUARED
        for start, block in _row_blocks(X):
            observed = ~np.isnan(block)
            data = np.where(observed, block - offset, 0.0)
            ridge = self._row_ridge(np.count_nonzero(observed, axis=1))
            base = (observed.astype(np.float64) if weights is None
                    else _weight_block(weights, start, block.shape[0]))
            rows = solve(design, base, data, ridge)
            for _ in range(HUBER_MAX_SOLVES if huber else 0):
                # Huber's loss is least squares with each entry's weight times
                # min(1, delta / |r|) at the solution.
                size = np.abs(rows @ design - data)
                reweight = np.where(size > self._loss.delta,
                                    self._loss.delta / np.maximum(size, 1e-300), 1.0)
                previous, rows = rows, solve(design, base * reweight, data, ridge)
                if np.abs(rows - previous).max(initial=0.0) <= HUBER_RTOL * max(
                        np.abs(rows).max(initial=0.0), 1.0):
                    break
            W[start:start + ROW_CHUNK] = rows
        return W.astype(X.dtype)

    def _ridge_rows(self, design, entry_weights, data, ridge):
        """The rows' ridge least-squares solutions ``u`` of ``data ≈ u @ design``, each
        entry's squared residual weighted by entry_weights (0 where missing), each
        unknown's square by ``ridge``."""
        import scipy.sparse

        size, n = design.shape
        # Row i's gram matrix is the sum of c_ij h_j h_j' over its columns j: the product
        # of the weights with every column's outer product, or, for weights 0 or 1, the
        # whole gram matrix minus the missing columns' part when fewer are missing than
        # observed.
        outer = np.einsum("kj,lj->jkl", design, design).reshape(n, size * size)
        missing = entry_weights == 0
        if (np.count_nonzero(missing) < missing.size / 2
                and np.all((entry_weights == 0) | (entry_weights == 1))):
            part = scipy.sparse.csr_array(missing, dtype=np.float64) @ outer
            gram = (design @ design.T)[None] - part.reshape(-1, size, size)
        else:
            part = scipy.sparse.csr_array(entry_weights) @ outer
            gram = part.reshape(-1, size, size)
        gram += ridge[:, :, None] * np.eye(size)
        # The pseudo-inverse gives the least-norm solution where a row has fewer observed
        # entries than unknowns (a singular gram matrix).
        return np.einsum("ikl,il->ik", np.linalg.pinv(gram, hermitian=True),
                         (entry_weights * data) @ design.T)

    def _nonneg_rows(self, design, entry_weights, data, ridge):
        """_ridge_rows with w >= 0 (a bias stays free: it is solved as the difference of
        two non-negative unknowns), by non-negative least squares."""
        from scipy.optimize import nnls

        size = design.shape[0]
        free = self.global_mean_ is not None
        W = np.zeros((data.shape[0], size))
        for i in range(data.shape[0]):
            columns = entry_weights[i] > 0
            root = np.sqrt(entry_weights[i, columns])
            system = np.vstack([design[:, columns].T * root[:, None], np.diag(np.sqrt(ridge[i]))])
            if free:
                system = np.hstack([system, -system[:, -1:]])
            target = np.concatenate([data[i, columns] * root, np.zeros(size)])
            solution = nnls(system, target)[0]
            W[i] = solution[:size]
            if free:
                W[i, -1] -= solution[size]
        return W

    def _reconstruct(self, W):
        """The model's completion of rows with factors (and biases) W."""
        rank = self.components_.shape[0]
        product = W[:, :rank] @ self.components_
        if self.global_mean_ is not None:
            product += (self.global_mean_ + W[:, rank:]) + self.feature_bias_
        return product

    def _reconstruction_err(self, X, weights):
        """reconstruction_err_ (see the class docstring) at W_."""
        s, rank = self._settings, self.components_.shape[0]
        loss = {"loss": self.loss, "delta": self.delta, "reduction": self.reduction}
        if s["solver"] == "batch":
            return masked.masked_loss_grad(X, self.W_, self.components_, l2=s["l2"],
                                           weights=_plan_weights(X, weights), **loss)[0]
        plan = _plan.observed(X, weights=_plan_weights(X, weights))
        if self.global_mean_ is not None:
            # The data term of mu + b + c + W @ H: that of W @ H on the values less the
            # biases.
            values = plan.values - ((self.global_mean_ + self.W_[plan.rows, rank])
                                    + self.feature_bias_[plan.cols])
            plan = _plan.observed((plan.rows, plan.cols, values, plan.shape),
                                  weights=plan.weights)
        return masked.masked_loss_grad(plan, self.W_[:, :rank], self.components_,
                                       **loss)[0]

    def transform(self, X: Any) -> np.ndarray:
        """The factors W of X's rows for the fitted components (NaN = missing), with
        ``biases`` each row's bias in a last column.

        Parameters
        ----------
        X : array_like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, rank), or (n_samples, rank + 1) with biases
        """
        check_is_fitted(self)
        return self._solve_rows(self._validated(X, reset=False))

    def inverse_transform(self, X: Any) -> np.ndarray:
        """The reconstruction ``X @ components_`` of factors X (e.g. from transform);
        with ``biases``, ``mu + b + c + w @ components_`` of rows ``[w, b]``.

        Parameters
        ----------
        X : array_like of shape (n_samples, rank), or (n_samples, rank + 1) with biases

        Returns
        -------
        ndarray of shape (n_samples, n_features)
        """
        check_is_fitted(self)
        W = check_array(X, dtype=[np.float64, np.float32])
        if W.shape[1] != self._n_features_out:
            what = "rank columns" if self.global_mean_ is None else "w and the bias"
            raise ValueError(f"X must have shape (n_samples, {self._n_features_out}) "
                             f"({what}); got {W.shape}")
        return self._reconstruct(W)

    def score(self, X: Any, y: Any = None) -> float:
        """Minus the RMSE of the reconstruction of X's observed entries (higher is better,
        so that ``GridSearchCV`` needs no scorer).

        Each row's factors are solved from its observed entries (``transform``), and the
        reconstruction ``inverse_transform(transform(X))`` is compared with them: for held-out
        rows (a cross-validation split of the samples), how well the learned components
        explain data they were not fitted on.

        Parameters
        ----------
        X : array_like of shape (n_samples, n_features)
            NaN where missing; at least one entry observed.
        y : ignored

        Returns
        -------
        float

        Examples
        --------
        >>> import numpy as np
        >>> from fastgd import MatrixFactorization
        >>> X = np.array([[np.nan, 4, 5], [4, 4, 5], [5, 3, 4], [2, 3, 3]])
        >>> model = MatrixFactorization(rank=2, random_state=0, n_iter=3000).fit(X)
        >>> bool(model.score(X) > -0.1)
        True
        """
        check_is_fitted(self)
        X = self._validated(X, reset=False)
        W = self._solve_rows(X).astype(np.float64)
        sse, count = 0.0, 0
        for start, block in _row_blocks(X):
            observed = ~np.isnan(block)
            residual = (self._reconstruct(W[start:start + block.shape[0]]) - block)[observed]
            sse += float(residual @ residual)
            count += residual.size
        if count == 0:
            raise ValueError("X has no observed entry to score")
        return -math.sqrt(sse / count)

    @property
    def _n_features_out(self):
        return self.components_.shape[0] + (self.global_mean_ is not None)
