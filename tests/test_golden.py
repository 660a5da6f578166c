"""Today's results against those saved from the code before the reorganisation by kernel
family (tests/golden.py says which are promised bitwise). The results were saved from the
default calls (the compiled backend, its fast paths open), which is how they are made here;
the NumPy twins are compared to a tolerance."""

from pathlib import Path

import numpy as np
import pytest
from conftest import assert_same_bits
from golden import cases

import fastgd

SAVED = np.load(Path(__file__).parent / "data" / "golden.npz")
CASES = cases()


def arrays_of(name):
    value = CASES[name][1]()
    arrays = value if isinstance(value, tuple) else (value,)
    assert len(arrays) == sum(key.startswith(f"{name} #") for key in SAVED.files)
    return [(np.asarray(array), SAVED[f"{name} #{i}"]) for i, array in enumerate(arrays)]


def assert_close(name, got, expected, float32_tolerance):
    # A float32 case's float64 results (the loss, its history) carry float32's rounding.
    tolerance = float32_tolerance if "float32" in name else 1e-10
    scale = max(1.0, float(np.abs(expected).max(initial=0.0)))
    np.testing.assert_allclose(got, expected, rtol=tolerance, atol=tolerance * scale)


@pytest.mark.parametrize("name", list(CASES))
def test_default_calls_give_the_saved_results(name):
    bitwise = CASES[name][0] and fastgd.get_backend() == "compiled"
    for got, expected in arrays_of(name):
        if bitwise:
            assert_same_bits(got, expected)
        else:
            # BLAS's last bits depend on the CPU's BLAS kernels.
            assert_close(name, got, expected, 1e-5)


@pytest.mark.parametrize("name", list(CASES))
def test_numpy_twins_give_the_saved_results_to_rounding(name):
    with fastgd.use_backend("numpy"):
        pairs = arrays_of(name)
    for got, expected in pairs:
        # Another order of operations; factorize's 50 iterations let float32 drift most.
        assert_close(name, got, expected, 1e-3)
