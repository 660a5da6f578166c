"""The fused-update cases (one Adagrad step, the fused-update issue's sizes) and their
peers: idiomatic NumPy, NumPy with out= and scratch buffers, a numba loop,
torch.optim.Adagrad fused and for-loop, and two yardsticks: the bandwidth floor (a pass
that reads p, g, G and writes p and G, compiled and prefetched like the updates, on their
threads) and fastgd's projected step (lower_bound=0: its ratio is the cost of the
projection)."""

import math
import os

import numpy as np

import fastgd
from fastgd._backend import ext
from fastgd._threads import resolve_n_threads
from fastgd.benchmarks import numba_loops
from fastgd.updates import PARALLEL_MIN_ELEMENTS

KERNEL = "adagrad_update"

LR, EPS = 0.01, 1e-10
# name -> list of array shapes updated by one call
CASES = {
    "1e7 float64": [(10_000_000,)],
    "1e5 float64": [(100_000,)],
    "1e3 float64": [(1_000,)],
    "1000 x 100 float64": [(100,)] * 1000,
}
QUICK_CASES = ["1e5 float64", "1e3 float64", "1000 x 100 float64"]
OURS = ["fastgd.adagrad_update", "fastgd.Adagrad.step"]
# The peers, in the table's order (peers() leaves out those not installed).
PEERS = ["numpy", "numpy out=", "numba", "torch fused", "torch for-loop", "bandwidth floor",
         "fastgd lower_bound=0"]


def applies(case, peer):
    """The bandwidth floor streams one array: it has no multi-array case."""
    return peer != "bandwidth floor" or len(CASES[case]) == 1


def threaded(case):
    """Whether fastgd's call starts threads with ``n_threads=-1`` (enough elements in all
    for them)."""
    return sum(math.prod(shape) for shape in CASES[case]) >= PARALLEL_MIN_ELEMENTS


def make_state(shapes, seed=0):
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal(s) for s in shapes]
    grads = [rng.standard_normal(s) for s in shapes]
    accums = [np.zeros(s) for s in shapes]
    return params, grads, accums


def torch_peers(optimizer, params, grads, n_threads, **settings):
    """{"torch fused": step, "torch for-loop": step} of ``torch.optim.<optimizer>`` on
    copies of ``params`` with ``grads`` as their gradients (each step returns the
    tensors); empty without torch."""
    try:
        import torch
    except ImportError:
        return {}
    torch.set_num_threads(1 if n_threads == 1 else os.cpu_count())
    steps = {}
    for name, options in (("torch fused", {"fused": True}),
                          ("torch for-loop", {"foreach": False})):
        tensors = [torch.tensor(p.copy(), requires_grad=True) for p in params]
        for t, g in zip(tensors, grads, strict=True):
            t.grad = torch.tensor(g)
        torch_optimizer = getattr(torch.optim, optimizer)(tensors, **settings, **options)
        steps[name] = lambda step=torch_optimizer.step, tensors=tensors: step() or tensors
    return steps


def peers(case, n_threads):
    """name -> zero-argument callable doing one Adagrad step and returning the parameters
    it updated (a list of arrays, or of tensors for torch); peers that are missing or do
    not apply are left out. Every peer updates arrays of its own, all starting from the
    same state, except fastgd's projected step, which steps fastgd.adagrad_update's
    arrays (the cost of the projection, on the same memory)."""
    shapes = CASES[case]
    params, grads, accums = make_state(shapes)
    # The updates return None; `update(...) or params` returns what they updated for a
    # test to compare, at the cost of one truth test.
    result = {
        "fastgd.adagrad_update": lambda: fastgd.adagrad_update(
            params, grads, accums, lr=LR, eps=EPS, n_threads=n_threads) or params,
        # The same arrays, timed right after: the cost of the projection alone.
        "fastgd lower_bound=0": lambda: fastgd.adagrad_update(
            params, grads, accums, lr=LR, eps=EPS, lower_bound=0.0,
            n_threads=n_threads) or params,
    }
    optimizer = fastgd.Adagrad([p.copy() for p in params], lr=LR, eps=EPS,
                               n_threads=n_threads)
    result["fastgd.Adagrad.step"] = lambda: optimizer.step(grads) or optimizer.params
    numpy_params, _, numpy_accums = make_state(shapes)

    def idiomatic():
        for p, g, G in zip(numpy_params, grads, numpy_accums, strict=True):
            G += g * g
            p -= LR * g / (np.sqrt(G) + EPS)
        return numpy_params

    scratch = [np.empty_like(p) for p in params]
    out_params, _, out_accums = make_state(shapes)

    def with_out():
        for p, g, G, t in zip(out_params, grads, out_accums, scratch, strict=True):
            np.multiply(g, g, out=t)
            np.add(G, t, out=G)
            np.sqrt(G, out=t)
            np.add(t, EPS, out=t)
            np.divide(g, t, out=t)
            np.multiply(t, LR, out=t)
            np.subtract(p, t, out=p)
        return out_params

    result["numpy"] = idiomatic
    result["numpy out="] = with_out
    jitted = numba_loops.loops()
    if jitted is not None:
        jitted.use_threads(n_threads)
        numba_params, _, numba_accums = make_state(shapes)

        def numba_loop():
            for p, g, G in zip(numba_params, grads, numba_accums, strict=True):
                jitted.adagrad(p, g, G, LR, EPS)
            return numba_params

        # Compiled for these arrays' types on a copy, so that the timed calls start from
        # the common state.
        jitted.adagrad(params[0][:1].copy(), grads[0][:1], accums[0][:1].copy(), LR, EPS)
        result["numba"] = numba_loop
    result.update(torch_peers("Adagrad", params, grads, n_threads, lr=LR, eps=EPS))
    if ext is not None and applies(case, "bandwidth floor"):
        floor_params, _, floor_accums = make_state(shapes)
        floor_threads = resolve_n_threads(n_threads)
        result["bandwidth floor"] = lambda: ext._updates.bandwidth_floor(
            floor_params[0], grads[0], floor_accums[0], floor_threads,
            PARALLEL_MIN_ELEMENTS) or floor_params
    return result
