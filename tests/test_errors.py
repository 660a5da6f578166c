"""Bad input gets a clear exception naming the argument; never a crash, never garbage."""

import sys

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


@pytest.mark.parametrize("n_threads", [2**16 + 1, 2**40, 2**70])
@pytest.mark.parametrize("call", [
    lambda n: fastgd.sqeuclidean(np.ones((2, 2)), n_threads=n),
    lambda n: fastgd.adagrad_update(np.ones(3), np.ones(3), np.zeros(3), n_threads=n),
    lambda n: fastgd.sgd_update(np.ones(3), np.ones(3), lr=0.1, n_threads=n),
    lambda n: fastgd.masked_loss_grad(np.ones((3, 2)), np.ones((3, 1)), np.ones((1, 2)),
                                      n_threads=n),
    lambda n: fastgd.masked_loss_grad(np.ones((300, 200)), np.ones((300, 1)),
                                      np.ones((1, 200)), n_threads=n),
], ids=["sqeuclidean", "adagrad_update", "sgd_update", "masked small", "masked large"])
def test_too_many_threads_is_a_value_error(backend, call, n_threads):
    """More than MAX_THREADS threads: the ValueError that names n_threads, from the
    compiled fast paths and the general paths alike (not an OverflowError from C)."""
    with pytest.raises(ValueError, match=f"n_threads must be at most 65536; got {n_threads}"):
        call(n_threads)


def test_fast_paths_take_integers_beyond_c_long(backend, monkeypatch):
    """A step or a negative thread count beyond a C long goes to the general path, which
    takes it (the fast path must not raise, nor report an ignored OverflowError)."""
    ignored = []
    monkeypatch.setattr(sys, "unraisablehook", ignored.append)
    p, p_reference = np.ones(3), np.ones(3)
    fastgd.adagrad_update(p, np.ones(3), np.zeros(3), lr=0.5, step=2**70, lr_decay=2.0**-60,
                          n_threads=-(2**70))
    rate = 0.5 / (1 + (2**70 - 1) * 2.0**-60)  # the step's lr: 0.5 / 1025
    p_reference -= rate * 1.0 / (1.0 + 1e-10)
    np.testing.assert_array_equal(p, p_reference)
    velocity = np.zeros(3)
    fastgd.sgd_update(p, np.ones(3), velocity, lr=0.5, momentum=0.5, n_threads=-(2**70))
    np.testing.assert_array_equal(velocity, np.ones(3))
    assert ignored == []


def test_method_error(backend):
    with pytest.raises(ValueError, match="method must be one of 'auto', 'expansion', 'direct'"):
        fastgd.sqeuclidean(np.ones((2, 2)), method="gemm")
