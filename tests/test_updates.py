"""Fused optimizer updates against their NumPy twins, PyTorch's optimizers, optax's
formula and the autograd tutorial's loop."""

import numpy as np
import pytest
from conftest import assert_same_bits, require_peer
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from numpy.testing import assert_allclose, assert_array_equal

import fastgd

EPS_MODES = ["outside", "inside", "accumulate"]


def make_triples(rng, shapes, dtype, positive_accums=False):
    params = [rng.standard_normal(s).astype(dtype) for s in shapes]
    grads = [rng.standard_normal(s).astype(dtype) for s in shapes]
    accums = [(rng.random(s) if positive_accums else np.zeros(s)).astype(dtype)
              for s in shapes]
    return params, grads, accums


def run_both(update, params, grads, states, **settings):
    """The same update on copies, once per backend: (compiled, numpy) results."""
    results = []
    for backend in ("compiled", "numpy"):
        p = [x.copy() for x in params]
        s = None if states is None else [x.copy() for x in states]
        with fastgd.use_backend(backend):
            if s is None:
                update(p, grads, **settings)
            else:
                update(p, grads, s, **settings)
        results.append((p, s))
    return results


ZOO_SHAPES = [[(7,)], [(3, 4), (5,), ()], [(0,), (2, 3)], [(1,)], [(33, 65)]]


@pytest.mark.parametrize("shapes", ZOO_SHAPES, ids=str)
@pytest.mark.parametrize("eps_mode", EPS_MODES)
@pytest.mark.parametrize(
    "settings",
    [{}, {"maximize": True}, {"weight_decay": 0.1}, {"lower_bound": 0.0},
     {"lr_decay": 0.5, "step": 3}],
    ids=lambda s: ",".join(s) or "defaults",
)
def test_adagrad_matches_numpy_twin(rng, float_dtype, shapes, eps_mode, settings):
    params, grads, accums = make_triples(rng, shapes, float_dtype, positive_accums=True)
    if eps_mode == "inside" and accums[0].size:
        accums[0].flat[0] = 0
        grads[0].flat[0] = 0  # G stays 0: no step there
    (pc, sc), (pn, sn) = run_both(fastgd.adagrad_update, params, grads, accums,
                                  lr=0.1, eps_mode=eps_mode, **settings)
    for a, b in zip(pc + sc, pn + sn, strict=True):
        assert a.dtype == float_dtype
        assert_array_equal(a, b)  # same operations in the same order, no FMA
    if eps_mode == "inside" and accums[0].size and not (
        settings.get("weight_decay") or "lower_bound" in settings
    ):
        assert pc[0].flat[0] == params[0].flat[0]  # G == 0 there: no step


@pytest.mark.parametrize("shapes", ZOO_SHAPES, ids=str)
@pytest.mark.parametrize(
    "settings",
    [{"momentum": 0.0}, {"momentum": 0.9}, {"momentum": 0.9, "nesterov": True},
     {"momentum": 0.5, "dampening": 0.3, "weight_decay": 0.01, "maximize": True},
     {"momentum": 0.9, "lower_bound": -0.5}],
    ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()),
)
def test_sgd_matches_numpy_twin(rng, float_dtype, shapes, settings):
    params, grads, velocities = make_triples(rng, shapes, float_dtype, positive_accums=True)
    (pc, vc), (pn, vn) = run_both(fastgd.sgd_update, params, grads, velocities, lr=0.05,
                                  **settings)
    for a, b in zip(pc + vc, pn + vn, strict=True):
        assert a.dtype == float_dtype
        assert_array_equal(a, b)


def any_values(dtype):
    """Every value of the dtype: subnormals, huge ones, signed zeros, inf and NaN."""
    return st.floats(width=np.dtype(dtype).itemsize * 8)


@st.composite
def update_lists(draw, with_state=True):
    """A list of 1 to 3 (param, grad, state) triples of one dtype, any values, sizes
    around the kernels' vector blocks; the gradients C-ordered, Fortran-ordered or
    strided views."""
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    shapes = draw(st.lists(hnp.array_shapes(min_dims=0, max_dims=2, min_side=0, max_side=60),
                           min_size=1, max_size=3))
    params, grads, states = [], [], []
    for shape in shapes:
        params.append(draw(hnp.arrays(dtype, shape, elements=any_values(dtype))))
        layout = draw(st.sampled_from(["C", "F", "strided"]))
        if layout == "strided":
            wide = draw(hnp.arrays(dtype, (*shape[:-1], 2 * shape[-1]) if shape else (2,),
                                   elements=any_values(dtype)))
            grads.append(wide[..., ::2] if shape else wide[0])
        else:
            grads.append(np.asarray(draw(hnp.arrays(dtype, shape, elements=any_values(dtype))),
                                    order=layout))
        states.append(draw(hnp.arrays(dtype, shape, elements=any_values(dtype))))
    return params, grads, states if with_state else None


def assert_same_update(update, params, grads, states, **settings):
    """The compiled update gives the twin's bits, keeps the dtypes and leaves the
    gradients alone."""
    grads_before = [g.copy() for g in grads]
    with np.errstate(all="ignore"):
        (pc, sc), (pn, sn) = run_both(update, params, grads, states, **settings)
    for got, expected, param in zip(pc + (sc or []), pn + (sn or []), params + (states or []),
                                    strict=True):
        assert got.dtype == param.dtype
        assert_same_bits(got, expected)
    for g, before in zip(grads, grads_before, strict=True):
        assert_same_bits(g, before)


hyperparameter = st.floats(0, 10)
lower_bounds = st.none() | st.floats(-1e300, 1e300)


@settings(max_examples=150, deadline=None)
@given(arrays=update_lists(), lr=hyperparameter,
       eps=st.sampled_from([0.0, 1e-300, 1e-10, 1.0, 1e300]) | st.floats(0, 1),
       eps_mode=st.sampled_from(EPS_MODES), step=st.integers(1, 1000),
       lr_decay=hyperparameter, weight_decay=hyperparameter, maximize=st.booleans(),
       lower_bound=lower_bounds)
def test_property_adagrad_equals_twin(arrays, lr, eps, eps_mode, step, lr_decay, weight_decay,
                                      maximize, lower_bound):
    assert_same_update(fastgd.adagrad_update, *arrays, lr=lr, eps=eps, eps_mode=eps_mode,
                       step=step, lr_decay=lr_decay, weight_decay=weight_decay,
                       maximize=maximize, lower_bound=lower_bound)


@settings(max_examples=150, deadline=None)
@given(data=st.data(), lr=hyperparameter, momentum=st.just(0.0) | st.floats(0, 1),
       dampening=st.just(0.0) | st.floats(0, 1), nesterov=st.booleans(),
       weight_decay=hyperparameter, maximize=st.booleans(), lower_bound=lower_bounds)
def test_property_sgd_equals_twin(data, lr, momentum, dampening, nesterov, weight_decay,
                                  maximize, lower_bound):
    nesterov = nesterov and momentum > 0 and dampening == 0
    arrays = data.draw(update_lists(with_state=momentum != 0 or data.draw(st.booleans())))
    assert_same_update(fastgd.sgd_update, *arrays, lr=lr, momentum=momentum,
                       dampening=dampening, nesterov=nesterov, weight_decay=weight_decay,
                       maximize=maximize, lower_bound=lower_bound)


def test_large_list_threads_agree_bitwise(rng):
    # Above the parallel threshold, with chunks that cut through arrays.
    shapes = [(50_000,), (3,), (40_001,), (0,), (70_000,)]
    params, grads, accums = make_triples(rng, shapes, np.float64, positive_accums=True)
    outcomes = []
    for n_threads in (1, 2):
        p = [x.copy() for x in params]
        a = [x.copy() for x in accums]
        with fastgd.use_backend("compiled"):
            fastgd.adagrad_update(p, grads, a, lr=0.1, lower_bound=0.0, n_threads=n_threads)
        outcomes.append(p + a)
    for one, two in zip(*outcomes, strict=True):
        assert_array_equal(one, two)


def test_adagrad_formulas_written_out(backend, rng):
    """Each eps convention against its formula in plain NumPy (optax's scale_by_rss
    for "inside": rsqrt(G + eps) where G > 0, else 0)."""
    p0 = rng.standard_normal(50)
    g = rng.standard_normal(50)
    g[:5] = 0
    G0 = np.zeros(50)
    lr, eps = 0.3, 1e-3
    expected = {
        "outside": p0 - lr * g / (np.sqrt(G0 + g * g) + eps),
        "inside": p0 - lr * g * np.where(G0 + g * g > 0, 1 / np.sqrt(G0 + g * g + eps), 0.0),
        "accumulate": p0 - lr * g / np.sqrt(G0 + g * g + eps),
    }
    for mode, want in expected.items():
        p, G = p0.copy(), G0.copy()
        fastgd.adagrad_update(p, g, G, lr=lr, eps=eps, eps_mode=mode)
        assert_allclose(p, want, rtol=1e-14, atol=1e-15)


def test_adagrad_accumulate_reproduces_the_tutorial_loop(backend, rng):
    """The autograd tutorial: G = eps + G + g^2; p = p - (lr / sqrt(G)) * g, 20 steps."""
    lr, eps = 0.1, 1e-8
    params = [rng.random((4, 2)), -5 * np.abs(rng.standard_normal((2, 3)))]
    mine = [p.copy() for p in params]
    accums = [np.zeros_like(p) for p in params]
    sums = [np.zeros_like(p) for p in params]
    for step in range(20):
        grads = [np.sin(p * (step + 1)) for p in params]  # any gradient sequence
        sums = [eps + s + g * g for s, g in zip(sums, grads, strict=True)]
        params = [p - (lr / np.sqrt(s)) * g for p, s, g in zip(params, sums, grads, strict=True)]
        fastgd.adagrad_update(mine, [np.sin(p * (step + 1)) for p in mine], accums, lr=lr,
                              eps=eps, eps_mode="accumulate")
    for a, b in zip(mine, params, strict=True):
        assert_allclose(a, b, rtol=1e-12)
    for a, b in zip(accums, sums, strict=True):
        assert_allclose(a, b, rtol=1e-14)


torch = None


@pytest.fixture
def torch_module():
    global torch
    torch = require_peer("torch")
    return torch


def random_steps(rng, shapes, dtype, steps=10):
    """Parameters of the given shapes, and a sequence of gradients for them."""
    params = [rng.standard_normal(s).astype(dtype) for s in shapes]
    grad_sequence = [[rng.standard_normal(s).astype(dtype) for s in shapes]
                     for _ in range(steps)]
    return params, grad_sequence


def torch_run(torch, optimizer_class, params, grad_sequence, **settings):
    tensors = [torch.tensor(p.copy()) for p in params]
    for t in tensors:
        t.requires_grad_(True)
    optimizer = optimizer_class(tensors, **settings)
    for grads in grad_sequence:
        for t, g in zip(tensors, grads, strict=True):
            t.grad = torch.tensor(g.copy())
        optimizer.step()
    return [t.detach().numpy() for t in tensors], optimizer


def assert_close_to_torch(mine, want):
    """1e-14 relative in float64 (the issue's bar), a few float32 ulps in float32."""
    for a, b in zip(mine, want, strict=True):
        assert a.dtype == b.dtype
        rtol = 1e-14 if a.dtype == np.float64 else 2e-6
        assert_allclose(a, b, rtol=rtol, atol=rtol)


def fastgd_run(optimizer_class, params, grad_sequence, want, **settings):
    """The same steps with a fastgd optimizer object, checked against torch's results."""
    mine = [p.copy() for p in params]
    optimizer = optimizer_class(mine, **settings)
    for grads in grad_sequence:
        optimizer.step(grads)
    assert_close_to_torch(mine, want)
    return optimizer


@pytest.mark.parametrize(
    "settings",
    [{}, {"lr_decay": 0.05}, {"weight_decay": 0.1}, {"initial_accumulator_value": 0.3},
     {"maximize": True}, {"lr_decay": 0.01, "weight_decay": 0.01,
                          "initial_accumulator_value": 0.1, "eps": 1e-6}],
    ids=lambda s: ",".join(s) or "defaults",
)
def test_adagrad_object_matches_torch(backend, torch_module, rng, float_dtype, settings):
    params, grad_sequence = random_steps(rng, [(4, 3), (7,), ()], float_dtype)
    want, torch_optimizer = torch_run(torch, torch.optim.Adagrad, params, grad_sequence,
                                      lr=0.1, **settings)
    optimizer = fastgd_run(fastgd.Adagrad, params, grad_sequence, want, lr=0.1, **settings)
    torch_sums = [torch_optimizer.state[t]["sum"].numpy()
                  for t in torch_optimizer.param_groups[0]["params"]]
    assert_close_to_torch(optimizer.accums, torch_sums)


@pytest.mark.parametrize(
    "settings",
    [{}, {"momentum": 0.9}, {"momentum": 0.9, "nesterov": True},
     {"momentum": 0.8, "dampening": 0.2}, {"weight_decay": 0.05, "momentum": 0.5},
     {"maximize": True, "momentum": 0.3}],
    ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()) or "plain",
)
def test_sgd_object_matches_torch(backend, torch_module, rng, float_dtype, settings):
    params, grad_sequence = random_steps(rng, [(5, 2), (3,)], float_dtype)
    want, _ = torch_run(torch, torch.optim.SGD, params, grad_sequence, lr=0.05, **settings)
    fastgd_run(fastgd.SGD, params, grad_sequence, want, lr=0.05, **settings)


def test_lower_bound_projects_and_keeps_nan(backend):
    p = np.array([0.1, 0.5, np.nan, -1.0])
    fastgd.sgd_update(p, np.array([1.0, 0.1, 0.0, 0.0]), lr=1.0, lower_bound=0.0)
    assert_array_equal(p[[0, 1, 3]], [0.0, 0.4, 0.0])
    assert np.isnan(p[2])


def test_grads_are_not_modified_and_may_be_views(backend, rng):
    p = rng.standard_normal((4, 6))
    G = np.zeros((4, 6))
    big = rng.standard_normal((4, 12))
    grad = big[:, ::2]  # non-contiguous, read-only use
    before = big.copy()
    fastgd.adagrad_update(p, grad, G)
    assert_array_equal(big, before)
    assert_allclose(G, grad ** 2)


BAD_CALLS = [
    ("params[1] must be a numpy.ndarray", TypeError,
     lambda p, g, a: ([p[0], [1.0, 2.0]], g, a)),
    ("params[0] must have dtype float32 or float64", TypeError,
     lambda p, g, a: ([p[0].astype(np.int64), p[1]], g, a)),
    ("grads[1] must have the dtype of its parameter", TypeError,
     lambda p, g, a: (p, [g[0], g[1].astype(np.float32)], a)),
    ("grads[0] must have the shape of its parameter", ValueError,
     lambda p, g, a: (p, [g[0][:1], g[1]], a)),
    ("accums[1] must have the shape of its parameter", ValueError,
     lambda p, g, a: (p, g, [a[0], a[1][:2]])),
    ("params[1] must be C-contiguous", ValueError,
     lambda p, g, a: ([p[0], np.zeros((3, 8))[:, ::2]], g, a)),
    ("params[1] must be writeable", ValueError,
     lambda p, g, a: ([p[0], np.frombuffer(bytes(96), dtype=np.float64).reshape(3, 4)], g, a)),
    ("grads must hold one array per parameter", ValueError,
     lambda p, g, a: (p, g[:1], a)),
    ("shares memory with params", ValueError,
     lambda p, g, a: ([p[0], p[0]], [*g[:1], g[0]], [a[0], a[0].copy()])),
    ("shares memory with", ValueError,
     lambda p, g, a: (p, [g[0], p[1]], a)),
    ("shares memory with", ValueError,
     lambda p, g, a: (p, g, [a[0], p[1]])),
]


@pytest.mark.parametrize("message, error, make", BAD_CALLS, ids=[c[0] for c in BAD_CALLS])
def test_bad_lists_raise_before_anything_is_modified(backend, message, error, make):
    params = [np.ones(5), np.ones((3, 4))]
    grads = [np.full(5, 0.5), np.full((3, 4), 0.5)]
    accums = [np.zeros(5), np.zeros((3, 4))]
    p, g, a = make(params, grads, accums)
    if message == "params[1] must be writeable":
        p[1].flags.writeable = False
    snapshot = [x.copy() for x in params + accums]
    with pytest.raises(error, match=message.replace("[", r"\[").replace("]", r"\]")):
        fastgd.adagrad_update(p, g, a)
    for x, before in zip(params + accums, snapshot, strict=True):
        assert_array_equal(x, before)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [({"lr": -1.0}, ValueError, "lr must be >= 0"),
     ({"eps": float("nan")}, ValueError, "eps must be >= 0"),
     ({"lr": float("inf")}, ValueError, r"lr must be >= 0\.0 and finite; got inf"),
     ({"eps_mode": "both"}, ValueError, "eps_mode must be one of"),
     ({"step": 0}, ValueError, "step must be an integer >= 1"),
     ({"maximize": 1}, TypeError, "maximize must be a bool"),
     ({"lower_bound": float("nan")}, ValueError, "lower_bound must be None or a real"),
     ({"lr": "0.1"}, TypeError, "lr must be a real number")],
)
def test_bad_hyperparameters(backend, kwargs, error, match):
    with pytest.raises(error, match=match):
        fastgd.adagrad_update(np.ones(3), np.ones(3), np.zeros(3), **kwargs)


def test_sgd_argument_rules(backend):
    with pytest.raises(ValueError, match="nesterov requires momentum > 0"):
        fastgd.sgd_update(np.ones(2), np.ones(2), np.zeros(2), lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="momentum != 0 needs velocities"):
        fastgd.sgd_update(np.ones(2), np.ones(2), lr=0.1, momentum=0.9)
    with pytest.raises(TypeError, match="lr"):
        fastgd.sgd_update(np.ones(2), np.ones(2))  # lr is required


def test_state_dict_round_trip(backend, rng):
    params = [rng.standard_normal(4), rng.standard_normal((2, 2))]
    grads = [[rng.standard_normal(p.shape) for p in params] for _ in range(6)]
    straight = [p.copy() for p in params]
    opt = fastgd.Adagrad(straight, lr=0.2, lr_decay=0.1)
    for g in grads:
        opt.step(g)
    resumed = [p.copy() for p in params]
    first = fastgd.Adagrad(resumed, lr=0.2, lr_decay=0.1)
    for g in grads[:3]:
        first.step(g)
    state = first.state_dict()
    second = fastgd.Adagrad(resumed, lr=0.2, lr_decay=0.1)
    second.load_state_dict(state)
    for g in grads[3:]:
        second.step(g)
    for a, b in zip(straight, resumed, strict=True):
        assert_array_equal(a, b)
    momentum = fastgd.SGD([params[0].copy()], lr=0.1, momentum=0.9)
    momentum.step([grads[0][0]])
    saved = momentum.state_dict()
    assert saved["step"] == 1
    assert_array_equal(saved["velocities"][0], grads[0][0])


def test_sgd_state_dict_round_trip(backend, rng):
    """An SGD with momentum resumed from its state_dict steps as the one never stopped,
    settings included (a state's settings replace the optimizer's)."""
    params = rng.standard_normal(5)
    grads = [rng.standard_normal(5) for _ in range(4)]
    straight, resumed = params.copy(), params.copy()
    opt = fastgd.SGD(straight, lr=0.1, momentum=0.9, nesterov=True)
    for g in grads:
        opt.step(g)
    first = fastgd.SGD(resumed, lr=0.1, momentum=0.9, nesterov=True)
    for g in grads[:2]:
        first.step(g)
    second = fastgd.SGD(resumed, lr=0.5, momentum=0.5)  # the state's settings win
    second.load_state_dict(first.state_dict())
    assert second.settings == first.settings and second.step_count == 2
    for g in grads[2:]:
        second.step(g)
    assert_array_equal(straight, resumed)


@pytest.mark.parametrize("change, error, match", [
    (lambda s: [s["step"]], TypeError, "state must be a dict from state_dict.*got list"),
    (lambda s: {k: v for k, v in s.items() if k != "accums"}, ValueError,
     "state has no 'accums'"),
    (lambda s: {**s, "step": -1}, ValueError, r"state\['step'\] must be an integer >= 0"),
    (lambda s: {**s, "step": "3"}, ValueError, r"state\['step'\] must be an integer"),
    (lambda s: {**s, "settings": [("lr", 0.1)]}, TypeError,
     r"state\['settings'\] must be a dict; got list"),
    (lambda s: {**s, "settings": {"learning_rate": 0.1}}, ValueError,
     r"unknown keys \['learning_rate'\]"),
    (lambda s: {**s, "settings": {**s["settings"], "lr": "fast"}}, TypeError,
     "lr must be a real number; got str"),
    (lambda s: {**s, "settings": {**s["settings"], "eps_mode": "both"}}, ValueError,
     "eps_mode must be one of"),
    (lambda s: {**s, "accums": s["accums"][:1]}, ValueError,
     r"state\['accums'\] must be a list of 2 arrays, one per parameter; got a list of 1"),
    (lambda s: {**s, "accums": [s["accums"][0], np.ones(3)]}, ValueError,
     r"accums\[1\] must have shape \(2, 2\)"),
], ids=["not a dict", "no accums", "negative step", "string step", "settings not a dict",
        "unknown setting", "bad lr", "bad eps_mode", "too few accums", "wrong shape"])
def test_load_state_dict_checks_everything_before_restoring(change, error, match):
    """A bad state is the exception that names what is wrong, and leaves the optimizer
    exactly as it was: its sums, step count and settings."""
    source = fastgd.Adagrad([np.ones(3), np.ones((2, 2))], lr=0.3)
    source.step([np.ones(3), np.ones((2, 2))])
    target = fastgd.Adagrad([np.ones(3), np.ones((2, 2))], lr=0.1)
    before = (target.step_count, dict(target.settings), [a.copy() for a in target.accums])
    with pytest.raises(error, match=match):
        target.load_state_dict(change(source.state_dict()))
    assert (target.step_count, target.settings) == before[:2]
    for accum, saved in zip(target.accums, before[2], strict=True):
        assert_array_equal(accum, saved)


def test_sgd_load_state_dict_cannot_switch_momentum():
    plain = fastgd.SGD([np.ones(2)], lr=0.1)
    with_momentum = fastgd.SGD([np.ones(2)], lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match="cannot turn momentum on or off"):
        plain.load_state_dict(with_momentum.state_dict())
    with pytest.raises(ValueError, match="cannot turn momentum on or off"):
        with_momentum.load_state_dict(plain.state_dict())
    with pytest.raises(ValueError, match="nesterov requires momentum > 0"):
        with_momentum.load_state_dict({**with_momentum.state_dict(),
                                       "settings": {"nesterov": True, "dampening": 0.5}})


def test_single_arrays_and_effective_lr(backend):
    p = np.array([1.0, 2.0], dtype=np.float32)
    opt = fastgd.Adagrad(p, lr=0.5, eps_mode="inside", eps=0.0)
    opt.step(np.array([2.0, 0.0], dtype=np.float32))
    assert p.dtype == np.float32
    assert_allclose(p, [0.5, 2.0])
    rate = opt.effective_lr()[0]
    assert rate.dtype == np.float32
    assert_allclose(rate, [0.25, 0.0])


def test_fast_path_takes_plain_calls_and_declines_the_rest():
    """The compiled fast path runs plain calls in C; for anything else it returns False
    without touching an array, and the Python layer converts or raises."""
    from fastgd._backend import ext

    updates = ext._updates
    p, g, G = np.ones(4), np.full(4, 0.5), np.zeros(4)

    def call(**changes):
        arguments = dict(params=[p], grads=[g], accums=[G], lr=0.1, eps=1e-10,
                         eps_mode="outside", step=1, lr_decay=0.0, weight_decay=0.0,
                         maximize=False, lower_bound=None, n_threads=1)
        arguments.update(changes)
        values = list(arguments.values())
        return updates.adagrad_fast(*values, 1 << 16)

    assert call() is True
    assert_allclose(p, 1 - 0.1 * 0.5 / (0.5 + 1e-10))
    assert call(n_threads=-1) is True  # -1 = all CPUs, resolved in C
    before = (p.copy(), G.copy())
    declined = [
        {"lr": 1}, {"lr": -0.1}, {"eps": float("nan")}, {"eps_mode": "other"}, {"step": 0},
        {"maximize": 1}, {"lower_bound": 0}, {"n_threads": 0}, {"n_threads": True},
        {"grads": [g.tolist()]}, {"grads": [g.astype(np.float32)]},
        {"params": [np.ones((4, 2))[:, 0]]}, {"accums": [G[:3]]},
        {"params": [p], "accums": [p]}, {"grads": [p]},
    ]
    for changes in declined:
        assert call(**changes) is False, changes
        assert_array_equal(p, before[0])
        assert_array_equal(G, before[1])
    assert updates.sgd_fast([p], [g], None, 0.5, 0.0, False, 0.0, 0.0, False, None, 1,
                            1 << 16) is True
    assert updates.sgd_fast([p], [g], None, 0.5, 0.9, False, 0.0, 0.0, False, None, 1,
                            1 << 16) is False  # momentum without buffers


_POINTER_MAX = int(np.iinfo(np.uintp).max)


@settings(max_examples=300, deadline=None)
@given(starts=st.lists(
    st.one_of(
        st.integers(0, _POINTER_MAX),
        # Addresses near each other (the arrays of a list), across the bit boundaries
        # where one radix pass hands over to the next.
        st.builds(lambda base, shift, offset: min(_POINTER_MAX, base + (offset << shift)),
                  st.sampled_from([0, 1 << 32, 0x7F3A_1234_5000, _POINTER_MAX - (1 << 40)]),
                  st.integers(0, 40), st.integers(0, 7))),
    max_size=200))
def test_the_aliasing_checks_sort_sorts_any_addresses(starts):
    """The fast path's sort of byte ranges (by insertion up to 48, by radix over the
    bits in which the addresses differ beyond) puts any starts in order."""
    from fastgd._backend import ext

    assert ext._updates.sorted_starts(starts) == sorted(starts)
    # The same starts repeated past 48 take the radix sort.
    repeated = starts * (49 // max(1, len(starts)) + 1)
    assert ext._updates.sorted_starts(repeated) == sorted(repeated)


# An array of a list: in which of three buffers (or none: an array of its own), at which
# offset, and how long (every array of a triple has its triple's length).
_placement = st.tuples(st.sampled_from([None, 0, 1, 2]), st.integers(0, 120))


@settings(max_examples=300, deadline=None)
@given(triples=st.lists(st.tuples(st.integers(0, 6), _placement, _placement, _placement),
                        min_size=1, max_size=40))
def test_fast_path_refuses_exactly_the_lists_that_overlap(triples):
    """The compiled fast path's aliasing check (sorted byte ranges: by insertion up to 16
    arrays, by radix beyond) against all pairs: it must refuse a call, modifying nothing,
    exactly when an array written in place (a param or an accum) shares a byte with any
    other array of the call; gradients may share memory with each other."""
    from fastgd._backend import ext

    buffers = [np.zeros(160) for _ in range(3)]
    params, grads, accums, ranges = [], [], [], []
    for length, *placements in triples:
        for role, (buffer, offset), arrays in zip(("param", "grad", "accum"), placements,
                                                  (params, grads, accums), strict=True):
            array = (np.zeros(length) if buffer is None
                     else buffers[buffer][offset: offset + length])
            arrays.append(array)
            start = array.__array_interface__["data"][0]
            ranges.append((start, start + array.nbytes, role != "grad"))
    overlap = any(
        written_a or written_b
        for a, (start_a, end_a, written_a) in enumerate(ranges)
        for start_b, end_b, written_b in ranges[a + 1:]
        if start_a < end_a and start_b < end_b and start_a < end_b and start_b < end_a)
    before = [buffer.copy() for buffer in buffers]
    applied = ext._updates.adagrad_fast(params, grads, accums, 0.1, 1e-10, "outside", 1, 0.0,
                                        0.0, False, None, 1, 1 << 16)
    assert applied is not overlap
    if overlap:
        for buffer, snapshot in zip(buffers, before, strict=True):
            assert_array_equal(buffer, snapshot)


@pytest.mark.parametrize("kind", ["same_param_twice", "overlapping_views", "grad_is_accum",
                                  "disjoint_views"])
def test_aliasing_found_deep_in_long_lists(backend, kind):
    """Many arrays cut from a few buffers (addresses that share their high bytes and
    interleave), with one overlap far down the list."""
    buffer = np.zeros(5000)
    params = [buffer[10 * k: 10 * k + 10] for k in range(300)]
    accums = [np.zeros(10) for _ in range(300)]
    grads = [np.ones(10) for _ in range(300)]
    if kind == "same_param_twice":
        params[250] = params[17]
    elif kind == "overlapping_views":
        params[250] = buffer[175:185]  # straddles params[17] and params[18]
    elif kind == "grad_is_accum":
        grads[299] = accums[3]
    snapshot = buffer.copy(), [a.copy() for a in accums]
    if kind == "disjoint_views":
        fastgd.adagrad_update(params, grads, accums, lr=0.1)
        assert np.all(buffer[:3000] < 0) and np.all(buffer[3000:] == 0)
        return
    with pytest.raises(ValueError, match="shares memory with"):
        fastgd.adagrad_update(params, grads, accums, lr=0.1)
    assert_array_equal(buffer, snapshot[0])
    for a, before in zip(accums, snapshot[1], strict=True):
        assert_array_equal(a, before)
