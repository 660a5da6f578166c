"""A compiled fast path may skip work, never checks: the updates' and the small masked
problems' fast paths give the general path's result or its exception, message included,
for every input, and modify nothing when they refuse (one specification, both paths)."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastgd
from fastgd import _backend

pytestmark = pytest.mark.skipif(_backend.ext is None, reason="needs the compiled extension")


def outcome(call):
    try:
        call()
    except Exception as error:
        return type(error), str(error)
    return "applied", None


def on_both_paths(monkeypatch, update, make_call):
    """Run ``make_call()``'s call with the fast path, then with the general path alone:
    (outcome, arrays after) for each. ``make_call`` returns (args, kwargs, arrays)."""
    results = []
    for fast in (True, False):
        with monkeypatch.context() as patch:
            # The fast paths themselves, also where FASTGD_BACKEND=numpy closes them.
            patch.setattr(_backend, "updates_fast_path", _backend.ext._updates if fast else None)
            patch.setattr(_backend, "masked_fast_path", _backend.ext._masked if fast else None)
            args, kwargs, arrays = make_call()
            result = outcome(lambda: update(*args, **kwargs))  # noqa: B023
            results.append((result, [a.copy() for a in arrays]))
    return results


def assert_one_specification(monkeypatch, update, make_call):
    (fast, fast_arrays), (general, general_arrays) = on_both_paths(monkeypatch, update,
                                                                   make_call)
    assert fast == general
    for a, b in zip(fast_arrays, general_arrays, strict=True):
        np.testing.assert_array_equal(a, b)
    if fast[0] != "applied":  # refused: nothing modified
        _, _, originals = make_call()
        for a, b in zip(fast_arrays, originals, strict=True):
            np.testing.assert_array_equal(a, b)


def adagrad_call(**changes):
    def make_call():
        p, g, G = np.array([1.0, -2.0, 3.0]), np.array([0.5, 0.25, -1.0]), np.ones(3)
        kwargs = {"lr": 0.1, **changes.get("kwargs", {})}
        args = changes.get("args", lambda p, g, G: (p, g, G))(p, g, G)
        return args, kwargs, [p, G]
    return make_call


def sgd_call(**changes):
    def make_call():
        p, g, v = np.array([1.0, -2.0, 3.0]), np.array([0.5, 0.25, -1.0]), np.ones(3)
        kwargs = {"lr": 0.1, "momentum": 0.9, **changes.get("kwargs", {})}
        args = changes.get("args", lambda p, g, v: (p, g, v))(p, g, v)
        return args, kwargs, [p, v]
    return make_call


def adam_call(**changes):
    def make_call():
        p, g = np.array([1.0, -2.0, 3.0]), np.array([0.5, 0.25, -1.0])
        m, v, v_max = np.full(3, 0.1), np.full(3, 0.2), np.full(3, 0.3)
        kwargs = {"lr": 0.1, "amsgrad": True, "step": 3, **changes.get("kwargs", {})}
        args = changes.get("args", lambda p, g, s: (p, g, s))(p, g, m)
        return (*args, v, v_max), kwargs, [p, m, v, v_max]
    return make_call


def rmsprop_call(**changes):
    def make_call():
        p, g = np.array([1.0, -2.0, 3.0]), np.array([0.5, 0.25, -1.0])
        v, b, a = np.full(3, 0.2), np.full(3, 0.1), np.full(3, 0.05)
        kwargs = {"lr": 0.1, "momentum": 0.9, "centered": True,
                  **changes.get("kwargs", {})}
        args = changes.get("args", lambda p, g, s: (p, g, s))(p, g, v)
        return (*args, b, a), kwargs, [p, v, b, a]
    return make_call


BAD_SETTINGS = {
    "lr": [-1.0, math.inf, math.nan, "0.1", True, None, np.float64(math.inf), 1e400],
    "eps": [-1.0, math.inf, math.nan, "x"],
    "weight_decay": [-0.5, math.inf, math.nan, False],
    "lower_bound": [math.nan, "0", True],
    "maximize": [1, "yes", None],
    "n_threads": [0, "a", 1.5, True, 1 << 17],
}
ADAGRAD_ONLY = {
    "lr_decay": [-1.0, math.inf, math.nan],
    "eps_mode": ["bad", 1, None],
    "step": [0, -1, 1.5, True, None],
}
SGD_ONLY = {
    "momentum": [-0.1, math.inf, math.nan],
    "dampening": [-0.1, 1.5, math.inf],
    "nesterov": [1, "yes"],
}
ADAM_ONLY = {
    "betas": [(1.0, 0.9), (0.9, -0.1), (0.9,), [0.9, "x"], (0.9, math.nan), None,
              (True, 0.999)],
    "amsgrad": [1, None],
    "decoupled_weight_decay": [1, "no"],
    "step": [0, -1, 1.5, True, None, 2**70],
}
RMSPROP_ONLY = {
    "alpha": [-0.1, 1.5, math.nan, "x"],
    "momentum": [-0.1, math.inf, math.nan],
    "centered": [1, None],
}
BAD_ARRAYS = {
    "float32 gradient": lambda p, g, s: (p, g.astype(np.float32), s),
    "shape": lambda p, g, s: (p, g[:2], s),
    "state shape": lambda p, g, s: (p, g, s[:2]),
    "non-contiguous": lambda p, g, s: (np.repeat(p, 2)[::2], g, s),
    "read-only": lambda p, g, s: (_read_only(p), g, s),
    "state is param": lambda p, g, s: (p, g, p),
    "grad is param": lambda p, g, s: (p, p, s),
    "integer param": lambda p, g, s: (p.astype(np.int64), g, s),
    "lists of two lengths": lambda p, g, s: ([p], [g, g], [s]),
    "a list holding None": lambda p, g, s: ([p, None], [g, g], [s, s.copy()]),
    "a list param twice": lambda p, g, s: ([p, p], [g, g], [s, s.copy()]),
    "grads None": lambda p, g, s: (p, None, s),
    "a dict": lambda p, g, s: ({"p": p}, [g], [s]),
}


def _read_only(array):
    array.flags.writeable = False
    return array


def _cases(table):
    return [(name, value) for name, values in table.items() for value in values]


@pytest.mark.parametrize(("name", "value"), _cases({**BAD_SETTINGS, **ADAGRAD_ONLY}),
                         ids=repr)
def test_adagrad_bad_settings_one_specification(monkeypatch, name, value):
    assert_one_specification(monkeypatch, fastgd.adagrad_update,
                             adagrad_call(kwargs={name: value}))


@pytest.mark.parametrize(("name", "value"), _cases({**BAD_SETTINGS, **SGD_ONLY}), ids=repr)
def test_sgd_bad_settings_one_specification(monkeypatch, name, value):
    assert_one_specification(monkeypatch, fastgd.sgd_update, sgd_call(kwargs={name: value}))


@pytest.mark.parametrize("case", list(BAD_ARRAYS), ids=str)
def test_bad_arrays_one_specification(monkeypatch, case):
    assert_one_specification(monkeypatch, fastgd.adagrad_update,
                             adagrad_call(args=BAD_ARRAYS[case]))
    assert_one_specification(monkeypatch, fastgd.sgd_update, sgd_call(args=BAD_ARRAYS[case]))


@pytest.mark.parametrize(("name", "value"), _cases({**BAD_SETTINGS, **ADAM_ONLY}), ids=repr)
def test_adam_bad_settings_one_specification(monkeypatch, name, value):
    assert_one_specification(monkeypatch, fastgd.adam_update, adam_call(kwargs={name: value}))


@pytest.mark.parametrize(("name", "value"), _cases({**BAD_SETTINGS, **RMSPROP_ONLY}),
                         ids=repr)
def test_rmsprop_bad_settings_one_specification(monkeypatch, name, value):
    assert_one_specification(monkeypatch, fastgd.rmsprop_update,
                             rmsprop_call(kwargs={name: value}))


@pytest.mark.parametrize("case", list(BAD_ARRAYS), ids=str)
def test_bad_arrays_of_many_states_one_specification(monkeypatch, case):
    assert_one_specification(monkeypatch, fastgd.adam_update, adam_call(args=BAD_ARRAYS[case]))
    assert_one_specification(monkeypatch, fastgd.rmsprop_update,
                             rmsprop_call(args=BAD_ARRAYS[case]))


@pytest.mark.parametrize("which", ["exp_avg_sq is a param", "max is exp_avg", "missing max"])
def test_adam_state_lists_one_specification(monkeypatch, which):
    def make_call():
        args, kwargs, arrays = adam_call()()
        p, g, m, v, v_max = args
        if which == "exp_avg_sq is a param":
            v = p
        elif which == "max is exp_avg":
            v_max = m
        else:
            v_max = None
        return (p, g, m, v, v_max), kwargs, arrays
    assert_one_specification(monkeypatch, fastgd.adam_update, make_call)


@pytest.mark.parametrize("optimizer", ["adam", "amsgrad", "adamw", "rmsprop", "centered"])
def test_optimizer_steps_take_the_fast_path_with_the_general_bits(monkeypatch, optimizer):
    """Adam's and RMSprop's step through the fast path gives the general path's bits, and
    counts the step once, on lists of mixed dtypes and shapes."""
    shapes, dtypes = [(3, 4), (7,), (2, 2, 2)], [np.float64, np.float32, np.float64]
    results = []
    for fast in (True, False):
        monkeypatch.setattr(_backend, "updates_fast_path",
                            _backend.ext._updates if fast else None)
        rng = np.random.default_rng(0)  # the same arrays on both paths
        params, grads = ([rng.standard_normal(s).astype(d)
                          for s, d in zip(shapes, dtypes, strict=True)] for _ in range(2))
        make = {"adam": lambda p: fastgd.Adam(p, lr=0.01, weight_decay=0.1),
                "amsgrad": lambda p: fastgd.Adam(p, lr=0.01, amsgrad=True, maximize=True),
                "adamw": lambda p: fastgd.AdamW(p, lr=0.01, lower_bound=-0.5),
                "rmsprop": lambda p: fastgd.RMSprop(p, lr=0.01, momentum=0.5),
                "centered": lambda p: fastgd.RMSprop(p, lr=0.01, centered=True)}[optimizer]
        opt = make(params)
        for _ in range(5):
            opt.step(grads)
        assert opt.step_count == 5
        results.append(params)
    for a, b in zip(*results, strict=True):
        np.testing.assert_array_equal(a, b)


def test_refusals_on_both_paths_are_refusals(monkeypatch):
    """The table is of inputs that fail: a fast path taking one would pass the comparison
    only if the general path took it too."""
    refused = 0
    for name, value in _cases({**BAD_SETTINGS, **ADAGRAD_ONLY}):
        (fast, _), _ = on_both_paths(monkeypatch, fastgd.adagrad_update,
                                     adagrad_call(kwargs={name: value}))
        refused += fast[0] != "applied"
    assert refused == len(_cases({**BAD_SETTINGS, **ADAGRAD_ONLY}))


SETTING_VALUES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.integers(-3, 3),
    st.sampled_from([None, True, False, "x", np.float64(0.5), np.float32(0.5), 2**70,
                     -(2**70)]))


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(sorted({**BAD_SETTINGS, **ADAGRAD_ONLY})),
                       SETTING_VALUES, max_size=3))
def test_adagrad_any_settings_one_specification(kwargs):
    with pytest.MonkeyPatch.context() as monkeypatch:
        assert_one_specification(monkeypatch, fastgd.adagrad_update,
                                 adagrad_call(kwargs=kwargs))


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(sorted({**BAD_SETTINGS, **SGD_ONLY})),
                       SETTING_VALUES, max_size=3))
def test_sgd_any_settings_one_specification(kwargs):
    with pytest.MonkeyPatch.context() as monkeypatch:
        assert_one_specification(monkeypatch, fastgd.sgd_update, sgd_call(kwargs=kwargs))


def masked_call(A, W, H, **kwargs):
    def make_call():
        return (A.copy() if hasattr(A, "copy") else A, W.copy(), H.copy()), kwargs, []
    return make_call


SMALL = (np.array([[3.0, np.nan], [1.0, 2.0]]), np.ones((2, 1)), np.ones((1, 2)))
BAD_MASKED = [
    {"loss": "bad"}, {"loss": 1}, {"l2": -1.0}, {"l2": math.inf}, {"l2": math.nan},
    {"l2": "0"}, {"n_threads": 0}, {"n_threads": 1 << 17}, {"deterministic": 1},
    {"method": "x"},
]


@pytest.mark.parametrize("kwargs", BAD_MASKED, ids=repr)
@pytest.mark.parametrize("as_plan", [False, True])
def test_small_masked_problems_one_specification(monkeypatch, kwargs, as_plan):
    A, W, H = SMALL
    A = fastgd.observed(A) if as_plan else A
    assert_one_specification(monkeypatch, fastgd.masked_loss_grad,
                             masked_call(A, W, H, **kwargs))


@pytest.mark.parametrize("bad", ["W shape", "H inf", "A inf", "W int", "W float32"])
def test_small_masked_arrays_one_specification(monkeypatch, bad):
    A, W, H = (a.copy() for a in SMALL)
    if bad == "W shape":
        W = np.ones((3, 1))
    elif bad == "H inf":
        H[0, 1] = math.inf
    elif bad == "A inf":
        A[0, 0] = math.inf
    elif bad == "W int":
        W = W.astype(np.int64)
    else:
        W = W.astype(np.float32)
    assert_one_specification(monkeypatch, fastgd.masked_loss_grad, masked_call(A, W, H))


@pytest.mark.skipif(_backend.ext is None, reason="a promise of the compiled backend")
def test_compiled_overlap_check_agrees_with_the_sweep(rng, monkeypatch):
    """fastgd.updates' aliasing check answers from the compiled sweep first: on random views
    of one buffer it says "overlap" exactly when the Python sweep (which names the arrays)
    raises."""
    from fastgd import updates

    overlapping = _backend.ext._updates.overlapping
    monkeypatch.setattr(_backend, "loaded_extension", lambda: None)  # the Python sweep
    buffer = np.zeros(400)
    for _ in range(300):
        views = []
        for _ in range(rng.integers(1, 6)):
            start = int(rng.integers(0, 390))
            views.append(buffer[start:start + int(rng.integers(0, 10))])
        n_written = int(rng.integers(1, len(views) + 1))
        written = [(f"w{k}", v) for k, v in enumerate(views[:n_written])]
        read = [(f"r{k}", v) for k, v in enumerate(views[n_written:])]
        try:
            updates._check_no_aliasing(written, read)
            python_says = False
        except ValueError:
            python_says = True
        assert overlapping([v for _, v in written], [v for _, v in read]) == python_says


def test_adam_and_rmsprop_fast_paths_apply_the_common_case():
    p, g, m, v, b = (np.full(4, value) for value in (1.0, 0.5, 0.0, 0.0, 0.0))
    updates = _backend.ext._updates
    assert updates.adam_fast([p], [g], [m], [v], None, 0.1, (0.9, 0.999), 1e-8, 0.0, False,
                             False, False, 1, None, 1, 1 << 16)
    np.testing.assert_allclose(p, 0.9)  # Adam's first step moves by lr
    assert updates.rmsprop_fast(p, g, v, b, None, 0.01, 0.99, 1e-8, 0.0, 0.9, False, False,
                                None, 1, 1 << 16)
    assert not updates.adam_fast([p], [g], [m], [v], None, 0.1, [0.9, 0.999], 1e-8, 0.0,
                                 False, False, False, 1, None, 1, 1 << 16)  # betas a list


@pytest.mark.parametrize("layout", ["fortran float32", "fortran", "strided", "mixed dtypes",
                                    "byte-swapped"])
def test_small_masked_problems_take_any_layout(layout):
    """The seed tutorial's matrix as the tutorial writes it (float32, Fortran order) and
    other layouts take the small-problem call, with the bits of the C-ordered call in the
    dtype the general path computes in."""
    ratings = np.array([[3, 4, 5, 2], [4, 4, 3, 3], [5, 5, 4, 3]], dtype=np.float64).T
    ratings[0, 0] = np.nan
    rng = np.random.default_rng(0)
    W, H = rng.random((4, 2)), rng.random((2, 3))
    A = {"fortran float32": ratings.astype(np.float32),  # .T made it Fortran-ordered
         "fortran": ratings,
         "strided": np.repeat(ratings, 2, axis=1)[:, ::2],
         "mixed dtypes": np.ascontiguousarray(ratings, dtype=np.float32),
         "byte-swapped": np.ascontiguousarray(ratings).astype(">f8")}[layout]
    if layout == "fortran float32":
        W, H = W.astype(np.float32), H.astype(np.float32)
    dtype = np.result_type(A.dtype, W.dtype, H.dtype).newbyteorder("=")
    fast = _backend.ext._masked.small_loss_grad
    got = fast(A, W, H, 1, 0.0, 4096)
    assert got is not None
    expected = fast(np.ascontiguousarray(A, dtype=dtype), W.astype(dtype), H.astype(dtype),
                    1, 0.0, 4096)
    assert got[0] == expected[0]
    for a, b in zip(got[1:], expected[1:], strict=True):
        assert a.dtype == dtype
        np.testing.assert_array_equal(a, b)
    public = fastgd.masked_loss_grad(A, W, H)
    with fastgd.use_backend("numpy"):
        twin = fastgd.masked_loss_grad(A, W, H)
    assert public[1].dtype == twin[1].dtype == dtype
    np.testing.assert_allclose(public[0], twin[0], rtol=1e-6)
    np.testing.assert_allclose(public[1], twin[1], rtol=1e-5, atol=1e-6)
