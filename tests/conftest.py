"""Shared fixtures: the backends, and a check that the *installed* fastgd is tested; and
the helpers several test files use."""

import importlib
import os
from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_array_equal

import fastgd

REPOSITORY_ROOT = Path(__file__).resolve().parent.parent


def pytest_report_header(config):
    return (
        f"fastgd {fastgd.__version__} from {Path(fastgd.__file__).parent}; "
        f"backend {fastgd.get_backend()}"
    )


def pytest_configure(config):
    # CI sets FASTGD_REQUIRE_EXTENSION=1: then a fastgd imported from the source
    # tree (which holds no compiled module) would mean the tests do not test
    # what users install.
    if os.environ.get("FASTGD_REQUIRE_EXTENSION") == "1":
        package_dir = Path(fastgd.__file__).resolve().parent
        if package_dir.is_relative_to(REPOSITORY_ROOT):
            pytest.exit(
                f"FASTGD_REQUIRE_EXTENSION=1 but fastgd was imported from the source tree "
                f"({package_dir}); install it with pip and run from elsewhere",
                returncode=3,
            )


def _backends():
    # FASTGD_BACKEND=numpy stands for a machine without the extension: only the twin runs.
    if os.environ.get("FASTGD_BACKEND", "").lower() == "numpy":
        return ["numpy"]
    return ["compiled", "numpy"]


@pytest.fixture(params=_backends())
def backend(request):
    """Run the test once per backend. The compiled one is never skipped: if it is
    missing, use_backend raises and the test fails."""
    with fastgd.use_backend(request.param):
        yield request.param


def require_peer(name):
    """Import an optional peer (torch, threadpoolctl, ...): skip when it is missing, unless
    FASTGD_REQUIRE_PEERS=1 (set by CI, which installs them) makes that a failure."""
    if os.environ.get("FASTGD_REQUIRE_PEERS") == "1":
        return importlib.import_module(name)  # the submodule itself for "dask.array"
    return pytest.importorskip(name)


def assert_same_bits(got, expected):
    """Bit for bit (so -0.0 is not 0.0), NaN for NaN (which NaN, its sign and payload, is
    not promised: it follows the operand order the compiler picks)."""
    got, expected = np.asarray(got), np.asarray(expected)
    assert got.dtype == expected.dtype and got.shape == expected.shape
    assert_array_equal(np.isnan(got), np.isnan(expected))
    numbers = ~np.isnan(expected)
    as_integers = np.dtype(f"i{expected.dtype.itemsize}")
    assert_array_equal(got[numbers].view(as_integers), expected[numbers].view(as_integers))


@pytest.fixture(params=[np.float32, np.float64], ids=["float32", "float64"])
def float_dtype(request):
    return np.dtype(request.param)


@pytest.fixture
def rng():
    return np.random.default_rng(20261123)
