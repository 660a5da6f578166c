"""Arrays whose data start on a cache line (fastgd._ext._memory), and the distance outputs
allocated that way."""

import os

import numpy as np
import pytest
from numpy._core.multiarray import get_handler_name
from numpy.testing import assert_array_equal

import fastgd
from fastgd import _backend

pytestmark = pytest.mark.skipif(_backend.ext is None, reason="needs the compiled extension")
HANDLER = "fastgd_cache_line_aligned"


def empty_aligned(shape, dtype):
    return _backend.ext._memory.empty_aligned(shape, dtype)


def resident_bytes():
    """This process's resident memory (Linux)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.parametrize("shape", [(0,), (1,), (3, 5), (1000, 1000), (7, 0, 3)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int8, np.complex128])
def test_starts_on_a_cache_line_and_owns_its_data(shape, dtype):
    array = empty_aligned(shape, dtype)
    assert array.shape == shape and array.dtype == dtype
    assert array.ctypes.data % 64 == 0
    assert array.flags.owndata and array.flags.c_contiguous and array.flags.writeable
    assert get_handler_name(array) == HANDLER
    array[...] = 1
    assert np.all(array == 1)


def test_object_arrays_are_zero_filled():
    """NumPy takes zeroed memory (the handler's calloc) for object arrays."""
    array = empty_aligned((4, 3), object)
    assert array.ctypes.data % 64 == 0
    assert all(item is None for item in array.ravel())


@pytest.mark.parametrize("new_size", [1, 7, 10, 5000])
def test_resize_keeps_the_data_and_the_alignment(new_size):
    array = empty_aligned((10,), np.float64)
    array[:] = np.arange(10)
    array.resize(new_size, refcheck=False)
    kept = min(10, new_size)
    assert_array_equal(array[:kept], np.arange(kept))
    assert array.ctypes.data % 64 == 0


def test_numpy_allocates_as_before_afterwards():
    default = get_handler_name()
    assert get_handler_name(empty_aligned((3,), np.float64)) == HANDLER
    assert get_handler_name() == default
    assert get_handler_name(np.empty(3)) == default
    with pytest.raises(ValueError):
        empty_aligned((-1,), np.float64)
    assert get_handler_name() == default


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="reads Linux's /proc")
def test_freed_arrays_give_their_memory_back():
    before = resident_bytes()
    for _ in range(40):
        array = empty_aligned((5_000_000,), np.float64)  # 40 MB, every page written
        array.fill(1.0)
        del array
    assert resident_bytes() - before < 200_000_000  # not the 1.6 GB of all of them


def test_distance_outputs_start_on_a_cache_line(float_dtype):
    rng = np.random.default_rng(3)
    X = rng.standard_normal((300, 5)).astype(float_dtype)
    with fastgd.use_backend("compiled"):  # also when the suite runs on the NumPy backend
        large = fastgd.sqeuclidean(X)  # 300 x 300: above fastgd.distances.ALIGNED_MIN_BYTES
        small = fastgd.sqeuclidean(X[:3])
    assert large.nbytes >= fastgd.distances.ALIGNED_MIN_BYTES
    assert large.ctypes.data % 64 == 0 and large.flags.owndata
    assert get_handler_name(large) == HANDLER
    assert small.flags.owndata and get_handler_name(small) != HANDLER
    with fastgd.use_backend("numpy"):
        assert_array_equal(fastgd.sqeuclidean(X, method="direct"), large)
