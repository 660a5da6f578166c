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
], ids=["defaults", "nonneg gd", "mse l2", "rank 2 rmse l2"])
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
