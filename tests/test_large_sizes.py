"""Sizes past 2**31: the compiled kernels index with 64 bits. What fits a 24 GiB, 2-core
machine: an 8.6 GB float32 distance matrix of more than 2**31 entries, and plans of a
matrix with more than 2**31 (and 2**32) cells. Compiled only: the NumPy twins index
with NumPy's own 64-bit indices."""

import numpy as np
import pytest
from numpy.testing import assert_allclose

import fastgd
from fastgd import _backend

pytestmark = pytest.mark.skipif(_backend.ext is None, reason="needs the compiled extension")


@pytest.fixture(autouse=True)
def compiled():
    with fastgd.use_backend("compiled"):
        yield


def test_a_float32_distance_matrix_of_more_than_2_31_entries():
    n, m = 46_000, 46_700                 # n m = 2 148 200 000 > 2**31
    assert n * m > 2**31
    rng = np.random.default_rng(31)
    X = rng.standard_normal((n, 1)).astype(np.float32)
    Y = rng.standard_normal((m, 1)).astype(np.float32)
    D = fastgd.sqeuclidean(X, Y)
    rows = np.array([0, 1, n // 2, n - 2, n - 1])
    cols = np.array([0, m - 1, m // 3, m - 7, m - 1])
    # Entries whose flat index lies past 2**31, and the last one.
    assert (rows[-2:] * m + cols[-2:] > 2**31).all()
    expected = (X[rows, 0].astype(np.float64) - Y[cols, 0].astype(np.float64)) ** 2
    assert_allclose(D[rows, cols], expected, rtol=1e-6, atol=1e-30)
    assert_allclose(D[-1], (np.float64(X[-1, 0]) - Y[:, 0].astype(np.float64)) ** 2,
                    rtol=1e-6, atol=1e-30)
    del D


@pytest.mark.parametrize("shape", [(50_000, 50_000), (70_000, 70_000)])
def test_plans_of_matrices_with_more_than_2_31_cells(shape):
    m, n = shape
    k = 4
    rng = np.random.default_rng(32)
    nnz = 20_000
    rows = rng.integers(0, m, nnz)
    cols = rng.integers(0, n, nnz)
    rows[:2], cols[:2] = [m - 1, 0], [n - 1, n - 1]   # the corners
    keep = np.unique(rows * np.int64(n) + cols, return_index=True)[1]
    rows, cols = rows[keep], cols[keep]
    values = rng.standard_normal(rows.size)
    plan = fastgd.observed((rows, cols, values, (m, n)))
    W = rng.standard_normal((m, k))
    H = rng.standard_normal((k, n))
    residual = np.einsum("ek,ke->e", W[plan.rows], H[:, plan.cols]) - plan.values
    loss, dW, dH = fastgd.masked_loss_grad(plan, W, H, loss="sse")
    assert loss == pytest.approx(float(residual @ residual), rel=1e-12)
    assert_allclose(fastgd.masked_residual(plan, W, H), residual, rtol=1e-12, atol=1e-12)
    expected_dW = np.zeros_like(W)
    np.add.at(expected_dW, plan.rows, 2 * residual[:, None] * H[:, plan.cols].T)
    touched = np.unique(plan.rows)
    assert_allclose(dW[touched], expected_dW[touched], rtol=1e-10, atol=1e-10)
    expected_dHT = np.zeros((n, k))
    np.add.at(expected_dHT, plan.cols, 2 * residual[:, None] * W[plan.rows])
    touched = np.unique(plan.cols)
    assert_allclose(dH[:, touched].T, expected_dHT[touched], rtol=1e-10, atol=1e-10)
    assert m * n > 2**31
