"""Square roots on the FMA units (src_c/fma_sqrt.h): correctly rounded, bit for bit what
np.sqrt gives, wherever they vouch for a lane, and the Adagrad updates give the same bits
whether they take their roots from the divider alone or from the FMA units too."""

import numpy as np
import pytest
from conftest import assert_same_bits
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_array_equal

import fastgd
from fastgd import _backend
from fastgd._config import config_info

pytestmark = pytest.mark.skipif(_backend.ext is None, reason="needs the compiled extension")

# The radicands fma_sqrt.h vouches for (and +0).
ROOT_RANGE = (2.0**-960, 2.0**800)


def cpu_has_avx512():
    return _backend.cpu_info()["level"] == "avx512"


def bits(values):
    return np.ascontiguousarray(values, dtype=np.float64).view(np.int64)


def neighbours(values, steps):
    """values moved by `steps` ulps (positive finite values)."""
    return (bits(values) + steps).view(np.float64)


def lanes(a, root_candidate=None):
    """fma_sqrt.h on each lane; asserts None exactly where the CPU lacks AVX-512."""
    a = np.ascontiguousarray(a, dtype=np.float64)
    root_candidate = np.ones(a.size) if root_candidate is None else root_candidate
    result = _backend.ext._updates.fma_sqrt_lanes(a, root_candidate)
    assert (result is not None) == cpu_has_avx512()
    return result


def log_uniform(rng, n, low, high):
    """Positive doubles whose exponents are uniform in [log2 low, log2 high)."""
    exponents = rng.integers(int(np.log2(low)), int(np.log2(high)), n)
    return np.ldexp(1 + rng.random(n), exponents)


def hard_radicands(rng, n):
    """Radicands whose roots lie closest to a midpoint between two doubles: near m * next(m),
    which is (m + ulp/2)^2 up to ulp^2/4, and exact squares of short significands with
    their neighbours."""
    m = log_uniform(rng, n, 2.0**-470, 2.0**390)
    near_midpoints = neighbours(m * np.nextafter(m, np.inf), rng.integers(-2, 3, n))
    short = np.ldexp(rng.integers(1, 2**26, n).astype(np.float64), rng.integers(-450, 350, n))
    squares = neighbours(short * short, rng.integers(-1, 2, n))
    return np.concatenate([near_midpoints, squares])


def test_roots_are_correctly_rounded(rng):
    a = np.concatenate([log_uniform(rng, 200_000, *ROOT_RANGE), hard_radicands(rng, 100_000)])
    result = lanes(a)
    if result is None:
        return
    root, vouched = result[0], result[1]
    assert vouched.all()
    assert_array_equal(bits(root), bits(np.sqrt(a)))


def test_corrections_undo_a_candidate_one_ulp_off(rng):
    """The Newton steps alone are almost always right, so the correction is tested on
    candidates moved off the correct root on purpose."""
    a = np.concatenate([log_uniform(rng, 100_000, *ROOT_RANGE), hard_radicands(rng, 50_000)])
    root_candidate = neighbours(np.sqrt(a), rng.integers(-1, 2, a.size))
    result = lanes(a, root_candidate)
    if result is None:
        return
    assert_array_equal(bits(result[2]), bits(np.sqrt(a)))


def test_lanes_outside_the_range_are_left_to_the_divider():
    tiny, huge = np.nextafter(ROOT_RANGE[0], 0), np.nextafter(ROOT_RANGE[1], np.inf)
    smallest_normal = np.finfo(np.float64).tiny
    a = np.array([0.0, -0.0, ROOT_RANGE[0], ROOT_RANGE[1], tiny, huge, 5e-324, smallest_normal,
                  np.inf, np.nan, -1.0, 1e308, 2.0])
    expected = np.array([True, False, True, True, False, False, False, False, False, False,
                         False, False, True])
    result = lanes(a)
    if result is None:
        return
    root, vouched = result[:2]
    assert_array_equal(vouched, expected)
    assert_array_equal(bits(root[expected]), bits(np.sqrt(a[expected])))  # +0.0 kept


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(*ROOT_RANGE), min_size=1, max_size=40))
def test_roots_match_numpy_property(radicands):
    a = np.array(radicands)
    result = lanes(a)
    if result is None:
        return
    assert result[1].all()
    assert_array_equal(bits(result[0]), bits(np.sqrt(a)))


def test_the_division_is_reported_and_chosen_per_cpu():
    try:
        _backend.select_simd("avx512")  # the best this CPU has
        for method in ("divider", "divider+fma", "auto"):
            chosen = _backend.select_update_division(method)
            if method == "divider" or not cpu_has_avx512():
                assert chosen == "divider"
            elif method == "divider+fma":
                assert chosen == "divider+fma"
            assert _backend.update_division == chosen
            assert config_info()["update_division"] == chosen
        # Capping the level below avx512 leaves the divider alone, and lifting it restores
        # what was asked.
        _backend.select_update_division("divider+fma")
        _backend.select_simd("avx2")
        assert _backend.update_division == "divider"
        _backend.select_simd("avx512")
        assert _backend.update_division == ("divider+fma" if cpu_has_avx512() else "divider")
        with pytest.raises(ValueError, match="division must be one of auto, divider"):
            _backend.select_update_division("newton")
    finally:
        _backend.select_update_division("auto")
        _backend.select_simd(_backend._simd_from_environment())


SPECIAL_VALUES = np.array([0.0, -0.0, 1e-200, -1e-310, 1e200, np.inf, -np.inf, np.nan, 5e-324])


def special_state(rng, n, offset):
    """Arrays that start `offset` elements into their allocation (other cache-line
    offsets), with special values and zeros here and there."""
    def array(values):
        holder = np.empty(n + offset)
        holder[offset:] = values
        return holder[offset:]
    p = array(rng.standard_normal(n))
    g = array(rng.standard_normal(n) * np.exp(rng.uniform(-20, 20, n)))
    G = array(rng.random(n))
    for target in (p, g, G):
        where = rng.choice(n, size=min(n, 6), replace=False) if n else []
        target[where] = rng.choice(SPECIAL_VALUES, size=len(where))
    g[::11] = 0
    G[::13] = 0
    return p, g, G


@pytest.mark.parametrize("eps_mode", ["outside", "inside", "accumulate"])
@pytest.mark.parametrize("eps", [1e-10, 0.0, 1e-300, 1e150])
@pytest.mark.parametrize("settings", [{}, {"maximize": True, "weight_decay": 0.1},
                                      {"lower_bound": 0.0, "lr_decay": 0.5, "step": 3}],
                         ids=lambda s: ",".join(s) or "defaults")
@pytest.mark.parametrize("n_threads", [1, 2])
def test_adagrad_divides_the_same_either_way(rng, eps_mode, eps, settings, n_threads):
    # Around the split loop's blocks of 24 elements after its first whole cache line, and
    # its pipeline of two blocks (one started while the one before is finished).
    sizes_and_offsets = [(0, 0), (1, 0), (15, 1), (16, 0), (17, 3), (24, 0), (33, 7), (47, 0),
                         (48, 0), (49, 0), (55, 1), (71, 4), (72, 0), (95, 3), (1001, 5),
                         (20_011, 2)]
    state = [special_state(rng, n, offset) for n, offset in sizes_and_offsets]

    def update():
        params = [p.copy() for p, _, _ in state]
        accums = [G.copy() for _, _, G in state]
        with np.errstate(all="ignore"):
            fastgd.adagrad_update(params, [g for _, g, _ in state], accums, lr=0.1, eps=eps,
                                  eps_mode=eps_mode, n_threads=n_threads, **settings)
        return params + accums

    results = {}
    try:
        for method in ("divider", "divider+fma"):
            _backend.select_update_division(method)
            results[method] = update()
    finally:
        _backend.select_update_division("auto")
    with fastgd.use_backend("numpy"):
        twin = update()
    for split, divider, expected in zip(results["divider+fma"], results["divider"], twin,
                                        strict=True):
        assert_same_bits(split, divider)
        assert_same_bits(split, expected)


def test_factorize_steps_the_same_either_way(rng):
    ratings = rng.random((40, 30)) * 5
    ratings[rng.random(ratings.shape) < 0.3] = np.nan
    results = {}
    try:
        for method in ("divider", "divider+fma"):
            _backend.select_update_division(method)
            fit = fastgd.factorize(ratings, rank=4, optimizer="adagrad", n_iter=50,
                                   random_state=0)
            results[method] = [fit.W, fit.H, np.asarray(fit.loss_history)]
    finally:
        _backend.select_update_division("auto")
    for split, divider in zip(results["divider+fma"], results["divider"], strict=True):
        assert_same_bits(split, divider)
