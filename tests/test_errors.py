"""Bad input gets a clear exception naming the argument; never a crash, never garbage."""

import numpy as np
import pytest

import fastgd

BAD_DTYPES = [
    (np.ones((3, 2), dtype=np.complex128), "X must hold real numbers.*complex128"),
    (np.array([["a", "b"]]), "X must hold real numbers"),
    (np.array([[object(), 1]], dtype=object), "X must hold real numbers.*object"),
    (np.array([["2020-01-01"]], dtype="datetime64[D]"), "X must hold real numbers"),
]
if np.dtype(np.longdouble).itemsize > 8:  # where long double is just double, it is float64
    BAD_DTYPES.append((np.ones((3, 2), dtype=np.longdouble), "X must hold real numbers.*convert"))


@pytest.mark.parametrize("bad, match", BAD_DTYPES)
def test_dtype_errors_are_type_errors(backend, bad, match):
    with pytest.raises(TypeError, match=match):
        fastgd.sqeuclidean(bad)
    with pytest.raises(TypeError, match=match.replace("X must", "Y must")):
        fastgd.sqeuclidean(np.ones((2, 2)), np.ones((1, 2), dtype=bad.dtype) if bad.shape[1] != 2
                           else bad)


@pytest.mark.parametrize(
    "X, Y, match",
    [
        (np.ones(3), None, r"X must be a 2-D array .*got a 1-D array of shape \(3,\)"),
        (np.ones((2, 3, 4)), None, r"X must be a 2-D array .*got a 3-D array"),
        (np.ones((2, 3)), np.ones(3), r"Y must be a 2-D array .*got a 1-D array"),
        (np.ones((2, 3)), np.ones((4, 5)), r"same number of features.*\(2, 3\).*\(4, 5\)"),
        ([[1, 2], [3]], None, r"X must be a 2-D array .*could not convert"),
    ],
)
def test_shape_errors_are_value_errors(backend, X, Y, match):
    with pytest.raises(ValueError, match=match):
        fastgd.sqeuclidean(X, Y)


def test_out_errors(backend):
    X = np.ones((4, 3))
    Y = np.ones((5, 3))
    with pytest.raises(ValueError, match=r"out must have shape \(4, 5\); got \(5, 4\)"):
        fastgd.sqeuclidean(X, Y, out=np.empty((5, 4)))
    with pytest.raises(TypeError, match=r"out must have dtype float64.*got float32"):
        fastgd.sqeuclidean(X, Y, out=np.empty((4, 5), dtype=np.float32))
    with pytest.raises(ValueError, match="out must be C-contiguous"):
        fastgd.sqeuclidean(X, Y, out=np.empty((5, 4)).T)
    readonly = np.empty((4, 5))
    readonly.flags.writeable = False
    with pytest.raises(ValueError, match="out must be writeable"):
        fastgd.sqeuclidean(X, Y, out=readonly)
    with pytest.raises(TypeError, match=r"out must be a numpy\.ndarray"):
        fastgd.sqeuclidean(X, Y, out=[[0.0] * 5] * 4)
    square = np.ones((4, 4))
    with pytest.raises(ValueError, match="out must not share memory with X"):
        fastgd.sqeuclidean(square, out=square)
    buffer = np.zeros(40)
    out, overlapping_Y = buffer[:20].reshape(4, 5), buffer[15:30].reshape(5, 3)
    with pytest.raises(ValueError, match="out must not share memory with Y"):
        fastgd.sqeuclidean(X, overlapping_Y, out=out)


@pytest.mark.parametrize(
    "n_threads, error, match",
    [
        (0, ValueError, "n_threads must be None, a positive int.*got 0"),
        (1.5, TypeError, "n_threads must be an int or None; got float"),
        (True, TypeError, "n_threads must be an int or None; got bool"),
        ("2", TypeError, "n_threads must be an int or None; got str"),
    ],
)
def test_n_threads_errors(backend, n_threads, error, match):
    with pytest.raises(error, match=match):
        fastgd.sqeuclidean(np.ones((2, 2)), n_threads=n_threads)


def test_method_error(backend):
    with pytest.raises(ValueError, match="method must be one of 'auto', 'expansion', 'direct'"):
        fastgd.sqeuclidean(np.ones((2, 2)), method="gemm")
