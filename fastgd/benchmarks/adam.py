"""The Adam cases (one Adam step, float64) and their peers: idiomatic NumPy,
torch.optim.Adam fused and for-loop, and the bandwidth floor of Adam's pass (one pass
that reads p, g, m and v and writes p, m and v, compiled and prefetched like the updates,
on their threads)."""

import math

import numpy as np

import fastgd
from fastgd._backend import ext
from fastgd._threads import resolve_n_threads
from fastgd.benchmarks.updates import torch_peers
from fastgd.updates import PARALLEL_MIN_ELEMENTS

KERNEL = "adam_update"

LR, BETA1, BETA2, EPS = 1e-3, 0.9, 0.999, 1e-8
# name -> list of array shapes updated by one call
CASES = {
    "1e7 float64": [(10_000_000,)],
    "1e5 float64": [(100_000,)],
    "1e3 float64": [(1_000,)],
}
QUICK_CASES = ["1e5 float64", "1e3 float64"]
OURS = ["fastgd.adam_update", "fastgd.Adam.step"]
PEERS = ["numpy", "torch fused", "torch for-loop", "bandwidth floor"]


def applies(case, peer):
    return True


def threaded(case):
    """Whether fastgd's call starts threads with ``n_threads=-1``."""
    return sum(math.prod(shape) for shape in CASES[case]) >= PARALLEL_MIN_ELEMENTS


def make_state(shapes, seed=0):
    """(params, grads, exp_avgs, exp_avg_sqs): moments at zero, before the first step."""
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal(s) for s in shapes]
    grads = [rng.standard_normal(s) for s in shapes]
    return params, grads, [np.zeros(s) for s in shapes], [np.zeros(s) for s in shapes]


def peers(case, n_threads):
    """name -> zero-argument callable doing one Adam step (the first, at step 1: every
    peer is called repeatedly from its own state, so later calls take later steps at the
    same cost) and returning the parameters it updated."""
    shapes = CASES[case]
    params, grads, exp_avgs, exp_avg_sqs = make_state(shapes)
    result = {
        "fastgd.adam_update": lambda: fastgd.adam_update(
            params, grads, exp_avgs, exp_avg_sqs, lr=LR, betas=(BETA1, BETA2), eps=EPS,
            n_threads=n_threads) or params,
    }
    optimizer = fastgd.Adam([p.copy() for p in params], lr=LR, betas=(BETA1, BETA2),
                            eps=EPS, n_threads=n_threads)
    result["fastgd.Adam.step"] = lambda: optimizer.step(grads) or optimizer.params
    numpy_params, _, numpy_m, numpy_v = make_state(shapes)
    numpy_steps = [0]

    def idiomatic():
        numpy_steps[0] += 1
        t = numpy_steps[0]
        for p, g, m, v in zip(numpy_params, grads, numpy_m, numpy_v, strict=True):
            m += (1 - BETA1) * (g - m)
            v *= BETA2
            v += (1 - BETA2) * g * g
            denominator = np.sqrt(v) / math.sqrt(1 - BETA2 ** t) + EPS
            p -= LR / (1 - BETA1 ** t) * (m / denominator)
        return numpy_params

    result["numpy"] = idiomatic
    result.update(torch_peers("Adam", params, grads, n_threads, lr=LR, betas=(BETA1, BETA2),
                              eps=EPS))
    if ext is not None:
        floor_params, _, floor_m, floor_v = make_state(shapes)
        floor_threads = resolve_n_threads(n_threads)
        result["bandwidth floor"] = lambda: ext._updates.bandwidth_floor(
            floor_params[0], grads[0], floor_m[0], floor_threads, PARALLEL_MIN_ELEMENTS,
            floor_v[0]) or floor_params
    return result
