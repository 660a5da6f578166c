"""factorize's validation: held-out entries (given, or a random fraction of A's observed
ones), their RMSE after every iteration, and early stopping that returns the best
iterate, on both backends and both loops (compiled and kernels)."""

import math

import numpy as np
import pytest
import scipy.sparse
from conftest import require_peer
from numpy.testing import assert_allclose, assert_array_equal

import fastgd
from fastgd import factorization


def noisy_low_rank(rng, m=40, n=30, rank=3, density=0.4, noise=0.3):
    clean = rng.standard_normal((m, rank)) @ rng.standard_normal((rank, n))
    A = clean + noise * rng.standard_normal((m, n))
    A[rng.random((m, n)) >= density] = np.nan
    return A


def split(rng, A, fraction=0.25):
    """(training A, held-out A): the observed entries cut at random."""
    rows, cols = np.nonzero(~np.isnan(A))
    held = rng.random(rows.size) < fraction
    training, held_out = A.copy(), np.full(A.shape, np.nan)
    training[rows[held], cols[held]] = np.nan
    held_out[rows[held], cols[held]] = A[rows[held], cols[held]]
    return training, held_out


def rmse_at(held_out, W, H):
    observed = ~np.isnan(held_out)
    residual = (W @ H)[observed] - held_out[observed]
    return math.sqrt(np.mean(residual**2))


@pytest.fixture(params=["compiled loop", "kernels"])
def loop(request, monkeypatch):
    """factorize's compiled loop of small problems, or its loop over the kernels."""
    if request.param == "kernels":
        monkeypatch.setattr(factorization, "SOLVER_LOOP_MAX_WORK", 0)
    return request.param


def test_validation_history_is_the_held_out_rmse_of_every_iterate(backend, rng, loop):
    training, held_out = split(rng, noisy_low_rank(rng))
    iterates = []

    def remember(iteration, loss, W, H):
        iterates.append((W.copy(), H.copy()))

    init = (np.full((40, 4), 0.3), np.full((4, 30), 0.3))
    result = fastgd.factorize(training, 4, init=init, validation=held_out, n_iter=25,
                              lr=0.1, callback=remember)
    plain = fastgd.factorize(training, 4, init=init, n_iter=25, lr=0.1)
    assert result.validation_history.shape == (26,)
    assert_allclose(result.validation_history[0], rmse_at(held_out, *init), rtol=1e-12)
    for iteration, (W, H) in enumerate(iterates, start=1):
        assert_allclose(result.validation_history[iteration], rmse_at(held_out, W, H),
                        rtol=1e-10)
    assert result.best_iteration == int(np.argmin(result.validation_history))
    # Watching the held-out entries changes nothing in the run itself.
    assert_array_equal(result.loss_history, plain.loss_history)
    assert_array_equal(result.W, plain.W)


@pytest.mark.parametrize("form", ["dense", "sparse", "plan", "tuple"])
def test_held_out_entries_in_every_form(rng, form):
    training, held_out = split(rng, noisy_low_rank(rng))
    rows, cols = np.nonzero(~np.isnan(held_out))
    values = held_out[rows, cols]
    given = {"dense": held_out,
             "sparse": scipy.sparse.csr_array((values, (rows, cols)), shape=held_out.shape),
             "plan": fastgd.observed(held_out),
             "tuple": (rows, cols, values, held_out.shape)}[form]
    result = fastgd.factorize(training, 3, validation=given, n_iter=10, random_state=0)
    expected = fastgd.factorize(training, 3, validation=held_out, n_iter=10, random_state=0)
    assert_allclose(result.validation_history, expected.validation_history, rtol=1e-12)


def test_early_stopping_returns_the_best_iterate(backend, rng, loop):
    A = noisy_low_rank(rng, noise=0.5)
    stopped = fastgd.factorize(A, 8, validation=0.25, early_stopping=True, patience=15,
                               random_state=1, n_iter=3000, lr=0.1)
    assert stopped.message == factorization.STATUS_MESSAGES[
        factorization.STATUS_EARLY_STOPPED]
    best = stopped.best_iteration
    assert 0 < best and stopped.n_iter == best + 15 < 3000
    history = stopped.validation_history
    assert history[best] == history.min() and np.all(history[best + 1:] >= history[best])
    # The same run cut at the best iteration: the same factors, bit for bit, and the
    # result's loss terms are that iteration's.
    cut = fastgd.factorize(A, 8, validation=0.25, random_state=1, n_iter=best, lr=0.1)
    assert_array_equal(stopped.W, cut.W)
    assert_array_equal(stopped.H, cut.H)
    assert stopped.data_loss + stopped.penalty == stopped.loss_history[best]
    assert stopped.data_loss == cut.data_loss


def test_a_held_out_fraction_is_not_trained_on(rng):
    A = noisy_low_rank(rng)
    result = fastgd.factorize(A, 3, validation=0.3, random_state=5, n_iter=5)
    again = fastgd.factorize(A, 3, validation=0.3, random_state=5, n_iter=5)
    assert_array_equal(result.validation_history, again.validation_history)
    # The split is a permutation of the observed entries by random_state's generator:
    # rebuilt here, its training part gives the same run.
    plan = fastgd.observed(A)
    held = np.zeros(plan.nnz, dtype=bool)
    held[np.random.default_rng(5).permutation(plan.nnz)[:round(0.3 * plan.nnz)]] = True
    training = np.full(A.shape, np.nan)
    training[plan.rows[~held], plan.cols[~held]] = plan.values[~held]
    held_out = np.full(A.shape, np.nan)
    held_out[plan.rows[held], plan.cols[held]] = plan.values[held]
    direct = fastgd.factorize(training, 3, validation=held_out, random_state=5, n_iter=5)
    assert_allclose(direct.validation_history, result.validation_history, rtol=1e-12)
    assert_allclose(direct.loss_history, result.loss_history, rtol=1e-12)


def test_weights_stay_with_the_training_entries(rng):
    A = noisy_low_rank(rng)
    weights = rng.random(A.shape) + 0.5
    result = fastgd.factorize(A, 3, weights=weights, validation=0.3, random_state=2,
                              n_iter=5, loss="mse")
    assert result.validation_history.shape == (6,)
    assert np.isfinite(result.loss_history).all()


def test_bad_validation_settings_raise(rng):
    A = noisy_low_rank(rng)
    with pytest.raises(ValueError, match=r"early_stopping=True needs validation="):
        fastgd.factorize(A, 2, early_stopping=True)
    with pytest.raises(ValueError, match="patience must be"):
        fastgd.factorize(A, 2, validation=0.2, early_stopping=True, patience=0)
    for fraction in (0.0, 1.0, 1.5, -0.2):
        with pytest.raises(ValueError, match=r"validation must be a fraction in \(0, 1\)"):
            fastgd.factorize(A, 2, validation=fraction)
    with pytest.raises(ValueError, match="holds out 0 of the"):
        fastgd.factorize(A, 2, validation=1e-6)
    with pytest.raises(ValueError, match=r"validation must have A's shape \(40, 30\)"):
        fastgd.factorize(A, 2, validation=np.ones((3, 3)))
    with pytest.raises(ValueError, match="validation holds no entry"):
        fastgd.factorize(A, 2, validation=np.full(A.shape, np.nan))
    with pytest.raises(TypeError, match="early_stopping must be"):
        fastgd.factorize(A, 2, validation=0.2, early_stopping="yes")
    with pytest.raises(TypeError, match=r"validation must be a fraction .* got a bool"):
        fastgd.factorize(A, 2, validation=True)
    held_out = np.full(A.shape, np.nan)
    held_out[0, 0] = np.inf
    with pytest.raises(ValueError, match=r"validation \(the held-out entries\): A must be "
                                         r"finite"):
        fastgd.factorize(A, 2, validation=held_out)


def test_estimator_validation(rng):
    require_peer("sklearn")
    A = noisy_low_rank(rng, noise=0.5)
    model = fastgd.MatrixFactorization(rank=8, validation=0.25, early_stopping=True,
                                       patience=15, random_state=1, n_iter=3000, lr=0.1)
    model.fit(A)
    assert model.best_iteration_ == int(np.argmin(model.validation_history_))
    assert model.n_iter_ == model.best_iteration_ + 15
    plain = fastgd.MatrixFactorization(rank=8, random_state=1, n_iter=5).fit(A)
    assert plain.validation_history_ is None and plain.best_iteration_ is None
