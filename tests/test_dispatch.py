"""Runtime CPU dispatch: every instruction-set level this CPU supports runs each kernel
against the NumPy twin, and the levels agree bit for bit; FASTGD_SIMD caps the level."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from numpy.testing import assert_array_equal
from test_sqeuclidean import assert_accurate

import fastgd
from fastgd import _backend, masked
from fastgd._numpy import _masked as masked_twins

pytestmark = pytest.mark.skipif(_backend.ext is None, reason="needs the compiled extension")

LEVELS = _backend.SIMD_LEVELS


def cpu_levels():
    """The levels this CPU runs, lowest first."""
    if _backend.ext is None:
        return []
    highest = _backend.cpu_info()["level"]
    return list(LEVELS[: LEVELS.index(highest) + 1])


def environment_level():
    return os.environ.get("FASTGD_SIMD", LEVELS[-1]).strip().lower()


def run_at_each_level(function):
    """level -> function() with every kernel family capped at that level."""
    results = {}
    try:
        for level in cpu_levels():
            _backend.select_simd(level)
            results[level] = function()
    finally:
        _backend.select_simd(environment_level())
    return results


def assert_levels_agree_bitwise(results):
    levels = list(results)
    assert len(levels) >= 2, "at least scalar and baseline run everywhere"
    reference = results[levels[0]]
    for level in levels[1:]:
        for got, expected in zip(results[level], reference, strict=True):
            assert_array_equal(got, expected, err_msg=f"level {level} vs {levels[0]}")


def test_each_family_reports_the_level_it_runs(monkeypatch):
    try:
        for level in cpu_levels():
            chosen = _backend.select_simd(level)
            assert set(chosen) == set(_backend.DISPATCHED_KERNELS)
            for kernel_level in chosen.values():
                # A family runs at most the asked level; "scalar" exists only where a family
                # has plain-C loops beside hand-written vectors (the masked plan path).
                assert LEVELS.index(kernel_level) <= max(LEVELS.index(level), 1)
            assert chosen["updates"] == ("baseline" if level == "scalar" else level)
            assert chosen["sqeuclidean"] == ("baseline" if level == "scalar" else level)
        with pytest.raises(ValueError, match="SIMD level must be one of"):
            _backend.select_simd("sse9")
    finally:
        _backend.select_simd(environment_level())


UPDATE_SIZES = [0, 1, 7, 8, 15, 16, 17, 63, 1001]


@pytest.mark.parametrize("eps_mode", ["outside", "inside", "accumulate"])
@pytest.mark.parametrize("settings", [{}, {"maximize": True, "weight_decay": 0.1},
                                      {"lower_bound": 0.0, "lr_decay": 0.5, "step": 3}],
                         ids=lambda s: ",".join(s) or "defaults")
def test_adagrad_levels_agree_with_the_twin_bitwise(rng, float_dtype, eps_mode, settings):
    params = [rng.standard_normal(n).astype(float_dtype) for n in UPDATE_SIZES]
    grads = [rng.standard_normal(n).astype(float_dtype) for n in UPDATE_SIZES]
    accums = [rng.random(n).astype(float_dtype) for n in UPDATE_SIZES]
    accums[3][::3] = 0
    grads[3][::3] = 0  # "inside": no step where G stays 0

    def update():
        p, G = [x.copy() for x in params], [x.copy() for x in accums]
        fastgd.adagrad_update(p, grads, G, lr=0.1, eps_mode=eps_mode, **settings)
        return p + G

    results = run_at_each_level(update)
    assert_levels_agree_bitwise(results)
    with fastgd.use_backend("numpy"):
        twin = update()
    for got, expected in zip(results[cpu_levels()[-1]], twin, strict=True):
        assert got.dtype == float_dtype
        assert_array_equal(got, expected)


@pytest.mark.parametrize("settings", [{"momentum": 0.0}, {"momentum": 0.9, "nesterov": True},
                                      {"momentum": 0.5, "dampening": 0.3, "maximize": True,
                                       "weight_decay": 0.01, "lower_bound": -0.5}],
                         ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()))
def test_sgd_levels_agree_with_the_twin_bitwise(rng, float_dtype, settings):
    params = [rng.standard_normal(n).astype(float_dtype) for n in UPDATE_SIZES]
    grads = [rng.standard_normal(n).astype(float_dtype) for n in UPDATE_SIZES]
    velocities = [rng.standard_normal(n).astype(float_dtype) for n in UPDATE_SIZES]

    def update():
        p = [x.copy() for x in params]
        v = [x.copy() for x in velocities] if settings["momentum"] else None
        fastgd.sgd_update(p, grads, v, lr=0.05, **settings)
        return p + (v or [])

    results = run_at_each_level(update)
    assert_levels_agree_bitwise(results)
    with fastgd.use_backend("numpy"):
        twin = update()
    for got, expected in zip(results[cpu_levels()[-1]], twin, strict=True):
        assert_array_equal(got, expected)


@pytest.mark.parametrize("n_threads", [1, 2])
def test_bandwidth_floor_adds_at_each_level(rng, float_dtype, n_threads):
    """The benchmarks' yardstick (p += g; G += g), cut into lines and threads' ranges."""
    floor = _backend.ext._updates.bandwidth_floor
    cases = [rng.standard_normal((3, n)).astype(float_dtype) for n in UPDATE_SIZES]

    def add():
        out = []
        for p, g, G in (c.copy() for c in cases):
            floor(p, g, G, n_threads, 0)
            out += [p, G]
        return out

    results = run_at_each_level(add)
    assert_levels_agree_bitwise(results)
    highest = results[cpu_levels()[-1]]
    for k, (p, g, G) in enumerate(cases):
        assert_array_equal(highest[2 * k], p + g)
        assert_array_equal(highest[2 * k + 1], G + g)
    with pytest.raises(ValueError, match="one size; got 3, 2 and 3"):
        floor(np.zeros(3), np.zeros(2), np.zeros(3))
    with pytest.raises(TypeError, match="grad must have param's dtype float64; got float32"):
        floor(np.zeros(3), np.zeros(3, np.float32), np.zeros(3))
    with pytest.raises(TypeError, match="param must be float32 or float64; got int64"):
        floor(np.zeros(3, np.int64), np.zeros(3, np.int64), np.zeros(3, np.int64))
    with pytest.raises(ValueError, match="accum must be a C-contiguous, aligned ndarray in "
                                         "native byte order, writeable"):
        floor(np.zeros(3), np.zeros(3), np.zeros(6)[::2])
    with pytest.raises(ValueError, match="grad must be a C-contiguous, aligned ndarray in "
                                         r"native byte order$"):
        floor(np.zeros(3), np.zeros(3).view(np.dtype(np.float64).newbyteorder()), np.zeros(3))
    with pytest.raises(ValueError, match="n_threads must be at least 1; got 0"):
        floor(np.zeros(3), np.zeros(3), np.zeros(3), 0)


@pytest.mark.parametrize("method", ["direct", "expansion"])
@pytest.mark.parametrize("kind", ["random", "offset", "near-duplicates"])
@pytest.mark.parametrize("symmetric", [False, True], ids=["X-Y", "X-X"])
@pytest.mark.parametrize("d", [3, 37, 256, 300])
def test_sqeuclidean_at_each_level(rng, float_dtype, method, kind, symmetric, d):
    """The direct loops agree bitwise across levels. The expansion runs through BLAS
    at some levels and fused at others: its levels agree within the promised bound (and
    bitwise where they go through BLAS), with the same zeros."""
    n, m = 130, 270  # two column tiles, odd sizes: blocks and panels cut short
    X = rng.standard_normal((n, d))
    Y = rng.standard_normal((m, d))
    if kind == "offset":
        X, Y = X + 1e4, Y + 1e4
    elif kind == "near-duplicates":
        Y[: n // 2] = X[: n // 2] * (1 + 1e-7)  # cancellation: recomputed directly
        Y[5] = X[5]  # an exact duplicate: exactly 0
    X, Y = X.astype(float_dtype), Y.astype(float_dtype)
    other = None if symmetric else Y

    results = run_at_each_level(lambda: [fastgd.sqeuclidean(X, other, method=method,
                                                            n_threads=1)])
    if method == "direct":
        assert_levels_agree_bitwise(results)
        with fastgd.use_backend("numpy"):
            twin = fastgd.sqeuclidean(X, other, method="direct")
        assert_array_equal(results[cpu_levels()[-1]][0], twin)
    else:
        fused = run_at_each_level(
            lambda: _backend.ext._pairwise.fused_expansion(d, X.itemsize))
        assert_levels_agree_bitwise({level: results[level] for level in results
                                     if not fused[level]})
    for (D,) in results.values():
        assert D.dtype == float_dtype
        assert_accurate(D, X, X if symmetric else Y, float_dtype)
        if symmetric:
            assert_array_equal(D, D.T)
            assert np.all(np.diag(D) == 0)


def distances_into_outs_at_offsets(X, other, method, offsets):
    """fastgd.sqeuclidean(X, other) into out= arrays whose data start `offset` elements
    past a cache line, for each offset, with 1 and 2 threads (copies, in that order)."""
    shape = (X.shape[0], (X if other is None else other).shape[0])
    per_line = 64 // X.itemsize
    buffer = np.full(shape[0] * shape[1] + 2 * per_line, np.nan, dtype=X.dtype)
    first_aligned = (-buffer.ctypes.data % 64) // buffer.itemsize
    results = []
    for offset in offsets:
        for n_threads in (1, 2):
            start = first_aligned + offset
            out = buffer[start:start + shape[0] * shape[1]].reshape(shape)
            out.fill(np.nan)
            results.append(fastgd.sqeuclidean(X, other, method=method, out=out,
                                              n_threads=n_threads).copy())
    return results


@pytest.mark.parametrize("method", ["direct", "expansion"])
@pytest.mark.parametrize("d", [3, 37, 300])
def test_sqeuclidean_out_anywhere_changes_no_bit(rng, float_dtype, method, d):
    """An out= whose rows start anywhere in a cache line (its first tile then stops at
    the line) holds bitwise the output fastgd allocates itself, at every level and
    thread count."""
    n, m = 70, 528  # m * itemsize a multiple of 64: every row starts at the same offset
    X = rng.standard_normal((n, d)).astype(float_dtype)
    Y = rng.standard_normal((m, d)).astype(float_dtype)
    per_line = 64 // np.dtype(float_dtype).itemsize

    def compute():
        return [fastgd.sqeuclidean(X, Y, method=method, n_threads=1),
                *distances_into_outs_at_offsets(X, Y, method, range(per_line))]

    for results in run_at_each_level(compute).values():
        for got in results[1:]:
            assert_array_equal(got, results[0])


@pytest.mark.parametrize("method", ["direct", "expansion"])
@pytest.mark.parametrize("symmetric", [False, True], ids=["X-Y", "X-X"])
def test_streamed_stores_change_no_bit(monkeypatch, rng, float_dtype, method, symmetric):
    """For an output as large as STREAM_ABOVE_L3 of the L3 the kernel is asked for
    non-temporal stores at the AVX-512 level only (the direct method makes them: whole
    aligned vectors; the rest, and the entries recomputed after them, by plain ones; the
    expansion keeps plain stores): bitwise what plain stores give, wherever out starts in
    a cache line, at every level and thread count, at the depths of one chunk and of
    several."""
    from fastgd import distances

    calls = []
    compiled = distances.kernels()

    class Recording:
        @staticmethod
        def sqeuclidean(X, Y, out, symmetric, expansion, n_threads, stream, finish):
            calls.append((stream, _backend.simd_levels["sqeuclidean"]))
            return compiled.sqeuclidean(X, Y, out, symmetric, expansion, n_threads, stream,
                                        finish)

    monkeypatch.setattr(distances, "kernels", Recording)
    n, m = 70, 528  # two column tiles, the last cut short; rows at one offset in a line
    per_line = 64 // np.dtype(float_dtype).itemsize
    for d in (3, 37, 300):
        X = rng.standard_normal((n, d)).astype(float_dtype)
        Y = X.copy() if symmetric else rng.standard_normal((m, d)).astype(float_dtype)
        Y[: n // 2] = X[: n // 2] * (1 + 1e-7)  # cancellation: recomputed after the stores
        Y[5] = X[5]  # an exact duplicate: exactly 0
        other = None if symmetric else Y

        def compute(X=X, other=other):
            return distances_into_outs_at_offsets(X, other, method, (0, 1, per_line - 1))

        monkeypatch.setattr(distances, "STREAM_ABOVE_L3", np.inf)
        plain = run_at_each_level(compute)
        assert calls and not any(stream for stream, _ in calls)
        calls.clear()
        monkeypatch.setattr(distances, "STREAM_ABOVE_L3", 0)
        streamed = run_at_each_level(compute)
        assert calls and all(stream == (level == "avx512") for stream, level in calls)
        calls.clear()
        for level, results in streamed.items():
            for got, expected in zip(results, plain[level], strict=True):
                assert_array_equal(got, expected, err_msg=f"level {level}, d = {d}")
            assert_accurate(results[0], X, X if symmetric else Y, float_dtype)


@pytest.mark.parametrize("n_threads", [1, 2])
def test_wide_direct_tiles_match_the_twin_bitwise(rng, float_dtype, n_threads):
    """The blocked direct method takes as many columns per tile as 256 KiB of Y in double
    hold (3640 at d = 9): here two whole tiles of them and a third of 20 columns, each
    with a block cut short at its right edge, agree bitwise with the twin at every level
    and thread count."""
    X = rng.standard_normal((70, 9)).astype(float_dtype)
    Y = rng.standard_normal((2 * 3640 + 20, 9)).astype(float_dtype)
    Y[5000] = X[3]  # an exact duplicate: exactly 0
    results = run_at_each_level(lambda: [fastgd.sqeuclidean(X, Y, method="direct",
                                                            n_threads=n_threads)])
    assert_levels_agree_bitwise(results)
    with fastgd.use_backend("numpy"):
        twin = fastgd.sqeuclidean(X, Y, method="direct")
    (D,) = results[cpu_levels()[-1]]
    assert_array_equal(D, twin)
    assert D[3, 5000] == 0 and np.count_nonzero(D == 0) == 1


@pytest.mark.parametrize("symmetric", [False, True], ids=["X-Y", "X-X"])
def test_direct_sums_that_underflow_become_the_smallest_subnormal(rng, float_dtype, symmetric):
    """Data so small that many squared distances round to 0 in the output dtype: at every
    level (whole blocks and the blocks cut short at the edges alike) such an entry is the
    smallest subnormal, and 0 only where the rows are equal, bitwise as the twin."""
    n, m, d = 130, 270, 3
    scale = 1e-23 if float_dtype == np.float32 else 1e-170
    X = (rng.integers(-3, 4, size=(n, d)) * scale).astype(float_dtype)
    Y = (rng.integers(-3, 4, size=(m, d)) * scale).astype(float_dtype)
    other = None if symmetric else Y
    results = run_at_each_level(lambda: [fastgd.sqeuclidean(X, other, method="direct",
                                                            n_threads=1)])
    assert_levels_agree_bitwise(results)
    with fastgd.use_backend("numpy"):
        twin = fastgd.sqeuclidean(X, other, method="direct")
    (D,) = results[cpu_levels()[-1]]
    assert_array_equal(D, twin)
    rows_equal = np.all(X[:, None, :] == (X if symmetric else Y)[None, :, :], axis=2)
    assert_array_equal(D == 0, rows_equal)
    tiniest = np.finfo(float_dtype).smallest_subnormal
    assert np.count_nonzero(D == tiniest) > 100  # the case under test does occur


# Ranks below, at and between the lane counts (8 in float64, 16 in float32), with and
# without a fixed-rank loop (16, 32, 64), with and without a remainder.
@pytest.mark.parametrize("k", [3, 10, 16, 20, 32, 48, 64])
@pytest.mark.parametrize("with_mask", [False, True], ids=["nan", "mask"])
def test_masked_levels_agree_bitwise(rng, float_dtype, k, with_mask):
    m, n = 70, 530  # two row blocks and two column tiles of the dense path, cut short
    A = rng.random((m, n)).astype(float_dtype)
    missing = rng.random((m, n)) < 0.6
    mask = ~missing if with_mask else None
    A[missing] = np.nan
    W = rng.standard_normal((m, k)).astype(float_dtype)
    H = rng.standard_normal((k, n)).astype(float_dtype)
    plan = fastgd.observed(A, mask=mask)

    def compute():
        plan_result = fastgd.masked_loss_grad(plan, W, H, n_threads=1)
        dense_result = fastgd.masked_loss_grad(A, W, H, mask=mask, method="dense",
                                               n_threads=1)
        residual = fastgd.masked_residual(A, W, H, mask=mask, n_threads=1)
        return [np.array(x) for x in (*plan_result, *dense_result, residual)]

    results = run_at_each_level(compute)
    assert_levels_agree_bitwise(results)
    loss, dW, dH = results[cpu_levels()[-1]][3:6]
    with fastgd.use_backend("numpy"):
        expected = fastgd.masked_loss_grad(A, W, H, mask=mask, method="dense")
    tolerance = 1e-4 if float_dtype == np.float32 else 1e-12
    np.testing.assert_allclose(loss, expected[0], rtol=tolerance)
    np.testing.assert_allclose(dW, expected[1], rtol=tolerance, atol=tolerance)
    np.testing.assert_allclose(dH, expected[2], rtol=tolerance, atol=tolerance)


def config_in_subprocess(simd, directory):
    """The SIMD levels a fresh process reports under FASTGD_SIMD=simd, run from an empty
    directory (`python -c` puts the working directory on sys.path: not the source tree)."""
    environment = dict(os.environ, FASTGD_SIMD=simd)
    return subprocess.run(
        [sys.executable, "-c",
         "import json; from fastgd._config import config_info; "
         "print(json.dumps(config_info()['simd']))"],
        capture_output=True, text=True, env=environment, timeout=120, cwd=directory,
    )


def test_fastgd_simd_caps_every_family(tmp_path):
    completed = config_in_subprocess("baseline", tmp_path)
    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout) == {kernel: "baseline"
                                            for kernel in _backend.DISPATCHED_KERNELS}


def test_fastgd_simd_rejects_an_unknown_level(tmp_path):
    completed = config_in_subprocess("avx1024", tmp_path)
    assert completed.returncode != 0
    assert "FASTGD_SIMD must be one of scalar, baseline, avx2, avx512; got 'avx1024'" in (
        completed.stderr)


def test_show_config_names_the_cpu_and_the_level_per_kernel():
    import io

    buffer = io.StringIO()
    fastgd.show_config(file=buffer)
    text = buffer.getvalue()
    info = _backend.cpu_info()
    for kernel, level in _backend.simd_levels.items():
        assert f"{kernel} {level}" in text
    if info["dispatch"]:
        assert f"(up to {info['level']})" in text
        assert "the best this CPU supports" in text
    else:
        assert "this build has the baseline loops only" in text
        assert "the best this CPU supports" not in text and "(up to" not in text
    if info["level"] in ("avx2", "avx512"):  # x86-64 with dispatch built in
        assert {"sse2", "avx2", "fma"} <= set(info["features"])


def test_a_build_without_dispatch_has_the_baseline_loops_only():
    """What aarch64, MSVC and a build with FASTGD_NO_DISPATCH get (CI builds the last and
    runs the kernels' tests on it): no features read, the baseline level at the most, for
    every family; with dispatch, an x86-64 CPU has at least SSE2."""
    import platform

    info = _backend.cpu_info()
    if info["dispatch"]:
        assert platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")
        assert "sse2" in info["features"] and info["level"] != "scalar"
    else:
        assert info["features"] == [] and info["level"] == "baseline"
        assert cpu_levels() == ["scalar", "baseline"]
        assert set(_backend.simd_levels.values()) <= {"scalar", "baseline"}
        assert _backend.update_division == "divider"


@pytest.mark.parametrize("d", [3, 32])
def test_large_outputs_are_computed_correctly(float_dtype, d):
    """An output of 32 MiB or more (malloc maps fresh pages for it) is an array of its
    own, and agrees with the direct method computed by the NumPy twin; a caller's out= is
    written bitwise the same whether its rows start on a cache line or not."""
    from oracles import sqeuclidean_error_bound

    rng = np.random.default_rng(7)
    n = (1 << 25) // (2048 * np.dtype(float_dtype).itemsize) + 3  # just past 32 MiB
    X = rng.standard_normal((n, d)).astype(float_dtype)
    Y = rng.standard_normal((2048, d)).astype(float_dtype)
    D = fastgd.sqeuclidean(X, Y)
    assert D.flags.owndata and D.flags.c_contiguous and D.shape == (n, 2048)
    buffer = np.empty(D.size + 64, dtype=float_dtype)
    first_aligned = (-buffer.ctypes.data % 64) // buffer.itemsize
    for start in (first_aligned, first_aligned + 1):
        out = buffer[start:start + D.size].reshape(D.shape)
        assert fastgd.sqeuclidean(X, Y, out=out) is out
        assert_array_equal(out, D)
    with fastgd.use_backend("numpy"):
        direct = fastgd.sqeuclidean(X, Y, method="direct")
    if d < fastgd.distances.direct_max_features(float_dtype):
        assert_array_equal(D, direct)
    bound = 2 * sqeuclidean_error_bound(direct.astype(np.float64), d, float_dtype)
    assert np.all(np.abs(D.astype(np.float64) - direct) <= bound)


def test_large_symmetric_output_is_computed_correctly():
    rng = np.random.default_rng(8)
    X = rng.standard_normal((2100, 32))  # 2100^2 doubles: more than 32 MiB
    D = fastgd.sqeuclidean(X)
    assert_array_equal(D, D.T)
    assert np.all(np.diag(D) == 0)
    with fastgd.use_backend("numpy"):
        direct = fastgd.sqeuclidean(X, method="direct")
    from oracles import sqeuclidean_error_bound

    assert np.all(np.abs(D - direct) <= 2 * sqeuclidean_error_bound(direct, 32, np.float64))


@pytest.mark.parametrize("k", [3, 10, 16, 32, 64])
@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("n_parts", [1, 3])
def test_plan_column_tiles_change_no_bit(rng, float_dtype, k, index_dtype, n_parts):
    """The plan path taken in column tiles of any width, its entries in the plan's order
    or tile by tile, gives bitwise its untiled result, at every level; the levels agree,
    and the NumPy twin to rounding."""
    m, n = 41, 300
    A = rng.random((m, n)).astype(float_dtype)
    A[rng.random((m, n)) < 0.7] = np.nan
    A[[0, 17, m - 1]] = np.nan  # rows with no entry, the last one included
    plan = fastgd.observed(A)
    indptr, indices = plan.indptr.astype(index_dtype), plan.indices.astype(index_dtype)
    W = rng.standard_normal((m, k)).astype(float_dtype)
    H = rng.standard_normal((k, n)).astype(float_dtype)
    widths = [0, 1, 7, 64, n - 1, n, 10 * n]
    n_threads = min(n_parts, 2)
    kernel = masked.kernels().plan_loss_grad

    # The entries tile by tile (ObservedEntries._entries_for_tiles), for the widths that
    # make tiles.
    layouts = {width: [array.astype(index_dtype) if position < 2 else array
                       for position, array in enumerate(plan._in_tiles(width, float_dtype))]
               for width in widths if 0 < width < n}
    widths += [-width for width in layouts]  # -width: that width, the entries in tiles

    def compute():
        results = []
        for tile_cols in widths:
            dW = np.full((m, k), np.nan, dtype=float_dtype)  # every row must be written
            dH = np.full((k, n), np.nan, dtype=float_dtype)  # and every column of dH
            if tile_cols < 0:
                tile_starts, tiled_indices, tiled_values, _ = layouts[-tile_cols]
                sse = kernel(indptr, tiled_indices, tiled_values, W, H, dW, dH, n_threads,
                             n_parts, -tile_cols, 1.0, tile_starts)
            else:
                sse = kernel(indptr, indices, plan.values, W, H, dW, dH, n_threads, n_parts,
                             tile_cols)
            results += [np.array(sse), dW, dH]
        return results

    results = run_at_each_level(compute)
    for level, arrays in results.items():
        for position, width in enumerate(widths[1:], start=1):
            for got, expected in zip(arrays[3 * position:3 * position + 3], arrays[:3],
                                     strict=True):
                assert_array_equal(got, expected, err_msg=f"{level}, tiles of {width}")
    assert_levels_agree_bitwise(results)
    dW, dH = np.empty((m, k), float_dtype), np.empty((k, n), float_dtype)
    expected = masked_twins.plan_loss_grad(indptr, indices, plan.values, W, H, dW, dH, 1, 1)
    tolerance = 1e-4 if float_dtype == np.float32 else 1e-12
    sse, got_dW, got_dH = results[cpu_levels()[-1]][:3]
    np.testing.assert_allclose(sse, expected, rtol=tolerance)
    np.testing.assert_allclose(got_dW, dW, rtol=tolerance, atol=tolerance * 10)
    np.testing.assert_allclose(got_dH, dH, rtol=tolerance, atol=tolerance * 10)


def test_factorize_steps_with_the_update_loops_of_updates():
    """One dispatch state for the update loops: factorize's compiled loop takes them from
    _updates' table, so it runs at the level chosen there and has no choice of its own."""
    assert not hasattr(_backend.ext._solvers, "select_simd")
    assert not hasattr(_backend.ext._solvers, "select_division")
    assert _backend.simd_levels["factorize"] == _backend.simd_levels["updates"]
    A = np.array([[np.nan, 4, 5], [4, 4, 5], [5, 3, 4], [2, 3, 3]])
    W0, H0 = np.full((4, 2), 0.5), np.full((2, 3), 0.5)
    results = {}
    try:
        for level in ("baseline", "avx512"):
            chosen = _backend.select_simd(level)
            results[chosen["updates"]] = fastgd.factorize(A, 2, init=(W0, H0), n_iter=50).W
    finally:
        _backend.select_simd("avx512")
    reference = results.popitem()[1]
    for W in results.values():
        assert_array_equal(W, reference)
