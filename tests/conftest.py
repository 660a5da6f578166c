"""Shared fixtures: the backends, and a check that the *installed* fastgd is tested."""

import importlib
import os
from pathlib import Path

import numpy as np
import pytest

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


@pytest.fixture(params=[np.float32, np.float64], ids=["float32", "float64"])
def float_dtype(request):
    return np.dtype(request.param)


@pytest.fixture
def rng():
    return np.random.default_rng(20261123)
