"""fastgd.MatrixFactorization: scikit-learn's own estimator checks, and what it learns."""

import subprocess
import sys

import numpy as np
import pytest
from conftest import require_peer

import fastgd

TUTORIAL_A = np.array([[np.nan, 4, 5], [4, 4, 5], [5, 3, 4], [2, 3, 3]])
RECOVERED = np.array([[5, 4, 5], [4, 4, 5], [5, 3, 4], [2, 3, 3]], dtype=float)


@pytest.fixture(scope="module")
def sklearn():
    return require_peer("sklearn")


@pytest.mark.parametrize("params", [
    {},
    {"nonneg": True, "optimizer": "gd", "lr": 0.01, "momentum": 0.9},
    {"loss": "mse", "l2": 0.01, "tol": 1e-8},
    {"rank": 2, "loss": "rmse", "l2": 0.001, "eps_mode": "accumulate"},
    {"rank": 2, "biases": True, "n_iter": 30},
], ids=["defaults", "nonneg gd", "mse l2", "rank 2 rmse l2", "biases"])
def test_passes_scikit_learns_estimator_checks(sklearn, backend, params):
    from sklearn.utils.estimator_checks import check_estimator

    estimator = fastgd.MatrixFactorization(random_state=0, **params)
    assert estimator.__sklearn_tags__().input_tags.allow_nan
    check_estimator(estimator)  # raises on the first failed check


def test_import_fastgd_does_not_import_sklearn(sklearn, tmp_path):
    code = ("import sys, fastgd; assert 'sklearn' not in sys.modules; "
            "fastgd.MatrixFactorization; assert 'sklearn' in sys.modules")
    # From an empty directory: `python -c` puts the working directory on sys.path.
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr


def test_completes_the_tutorial_matrix(sklearn, backend):
    model = fastgd.MatrixFactorization(rank=2, nonneg=True, random_state=0, n_iter=3000)
    W = model.fit_transform(TUTORIAL_A)
    assert W.shape == (4, 2) and model.components_.shape == (2, 3)
    assert (W >= 0).all() and (model.components_ >= 0).all()
    np.testing.assert_array_equal(model.inverse_transform(W).round(), RECOVERED)
    assert model.loss_curve_.shape == (model.n_iter_ + 1,) and model.n_iter_ == 3000
    # The final exact W-step only lowers the loss.
    assert model.reconstruction_err_ <= model.loss_curve_[-1] + 1e-12
    np.testing.assert_allclose(model.transform(TUTORIAL_A), W)
    names = model.get_feature_names_out()
    assert list(names) == ["matrixfactorization0", "matrixfactorization1"]


@pytest.mark.parametrize("loss, l2", [("sse", 0.0), ("mse", 0.05), ("sse", 0.3),
                                      ("rmse", 0.02)])
def test_transform_solves_each_rows_least_squares(sklearn, rng, loss, l2):
    X = rng.random((40, 12))
    X[rng.random(X.shape) < 0.3] = np.nan
    model = fastgd.MatrixFactorization(rank=3, loss=loss, l2=l2, random_state=1,
                                       n_iter=200).fit(X)
    H = model.components_
    new = rng.random((5, 12))
    new[0, :10] = np.nan  # fewer observed entries than the rank would be fine too
    W = model.transform(new)
    for i in range(new.shape[0]):
        seen = ~np.isnan(new[i])
        # Oracle: the ridge least squares of this row alone, by an augmented lstsq.
        ridge = np.sqrt(model._ridge)
        system = np.vstack([H[:, seen].T, ridge * np.eye(3)])
        target = np.concatenate([new[i, seen], np.zeros(3)])
        expected = np.linalg.lstsq(system, target, rcond=None)[0]
        np.testing.assert_allclose(W[i], expected, rtol=1e-7, atol=1e-9)
    # Rows do not influence each other.
    np.testing.assert_allclose(model.transform(new[2:4]), W[2:4], rtol=1e-12, atol=1e-14)


def test_ridge_weight_makes_the_row_solve_a_stationary_point(sklearn, rng):
    """At W_ (the row solve for the fitted H), the fitted loss's gradient in W is 0."""
    X = rng.random((30, 10))
    X[rng.random(X.shape) < 0.2] = np.nan
    for loss in ("sse", "mse"):
        model = fastgd.MatrixFactorization(rank=2, loss=loss, l2=0.1, random_state=0,
                                           n_iter=300).fit(X)
        _, dW, _ = fastgd.masked_loss_grad(X, model.W_, model.components_, loss=loss,
                                           l2=0.1)
        assert np.abs(dW).max() < 1e-10


def test_nonneg_transform_is_nonnegative_least_squares(sklearn, rng):
    from scipy.optimize import nnls

    X = rng.random((25, 8))
    X[rng.random(X.shape) < 0.25] = np.nan
    model = fastgd.MatrixFactorization(rank=3, nonneg=True, optimizer="gd", lr=0.05,
                                       random_state=0, n_iter=500).fit(X)
    W = model.transform(X)
    assert (W >= 0).all()
    for i in range(3):
        seen = ~np.isnan(X[i])
        np.testing.assert_allclose(W[i], nnls(model.components_[:, seen].T, X[i, seen])[0],
                                   atol=1e-10)


def test_params_clone_and_pipeline(sklearn, rng):
    from sklearn.base import clone
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    model = fastgd.MatrixFactorization(rank=2, lr=0.05)
    assert model.get_params()["rank"] == 2 and model.get_params()["lr"] == 0.05
    model.set_params(rank=3, optimizer="gd")
    copy = clone(model)
    assert copy.get_params() == model.get_params() and copy is not model
    pipeline = make_pipeline(FunctionTransformer(np.log1p), model.set_params(random_state=0))
    X = rng.random((20, 6))
    X[0, 0] = np.nan
    assert pipeline.fit_transform(X).shape == (20, 3)
    assert "MatrixFactorization(" in repr(model)


def test_float32_in_float32_out(sklearn, rng):
    X = rng.random((15, 5)).astype(np.float32)
    X[1, 2] = np.nan
    model = fastgd.MatrixFactorization(rank=2, random_state=0, n_iter=50)
    assert model.fit_transform(X).dtype == np.float32
    assert model.components_.dtype == np.float32
    assert model.transform(X).dtype == np.float32


def test_errors(sklearn):
    from sklearn.exceptions import NotFittedError

    model = fastgd.MatrixFactorization(rank=2, random_state=0, n_iter=10)
    with pytest.raises(NotFittedError):
        model.transform(TUTORIAL_A)
    with pytest.raises(ValueError, match="optimizer must be one of"):
        fastgd.MatrixFactorization(optimizer="adamax").fit(TUTORIAL_A)
    with pytest.raises(ValueError, match="Input X contains infinity"):
        model.fit(np.array([[1.0, np.inf], [1.0, 2.0]]))
    model.fit(TUTORIAL_A)
    with pytest.raises(ValueError, match="features"):
        model.transform(TUTORIAL_A[:, :2])
    with pytest.raises(ValueError, match=r"X must have shape \(n_samples, 2\)"):
        model.inverse_transform(np.ones((3, 3)))
    with pytest.raises(ValueError, match="no observed entry"):
        fastgd.MatrixFactorization(rank=1).fit(np.full((3, 2), np.nan))


def test_docstring_example_runs(sklearn):
    import doctest

    import fastgd.estimator

    result = doctest.testmod(fastgd.estimator, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


def test_score_is_minus_the_rmse_of_the_observed_entries_and_grid_search_needs_no_scorer():
    from sklearn.model_selection import GridSearchCV

    rng = np.random.default_rng(3)
    X = rng.random((30, 2)) @ rng.random((2, 8))
    X[rng.random(X.shape) < 0.2] = np.nan
    model = fastgd.MatrixFactorization(rank=2, random_state=0, n_iter=300).fit(X)
    observed = ~np.isnan(X)
    reconstruction = model.inverse_transform(model.transform(X))
    expected = -np.sqrt(np.mean((reconstruction - X)[observed] ** 2))
    assert model.score(X) == pytest.approx(expected, rel=1e-12)
    search = GridSearchCV(fastgd.MatrixFactorization(random_state=0, n_iter=200),
                          {"rank": [1, 2]}, cv=3).fit(X)
    assert search.best_params_["rank"] == 2
    with pytest.raises(ValueError, match="no observed entry"):
        model.score(np.full((2, 8), np.nan))


def test_warnings_point_at_the_callers_line():
    from sklearn.exceptions import ConvergenceWarning

    X = np.array([[np.nan, 4, 5], [4, 4, 5], [5, 3, 4], [2, 3, 3]])
    with pytest.warns(ConvergenceWarning, match="did not converge to tol") as record:
        fastgd.MatrixFactorization(rank=2, n_iter=3, tol=1e-12, random_state=0).fit(X)
    assert record[0].filename == __file__
    with pytest.warns(RuntimeWarning, match="lower lr") as record:
        fastgd.MatrixFactorization(rank=2, optimizer="gd", lr=1e9, n_iter=50,
                                   random_state=0).fit_transform(X)
    assert record[0].filename == __file__


@pytest.mark.parametrize("nonneg", [False, True])
def test_sparse_input_is_its_stored_entries(sklearn, backend, rng, nonneg):
    """A scipy.sparse X is read as factorize reads it (its stored entries, explicit zeros
    included, are the observed ones): the same fit, transform, score and reconstruction
    error as the dense X with NaN elsewhere."""
    import scipy.sparse

    dense = np.where(rng.random((40, 12)) < 0.5, rng.random((40, 12)), np.nan)
    dense[0, 0] = 0.0  # a stored zero is an observation, not a missing entry
    rows, cols = np.nonzero(~np.isnan(dense))
    sparse = scipy.sparse.csr_array((dense[rows, cols], (rows, cols)), shape=dense.shape)
    settings = {"rank": 3, "random_state": 0, "n_iter": 200, "nonneg": nonneg, "l2": 1e-3}
    from_dense = fastgd.MatrixFactorization(**settings)
    from_sparse = fastgd.MatrixFactorization(**settings)
    W_dense = from_dense.fit_transform(dense)
    W_sparse = from_sparse.fit_transform(sparse)
    np.testing.assert_allclose(from_sparse.components_, from_dense.components_, rtol=1e-10)
    np.testing.assert_allclose(W_sparse, W_dense, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(from_sparse.transform(scipy.sparse.csr_matrix(sparse)),
                               from_dense.transform(dense), rtol=1e-8, atol=1e-12)
    assert from_sparse.score(sparse) == pytest.approx(from_dense.score(dense), rel=1e-10)
    assert from_sparse.reconstruction_err_ == pytest.approx(from_dense.reconstruction_err_,
                                                            rel=1e-10)


@pytest.mark.parametrize("verbose, lines", [(0, 0), (1, 10), (2, 30)])
def test_verbose_prints_the_loss(sklearn, capsys, verbose, lines):
    model = fastgd.MatrixFactorization(rank=2, n_iter=30, random_state=0, verbose=verbose)
    model.fit(TUTORIAL_A)
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == lines
    if lines:
        assert printed[-1].startswith("[MatrixFactorization] iteration 30: loss ")
        assert float(printed[-1].split()[-1]) == pytest.approx(model.loss_curve_[-1],
                                                               rel=1e-5)


def test_init_and_callback_reach_factorize(sklearn, capsys):
    rng = np.random.default_rng(0)
    X = rng.random((12, 7))
    X[rng.random(X.shape) < 0.3] = np.nan
    init = (np.full((12, 2), 0.5), np.full((2, 7), 0.5))
    seen = []

    def stop_at_5(iteration, loss, W, H):
        seen.append(iteration)
        return iteration == 5

    model = fastgd.MatrixFactorization(rank=2, init=init, callback=stop_at_5, n_iter=50,
                                       verbose=2).fit(X)
    assert "iteration 5: loss" in capsys.readouterr().out
    direct = fastgd.factorize(X, 2, init=init, n_iter=5)
    assert seen == [1, 2, 3, 4, 5] and model.n_iter_ == 5
    np.testing.assert_allclose(model.components_, direct.H, rtol=1e-12)
    with pytest.raises(TypeError, match="callback must be callable"):
        fastgd.MatrixFactorization(rank=2, callback=3).fit(X)


def _ratings(rng, m=40, n=15, observed=0.6):
    """Ratings with strong row and column biases, NaN where missing."""
    truth = (3.0 + rng.normal(0, 0.8, (m, 1)) + rng.normal(0, 0.5, (1, n))
             + rng.normal(0, 0.5, (m, 2)) @ rng.normal(0, 0.5, (2, n)))
    return np.where(rng.random((m, n)) < observed, truth, np.nan)


def _row_objective_gradient(model, x, u):
    """The gradient, in the row's unknowns u = [w, b], of the stochastic solver's objective
    of one row x (NaN = missing) for the fitted H, mu and c: 0.5 * sum of Huber's
    2 * rho(r) (r² for the squared loss) plus its penalty, written out from the docs."""
    s = model.get_params()
    rank = model.components_.shape[0]
    seen = ~np.isnan(x)
    H = model.components_[:, seen]
    residual = x[seen] - (model.global_mean_ + model.feature_bias_[seen] + u[rank] + u[:rank] @ H)
    if s["loss"] == "huber":
        residual = np.clip(residual, -s["delta"], s["delta"])
    l2 = 0.1 if s["l2"] is None else s["l2"]
    l2_bias = l2 if s["l2_bias"] is None else s["l2_bias"]
    count = seen.sum() if s["regularization"] in (None, "per_rating") else 1
    return np.concatenate([-H @ residual + l2 * count * u[:rank],
                           [-residual.sum() + l2_bias * count * u[rank]]])


@pytest.mark.parametrize("settings", [
    {},
    {"regularization": "factors", "l2": 0.5, "l2_bias": 2.0},
    {"loss": "huber", "delta": 0.3},
    {"l2": 0.02, "optimizer": "gd", "lr": 0.01},
], ids=["defaults", "factors", "huber", "sgd"])
def test_biases_fit_is_factorizes_and_transform_solves_each_rows_problem(sklearn, backend,
                                                                        rng, settings):
    X = _ratings(rng)
    model = fastgd.MatrixFactorization(rank=2, biases=True, n_iter=40, random_state=3,
                                       **settings)
    W = model.fit_transform(X)
    direct = fastgd.factorize(X, 2, biases=True, n_iter=40, random_state=3, **settings)
    np.testing.assert_array_equal(model.components_, direct.H)
    np.testing.assert_array_equal(model.feature_bias_, direct.col_bias)
    assert model.global_mean_ == direct.global_mean == pytest.approx(np.nanmean(X))
    np.testing.assert_array_equal(model.loss_curve_, direct.loss_history)
    assert W.shape == (40, 3) and model.get_feature_names_out().shape == (3,)
    new = _ratings(np.random.default_rng(9), m=6)
    new[0, :13] = np.nan  # fewer observed entries than unknowns
    for x, u in zip([*X[:4], *new], [*W[:4], *model.transform(new)], strict=True):
        assert np.abs(_row_objective_gradient(model, x, u)).max() < 1e-8
    # Rows do not influence each other (Huber's reweighting stops at the block's
    # tolerance).
    np.testing.assert_allclose(model.transform(new[2:4]), model.transform(new)[2:4],
                               rtol=1e-8, atol=1e-9)


def test_biases_reconstruction_score_and_an_empty_row(sklearn, rng):
    X = _ratings(rng)
    model = fastgd.MatrixFactorization(rank=2, biases=True, n_iter=30, random_state=0).fit(X)
    rank = 2
    completed = model.inverse_transform(model.W_)
    expected = (model.global_mean_ + model.W_[:, [rank]] + model.feature_bias_
                + model.W_[:, :rank] @ model.components_)
    np.testing.assert_allclose(completed, expected, rtol=1e-13)
    seen = ~np.isnan(X)
    rmse = np.sqrt(np.mean((completed - X)[seen] ** 2))
    assert model.reconstruction_err_ == pytest.approx(rmse, rel=1e-10)
    assert model.score(X) == pytest.approx(-rmse, rel=1e-10)
    # A row with nothing observed: the mean plus the features' biases.
    empty = np.full((1, X.shape[1]), np.nan)
    u = model.transform(empty)
    np.testing.assert_array_equal(u, np.zeros((1, rank + 1)))
    np.testing.assert_allclose(model.inverse_transform(u)[0],
                               model.global_mean_ + model.feature_bias_)
    with pytest.raises(ValueError, match=r"shape \(n_samples, 3\) \(w and the bias\)"):
        model.inverse_transform(np.zeros((1, 2)))


def test_biases_nonneg_keeps_the_bias_free(sklearn, rng):
    """With nonneg, w >= 0 while the bias may be negative: the row's solution satisfies
    the KKT conditions (zero gradient in b and in positive w, non-negative where w = 0)."""
    X = _ratings(rng) - 4.0  # a mean well below 0 leaves rows with negative biases
    model = fastgd.MatrixFactorization(rank=3, biases=True, nonneg=True, n_iter=30,
                                       random_state=1).fit(X)
    W = model.W_
    assert (W[:, :3] >= 0).all() and (W[:, 3] < 0).any() and (W[:, 3] > 0).any()
    for x, u in zip(X, W, strict=True):
        gradient = _row_objective_gradient(model, x, u)
        assert abs(gradient[3]) < 1e-8
        positive = u[:3] > 1e-12
        assert np.abs(gradient[:3][positive]).max(initial=0) < 1e-7
        assert (gradient[:3][~positive] > -1e-7).all()


def test_biases_sparse_float32_and_grid_search(sklearn, rng):
    import scipy.sparse
    from sklearn.model_selection import GridSearchCV

    X = _ratings(rng, m=60)
    rows, cols = np.nonzero(~np.isnan(X))
    sparse = scipy.sparse.csr_array((X[rows, cols], (rows, cols)), shape=X.shape)
    settings = {"rank": 2, "biases": True, "n_iter": 20, "random_state": 0}
    from_dense = fastgd.MatrixFactorization(**settings)
    from_sparse = fastgd.MatrixFactorization(**settings)
    np.testing.assert_allclose(from_sparse.fit_transform(sparse),
                               from_dense.fit_transform(X), rtol=1e-8, atol=1e-12)
    assert from_sparse.score(sparse) == pytest.approx(from_dense.score(X), rel=1e-10)
    single = fastgd.MatrixFactorization(**settings).fit(X.astype(np.float32))
    assert single.components_.dtype == single.feature_bias_.dtype == np.float32
    assert single.transform(X.astype(np.float32)).dtype == np.float32
    search = GridSearchCV(fastgd.MatrixFactorization(rank=2, n_iter=20, random_state=0),
                          {"biases": [False, True]}, cv=3).fit(X)
    # Strong biases: the model with them explains held-out rows better.
    assert search.best_params_ == {"biases": True}


def test_biases_errors(sklearn):
    with pytest.raises(ValueError, match="biases=True needs solver='stochastic'"):
        fastgd.MatrixFactorization(biases=True, solver="batch").fit(TUTORIAL_A)
    with pytest.raises(ValueError, match="regularization"):
        fastgd.MatrixFactorization(biases=True, regularization="each").fit(TUTORIAL_A)
